"""The session core: the one place that knows streams, publishers and players of
every protocol (MediaMTX's path manager).

Protocol adapters (the RTMP listener, the HTTP-FLV and WebSocket-FLV routes, the HLS
routes) turn what their clients ask into a `PublishRequest` or `PlayRequest` and come
here. The core runs the same checks for all of them, in one order: connection
limits, the publish key, the auth callback and hook, the application's callbacks
(LPMS's HandleRTMPPublish / HandleRTMPPlay), the stream and player limits; then it
counts, logs and sends webhooks with the request's `Protocol`. A refusal is a
`Refusal` whose reason each adapter maps to its own wire form.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any, TypeVar

from lpms.access import Action, PlayRequest, Protocol, PublishRequest, Refusal, RefusalReason
from lpms.auth import Authorizer, AuthRequest, Refused
from lpms.callbacks import MaybeAwaitable, call
from lpms.errors import StreamError
from lpms.hls.viewers import HLSViewers
from lpms.logs import log_event
from lpms.media.registry import StreamLimitReached, StreamRegistry
from lpms.media.stream import Stream, Subscription
from lpms.metrics import Metrics
from lpms.webhooks import PLAY_END, PLAY_START, PUBLISH_END, PUBLISH_START, Webhooks

log = logging.getLogger("lpms.sessions")

MakeStreamID = Callable[[PublishRequest], MaybeAwaitable[str | bool | None]]
GotStream = Callable[[PublishRequest, Stream], MaybeAwaitable[Any]]
EndStream = Callable[[PublishRequest, Stream], MaybeAwaitable[Any]]
GetStream = Callable[[PlayRequest], MaybeAwaitable[Stream | bool | None]]

R = TypeVar("R", PublishRequest, PlayRequest)


class ConnectionLimiter:
    """Open connections of every protocol, in all and per client IP, against one
    pair of limits: a client cannot dodge ``max_connections_per_ip`` by mixing
    RTMP with HTTP-FLV."""

    def __init__(self, max_connections: int, max_per_ip: int, metrics: Metrics) -> None:
        self.max_connections = max_connections
        self.max_per_ip = max_per_ip
        self.metrics = metrics
        self._open = 0
        self._per_ip: dict[str, int] = {}
        self._per_protocol: dict[Protocol, int] = {}

    def __len__(self) -> int:
        return self._open

    def count(self, ip: str) -> int:
        return self._per_ip.get(ip, 0)

    def admit(self, protocol: Protocol, ip: str, peer: str) -> bool:
        """Count a new connection in, or refuse it (logged and counted by the limit's
        name) when it would pass a limit."""
        limit = self._limit_reached(ip)
        if limit is not None:
            name, value = limit
            log_event(
                log,
                logging.WARNING,
                "connection refused",
                peer=peer,
                protocol=protocol,
                limit=name,
                value=value,
            )
            self.closed(protocol, name)
            return False
        self._open += 1
        self._per_ip[ip] = self.count(ip) + 1
        self._per_protocol[protocol] = self._per_protocol.get(protocol, 0) + 1
        self.metrics.connections.labels(protocol).inc()
        self.metrics.live_connections.labels(protocol).set(self._per_protocol[protocol])
        return True

    def release(self, protocol: Protocol, ip: str) -> None:
        """A connection `admit` let in has closed."""
        self._open -= 1
        left = self.count(ip) - 1
        if left > 0:
            self._per_ip[ip] = left
        else:
            self._per_ip.pop(ip, None)
        self._per_protocol[protocol] -= 1
        self.metrics.live_connections.labels(protocol).set(self._per_protocol[protocol])

    def closed(self, protocol: Protocol, reason: str) -> None:
        """Count a connection lpms closed on its own (``reason``: a limit's name,
        ``protocol_error``, ``kicked``, ...)."""
        self.metrics.connections_closed.labels(protocol, reason).inc()

    def _limit_reached(self, ip: str) -> tuple[str, int] | None:
        if self._open >= self.max_connections:
            return "max_connections", self.max_connections
        if self.count(ip) >= self.max_per_ip:
            return "max_connections_per_ip", self.max_per_ip
        return None


class SessionCore:
    """Decides who may publish and play, over any protocol, and tells metrics,
    webhooks and the log the same story for each."""

    def __init__(
        self,
        *,
        streams: StreamRegistry,
        connections: ConnectionLimiter,
        auth: Authorizer,
        webhooks: Webhooks,
        metrics: Metrics,
        max_players_per_stream: int,
    ) -> None:
        self.streams = streams
        self.connections = connections
        self.auth = auth
        self.webhooks = webhooks
        self.metrics = metrics
        self.max_players_per_stream = max_players_per_stream
        self.hls_viewers = HLSViewers()
        self.make_stream_id: MakeStreamID = lambda request: request.path
        self.got_stream: GotStream | None = None
        self.end_stream: EndStream | None = None
        self.get_stream: GetStream = lambda request: self.streams.get(request.path)
        self.on_published: Callable[[Stream], None] | None = None  # the server's HLS
        self._background: set[asyncio.Task[Any]] = set()

    # -- publishers ----------------------------------------------------------------

    async def start_publish(self, request: PublishRequest) -> tuple[Stream, PublishRequest]:
        """A registered live stream for this publisher and the request as accepted
        (its name without a publish key); `Refusal` otherwise."""
        request = await self._authorize_publish(request)
        stream_id = await self._ask(Action.PUBLISH, self.make_stream_id, request)
        if not stream_id or not isinstance(stream_id, str):
            raise self._refusal(
                Action.PUBLISH,
                request,
                RefusalReason.NOT_ALLOWED,
                f"publishing {request.path} is not allowed",
            )
        stream = self._create(request, stream_id)
        if self.got_stream is not None:
            try:
                accepted = await self._ask(Action.PUBLISH, self.got_stream, request, stream)
            except Refusal:
                self.streams.remove(stream)
                raise
            if accepted is False:
                self.streams.remove(stream)
                raise self._refusal(
                    Action.PUBLISH,
                    request,
                    RefusalReason.NOT_ALLOWED,
                    f"publishing {stream_id} is not allowed",
                )
        protocol = request.protocol
        self.metrics.publishes.labels(protocol).inc()
        log_event(
            log,
            logging.INFO,
            "publish started",
            stream=stream.id,
            peer=request.peer,
            protocol=protocol,
        )
        self.webhooks.emit(
            PUBLISH_START,
            stream=stream.id,
            app=request.app,
            name=request.name,
            client_ip=request.client_ip,
            protocol=protocol,
        )
        if self.on_published is not None:
            self.on_published(stream)
        return stream, request

    def _create(self, request: PublishRequest, stream_id: str) -> Stream:
        """The registry's new stream; its refusals (the ID is live, the server is
        full) as the core's."""
        try:
            return self.streams.create(stream_id)
        except StreamLimitReached as exc:
            reason, label = RefusalReason.LIMIT, "max_streams"
            message = str(exc)
        except StreamError as exc:
            reason, label = RefusalReason.BAD_NAME, None
            message = str(exc)
        raise self._refusal(Action.PUBLISH, request, reason, message, label=label)

    async def _authorize_publish(self, request: PublishRequest) -> PublishRequest:
        try:
            name = self.auth.check_publish_key(request.name, request.query)
            request = replace(request, name=name)
            await self.auth.check(_auth_request(Action.PUBLISH, request))
        except Refused as refused:
            raise self._unauthorized(Action.PUBLISH, request, refused) from None
        return request

    def end_publish(self, request: PublishRequest, stream: Stream, bytes_in: int) -> None:
        """The publisher left (or was cut off): the stream ends for every player."""
        duration = time.monotonic() - stream.started_at
        stream.end()
        self.streams.remove(stream)
        log_event(
            log,
            logging.INFO,
            "publish ended",
            stream=stream.id,
            peer=request.peer,
            protocol=request.protocol,
            duration_s=round(duration, 1),
            bytes=bytes_in,
            packets=stream.packets_in,
        )
        self.webhooks.emit(
            PUBLISH_END,
            stream=stream.id,
            client_ip=request.client_ip,
            protocol=request.protocol,
            duration_s=round(duration, 3),
            bytes_in=bytes_in,
            packets=stream.packets_in,
        )
        if self.end_stream is not None:
            self._run_in_background(self.end_stream, request, stream)

    # -- players that hold a connection (RTMP, HTTP-FLV, WebSocket-FLV) ---------------

    async def start_play(self, request: PlayRequest) -> Stream:
        """The live stream this player gets; `Refusal` otherwise. The play is counted
        and announced here; `add_player` then subscribes the player."""
        await self._authorize_play(request)
        stream = await self._ask(Action.PLAY, self.get_stream, request)
        if not isinstance(stream, Stream) or stream.ended:
            raise self._refusal(
                Action.PLAY, request, RefusalReason.NOT_FOUND, f"stream {request.path} is not live"
            )
        limit = self.max_players_per_stream
        if len(stream.players) >= limit:
            raise self._refusal(
                Action.PLAY,
                request,
                RefusalReason.LIMIT,
                f"stream {stream.id} is at its limit of {limit} players",
                label="max_players_per_stream",
            )
        self.metrics.plays.labels(request.protocol).inc()
        self.webhooks.emit(
            PLAY_START, stream=stream.id, client_ip=request.client_ip, protocol=request.protocol
        )
        return stream

    def add_player(
        self,
        request: PlayRequest,
        stream: Stream,
        *,
        on_ready: Callable[[], None] | None = None,
        on_kick: Callable[[], None] | None = None,
    ) -> Subscription:
        """Subscribe an accepted player; the subscription carries its protocol and
        peer, for the API, the metrics and a kick."""
        subscription = stream.subscribe(
            f"{request.protocol}:{request.peer}",
            on_ready=on_ready,
            on_kick=on_kick,
            protocol=request.protocol,
            peer=request.peer,
        )
        log_event(
            log,
            logging.INFO,
            "play started",
            stream=stream.id,
            peer=request.peer,
            protocol=request.protocol,
        )
        return subscription

    def end_play(self, request: PlayRequest, subscription: Subscription) -> None:
        """The player left, was kicked, or its stream ended."""
        subscription.close()
        duration = time.monotonic() - subscription.created_at
        log_event(
            log,
            logging.INFO,
            "play ended",
            stream=subscription.stream.id,
            peer=request.peer,
            protocol=request.protocol,
            duration_s=round(duration, 1),
            dropped_packets=subscription.dropped,
        )
        self.webhooks.emit(
            PLAY_END,
            stream=subscription.stream.id,
            client_ip=request.client_ip,
            protocol=request.protocol,
            duration_s=round(duration, 3),
            dropped_packets=subscription.dropped,
        )

    # -- HLS: no connection, so a viewer is a client IP that keeps fetching -------------

    async def authorize_hls(self, request: PlayRequest) -> None:
        """`Refusal` unless this HLS fetch may be served (auth only: HLS output may
        outlive its stream, and the application may answer it itself)."""
        await self._authorize_play(request)

    def hls_served(self, stream_id: str, client_ip: str) -> None:
        """An HLS response for a live stream went out: a new viewer's play starts."""
        viewer = self.hls_viewers.seen(stream_id, client_ip, time.monotonic())
        if viewer is not None:
            self.metrics.plays.labels(Protocol.HLS).inc()
            self.webhooks.emit(
                PLAY_START, stream=stream_id, client_ip=client_ip, protocol=Protocol.HLS
            )

    def expire_hls_viewers(self, now: float) -> None:
        """Viewers silent for the viewer timeout have left: their plays end."""
        for viewer in self.hls_viewers.expire(now):
            self.webhooks.emit(
                PLAY_END,
                stream=viewer.stream_id,
                client_ip=viewer.client_ip,
                protocol=Protocol.HLS,
                duration_s=round(time.monotonic() - viewer.since, 3),
                dropped_packets=0,
            )

    def player_counts(self, stream: Stream | None = None) -> dict[str, int]:
        """Players of ``stream`` (of every stream: None) by protocol, every protocol
        listed; HLS viewers are client IPs still fetching."""
        counts = {protocol.value: 0 for protocol in Protocol}
        for live in self.streams if stream is None else (stream,):
            for player in live.players:
                counts[player.protocol] += 1
        viewers = self.hls_viewers
        counts[Protocol.HLS] = len(viewers) if stream is None else viewers.count(stream.id)
        return counts

    async def close(self) -> None:
        """Every HLS viewer's play ends; the auth hook's connections close."""
        self.expire_hls_viewers(float("inf"))
        await self.auth.close()

    def cancel_callbacks(self) -> None:
        """The application's ``end_stream`` callbacks still running are cancelled
        (the last step of a shutdown)."""
        for task in list(self._background):
            task.cancel()

    # -- helpers ---------------------------------------------------------------------

    async def _authorize_play(self, request: PlayRequest) -> None:
        try:
            await self.auth.check(_auth_request(Action.PLAY, request))
        except Refused as refused:
            raise self._unauthorized(Action.PLAY, request, refused) from None

    def _unauthorized(
        self, action: Action, request: PublishRequest | PlayRequest, refused: Refused
    ) -> Refusal:
        """Auth's refusal as the core's, labelled by the check that said no."""
        return self._refusal(
            action, request, RefusalReason.UNAUTHORIZED, refused.reason, label=refused.label
        )

    def _refusal(
        self,
        action: Action,
        request: PublishRequest | PlayRequest,
        reason: RefusalReason,
        message: str,
        label: str | None = None,
    ) -> Refusal:
        """A refusal, counted by action, protocol and label, and logged once."""
        refusal = Refusal(reason, message, label, request.path)
        self.metrics.refusals.labels(action, request.protocol, refusal.label).inc()
        log_event(
            log,
            logging.INFO,
            f"{action} refused",
            stream=request.path,
            peer=request.peer,
            protocol=request.protocol,
            reason=message,
        )
        return refusal

    async def _ask(
        self, action: Action, callback: Callable[..., Any], request: R, *args: Any
    ) -> Any:
        """Run an application callback; its exceptions become a refusal, logged once."""
        try:
            return await call(callback, request, *args)
        except Exception as exc:
            log_event(
                log,
                logging.WARNING,
                "callback failed",
                callback=getattr(callback, "__name__", callback),
                stream=request.path,
                peer=request.peer,
                error=repr(exc),
            )
            raise self._refusal(
                action,
                request,
                RefusalReason.NOT_ALLOWED,
                f"refused by the application: {exc}",
                label="callback",
            ) from None

    def _run_in_background(self, callback: Callable[..., Any], *args: Any) -> None:
        async def runner() -> None:
            try:
                await call(callback, *args)
            except Exception:
                log.exception("callback %s failed", getattr(callback, "__name__", callback))

        task = asyncio.get_running_loop().create_task(runner())
        self._background.add(task)
        task.add_done_callback(self._background.discard)


def _auth_request(action: Action, request: PublishRequest | PlayRequest) -> AuthRequest:
    return AuthRequest(
        action, request.app, request.name, request.query, request.client_ip, request.protocol
    )
