"""`LPMS`: listeners, outputs, the application's callbacks, lifecycle.

An application embeds lpms the way it embeds LPMS in Go: build a server, say who
may publish and what players get through callbacks, then ``await server.serve()``.
Without callbacks it behaves like LPMS's example app: anyone may publish
``APP/NAME`` and anyone may play a live stream. Who may publish and play, over any
protocol, is decided by the session core (`lpms.sessions`); this facade wires the
protocol listeners to it and its published streams to HLS and the transcoder.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import replace
from typing import TYPE_CHECKING

from aiohttp import web

from lpms.access import PlayRequest, Protocol, Refusal
from lpms.auth import AuthCallback, Authorizer
from lpms.config import Settings
from lpms.errors import HLSError, LPMSError
from lpms.hls.live import LiveSegmenter
from lpms.hls.segmenter import Segment, SegmenterOptions
from lpms.hls.store import SOURCE, HLSStore, HLSStream, Rendition
from lpms.http.app import make_app
from lpms.http.flv import FLVRoutes
from lpms.http.hls import GetPlaylist, GetSegment, HLSHandlers, HLSRequest, HLSRoutes, stream_path
from lpms.media.registry import StreamRegistry
from lpms.media.stream import Stream
from lpms.metrics import Metrics, StreamTotals
from lpms.rtmp.listener import ConnectionTracker, start_rtmp_listener
from lpms.rtmp.settings import ListenerSettings
from lpms.sessions import (
    ConnectionLimiter,
    EndStream,
    GetStream,
    GotStream,
    MakeStreamID,
    SessionCore,
)
from lpms.tls.acceptor import TLSHandshakes
from lpms.tls.certs import Certificates
from lpms.transcode.engines import Engine, EngineFactory
from lpms.transcode.live import LiveTranscoder, local_engine
from lpms.transcode.rendition import OutputContainer
from lpms.transcode.session import TranscodeResult
from lpms.webhooks import SEGMENT_READY, TRANSCODE_BEHIND, Webhooks

if TYPE_CHECKING:
    from lpms.transcode.engines.ray import RayEngineHost

log = logging.getLogger("lpms.server")

HOUSEKEEPING_INTERVAL = 1.0  # seconds: event-loop lag, HLS viewers leaving
HTTPS = "https"  # the HTTPS listener's label in its TLS handshakes' metrics


class LPMS:
    """A live media server: RTMP in and out, HTTP alongside, in one asyncio loop."""

    def __init__(
        self,
        *,
        host: str | None = None,
        rtmp_port: int | None = None,
        http_port: int | None = None,
        workdir: str | None = None,
        settings: Settings | None = None,
    ) -> None:
        settings = settings or Settings()
        settings = replace(
            settings,
            host=settings.host if host is None else host,
            rtmp_port=settings.rtmp_port if rtmp_port is None else rtmp_port,
            http_port=settings.http_port if http_port is None else http_port,
            workdir=settings.workdir if workdir is None else workdir,
        )
        self.settings = settings
        self.started_at = time.monotonic()
        self.metrics = Metrics()
        self.auth = Authorizer(settings.auth)
        self.webhooks = Webhooks(settings.webhook, self.metrics)
        self.streams = StreamRegistry(max_streams=settings.max_streams, limits=settings.stream)
        self.sessions = SessionCore(
            streams=self.streams,
            connections=ConnectionLimiter(
                settings.max_connections, settings.max_connections_per_ip, self.metrics
            ),
            auth=self.auth,
            webhooks=self.webhooks,
            metrics=self.metrics,
            max_players_per_stream=settings.max_players_per_stream,
        )
        self.sessions.on_published = self._published
        self.hls_viewers = self.sessions.hls_viewers
        self.hls_bytes_out: dict[str, int] = {}  # by stream ID, while it is live
        self._stream_totals = StreamTotals(
            lambda: self.streams, _stream_counts, self.sessions.player_counts
        )
        self.metrics.add_collector(self._stream_totals)
        self.streams.on_remove = self._stream_removed
        self._rtmp_server: asyncio.Server | None = None
        self._rtmp_connections = ConnectionTracker(self.sessions)
        self._http_runner: web.AppRunner | None = None
        self._http_site: web.TCPSite | None = None
        self.certificates: Certificates | None = None  # with TLS, once started
        self._rtmps_server: asyncio.Server | None = None
        self._rtmps_connections = ConnectionTracker(self.sessions, Protocol.RTMPS)
        self._https_server: asyncio.Server | None = None
        self._tls_handshakes: list[TLSHandshakes] = []
        self.hls = HLSStore(settings.hls, settings.workdir, max_streams=settings.max_streams)
        self.hls.on_segment = self._segment_ready
        self.hls.on_write_error = self.metrics.segment_write_errors.inc
        self._hls_handlers = HLSHandlers()
        self._segmenters: dict[str, LiveSegmenter] = {}  # by stream ID
        self.ladders: dict[str, LiveTranscoder] = {}  # live transcoders, by stream ID
        self._ray: RayEngineHost | None = None  # with transcode.engine = "ray", once started
        self._ladders_finishing: set[asyncio.Task[None]] = set()
        self._closed = asyncio.Event()
        self._housekeeping: asyncio.Task[None] | None = None

    # -- integration API (LPMS's HandleRTMPPublish / HandleRTMPPlay) -----------

    def handle_rtmp_publish(
        self,
        make_stream_id: MakeStreamID | None = None,
        got_stream: GotStream | None = None,
        end_stream: EndStream | None = None,
    ) -> None:
        """Decide who may publish, and as what stream ID.

        ``make_stream_id(request)`` returns the ID to publish as (``None``/``False``
        refuses); ``got_stream(request, stream)`` is told of the new stream and may
        refuse it by returning ``False`` or raising; ``end_stream(request, stream)``
        runs when the publisher leaves. Each may be a coroutine function. The
        request is an `lpms.PublishRequest` (``lpms.RTMPRequest`` is its base);
        its ``protocol`` says ``rtmp`` or ``rtmps``.
        """
        sessions = self.sessions
        if make_stream_id is not None:
            sessions.make_stream_id = make_stream_id
        sessions.got_stream = got_stream
        sessions.end_stream = end_stream

    def handle_rtmp_play(self, get_stream: GetStream) -> None:
        """Decide what a player gets: ``get_stream(request)`` returns a `Stream`, or
        ``None``/``False`` (or raises) to refuse. It answers every player that
        takes the live packets (an `lpms.PlayRequest` whose ``protocol`` is
        ``rtmp``, ``rtmps``, ``http-flv`` or ``ws-flv``); HLS has its own hooks."""
        self.sessions.get_stream = get_stream

    def handle_auth(self, authorize: AuthCallback | None) -> None:
        """Authorize every publish and play, RTMP and HLS, yourself.

        ``authorize(request)`` gets an `lpms.AuthRequest` (action, app, name, query,
        client IP, protocol) and returns true to allow; false, None, an exception or
        no answer within ``Settings.auth.timeout`` refuses. It runs before the
        publish and play callbacks, and besides ``--auth-url`` and the publish key
        when those are set (each must allow). None removes it.
        """
        self.auth.callback = authorize

    def handle_hls_play(
        self,
        get_master_playlist: GetPlaylist | None = None,
        get_media_playlist: GetPlaylist | None = None,
        get_segment: GetSegment | None = None,
    ) -> None:
        """Answer HLS requests yourself (LPMS's HandleHLSPlay).

        Each callback takes an `lpms.HLSRequest` (path, query, client IP) and returns
        the playlist text or segment bytes, or None to fall through to the server's
        own HLS output (404 if there is none). Playlist requests try
        ``get_master_playlist`` and then ``get_media_playlist``; ``.ts`` requests go
        to ``get_segment``. Each may be a coroutine function.
        """
        self._hls_handlers.get_master_playlist = get_master_playlist
        self._hls_handlers.get_media_playlist = get_media_playlist
        self._hls_handlers.get_segment = get_segment

    def segment_rtmp_to_hls(
        self, stream: Stream, options: SegmenterOptions | None = None
    ) -> HLSStream:
        """Serve ``stream`` as HLS at ``/<stream.id>.m3u8`` until it ends (LPMS's
        SegmentRTMPToHLS). The server does this itself for every published stream
        unless ``Settings.hls.enabled`` is off; an application calls it for streams
        it manages itself. A stream ID served before, still within its grace
        period, continues its playlist after a discontinuity."""
        running = self._segmenters.get(stream.id)
        if running is not None and running.stream.ended:
            running.drain()  # the last publisher's final segment and ENDLIST, first
            running = self._segmenters.get(stream.id)
        if running is not None:
            if running.stream is not stream:
                raise HLSError(f"stream {stream.id} is already being segmented")
            hls = self.hls.get(stream.id)
            assert hls is not None
            return hls
        if options is None:
            hls_settings = self.settings.hls
            options = SegmenterOptions(
                segment_duration=hls_settings.segment_duration,
                max_segment_bytes=hls_settings.max_segment_bytes,
            )
        hls = self.hls.open(stream.id)
        hls.rendition(SOURCE)  # first in the master playlist
        ladder = self._start_ladder(hls)
        segmenter = LiveSegmenter(
            stream,
            hls,
            options,
            on_end=self._segmenter_ended,
            on_segment=ladder.submit if ladder is not None else None,
        )
        self._segmenters[stream.id] = segmenter
        return hls

    def _start_ladder(self, hls: HLSStream) -> LiveTranscoder | None:
        """The stream's transcoder when profiles are set (a failure to start one
        leaves the source alone, with one log line)."""
        settings = self.settings.transcode
        if not settings.profiles:
            return None
        try:
            ladder = LiveTranscoder(
                hls,
                settings,
                engine=self._engine_factory(),
                on_behind=lambda segment, waiting: self._transcode_behind(hls.id, segment, waiting),
                on_transcoded=self._transcoded,
            )
        except LPMSError as exc:
            log.error("no transcoding for %s: %s", hls.id, exc)
            return None
        self.ladders[hls.id] = ladder
        return ladder

    def _engine_factory(self) -> EngineFactory:
        if self._ray is not None:
            return self._ray.session
        settings = self.settings.transcode
        return local_engine(settings.nice, self.metrics, self._rendition_output(), settings.caps)

    def _rendition_output(self) -> OutputContainer:
        return OutputContainer.of_renditions(self.settings.hls.format)

    def _listener_settings(self) -> ListenerSettings:
        """``rtmp``, with publishers read often enough for low-latency HLS's parts."""
        rtmp = self.settings.rtmp
        limit = self.settings.hls.max_read_interval
        if limit is not None and rtmp.read_interval > limit:
            return replace(rtmp, read_interval=limit)
        return rtmp

    def _segmenter_ended(self, segmenter: LiveSegmenter) -> None:
        stream_id = segmenter.stream.id
        if self._segmenters.get(stream_id) is segmenter:
            del self._segmenters[stream_id]
        hls = self.hls.get(stream_id)
        ladder = self.ladders.pop(stream_id, None)
        if ladder is None:
            if hls is not None:
                self.hls.close(hls)
            return
        # The renditions end (ENDLIST) once their last segments are transcoded.
        task = asyncio.get_running_loop().create_task(self._finish_ladder(stream_id, ladder, hls))
        self._ladders_finishing.add(task)
        task.add_done_callback(self._ladders_finishing.discard)

    async def _finish_ladder(
        self, stream_id: str, ladder: LiveTranscoder, hls: HLSStream | None
    ) -> None:
        await ladder.finish()
        if hls is not None and stream_id not in self._segmenters:  # not published again
            self.hls.close(hls)

    # -- lifecycle -----------------------------------------------------------

    @property
    def rtmp_port(self) -> int | None:
        """The bound RTMP port (useful with port 0); None when it is off."""
        return _bound_port(self._rtmp_server, self.settings.rtmp_port)

    @property
    def http_port(self) -> int | None:
        """The bound HTTP port (useful with port 0); None when it is off."""
        server = self._http_site._server if self._http_site is not None else None
        return _bound_port(server, self.settings.http_port)

    @property
    def rtmps_port(self) -> int | None:
        """The bound RTMPS port; None without TLS or when it is off."""
        tls = self.settings.tls
        return _bound_port(self._rtmps_server, tls.rtmps_port if tls.enabled else None)

    @property
    def https_port(self) -> int | None:
        """The bound HTTPS port; None without TLS or when it is off."""
        tls = self.settings.tls
        return _bound_port(self._https_server, tls.https_port if tls.enabled else None)

    def reload_tls(self) -> bool:
        """Read the TLS certificate and key again (``lpms serve`` does on SIGHUP): new
        connections get them, live ones go on. A bad file is logged and the
        certificate in use kept; returns whether the new one is in use."""
        if self.certificates is None:
            log.warning("no TLS certificate to reload: TLS is off")
            return False
        reloaded = self.certificates.reload()
        self.metrics.tls_reloads.labels("ok" if reloaded else "failed").inc()
        return reloaded

    async def start(self) -> None:
        """Open the listeners; returns once both accept connections. With the Ray
        engine, Ray is reached first: `RayUnavailable` (an `LPMSError`) names the
        address when it cannot be. A TLS certificate or key that cannot be used is a
        `TLSError` (an `LPMSError`) naming the file."""
        settings = self.settings
        if settings.tls.cert is not None and settings.tls.key is not None:
            self.certificates = Certificates(settings.tls.cert, settings.tls.key)
        if settings.transcode.profiles and settings.transcode.engine is Engine.RAY:
            from lpms.transcode.engines.ray import RayEngineHost  # only with lpms[ray]

            ray = RayEngineHost(settings.transcode, self.metrics, self._rendition_output().value)
            await ray.start()
            self._ray = ray
        if settings.rtmp_port is not None:
            self._rtmp_server, self._rtmp_connections = await start_rtmp_listener(
                self.sessions, settings.host, settings.rtmp_port, self._listener_settings()
            )
        if self.certificates is not None and settings.tls.rtmps_port is not None:
            rtmps = self._tls_listener(Protocol.RTMPS)
            self._rtmps_server, self._rtmps_connections = await start_rtmp_listener(
                self.sessions,
                settings.host,
                settings.tls.rtmps_port,
                self._listener_settings(),
                Protocol.RTMPS,
                rtmps.wrap,
            )
        http = settings.http
        app = make_app(self, http.max_body_bytes)
        HLSRoutes(
            self.hls, self._hls_handlers, authorize=self._authorize_hls, on_served=self._hls_served
        ).add_to(app)
        FLVRoutes(self.sessions, http.flv_send_timeout).add_to(app)
        self._http_runner = web.AppRunner(
            app,
            access_log=None,
            max_line_size=http.max_request_line,
            max_field_size=http.max_header_bytes,
            max_headers=http.max_headers,
            keepalive_timeout=http.keepalive_timeout,
        )
        await self._http_runner.setup()
        assert self._http_runner.server is not None  # set up
        if settings.http_port is not None:
            self._http_site = web.TCPSite(self._http_runner, settings.host, settings.http_port)
            await self._http_site.start()
        if self.certificates is not None and settings.tls.https_port is not None:
            self._https_server = await asyncio.get_running_loop().create_server(
                self._tls_listener(HTTPS).wrap(self._http_runner.server),
                settings.host,
                settings.tls.https_port,
                reuse_address=True,
                backlog=settings.rtmp.backlog,
            )
        self.webhooks.start()
        self._housekeeping = asyncio.get_running_loop().create_task(self._keep_house())
        log.info(
            "listening: %s  (event loop: %s)",
            "  ".join(self._listening(settings.host)),
            type(asyncio.get_running_loop()).__module__.split(".")[0],
        )

    def _tls_listener(self, protocol: str) -> TLSHandshakes:
        assert self.certificates is not None
        handshakes = TLSHandshakes(self.certificates, self.settings.tls, protocol, self.metrics)
        self._tls_handshakes.append(handshakes)
        return handshakes

    def _listening(self, host: str) -> list[str]:
        ports = [
            ("rtmp", self.rtmp_port),
            ("http", self.http_port),
            (Protocol.RTMPS, self.rtmps_port),
            (HTTPS, self.https_port),
        ]
        return [f"{scheme}://{host}:{port}" for scheme, port in ports if port is not None]

    async def serve(self) -> None:
        """Start, then run until `close` is called."""
        if self._http_runner is None:
            await self.start()
        await self._closed.wait()

    async def close(self) -> None:
        """Stop accepting, end every stream, close every connection."""
        if self._closed.is_set():
            return
        for server in (self._rtmp_server, self._rtmps_server, self._https_server):
            if server is not None:
                server.close()
        for handshakes in self._tls_handshakes:
            handshakes.close()
        for connection in [*self._rtmp_connections, *self._rtmps_connections]:
            connection.close()
        for stream in list(self.streams):
            stream.end()
            self.streams.remove(stream)
        for segmenter in list(self._segmenters.values()):
            segmenter.drain()  # the stream has ended: flushes the last segment
        if self._ladders_finishing:
            await asyncio.gather(*self._ladders_finishing, return_exceptions=True)
        if self._ray is not None:
            await self._ray.close()
        self.hls.close_all()
        # Off the loop: waits for the recording writer to finish what it has queued.
        await asyncio.get_running_loop().run_in_executor(None, self.hls.flush)
        for server in (self._rtmp_server, self._rtmps_server):
            if server is None:
                continue
            try:
                await asyncio.wait_for(server.wait_closed(), self.settings.shutdown_timeout)
            except TimeoutError:
                log.warning(
                    "some RTMP connections did not close within %gs", self.settings.shutdown_timeout
                )
        if self._http_runner is not None:
            await self._http_runner.cleanup()
        if self._housekeeping is not None:
            self._housekeeping.cancel()
        await self.sessions.close()
        await asyncio.sleep(0)  # publishers' and players' ends, from closed connections
        await self.webhooks.close(self.settings.shutdown_timeout)
        self.sessions.cancel_callbacks()
        self._closed.set()
        log.info("server stopped")

    async def __aenter__(self) -> LPMS:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- the session core's news, and HLS's part in it ----------------------------

    def _published(self, stream: Stream) -> None:
        """A publish was accepted: its HLS output (and ladder) start."""
        if self.settings.hls.enabled:
            try:
                self.segment_rtmp_to_hls(stream)
            except HLSError as exc:  # the stream goes on without HLS
                log.error("no HLS for %s: %s", stream.id, exc)

    async def _authorize_hls(self, request: HLSRequest) -> str | None:
        """None when an HLS request may be served, else why not (the route answers 403)."""
        app, name = stream_path(request.path)
        play = PlayRequest(app, name, request.query, request.client_ip, protocol=Protocol.HLS)
        try:
            await self.sessions.authorize_hls(play)
        except Refusal as refusal:
            return refusal.message
        return None

    def _hls_served(self, request: HLSRequest, size: int) -> None:
        """An HLS response went out: count its bytes and, for a live stream, its viewer."""
        self.metrics.bytes_sent.labels(Protocol.HLS).inc(size)
        app, name = stream_path(request.path)
        stream_id = f"{app}/{name}"
        if stream_id not in self.streams:
            return  # a recording, or an ended stream in its grace period
        self.hls_bytes_out[stream_id] = self.hls_bytes_out.get(stream_id, 0) + size
        self.sessions.hls_served(stream_id, request.client_ip)

    # -- what the server tells metrics and webhooks -------------------------------

    def _segment_ready(self, stream_id: str, rendition: Rendition, segment: Segment) -> None:
        name = rendition.name
        self.metrics.segments.labels(name).inc()
        ended_at = segment.program_date_time.timestamp() + segment.duration
        self.metrics.segment_delay.labels(name).observe(max(0.0, time.time() - ended_at))
        self.webhooks.emit(
            SEGMENT_READY,
            stream=stream_id,
            rendition=name,
            sequence=segment.sequence,
            duration_s=round(segment.duration, 3),
            uri=f"/{stream_id}/{name}/{rendition.segment_uri(segment.sequence)}",
        )

    def _transcode_behind(self, stream_id: str, segment: Segment, waiting: int) -> None:
        self.metrics.gap_segments.inc()
        self.webhooks.emit(
            TRANSCODE_BEHIND, stream=stream_id, segment=segment.sequence, waiting=waiting
        )

    def _transcoded(self, result: TranscodeResult) -> None:
        for output in result.outputs:
            self.metrics.transcode_realtime.labels(output.profile.name).set(
                round(output.realtime_factor, 3)
            )

    def _stream_removed(self, stream: Stream) -> None:
        self._stream_totals.retire(stream)
        self.hls_bytes_out.pop(stream.id, None)

    async def _keep_house(self) -> None:
        """Once a second: how late the loop runs timers (its lag), and HLS viewers
        that stopped fetching (their play ends)."""
        loop = asyncio.get_running_loop()
        while True:
            expected = loop.time() + HOUSEKEEPING_INTERVAL
            await asyncio.sleep(HOUSEKEEPING_INTERVAL)
            self.metrics.loop_lag.set(max(0.0, loop.time() - expected))
            self.sessions.expire_hls_viewers(time.monotonic())


def _bound_port(server: object, configured: int | None) -> int | None:
    """The port a listener bound (``configured`` may be 0), or ``configured`` before
    it listens; None when it is off."""
    sockets = getattr(server, "sockets", None)
    if configured is None or not sockets:
        return configured
    return int(sockets[0].getsockname()[1])


def _stream_counts(stream: object) -> dict[str, int]:
    assert isinstance(stream, Stream)
    repairs = stream.timestamp_repairs
    return {
        "lpms_player_dropped_packets": stream.dropped_packets,
        "lpms_timestamp_jumps": repairs.jumps,
        "lpms_timestamp_backward_steps": repairs.backward_steps,
        "lpms_timestamp_wraps": repairs.wraps,
    }
