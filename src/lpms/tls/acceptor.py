"""Accepting TLS connections for a listener of plain-protocol code (RTMP, aiohttp's HTTP).

``loop.create_server(ssl=...)`` would hide a failed handshake from us: asyncio's
SSLProtocol logs it at debug level and closes, so it could not be counted. Here a
small plain protocol takes each TCP connection, runs the handshake itself with
``loop.start_tls`` (bounded by ``handshake_timeout``), and on success hands the TLS
transport to the real protocol; on failure it counts the close in
``lpms_connections_closed_total{protocol, reason="tls_handshake"}`` (or
``tls_handshake_timeout``, ``max_handshakes``), logs it once with the peer, and
closes. The certificate is read from `Certificates` at each accept, so a reload
applies to the next connection. Works on asyncio's loop and on uvloop.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

from lpms.logs import log_event

if TYPE_CHECKING:
    from lpms.metrics import Metrics
    from lpms.tls.certs import Certificates
    from lpms.tls.settings import TLSSettings

log = logging.getLogger("lpms.tls")

ProtocolFactory = Callable[[], asyncio.BaseProtocol]

HANDSHAKE_FAILED = "tls_handshake"
HANDSHAKE_TIMEOUT = "tls_handshake_timeout"
TOO_MANY_HANDSHAKES = "max_handshakes"


class TLSHandshakes:
    """The TLS side of one listener: its label in metrics (``rtmps``, ``https``), the
    handshakes in progress (bounded, and aborted by `close`)."""

    def __init__(
        self, certificates: Certificates, settings: TLSSettings, protocol: str, metrics: Metrics
    ) -> None:
        self.certificates = certificates
        self.settings = settings
        self.protocol = protocol
        self.metrics = metrics
        self.pending: set[TLSAcceptor] = set()

    def wrap(self, inner: ProtocolFactory) -> Callable[[], TLSAcceptor]:
        """A protocol factory for ``loop.create_server``: TLS, then ``inner()``."""
        return lambda: TLSAcceptor(self, inner)

    def failed(self, peer: str, reason: str, detail: str) -> None:
        self.metrics.connections_closed.labels(self.protocol, reason).inc()
        log_event(
            log,
            logging.WARNING,
            "connection closed",
            peer=peer,
            protocol=self.protocol,
            reason=reason,
            detail=detail,
        )

    def close(self) -> None:
        """Abort every handshake in progress (the server is stopping)."""
        for acceptor in list(self.pending):
            acceptor.abort()


class TLSAcceptor(asyncio.Protocol):
    """One accepted TCP connection until its TLS handshake is done.

    Bytes can reach this protocol at two moments. Before ``start_tls`` takes the
    transport: uvloop starts reading after ``connection_made`` whatever it was told
    there, so the client's first bytes (its ClientHello) may come here; they are
    replayed into the TLS protocol once it is connected. After the handshake and
    before the handover (SSLProtocol delivers application bytes, end of stream or
    loss at once, before our task resumes): they are kept and passed on to the real
    protocol after its ``connection_made``."""

    def __init__(self, handshakes: TLSHandshakes, inner: ProtocolFactory) -> None:
        self._handshakes = handshakes
        self._inner_factory = inner
        self._transport: asyncio.Transport | None = None
        self._task: asyncio.Task[None] | None = None
        self._hello: list[bytes] = []  # read before start_tls took the transport
        self._early: list[bytes] = []  # application bytes before the handover
        self._eof = False
        self._lost: tuple[Exception | None] | None = None
        self.peer = "?"

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername") or ("?", 0)
        self.peer = f"{peer[0]}:{peer[1]}"
        handshakes = self._handshakes
        if len(handshakes.pending) >= handshakes.settings.max_handshakes:
            handshakes.failed(self.peer, TOO_MANY_HANDSHAKES, "too many TLS handshakes at once")
            transport.abort()
            return
        handshakes.pending.add(self)
        transport.pause_reading()  # until start_tls reads (asyncio's loop heeds it here)
        self._task = asyncio.get_running_loop().create_task(self._handshake(transport))

    async def _handshake(self, transport: asyncio.Transport) -> None:
        handshakes = self._handshakes
        timeout = handshakes.settings.handshake_timeout
        loop = asyncio.get_running_loop()
        starting = loop.create_task(
            loop.start_tls(
                transport,
                self,
                handshakes.certificates.context,
                server_side=True,
                ssl_handshake_timeout=timeout + 1.0,  # ours fires first, counted
            )
        )
        try:
            async with asyncio.timeout(timeout):
                await asyncio.sleep(0)  # start_tls's first step: it takes the transport
                if transport.is_closing():  # the peer left first (a TCP health check)
                    starting.cancel()
                    raise ConnectionResetError("closed by the peer before the handshake")
                if self._hello:
                    self._replay_hello(transport)
                tls_transport = await starting
        except (ConnectionResetError, BrokenPipeError) as exc:
            # The peer left: not a close of lpms's own, so not counted as one.
            log.debug("%s left during the TLS handshake: %r", self.peer, exc)
            transport.abort()
            return
        except TimeoutError:
            handshakes.failed(self.peer, HANDSHAKE_TIMEOUT, f"no TLS handshake within {timeout:g}s")
            transport.abort()
            return
        except (ssl.SSLError, OSError, ConnectionError, EOFError) as exc:
            handshakes.failed(self.peer, HANDSHAKE_FAILED, _describe(exc))
            transport.abort()
            return
        finally:
            handshakes.pending.discard(self)
            if not starting.done():  # cancelled (abort) or left early: closes the transport
                starting.cancel()
        if tls_transport is None:  # the connection was lost meanwhile
            return
        self._hand_over(tls_transport)

    def _hand_over(self, tls_transport: asyncio.Transport) -> None:
        inner = self._inner_factory()
        tls_transport.set_protocol(inner)
        inner.connection_made(tls_transport)
        receive = cast(asyncio.Protocol, inner)
        for data in self._early:
            receive.data_received(data)
        self._early.clear()
        if self._eof:
            receive.eof_received()
        if self._lost is not None:
            inner.connection_lost(self._lost[0])

    def _replay_hello(self, transport: asyncio.Transport) -> None:
        """Give the TLS protocol the bytes read before it had the transport, after its
        ``connection_made`` and before anything it reads itself. Callbacks run in
        the order they are scheduled: start_tls's first step (just run) scheduled
        the TLS protocol's ``connection_made`` and the resumption of reading, so the
        replay scheduled now comes after both, and a read reaches the TLS protocol
        only after all three (at the next poll)."""
        tls_protocol = cast(asyncio.BufferedProtocol, transport.get_protocol())
        hello = b"".join(self._hello)
        self._hello.clear()
        asyncio.get_running_loop().call_soon(_feed, tls_protocol, hello)

    def abort(self) -> None:
        if self._task is not None:
            self._task.cancel()
        if self._transport is not None:
            self._transport.abort()

    # -- what SSLProtocol passes on before the handover --------------------------------

    def data_received(self, data: bytes) -> None:
        transport = self._transport
        if transport is not None and transport.get_protocol() is self:  # start_tls is not there
            self._hello.append(bytes(data))
            transport.pause_reading()
            return
        self._early.append(bytes(data))

    def eof_received(self) -> bool | None:
        self._eof = True
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = (exc,)


def _feed(protocol: asyncio.BufferedProtocol, data: bytes) -> None:
    """Hand ``data`` to ``protocol`` as a transport's reads would."""
    view = memoryview(data)
    while view:
        buffer = memoryview(protocol.get_buffer(len(view))).cast("B")
        size = min(len(buffer), len(view))
        buffer[:size] = view[:size]
        protocol.buffer_updated(size)
        view = view[size:]


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return f"TLS handshake failed: {exc.reason}"
    return f"TLS handshake failed: {exc!r}"
