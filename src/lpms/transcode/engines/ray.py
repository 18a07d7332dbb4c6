"""The Ray engine, server side: one actor per live stream, reached through a
driver process of the server's own (`lpms.transcode.engines.ray_bridge`).

The server imports no Ray: a driver that loses its cluster may block or exit its
process, and RTMP and the source's HLS must never notice. `RayEngineHost` runs that
driver, restarts it when it dies (Ray lost, then back), and hands each stream a
`RaySession`. A session's actor is made when the stream is published and killed when
it ends; every segment of the stream goes to it, so its encoders stay warm. Each
call has a deadline (`TranscodeSettings.ray_late_after` segment durations after the
segment was due); a late or lost actor costs the segments in flight, listed as gaps,
and is replaced by a new one wherever Ray places it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import queue
import socket
import subprocess
import sys
import threading
from dataclasses import asdict, dataclass
from multiprocessing.connection import Connection
from typing import Any

from lpms.errors import TranscodeError
from lpms.hls.segmenter import Segment
from lpms.transcode.engines import Engine, EngineFailure, EngineObserver, FailureReason
from lpms.transcode.engines.ray_runtime import RayUnavailable
from lpms.transcode.profiles import VideoProfile
from lpms.transcode.session import TranscodeResult
from lpms.transcode.settings import Accel, TranscodeSettings
from lpms.transcode.wire import ladder_to_wire, result_from_wire

log = logging.getLogger(__name__)

STARTUP_GRACE = 30.0
"""Seconds a private (``local``) Ray runtime is given to start, beyond the connect
timeout: it starts its own head and worker processes."""
_UNTIMED_FPS = 30


def ladder_resources(
    profiles: tuple[VideoProfile, ...], accel: Accel, settings: TranscodeSettings
) -> dict[str, float]:
    """What one stream's actor asks Ray for: its ladder's output pixel rate over what
    a CPU (or GPU) is counted to encode, so streams spread by cost."""
    rate = sum(p.width * p.height * float(p.framerate or _UNTIMED_FPS) for p in profiles)
    resources = {"num_cpus": _ray_amount(rate / settings.ray_pixels_per_cpu)}
    if accel is Accel.NVIDIA:
        resources["num_gpus"] = _ray_amount(rate / settings.ray_pixels_per_gpu)
    return resources


def _ray_amount(amount: float) -> float:
    """Ray takes fractions below one, whole numbers above."""
    return max(0.01, round(amount, 2)) if amount < 1 else float(math.ceil(amount))


class _Link:
    """One driver process and the two threads that carry its messages."""

    def __init__(self, loop: asyncio.AbstractEventLoop, host: RayEngineHost) -> None:
        self._loop = loop
        self._host = host
        ours, theirs = socket.socketpair()
        with theirs:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "lpms.transcode.engines.ray_bridge", str(theirs.fileno())],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
            )
        self._conn = Connection(ours.detach())
        self._out: queue.SimpleQueue[tuple[object, ...] | None] = queue.SimpleQueue()
        threading.Thread(target=self._read, name="lpms-ray-read", daemon=True).start()
        threading.Thread(target=self._write, name="lpms-ray-write", daemon=True).start()

    def send(self, *message: object) -> None:
        self._out.put(message)

    def _read(self) -> None:
        while True:
            try:
                message = self._conn.recv()
            except (EOFError, OSError):
                break
            self._to_loop(self._host._on_message, self, message)
        self._to_loop(self._host._on_lost, self)

    def _to_loop(self, callback: Any, *args: object) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
            self._loop.call_soon_threadsafe(callback, *args)

    def _write(self) -> None:
        while (message := self._out.get()) is not None:
            try:
                self._conn.send(message)
            except OSError:
                return
        self._conn.close()

    async def close(self, within: float = 10.0) -> None:
        self.send("stop")
        self._out.put(None)
        try:
            await asyncio.wait_for(asyncio.to_thread(self.process.wait), within)
        except TimeoutError:
            self.process.kill()
            await asyncio.to_thread(self.process.wait)


@dataclass(slots=True)
class _Call:
    key: str
    future: asyncio.Future[Any]


class RayEngineHost:
    """The server's link to Ray: `start` it before serving, `session` per stream
    (an `EngineFactory`), `close` it at shutdown."""

    def __init__(
        self,
        settings: TranscodeSettings,
        observer: EngineObserver | None = None,
        output: str = "mpegts",
    ):
        self.settings = settings
        self.output = output  # what the actors' renditions are written as
        self.address = settings.resolved_ray_address()
        self.observer = observer
        self.info: dict[str, Any] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._link: _Link | None = None
        self._waiter: asyncio.Future[dict[str, Any]] | None = None
        self._calls: dict[int, _Call] = {}
        self._next_call = 0
        self._sessions: dict[str, RaySession] = {}
        self._reconnecting: asyncio.Task[None] | None = None
        self._next_attempt = 0.0
        self._down_reason = "not started"
        self._closed = False

    @property
    def connected(self) -> bool:
        return self._link is not None

    async def start(self) -> None:
        """Connect, or raise `RayUnavailable` naming the address."""
        self._loop = asyncio.get_running_loop()
        await self._connect()
        log.info(
            "transcoding on Ray at %s: %d node(s), %s CPU(s)",
            self.address,
            self.info.get("nodes", 0),
            self.info.get("resources", {}).get("CPU", "?"),
        )

    async def _connect(self) -> None:
        assert self._loop is not None
        link = _Link(self._loop, self)
        self._waiter = self._loop.create_future()
        link.send(
            "start",
            {
                "address": self.address,
                "timeout": self.settings.ray_connect_timeout,
                "num_cpus": None,
            },
        )
        grace = STARTUP_GRACE if self.address == "local" else 5.0
        try:
            self.info = await asyncio.wait_for(
                self._waiter, self.settings.ray_connect_timeout + grace
            )
        except (TimeoutError, RayUnavailable) as exc:
            await link.close(within=5.0)
            if isinstance(exc, RayUnavailable):
                raise
            raise RayUnavailable(
                f"cannot connect to Ray at {self.address}: no answer within "
                f"{self.settings.ray_connect_timeout + grace:g}s"
            ) from None
        finally:
            self._waiter = None
        self._link = link
        for session in self._sessions.values():
            session._open(link)

    def session(
        self, stream_id: str, profiles: tuple[VideoProfile, ...], accel: Accel
    ) -> RaySession:
        """The `EngineFactory`: a new actor for ``stream_id``, made at once."""
        if self._closed:
            raise TranscodeError("the Ray engine is closed")
        key = f"{stream_id}#{self._next_call}"  # a stream published again gets a new one
        self._next_call += 1
        session = RaySession(self, key, stream_id, profiles, accel)
        self._sessions[key] = session
        if self._link is not None:
            session._open(self._link)
        return session

    # -- calls -------------------------------------------------------------------------

    def _check_connected(self) -> _Link:
        """The driver's link, or `EngineFailure` (and a reconnection, when due)."""
        link = self._link
        if link is None:
            self._reconnect_soon()
            raise EngineFailure(FailureReason.UNREACHABLE, self._down_reason)
        return link

    async def _call(self, key: str, data: bytes, within: float) -> Any:
        link = self._check_connected()
        assert self._loop is not None
        call = self._next_call
        self._next_call += 1
        future: asyncio.Future[Any] = self._loop.create_future()
        self._calls[call] = _Call(key, future)
        link.send("segment", key, call, data)
        try:
            return await asyncio.wait_for(future, within)
        except TimeoutError:
            raise EngineFailure(
                FailureReason.LATE, f"no answer from its Ray actor within {within:.1f}s"
            ) from None
        finally:
            self._calls.pop(call, None)

    def _reset(self, key: str) -> None:
        if self._link is not None:
            self._link.send("reset", key)

    def _forget(self, key: str) -> None:
        self._sessions.pop(key, None)
        if self._link is not None:
            self._link.send("close", key)

    def _on_message(self, link: _Link, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind in ("ready", "failed"):
            waiter = self._waiter
            if waiter is not None and not waiter.done():
                if kind == "ready":
                    waiter.set_result(message[1])
                else:
                    waiter.set_exception(RayUnavailable(message[1]))
            return
        if link is not self._link:
            return
        if kind == "opened":
            _, key, recreated, info = message
            session = self._sessions.get(key)
            if session is None:
                return
            session._ready(recreated, info)
            if recreated and self.observer is not None:
                self.observer.engine_recreated(Engine.RAY)
            return
        call = self._calls.get(message[1])
        if call is None or call.future.done():
            return  # given up already (late)
        if kind == "done":
            call.future.set_result(message[2])
            return
        _, _, reason, text = message
        failure = EngineFailure(FailureReason(reason), text)
        if failure.reason is FailureReason.WORKER_LOST:
            session = self._sessions.get(call.key)
            if session is not None:
                session._lost()
        call.future.set_exception(failure)

    def _on_lost(self, link: _Link) -> None:
        if link is not self._link:
            return
        self._link = None
        status = link.process.poll()
        self._down_reason = (
            f"the connection to Ray at {self.address} was lost (its driver exited "
            f"with status {status}); reconnecting every {self.settings.ray_retry_interval:g}s"
        )
        log.warning("transcoding: %s", self._down_reason)
        for call in list(self._calls.values()):
            if not call.future.done():
                call.future.set_exception(
                    EngineFailure(FailureReason.UNREACHABLE, self._down_reason)
                )
        for session in self._sessions.values():
            session._lost()
        self._next_attempt = 0.0
        self._reconnect_soon()

    def _reconnect_soon(self) -> None:
        if self._closed or self._reconnecting is not None or self._loop is None:
            return
        if self._loop.time() < self._next_attempt:
            return
        self._reconnecting = self._loop.create_task(self._reconnect())

    async def _reconnect(self) -> None:
        assert self._loop is not None
        try:
            await self._connect()
            log.warning("transcoding: reconnected to Ray at %s", self.address)
        except RayUnavailable as exc:
            self._down_reason = f"{exc}; retrying every {self.settings.ray_retry_interval:g}s"
            log.warning("transcoding: %s", self._down_reason)
            self._next_attempt = self._loop.time() + self.settings.ray_retry_interval
        finally:
            self._reconnecting = None

    async def close(self) -> None:
        """Kill every actor, stop the driver (and a private Ray runtime with it)."""
        self._closed = True
        if self._reconnecting is not None:
            self._reconnecting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reconnecting
        link, self._link = self._link, None
        for call in self._calls.values():
            if not call.future.done():
                call.future.set_exception(EngineFailure(FailureReason.UNREACHABLE, "closed"))
        if link is not None:
            await link.close()


class RaySession:
    """One stream's actor, as the engine seam sees it."""

    engine = Engine.RAY

    def __init__(
        self,
        host: RayEngineHost,
        key: str,
        stream_id: str,
        profiles: tuple[VideoProfile, ...],
        accel: Accel,
    ) -> None:
        self._host = host
        self._key = key
        self.stream_id = stream_id
        self.profiles = profiles
        self.accel = accel
        self.resources = ladder_resources(profiles, accel, host.settings)
        self.node: str | None = None
        self.pid: int | None = None
        self._ready_event = asyncio.Event()
        self._ready_at = 0.0
        self._lock = asyncio.Lock()

    def _open(self, link: _Link) -> None:
        self._ready_event.clear()
        link.send(
            "open",
            self._key,
            ladder_to_wire(self.profiles),
            self.accel.value,
            self.resources,
            self._host.output,
            asdict(self._host.settings.caps),
        )

    def _ready(self, recreated: bool, info: dict[str, Any]) -> None:
        self.node, self.pid = info.get("node"), info.get("pid")
        self._ready_at = asyncio.get_running_loop().time()
        self._ready_event.set()
        if recreated:
            log.warning("transcoding %s: a new Ray session (node %s)", self.stream_id, self.node)

    def _lost(self) -> None:
        self._ready_event.clear()

    async def transcode(self, segment: Segment) -> TranscodeResult:
        host = self._host
        observer = host.observer
        try:
            return await self._transcode(segment)
        except EngineFailure as failure:
            if failure.reason is FailureReason.LATE:
                self._lost()
                host._reset(self._key)
            if observer is not None:
                observer.engine_failure(Engine.RAY, failure.reason)
            raise
        except TranscodeError:
            if observer is not None:
                observer.engine_failure(Engine.RAY, FailureReason.ERROR)
            raise

    async def _transcode(self, segment: Segment) -> TranscodeResult:
        loop = asyncio.get_running_loop()
        host = self._host
        settings = host.settings
        due = loop.time() + segment.duration
        async with self._lock:  # one call at a time: the actor works on one anyway
            host._check_connected()
            try:
                await asyncio.wait_for(self._ready_event.wait(), settings.ray_connect_timeout)
            except TimeoutError:
                raise EngineFailure(
                    FailureReason.LATE,
                    f"its Ray session did not start within {settings.ray_connect_timeout:g}s",
                ) from None
            # A session that was starting owes nothing for the time before it could work.
            deadline = max(due, self._ready_at + segment.duration)
            deadline += segment.duration * settings.ray_late_after
            sent = loop.time()
            message = await host._call(self._key, segment.data, max(0.0, deadline - sent))
        result = result_from_wire(message, self.profiles)
        if host.observer is not None:
            host.observer.engine_call(Engine.RAY, max(0.0, loop.time() - sent - result.elapsed))
        return result

    async def close(self) -> None:
        self._host._forget(self._key)
