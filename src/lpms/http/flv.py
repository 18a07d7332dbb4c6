"""HTTP-FLV and WebSocket-FLV players: ``GET /APP/NAME.flv``.

A plain GET gets the live stream as one endless FLV body (chunked); the same path
with ``Upgrade: websocket`` gets it as binary WebSocket messages, which is what
browser players such as mpegts.js read. Either way the player is one more
subscriber of the stream, admitted by the session core like an RTMP player (same
auth, callbacks, limits, metrics and webhooks, under its own protocol) and fed the
same way: metadata and codec configurations first, then the GOP cache from the last
keyframe, timestamps from 0, a bounded queue that drops whole GOPs for a player
that falls behind. A player whose socket takes nothing for ``flv_send_timeout``
seconds is closed. The stream's end ends the body (or closes the WebSocket
normally).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aiohttp import WSMsgType, web

from lpms.access import PlayRequest, Protocol, Refusal, RefusalReason
from lpms.logs import log_event
from lpms.media.flvfile import FLVStreamWriter, file_header
from lpms.media.stream import Stream, StreamEnded, Subscription
from lpms.sessions import SessionCore

log = logging.getLogger("lpms.http.flv")

HTTP_STATUS = {
    RefusalReason.UNAUTHORIZED: 403,
    RefusalReason.NOT_ALLOWED: 403,
    RefusalReason.BAD_NAME: 409,
    RefusalReason.NOT_FOUND: 404,
    RefusalReason.LIMIT: 503,
}
"""Each refusal's HTTP status."""

CORS_HEADERS = {"Access-Control-Allow-Origin": "*"}
MAX_WEBSOCKET_MESSAGE = 4096  # players have nothing to tell us but a close

Send = Callable[[bytes], Awaitable[None]]


class FLVRoutes:
    """The ``.flv`` route, over the session core."""

    def __init__(self, sessions: SessionCore, send_timeout: float) -> None:
        self.sessions = sessions
        self.send_timeout = send_timeout

    def add_to(self, app: web.Application) -> None:
        app.router.add_get("/{path:.+\\.flv}", self.play, allow_head=False)

    async def play(self, request: web.Request) -> web.StreamResponse:
        app, _, name = request.match_info["path"].removesuffix(".flv").partition("/")
        if not name:
            raise web.HTTPNotFound(text="an FLV stream is /APP/NAME.flv\n")
        websocket = request.headers.get("Upgrade", "").lower() == "websocket"
        protocol = Protocol.WS_FLV if websocket else Protocol.HTTP_FLV
        peer = request.transport.get_extra_info("peername") if request.transport else None
        client_ip, client_port = (str(peer[0]), int(peer[1])) if peer else ("", 0)
        play = PlayRequest(
            app, name, dict(request.query), client_ip, client_port, protocol=protocol
        )
        connections = self.sessions.connections
        if not connections.admit(protocol, client_ip, play.peer):
            raise web.HTTPServiceUnavailable(text="too many connections\n", headers=CORS_HEADERS)
        try:
            try:
                stream = await self.sessions.start_play(play)
            except Refusal as refusal:
                status = HTTP_STATUS[refusal.reason]
                return web.Response(
                    status=status, text=f"{refusal.message}\n", headers=CORS_HEADERS
                )
            player = _Player(self.sessions, play, stream, self.send_timeout)
            if websocket:
                return await player.over_websocket(request)
            return await player.over_http(request)
        finally:
            connections.release(protocol, client_ip)


class _Player:
    """One FLV player: its subscription, pumped into its socket until the stream
    ends, the client leaves, it is kicked or its socket stalls."""

    def __init__(
        self, sessions: SessionCore, request: PlayRequest, stream: Stream, send_timeout: float
    ) -> None:
        self.sessions = sessions
        self.request = request
        self.stream = stream
        self.send_timeout = send_timeout
        self.writer = FLVStreamWriter()
        self.bytes_sent = sessions.metrics.bytes_sent.labels(request.protocol)
        self._task: asyncio.Task[None] | None = None
        self._closed_by: str | None = None  # why lpms ended it (counted), if it did
        self._left = False  # the player closed its side

    async def over_http(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={"Content-Type": "video/x-flv", "Cache-Control": "no-cache", **CORS_HEADERS}
        )
        response.enable_chunked_encoding()
        await response.prepare(request)
        if await self._run(response.write):
            await response.write_eof()
        elif request.transport is not None:
            request.transport.abort()
        return response

    async def over_websocket(self, request: web.Request) -> web.StreamResponse:
        websocket = web.WebSocketResponse(max_msg_size=MAX_WEBSOCKET_MESSAGE)
        await websocket.prepare(request)
        reader = asyncio.get_running_loop().create_task(self._read_until_close(websocket))
        try:
            if await self._run(websocket.send_bytes):
                await websocket.close()
            elif request.transport is not None:
                request.transport.abort()
        finally:
            reader.cancel()
        return websocket

    async def _read_until_close(self, websocket: web.WebSocketResponse) -> None:
        """Answer pings and notice the player's close (then the pump stops)."""
        async for message in websocket:
            if message.type is WSMsgType.ERROR:  # a bad frame, or one over the size limit
                self._closed_by = "protocol_error"
                break
        self._player_left()

    async def _run(self, send: Send) -> bool:
        """Pump until the stream ends (True: end the response cleanly) or the player
        goes (False). Every end is the core's ``end_play``."""
        task = self._task = asyncio.current_task()
        assert task is not None
        subscription = self.sessions.add_player(self.request, self.stream, on_kick=self._kicked)
        try:
            await self._pump(subscription, send)
            return True
        except StreamEnded:
            return True
        except asyncio.CancelledError:
            if self._closed_by is None and not self._left:
                raise  # the server is shutting down
            task.uncancel()  # our own cancel (a kick, a close), handled here
            return False
        except TimeoutError:
            self._closed_by = "send_timeout"
            return False
        except (ConnectionError, RuntimeError) as exc:  # the player went away mid-write
            log.debug("FLV player %s went away: %r", self.request.peer, exc)
            return False
        finally:
            if self._closed_by is not None:
                self.sessions.connections.closed(self.request.protocol, self._closed_by)
                log_event(
                    log,
                    logging.WARNING,
                    "connection closed",
                    peer=self.request.peer,
                    protocol=self.request.protocol,
                    stream=self.stream.id,
                    reason=self._closed_by,
                )
            self.sessions.end_play(self.request, subscription)

    async def _pump(self, subscription: Subscription, send: Send) -> None:
        stream, writer = self.stream, self.writer
        has_audio, has_video = stream.has_audio, stream.has_video
        if not (has_audio or has_video):
            has_audio = has_video = True  # nothing known yet: let the player look for both
        await self._send(send, file_header(has_audio=has_audio, has_video=has_video))
        while True:
            first = await subscription.get()
            batch = [first]
            while (packet := subscription.pop()) is not None:
                batch.append(packet)
            await self._send(send, writer.tags(batch))

    async def _send(self, send: Send, data: bytes) -> None:
        async with asyncio.timeout(self.send_timeout):
            await send(data)
        size = len(data)
        self.bytes_sent.inc(size)
        self.stream.bytes_out += size

    def _kicked(self) -> None:
        self._closed_by = "kicked"
        if self._task is not None:
            self._task.cancel()

    def _player_left(self) -> None:
        self._left = True
        if self._task is not None:
            self._task.cancel()
