"""TLS settings: a module of its own, importing neither PyAV nor asyncio (nor ssl), so
the settings tree loads light."""

from __future__ import annotations

from dataclasses import dataclass

from lpms.validate import at_least, positive

DEFAULT_RTMPS_PORT = 1936
DEFAULT_HTTPS_PORT = 8443


@dataclass(frozen=True, slots=True)
class TLSSettings:
    """RTMPS and HTTPS, beside the plain ports, once a certificate and its key are
    given (both, or neither). The files are PEM: the certificate chain (the server's
    certificate first), and an unencrypted private key. ``lpms serve`` reads them
    again on SIGHUP; a bad new file is logged and the old certificate kept."""

    cert: str | None = None
    """PEM certificate chain file."""
    key: str | None = None
    """PEM private key file of the certificate."""
    rtmps_port: int | None = DEFAULT_RTMPS_PORT
    """RTMPS port (0: any free port; off: no RTMPS)."""
    https_port: int | None = DEFAULT_HTTPS_PORT
    """HTTPS port: all of the HTTP side over TLS (0: any free port; off: no HTTPS)."""
    handshake_timeout: float = 10.0
    """Seconds a client has to finish the TLS handshake; then it is closed."""
    max_handshakes: int = 1000
    """TLS handshakes in progress at once, per listener; one more connection is closed."""

    def __post_init__(self) -> None:
        if (self.cert is None) != (self.key is None):
            given, missing = ("cert", "key") if self.key is None else ("key", "cert")
            raise ValueError(f"{given} is given without {missing}: TLS needs both")
        for name in ("rtmps_port", "https_port"):
            check_port(name, getattr(self, name))
        positive(handshake_timeout=self.handshake_timeout)
        at_least(1, max_handshakes=self.max_handshakes)

    @property
    def enabled(self) -> bool:
        """A certificate is given: the TLS listeners open (those whose port is not off)."""
        return self.cert is not None


def check_port(name: str, port: int | None) -> None:
    """A listener's port: 0 to 65535, or None (off)."""
    if port is not None and not 0 <= port <= 65535:
        raise ValueError(f"{name} must be 0 to 65535 or off, got {port}")
