"""The server's certificate: loaded and checked at start, read again on demand
(SIGHUP) into a fresh `ssl.SSLContext` that new connections get, while connections
made with the old one go on."""

from __future__ import annotations

import logging
import ssl

from lpms.errors import TLSError
from lpms.logs import log_event

log = logging.getLogger("lpms.tls")


class Certificates:
    """The current server-side context for one certificate and key file pair;
    `context` is read at each accepted connection."""

    def __init__(self, cert: str, key: str) -> None:
        self.cert = cert
        self.key = key
        self.context = server_context(cert, key)

    def reload(self) -> bool:
        """Read the files again and use them for new connections; a bad file is logged
        and the certificate in use kept (no connection is dropped either way)."""
        try:
            context = server_context(self.cert, self.key)
        except TLSError as exc:
            log_event(log, logging.ERROR, "TLS reload failed, old certificate kept", error=str(exc))
            return False
        self.context = context
        log_event(log, logging.INFO, "TLS certificate reloaded", cert=self.cert)
        return True


def server_context(cert: str, key: str) -> ssl.SSLContext:
    """A server context (TLS 1.2 or later) for the PEM certificate chain `cert` and
    its unencrypted private key `key`; `TLSError` naming the file if they cannot
    be used."""
    _check_pem(cert, "certificate", b"-----BEGIN CERTIFICATE-----")
    _check_pem(key, "private key", b"PRIVATE KEY-----")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        # A password callback, so an encrypted key fails here rather than prompting
        # on the terminal (OpenSSL's default).
        context.load_cert_chain(cert, key, password=_no_password)
    except _EncryptedKey:
        raise TLSError(f"TLS key {key} is encrypted; give an unencrypted key") from None
    except ssl.SSLError as exc:
        raise TLSError(_load_failure(cert, key, exc)) from None
    except OSError as exc:
        raise TLSError(f"cannot read TLS certificate {cert} or key {key}: {exc}") from None
    return context


class _EncryptedKey(Exception):
    pass


def _no_password() -> bytes:
    raise _EncryptedKey


def _check_pem(path: str, what: str, marker: bytes) -> None:
    try:
        with open(path, "rb") as file:
            text = file.read(1 << 20)
    except OSError as exc:
        raise TLSError(f"cannot read TLS {what} {path}: {exc.strerror}") from None
    if marker not in text:
        raise TLSError(f"TLS {what} {path} holds no PEM {what}")


def _load_failure(cert: str, key: str, exc: ssl.SSLError) -> str:
    """Which file is at fault: OpenSSL's own reason ("PEM lib") does not say."""
    if exc.reason == "KEY_VALUES_MISMATCH":
        return f"TLS key {key} does not belong to the certificate {cert}"
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=cert)
    except ssl.SSLError:
        return f"TLS certificate {cert} is not a valid PEM certificate"
    return f"TLS key {key} is not a valid PEM private key"
