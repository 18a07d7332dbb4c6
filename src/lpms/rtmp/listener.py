"""The asyncio side of RTMP: moves bytes between sockets and `RTMPConnection`s.

This is the only module under ``rtmp/`` that does I/O. It passes each connection
the loop's time and arms the one timer the connection asks for; the timeouts, the
parse budget and read pacing are the connection's own decisions. Paced publishers
are read together on one timer (`PacedReads`) rather than each through asyncio.
Everything it knows about streams, permissions and connection limits it asks of
the session core (`lpms.sessions.SessionCore`), so the rules of who may publish or
play live in one place for every protocol; this module only maps the core's
refusals to NetStream status codes.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import deque
from collections.abc import Callable, Iterator
from typing import TypeVar, cast

from lpms.access import Action, PlayRequest, Protocol, PublishRequest, Refusal, RefusalReason
from lpms.errors import RTMPProtocolError
from lpms.logs import log_event
from lpms.media.stream import PlayerClock, Stream, Subscription
from lpms.rtmp.connection import RTMPConnection
from lpms.rtmp.events import (
    Event,
    MediaReceived,
    PlayEnded,
    PlayRequested,
    PublishEnded,
    PublishRequested,
)
from lpms.rtmp.settings import ListenerSettings
from lpms.sessions import SessionCore

log = logging.getLogger("lpms.rtmp")

_R = TypeVar("_R", PublishRequest, PlayRequest)

# RTMP has no Play.Unauthorized status: players get Play.Failed for any refusal but
# a missing stream; a publisher whose ID is taken or over a limit gets BadName.
_PUBLISH_CODES = {
    RefusalReason.BAD_NAME: "NetStream.Publish.BadName",
    RefusalReason.LIMIT: "NetStream.Publish.BadName",
}
_PLAY_CODES = {RefusalReason.NOT_FOUND: "NetStream.Play.StreamNotFound"}


def netstream_code(action: Action, reason: RefusalReason) -> str:
    """The NetStream status code that tells an RTMP client of a refusal."""
    if action is Action.PUBLISH:
        return _PUBLISH_CODES.get(reason, "NetStream.Publish.Unauthorized")
    return _PLAY_CODES.get(reason, "NetStream.Play.Failed")


class _Publishing:
    __slots__ = ("bytes_in", "request", "stream")

    def __init__(self, request: PublishRequest, stream: Stream) -> None:
        self.request = request
        self.stream = stream
        self.bytes_in = 0


class _Playing:
    """One player's subscription and its clock (players start near zero)."""

    __slots__ = ("clock", "request", "subscription")

    def __init__(self, request: PlayRequest, subscription: Subscription) -> None:
        self.request = request
        self.subscription = subscription
        self.clock = PlayerClock()


class ConnectionTracker:
    """One listener's open connections (to close them at shutdown), counted against
    the core's connection limits, and what they share: one receive buffer, one
    drain after each read, one pacer."""

    def __init__(self, core: SessionCore, protocol: Protocol = Protocol.RTMP) -> None:
        self.core = core
        self.protocol = protocol
        metrics = core.metrics
        self.bytes_received = metrics.bytes_received.labels(protocol)
        self.bytes_sent = metrics.bytes_sent.labels(protocol)
        self._open: set[RTMPServerProtocol] = set()
        # Every connection reads into this one buffer: each read is handed to its
        # connection (which copies what it keeps) before the loop does the next, so no
        # read allocates its own 256 KiB as asyncio's plain protocols do.
        self.receive_buffer = memoryview(bytearray(RECEIVE_BUFFER_SIZE))
        # Players with packets to write. A publisher's read ends by writing to them
        # at once, in the same loop iteration; outside one, a callback soon does.
        self._to_drain: list[RTMPServerProtocol] = []
        self._reading = False
        self._drain_soon: asyncio.Handle | None = None
        self.pacer: PacedReads | None = None  # made by the first paced publisher

    def drain_later(self, player: RTMPServerProtocol) -> None:
        """``player`` has packets queued: write them after the current read."""
        self._to_drain.append(player)
        if not self._reading and self._drain_soon is None:
            self._drain_soon = asyncio.get_running_loop().call_soon(self.drain)

    def reading(self) -> None:
        """A publisher's bytes are being handled: its players are drained by `drain`
        when that is done, not by a callback of their own."""
        self._reading = True

    def drain(self) -> None:
        """Write what every waiting player has queued (one write each)."""
        self._reading = False
        if self._drain_soon is not None:
            self._drain_soon.cancel()
            self._drain_soon = None
        players, self._to_drain = self._to_drain, []
        for player in players:
            try:
                player.drain_players()
            except Exception as exc:  # one player's fault must not end the publisher's read
                log.error("internal error writing to %s", player.peer, exc_info=exc)
                player.fail_internally(exc)

    def __len__(self) -> int:
        return len(self._open)

    def __iter__(self) -> Iterator[RTMPServerProtocol]:
        return iter(list(self._open))

    def add(self, connection: RTMPServerProtocol) -> bool:
        """Take a new connection in, unless it passes a connection limit."""
        if not self.core.connections.admit(self.protocol, connection.peer_ip, connection.peer):
            return False
        self._open.add(connection)
        return True

    def discard(self, connection: RTMPServerProtocol) -> None:
        if connection not in self._open:
            return
        self._open.discard(connection)
        self.core.connections.release(self.protocol, connection.peer_ip)

    def closed(self, reason: str) -> None:
        """Count a connection lpms closed on its own (``reason``: a limit's name)."""
        self.core.connections.closed(self.protocol, reason)


RECEIVE_BUFFER_SIZE = 256 << 10  # what one read takes at most
_CAN_READ_SOCKETS = hasattr(os, "readv")  # POSIX; elsewhere asyncio reads every socket


class PacedReads:
    """Reads every paced publisher on one timer, ``read_interval`` apart.

    A paced publisher read through asyncio costs, every interval, a resume (an
    epoll registration and a handle), a wake-up, a pause (an epoll removal) and a
    timer of its own: py-spy found a quarter of the relay's busy time there at 16
    streams. Here its socket stays out of the selector while it is paced; one timer
    per interval reads them all, each with one system call, and passes them the
    tick's own time, so a publisher read at one tick is due again exactly at the
    next. bench/ingest.py: 0.36 to 0.18 % of a core per stream.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, interval: float) -> None:
        self._loop = loop
        self._interval = interval
        self._members: dict[RTMPServerProtocol, None] = {}  # in joining order
        self._timer: asyncio.TimerHandle | None = None
        self.last_tick = loop.time()

    def add(self, connection: RTMPServerProtocol) -> None:
        self._members[connection] = None
        if self._timer is None:
            self.last_tick = self._loop.time()
            self._timer = self._loop.call_at(self.last_tick + self._interval, self._tick)

    def discard(self, connection: RTMPServerProtocol) -> None:
        self._members.pop(connection, None)
        if not self._members and self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _tick(self) -> None:
        now = self.last_tick = self.last_tick + self._interval
        if now < self._loop.time() - self._interval:  # a stalled loop: no catching up
            now = self.last_tick = self._loop.time()
        self._timer = self._loop.call_at(now + self._interval, self._tick)
        for connection in list(self._members):
            try:
                connection.read_paced(now)
            except Exception as exc:  # one connection's fault must not stop the others
                log.error("internal error reading %s", connection.peer, exc_info=exc)
                connection.fail_internally(exc)


class RTMPServerProtocol(asyncio.BufferedProtocol):
    """One RTMP client connection."""

    def __init__(self, settings: ListenerSettings, tracker: ConnectionTracker) -> None:
        self._core = tracker.core
        self._settings = settings
        self._tracker = tracker
        self._loop = asyncio.get_running_loop()
        self._conn = RTMPConnection(settings, now=self._loop.time())
        self._transport: asyncio.Transport | None = None
        self._pending: deque[Event] = deque()
        self._busy = False
        self._parse_scheduled = False
        self._reading_paused = False
        self._polled = False  # read by the tracker's PacedReads, not by asyncio
        self._poll_scheduled = False
        self._more_waiting = False  # a polled read filled the buffer: more is in the kernel
        self._fd = -1
        self._closing = False
        self._write_paused = False
        self._drain_scheduled = False
        self._publishing: dict[int, _Publishing] = {}
        self._playing: dict[int, _Playing] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._linger: asyncio.TimerHandle | None = None
        self.peer_ip = ""
        self.peer_port = 0

    # -- asyncio.Protocol --------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only look alike.
        transport = self._transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername") or ("?", 0)
        self.peer_ip, self.peer_port = str(peer[0]), int(peer[1])
        if not self._tracker.add(self):
            self._closing = True
            transport.abort()
            return
        transport.set_write_buffer_limits(high=self._settings.write_buffer_high)
        # Paced reads go to the socket itself: only for plain TCP where os.readv is.
        sock = transport.get_extra_info("socket")
        plain = sock is not None and transport.get_extra_info("sslcontext") is None
        self._fd = sock.fileno() if plain and _CAN_READ_SOCKETS else -1
        self._arm_timer()

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._tracker.receive_buffer

    def buffer_updated(self, nbytes: int) -> None:
        buffer = self._tracker.receive_buffer
        # A read that filled the buffer most likely left bytes in the kernel.
        self.data_received(buffer[:nbytes], more_waiting=nbytes == len(buffer))

    def data_received(
        self, data: bytes | memoryview, *, more_waiting: bool = False, now: float | None = None
    ) -> None:
        if self._closing:
            return
        self._tracker.bytes_received.inc(len(data))
        for publishing in self._publishing.values():
            publishing.bytes_in += len(data)
        self._receive(data, more_waiting, now)

    def _receive(
        self, data: bytes | memoryview, more_waiting: bool = False, now: float | None = None
    ) -> None:
        """Hand bytes (or, with ``b""``, the turn to go on parsing) to the connection,
        at ``now`` (the loop's time unless a paced read gives its tick's)."""
        tracker = self._tracker
        tracker.reading()
        try:
            try:
                events = self._conn.receive_data(
                    data, self._loop.time() if now is None else now, more_waiting=more_waiting
                )
            except RTMPProtocolError as exc:
                self._fail(str(exc), exc.label)
                return
            self._pending.extend(events)
            self._process_events()
            self._flush()
            self._update_reading()
        finally:
            tracker.drain()

    def _go_on_parsing(self) -> None:
        self._parse_scheduled = False
        if not self._closing:
            self._receive(b"")

    def _update_reading(self) -> None:
        """Read while no request waits on the application and the connection allows
        it (a paced publisher through `PacedReads`, the rest through asyncio); let it
        go on parsing after other connections had their turn; arm its timer."""
        if self._closing or self._transport is None:
            return
        conn = self._conn
        if (
            conn.input_pending
            and not conn.throttled
            and not self._busy
            and not self._parse_scheduled
        ):
            self._parse_scheduled = True
            self._loop.call_soon(self._go_on_parsing)
        polled = conn.paced and self._fd >= 0
        if polled != self._polled:
            self._set_polled(polled)
        paused = polled or self._busy or not conn.read_allowed
        if paused != self._reading_paused:
            self._reading_paused = paused
            if paused:
                self._transport.pause_reading()
            else:
                self._transport.resume_reading()
        if (
            polled
            and self._more_waiting
            and conn.read_allowed
            and not self._busy
            and not self._poll_scheduled
        ):
            # The last read filled the buffer: read on in this iteration's turn, on
            # the tick's clock, rather than at the next tick.
            self._poll_scheduled = True
            self._loop.call_soon(self._read_soon)
        self._arm_timer()

    def _set_polled(self, polled: bool) -> None:
        self._polled = polled
        pacer = self._tracker.pacer
        if polled:
            if pacer is None:
                pacer = self._tracker.pacer = PacedReads(self._loop, self._settings.read_interval)
            pacer.add(self)
        elif pacer is not None:
            pacer.discard(self)

    def _read_soon(self) -> None:
        self._poll_scheduled = False
        pacer = self._tracker.pacer
        if self._polled and pacer is not None:
            self.read_paced(max(pacer.last_tick, self._conn.now))

    def read_paced(self, now: float) -> None:
        """One read of a paced publisher's socket at ``now`` (a tick of `PacedReads`),
        if the connection allows it then; what asyncio's reading would do with what
        it finds, end of stream and errors included."""
        if self._closing or not self._polled or self._busy:
            return
        conn = self._conn
        try:
            conn.handle_timer(now)
        except RTMPProtocolError as exc:
            self._fail(str(exc), exc.label)
            return
        if not conn.read_allowed:
            return
        buffer = self._tracker.receive_buffer
        self._more_waiting = False
        try:
            nbytes = os.readv(self._fd, [buffer])
        except (BlockingIOError, InterruptedError):
            return  # nothing yet: due at the next tick
        except OSError as exc:  # reset by the peer, most likely: as asyncio would
            log.debug("read from %s failed: %r", self.peer, exc)
            if self._transport is not None:
                self._transport.abort()
            return
        if nbytes == 0:
            if not self.eof_received() and self._transport is not None:
                self._transport.close()
            return
        self._more_waiting = nbytes == len(buffer)
        self.data_received(buffer[:nbytes], more_waiting=self._more_waiting, now=now)

    def _arm_timer(self) -> None:
        """One timer, at the connection's earliest deadline. A timer already armed
        earlier is kept: it wakes the connection, which then names its next deadline
        (a publisher's receive deadline moves on with every read)."""
        when = self._conn.get_timer(pacing=not self._polled)
        if when is None:
            return
        if self._timer is not None:
            if self._timer_at <= when:
                return
            self._timer.cancel()
        self._timer_at = when
        self._timer = self._loop.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        if self._closing:
            return
        try:
            self._conn.handle_timer(self._loop.time())
        except RTMPProtocolError as exc:
            self._fail(str(exc), exc.label)
            return
        self._update_reading()

    def eof_received(self) -> bool | None:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        if self._polled:
            self._set_polled(False)
        self._tracker.discard(self)
        if self._timer is not None:
            self._timer.cancel()
        if self._linger is not None:
            self._linger.cancel()
        for task in self._tasks:
            task.cancel()
        for msid in list(self._publishing):
            self._end_publish(msid)
        for msid in list(self._playing):
            self._end_play(msid)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        self.drain_players()

    # -- event handling ----------------------------------------------------

    def _process_events(self) -> None:
        # Requests that wait on the application hold back later events, so a
        # publisher's media is never handled before its publish is accepted.
        while self._pending and not self._busy and not self._closing:
            event = self._pending.popleft()
            if isinstance(event, MediaReceived):
                publishing = self._publishing.get(event.message_stream_id)
                if publishing is not None:
                    publishing.stream.write(event.packet)
            elif isinstance(event, PublishRequested):
                self._spawn(self._publish(event))
            elif isinstance(event, PlayRequested):
                self._spawn(self._play(event))
            elif isinstance(event, PublishEnded):
                self._end_publish(event.message_stream_id)
            elif isinstance(event, PlayEnded):
                self._end_play(event.message_stream_id)

    def _spawn(self, coro: object) -> None:
        self._busy = True
        self._update_reading()
        task: asyncio.Task[None] = self._loop.create_task(coro)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._request_done)

    def _request_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._busy = False
        if self._closing:
            return
        exc = None if task.cancelled() else task.exception()
        if exc is not None:
            log.error("internal error on %s", self.peer, exc_info=exc)
            self.fail_internally(exc)
            return
        self._process_events()
        self._flush()
        self._update_reading()

    def _request(self, kind: type[_R], event: PublishRequested | PlayRequested) -> _R:
        return kind(
            event.app,
            event.name,
            event.query,
            self.peer_ip,
            self.peer_port,
            self._conn.tc_url,
            self._tracker.protocol,
        )

    async def _publish(self, event: PublishRequested) -> None:
        request = self._request(PublishRequest, event)
        try:
            stream, request = await self._core.start_publish(request)
        except Refusal as refusal:
            code = netstream_code(Action.PUBLISH, refusal.reason)
            self._conn.reject_publish(
                event.message_stream_id, code, refusal.message, self._loop.time()
            )
            self._close_after_flush()
            return
        if self._closing:
            self._core.end_publish(request, stream, 0)
            return
        self._publishing[event.message_stream_id] = _Publishing(request, stream)
        stream.attach_publisher(request.protocol, request.peer, self._kicked)
        self._conn.accept_publish(event.message_stream_id, self._loop.time())

    async def _play(self, event: PlayRequested) -> None:
        request = self._request(PlayRequest, event)
        try:
            stream = await self._core.start_play(request)
        except Refusal as refusal:
            code = netstream_code(Action.PLAY, refusal.reason)
            self._conn.reject_play(
                event.message_stream_id, code, refusal.message, self._loop.time()
            )
            self._close_after_flush()
            return
        if self._closing:
            return
        msid = event.message_stream_id
        self._conn.accept_play(msid, self._loop.time())
        subscription = self._core.add_player(
            request, stream, on_ready=self._schedule_drain, on_kick=self._kicked
        )
        self._playing[msid] = _Playing(request, subscription)
        self._schedule_drain()

    def _end_publish(self, msid: int) -> None:
        publishing = self._publishing.pop(msid, None)
        if publishing is not None:
            self._core.end_publish(publishing.request, publishing.stream, publishing.bytes_in)

    def _end_play(self, msid: int) -> None:
        playing = self._playing.pop(msid, None)
        if playing is not None:
            self._core.end_play(playing.request, playing.subscription)

    # -- players -------------------------------------------------------------

    def _schedule_drain(self) -> None:
        # Packets that arrive in one read are written in one go.
        if not self._drain_scheduled and not self._closing:
            self._drain_scheduled = True
            self._tracker.drain_later(self)

    def drain_players(self) -> None:
        """Write every packet the players on this connection have queued."""
        self._drain_scheduled = False
        if self._closing:
            return
        conn = self._conn
        finished: list[int] = []
        for msid, playing in self._playing.items():
            subscription = playing.subscription
            while not self._write_paused:
                packet = subscription.pop()
                if packet is None:
                    break
                conn.send_media(msid, packet, playing.clock.rebase(packet))
            if subscription.ended and not len(subscription):
                finished.append(msid)
        for msid in finished:
            self._conn.end_play(msid, "stream ended", self._loop.time())
            self._end_play(msid)
        self._flush()
        if finished and not self._playing and not self._publishing:
            self._close_after_flush()

    # -- plumbing ------------------------------------------------------------

    @property
    def peer(self) -> str:
        return f"{self.peer_ip}:{self.peer_port}"

    def _flush(self) -> None:
        data = self._conn.data_to_send()
        if data and self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)
            if self._playing:
                size = len(data)
                self._tracker.bytes_sent.inc(size)
                for playing in self._playing.values():
                    playing.subscription.stream.bytes_out += size
                    break  # a connection plays one stream (two are rare): count it once

    def fail_internally(self, exc: BaseException) -> None:
        self._fail(f"internal error: {exc!r}", "internal_error")

    def _kicked(self) -> None:
        """The operator cut this connection off (the API's kick)."""
        self._fail("disconnected by the operator", "kicked")

    def _fail(self, reason: str, label: str) -> None:
        """Close the connection, logging ``reason`` and counting ``label`` (a limit's
        name, ``protocol_error`` or ``internal_error``)."""
        streams = ",".join(p.stream.id for p in self._publishing.values()) or "-"
        log_event(
            log,
            logging.WARNING,
            "connection closed",
            peer=self.peer,
            stream=streams,
            reason=label,
            detail=reason,
        )
        self._tracker.closed(label)
        self._flush()
        self._close_after_flush()

    def _close_after_flush(self) -> None:
        """Send what is queued, then end the connection without losing it.

        Closing a socket while the peer still sends (RTMP acknowledgements, pings)
        makes the kernel answer with a reset, and a reset makes the peer's kernel
        discard what it received but had not read yet: a player would lose the end
        of the stream, a refused client its error status. So lpms sends FIN after
        the queued bytes, reads and drops whatever the peer still sends until it
        closes its side, and closes for good after ``linger_timeout`` at most.
        """
        if self._closing and self._linger is not None:
            return
        self._closing = True
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        self._flush()
        if not transport.can_write_eof():
            transport.close()
            return
        if self._polled:
            self._set_polled(False)
        if self._reading_paused:
            self._reading_paused = False
            transport.resume_reading()  # unread bytes at close would mean a reset
        try:
            transport.write_eof()
        except OSError:  # the peer is gone already: nothing more can reach it
            transport.abort()
            return
        self._linger = self._loop.call_later(self._settings.linger_timeout, transport.close)

    def close(self) -> None:
        """Close now (server shutdown)."""
        self._close_after_flush()


async def start_rtmp_listener(
    core: SessionCore,
    host: str,
    port: int,
    settings: ListenerSettings,
    protocol: Protocol = Protocol.RTMP,
    wrap: Callable[[Callable[[], RTMPServerProtocol]], Callable[[], asyncio.BaseProtocol]]
    | None = None,
) -> tuple[asyncio.Server, ConnectionTracker]:
    """Listen for RTMP clients; returns the server and the live connections.
    ``protocol`` labels them (``rtmps``); ``wrap`` makes the listener's protocol
    factory from the RTMP one (a TLS acceptor's)."""
    loop = asyncio.get_running_loop()
    connections = ConnectionTracker(core, protocol)

    def factory() -> RTMPServerProtocol:
        return RTMPServerProtocol(settings, connections)

    server = await loop.create_server(
        factory if wrap is None else wrap(factory),
        host,
        port,
        reuse_address=True,
        backlog=settings.backlog,
    )
    return server, connections
