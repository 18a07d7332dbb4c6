"""A real browser player for end-to-end tests: hls.js (or Shaka Player, for DASH, or
mpegts.js, for HTTP-FLV and WebSocket-FLV) in Debian's headless Chromium.

`play_hls` serves ``browser/player.html``, hls.js, Shaka Player and mpegts.js (from
npm: ``make browser-deps`` installs them into ``browser/node_modules``) on loopback,
opens the page
in headless Chromium with the stream's URL in the query, and collects what the page
posts every 250 ms: the video element's clock, state and size, how far behind the
wall clock the frame on screen is, and every error the player raises. With
``stamps=True`` the page also reads the capture time that bench/latency.py's publisher
draws into each frame and reports, for every frame it presents, how long ago that was.
The stream is on another origin than the page, so its server must send CORS headers,
as it must for any browser player.

Chromium runs in a process group of its own and is stopped when playback ends,
whatever happens: SIGTERM, then SIGKILL for its group, then for any process still
naming its temporary profile. Every wait is bounded; everything listens on
127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import shutil
import signal
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
from aiohttp import web

BROWSER_DIR = Path(__file__).parent / "browser"
PLAYER_PAGE = BROWSER_DIR / "player.html"
HLS_JS = BROWSER_DIR / "node_modules" / "hls.js" / "dist" / "hls.min.js"
SHAKA = BROWSER_DIR / "node_modules" / "shaka-player" / "dist" / "shaka-player.compiled.js"
MPEGTS_JS = BROWSER_DIR / "node_modules" / "mpegts.js" / "dist" / "mpegts.js"

CHROMIUM_NAMES = ("chromium", "chromium-browser")
INSTALL_CHROMIUM = "apt-get install -y --no-install-recommends chromium"
INSTALL_HLS_JS = "make browser-deps  (npm ci --prefix tests/e2e/browser)"

# Headless, as root in a container (no sandbox, small /dev/shm, no GPU), video
# allowed to start without a click, and nothing that phones home or throttles a
# page nobody looks at.
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--autoplay-policy=no-user-gesture-required",
    "--mute-audio",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-extensions",
    "--disable-sync",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-background-timer-throttling",
    "--disable-renderer-backgrounding",
    "--disable-backgrounding-occluded-windows",
    "--window-size=640,480",
    "--enable-logging=stderr",
)

REPORT_INTERVAL_S = 0.25
START_TIMEOUT_S = 20.0  # Chromium's start and the page's first report
TERM_TIMEOUT_S = 3.0  # for Chromium to shut down on SIGTERM
KILL_TIMEOUT_S = 5.0
LEFTOVER_POLL_S = 0.05
REPORT_QUEUE_SIZE = 256
STDERR_TAIL_BYTES = 16 * 1024
HAVE_CURRENT_DATA = 2  # HTMLMediaElement.readyState: a frame is there to show


class BrowserUnavailable(Exception):
    """Chromium or a player is not installed; the message says how to install it."""


class BrowserError(Exception):
    """The page sent a report the harness cannot read, or Chromium would not die."""


def find_chromium() -> str:
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path is not None:
            return path
    raise BrowserUnavailable(
        f"no Chromium on PATH ({', '.join(CHROMIUM_NAMES)}): {INSTALL_CHROMIUM}"
    )


def find_hls_js() -> Path:
    for script in (HLS_JS, SHAKA, MPEGTS_JS):
        if not script.is_file():
            raise BrowserUnavailable(
                f"{script.name} is not installed at {script}: {INSTALL_HLS_JS}"
            )
    return HLS_JS


def require_browser() -> str:
    """Chromium's path, if it and the players (hls.js, Shaka Player, mpegts.js) are
    installed; `BrowserUnavailable` naming everything missing otherwise."""
    missing = []
    chromium = ""
    try:
        chromium = find_chromium()
    except BrowserUnavailable as exc:
        missing.append(str(exc))
    try:
        find_hls_js()
    except BrowserUnavailable as exc:
        missing.append(str(exc))
    if missing:
        raise BrowserUnavailable("; ".join(missing))
    return chromium


@dataclass(frozen=True, slots=True)
class PlaybackSample:
    """The video element, as one report from the page saw it."""

    at: float  # seconds since the page's first report, on the harness's clock
    current_time: float
    ready_state: int
    paused: bool
    ended: bool
    video_width: int
    video_height: int
    buffered_end: float
    latency: float | None = None  # seconds from the shown frame's wall-clock time to now
    live_edge_latency: float | None = None  # hls.js: seconds behind the playlist's live edge
    target_latency: float | None = None  # hls.js: what it aims for


@dataclass(frozen=True, slots=True)
class PlayerError:
    """An hls.js ``Hls.Events.ERROR`` (or Shaka's or mpegts.js's error), or a
    ``<video>`` or page error."""

    source: str  # "hls.js", "shaka", "mpegts.js", "video" or "page"
    type: str  # hls.js's ErrorTypes (networkError, mediaError, ...)
    details: str  # hls.js's ErrorDetails (manifestLoadError, bufferStalledError, ...)
    fatal: bool
    message: str
    current_time: float

    def __str__(self) -> str:
        fatal = "FATAL " if self.fatal else ""
        return (
            f"{fatal}{self.source} {self.type}/{self.details} at {self.current_time:.2f}s"
            f" {self.message}".rstrip()
        )


@dataclass
class PlaybackReport:
    """What the browser did with one URL."""

    url: str
    samples: list[PlaybackSample] = field(default_factory=list)
    errors: list[PlayerError] = field(default_factory=list)
    environment: dict[str, Any] = field(default_factory=dict)  # user agent, hls.js, MSE
    # With stamps=True: (when it was reported, seconds since its capture) for each
    # frame presented, and how many frames had a stamp that did not read.
    stamp_latencies: list[tuple[float, float]] = field(default_factory=list)
    unreadable_stamps: int = 0
    chromium_command: list[str] = field(default_factory=list)
    chromium_exit: int | None = None  # None: still running when the harness killed it
    chromium_stderr: str = ""  # its last lines

    @property
    def fatal_errors(self) -> list[PlayerError]:
        return [error for error in self.errors if error.fatal]

    @property
    def first_frame_at(self) -> float | None:
        """When the video first had a frame to show."""
        for sample in self.samples:
            if sample.ready_state >= HAVE_CURRENT_DATA:
                return sample.at
        return None

    @property
    def advanced(self) -> float:
        """How far ``currentTime`` moved on since the first frame (so a player's
        initial seek to the live edge does not count as playing)."""
        ready = [s for s in self.samples if s.ready_state >= HAVE_CURRENT_DATA]
        if not ready:
            return 0.0
        return max(s.current_time for s in ready) - ready[0].current_time

    def latencies(self, after: float = 0.0) -> list[float]:
        """Each report's latency, from ``after`` seconds past the first frame."""
        start = self.first_frame_at
        if start is None:
            return []
        return [
            s.latency
            for s in self.samples
            if s.latency is not None and s.at >= start + after and not s.paused
        ]

    @property
    def video_size(self) -> tuple[int, int] | None:
        for sample in reversed(self.samples):
            if sample.video_width and sample.video_height:
                return sample.video_width, sample.video_height
        return None

    def describe(self) -> str:
        """Everything a failing assertion should show."""
        lines = [f"playing {self.url}", f"environment: {self.environment}"]
        if not self.samples:
            lines.append("the page sent no report (see Chromium's output below)")
        lines += [
            f"  {s.at:6.2f}s currentTime={s.current_time:.3f} readyState={s.ready_state}"
            f" paused={s.paused} ended={s.ended} {s.video_width}x{s.video_height}"
            f" buffered_to={s.buffered_end:.3f}"
            for s in self.samples
        ]
        lines += [f"error: {error}" for error in self.errors]
        lines.append(f"chromium exit: {self.chromium_exit}; command: {self.chromium_command}")
        lines.append(f"chromium output (tail):\n{self.chromium_stderr}")
        return "\n".join(lines)


async def play_hls(
    url: str,
    *,
    seconds: float,
    start_timeout: float = START_TIMEOUT_S,
    interval: float = REPORT_INTERVAL_S,
    stop_when_ended: bool = True,
    player: str = "hls",
    low_latency: bool = False,
    stamps: bool = False,
    catch_up: float = 1.0,
    chromium_flags: tuple[str, ...] = (),
) -> PlaybackReport:
    """Play ``url`` with hls.js (``player="shaka"``: Shaka Player, which plays DASH
    too; ``player="mpegts"``: mpegts.js, which plays live FLV from an ``http://`` or
    ``ws://`` URL; ``low_latency``: hls.js's LL-HLS mode, or mpegts.js's latency
    chasing) in headless Chromium for ``seconds``
    after the page's first report (at most ``start_timeout`` away), or until a fatal
    error, the end of the stream, or Chromium exiting (``stamps``: read each presented
    frame's capture stamp, see `PlaybackReport.stamp_latencies`; ``catch_up``: hls.js's
    maxLiveSyncPlaybackRate or mpegts.js's liveSyncPlaybackRate, how much faster it may
    play to get back to its target latency; ``chromium_flags``: more of Chromium's
    flags). Raises `BrowserUnavailable` if
    Chromium or a player is missing."""
    chromium = require_browser()
    hls_js = find_hls_js()
    report = PlaybackReport(url)
    reports: asyncio.Queue[dict[str, Any]] = asyncio.Queue(REPORT_QUEUE_SIZE)
    async with _page_server(hls_js, reports) as page_port:
        query = urlencode(
            {
                "src": url,
                "interval": round(interval * 1000),
                "player": player,
                "lowLatency": "1" if low_latency else "0",
                "stamps": "1" if stamps else "0",
                "catchUp": f"{catch_up:g}",
            }
        )
        page_url = f"http://127.0.0.1:{page_port}/?{query}"
        with tempfile.TemporaryDirectory(
            prefix="lpms-chromium-", ignore_cleanup_errors=True
        ) as profile:
            report.chromium_command = [
                chromium,
                *CHROMIUM_FLAGS,
                *chromium_flags,
                f"--user-data-dir={profile}",
                page_url,
            ]
            async with _chromium(report, profile) as process:
                await _collect(report, reports, process, seconds, start_timeout, stop_when_ended)
    return report


async def _collect(
    report: PlaybackReport,
    reports: asyncio.Queue[dict[str, Any]],
    process: asyncio.subprocess.Process,
    seconds: float,
    start_timeout: float,
    stop_when_ended: bool,
) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + start_timeout
    first_at: float | None = None
    while process.returncode is None:
        remaining = deadline - loop.time()
        if remaining <= 0:
            return
        try:
            body = await asyncio.wait_for(reports.get(), min(remaining, 0.5))
        except TimeoutError:
            continue
        now = loop.time()
        if first_at is None:
            first_at = now
            deadline = now + seconds
        sample = _read_report(report, body, now - first_at)
        if report.fatal_errors or (stop_when_ended and sample.ended):
            return


def _latency(body: dict[str, Any]) -> float | None:
    playing, now = body.get("playing_date"), body.get("wall_clock")
    if playing is None or now is None:
        return None
    return (float(now) - float(playing)) / 1000


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _read_report(report: PlaybackReport, body: dict[str, Any], at: float) -> PlaybackSample:
    try:
        sample = PlaybackSample(
            at=at,
            current_time=float(body["current_time"]),
            ready_state=int(body["ready_state"]),
            paused=bool(body["paused"]),
            ended=bool(body["ended"]),
            video_width=int(body["video_width"]),
            video_height=int(body["video_height"]),
            buffered_end=float(body["buffered_end"]),
            latency=_latency(body),
            live_edge_latency=_optional_float(body.get("live_edge_latency")),
            target_latency=_optional_float(body.get("target_latency")),
        )
        errors = [
            PlayerError(
                source=str(error["source"]),
                type=str(error["type"]),
                details=str(error["details"]),
                fatal=bool(error["fatal"]),
                message=str(error["message"]),
                current_time=float(error["current_time"]),
            )
            for error in body["errors"]
        ]
        stamps = [(at, float(ms) / 1000) for ms in body.get("stamp_latencies", ())]
        unreadable = int(body.get("unreadable_stamps", 0))
    except (KeyError, TypeError, ValueError) as exc:
        raise BrowserError(f"unreadable report from the page: {body!r}") from exc
    report.samples.append(sample)
    report.errors += errors
    report.stamp_latencies += stamps
    report.unreadable_stamps += unreadable
    if "environment" in body:
        report.environment = dict(body["environment"])
    return sample


@contextlib.asynccontextmanager
async def _page_server(hls_js: Path, reports: asyncio.Queue[dict[str, Any]]) -> AsyncIterator[int]:
    """The player page, hls.js and the report endpoint on 127.0.0.1; yields the port."""

    async def page(request: web.Request) -> web.StreamResponse:
        return web.FileResponse(PLAYER_PAGE, headers={"Cache-Control": "no-store"})

    async def script(request: web.Request) -> web.StreamResponse:
        return web.FileResponse(hls_js)

    async def shaka(request: web.Request) -> web.StreamResponse:
        return web.FileResponse(SHAKA)

    async def mpegts_js(request: web.Request) -> web.StreamResponse:
        return web.FileResponse(MPEGTS_JS)

    async def receive_report(request: web.Request) -> web.Response:
        body = await request.json()
        if not isinstance(body, dict):
            raise web.HTTPBadRequest(text="a report is a JSON object")
        try:
            reports.put_nowait(body)
        except asyncio.QueueFull:
            raise web.HTTPServiceUnavailable(text="reports are not being read") from None
        return web.Response(status=204)

    app = web.Application(client_max_size=1024 * 1024)
    app.router.add_get("/", page)
    app.router.add_get("/hls.min.js", script)
    app.router.add_get("/shaka.js", shaka)
    app.router.add_get("/mpegts.js", mpegts_js)
    app.router.add_post("/report", receive_report)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        yield runner.addresses[0][1]
    finally:
        await asyncio.wait_for(runner.cleanup(), KILL_TIMEOUT_S)


@contextlib.asynccontextmanager
async def _chromium(
    report: PlaybackReport, profile: str
) -> AsyncIterator[asyncio.subprocess.Process]:
    """Chromium in a process group of its own, stopped on the way out with every
    process it started; its output goes to ``report.chromium_stderr`` (the last
    `STDERR_TAIL_BYTES`)."""
    # HOME too, so that the NSS database and crash reports land in the temporary
    # profile rather than in the user's home, and name it on their command lines.
    profile_home = {"HOME": profile, "XDG_CONFIG_HOME": profile, "XDG_CACHE_HOME": profile}
    process = await asyncio.create_subprocess_exec(
        *report.chromium_command,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
        env={**os.environ, **profile_home},
    )
    tail = bytearray()
    assert process.stdout is not None
    reader = asyncio.create_task(_keep_tail(process.stdout, tail))
    try:
        yield process
    finally:
        report.chromium_exit = process.returncode
        await _stop(process, profile)
        # The pipe closes once every process of the group is gone.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(reader, KILL_TIMEOUT_S)
        reader.cancel()
        report.chromium_stderr = tail.decode(errors="replace")


async def _keep_tail(stream: asyncio.StreamReader, tail: bytearray) -> None:
    while chunk := await stream.read(4096):
        tail += chunk
        del tail[:-STDERR_TAIL_BYTES]


async def _stop(process: asyncio.subprocess.Process, profile: str) -> None:
    """SIGTERM, so Chromium shuts its children down and reaps them itself; SIGKILL
    for its process group if it did not; then, by pid, any process still naming the
    profile on its command line (children of a Chromium that died on its own, and
    the crash handler, which starts a session of its own)."""
    with contextlib.suppress(ProcessLookupError):
        process.terminate()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(process.wait(), TERM_TIMEOUT_S)
    if process.returncode is None:
        # Not yet reaped, so the group is still Chromium's: start_new_session made
        # it the leader of a group of its own (the /usr/bin/chromium wrapper execs,
        # keeping the pid).
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        try:
            await asyncio.wait_for(process.wait(), KILL_TIMEOUT_S)
        except TimeoutError:
            raise BrowserError(
                f"Chromium (pid {process.pid}) outlived SIGKILL for {KILL_TIMEOUT_S}s"
            ) from None
    await _kill_leftovers(profile)


async def _kill_leftovers(profile: str) -> None:
    """Give processes that outlived Chromium `TERM_TIMEOUT_S` to go, then SIGKILL."""
    polls = round(TERM_TIMEOUT_S / LEFTOVER_POLL_S)
    for _ in range(polls):
        if not _processes_naming(profile):
            return
        await asyncio.sleep(LEFTOVER_POLL_S)
    for pid in _processes_naming(profile):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _processes_naming(marker: str) -> list[int]:
    """The live processes with ``marker`` on their command line (Linux's /proc)."""
    needle = marker.encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command_line = (entry / "cmdline").read_bytes()
        except OSError:  # gone meanwhile, or not ours to read
            continue
        if needle in command_line:
            pids.append(int(entry.name))
    return pids


# -- any page, driven through the Chrome DevTools Protocol -------------------------------
#
# `open_page` starts Chromium with ``--remote-debugging-port=0`` on about:blank, reads
# the port Chromium chose from ``DevToolsActivePort`` in its profile, connects to the
# page's DevTools WebSocket (aiohttp's client), sets the viewport, starts collecting
# console messages and exceptions, and only then navigates, so that nothing the page
# logs is missed. Chromium is started and stopped as for `play_hls`.

DEVTOOLS_PORT_FILE = "DevToolsActivePort"
DEVTOOLS_POLL_S = 0.05
DEVTOOLS_COMMAND_TIMEOUT_S = 15.0
DEVTOOLS_MAX_MESSAGE = 64 * 1024 * 1024  # full-page screenshots arrive as base64
CONSOLE_LIMIT = 1000  # messages kept per page
LOAD_TIMEOUT_S = 15.0


@dataclass(frozen=True, slots=True)
class ConsoleMessage:
    """One console message, exception or browser log entry of a page."""

    level: str  # "error", "warning", "info", ... ("error" for exceptions)
    source: str  # "console", "exception", or the Log domain's source ("network", ...)
    text: str

    def __str__(self) -> str:
        return f"[{self.level} {self.source}] {self.text}"


@dataclass(frozen=True, slots=True)
class Viewport:
    width: int = 1280
    height: int = 800
    scale: float = 1.0  # device pixels per CSS pixel
    mobile: bool = False


DESKTOP = Viewport()
PHONE = Viewport(390, 844, 2.0, mobile=True)


class DevToolsPage:
    """One page target of a running Chromium, over its DevTools WebSocket."""

    def __init__(self, websocket: Any, chromium: PlaybackReport) -> None:
        self._websocket = websocket
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.console: list[ConsoleMessage] = []
        self.chromium = chromium  # its command line, exit status and output
        self._reader = asyncio.create_task(self._read())

    @property
    def errors(self) -> list[ConsoleMessage]:
        return [message for message in self.console if message.level == "error"]

    async def send(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        *,
        within: float = DEVTOOLS_COMMAND_TIMEOUT_S,
    ) -> dict[str, Any]:
        """A DevTools command's result; `BrowserError` for its error or no answer."""
        if self._reader.done():
            raise BrowserError(f"DevTools connection closed before {method}")
        command_id = next(self._ids)
        answer: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[command_id] = answer
        try:
            await self._websocket.send_json(
                {"id": command_id, "method": method, "params": params or {}}
            )
            message = await asyncio.wait_for(answer, within)
        except TimeoutError:
            raise BrowserError(f"no answer to {method} within {within}s") from None
        finally:
            self._pending.pop(command_id, None)
        if "error" in message:
            raise BrowserError(f"{method}: {message['error']}")
        result: dict[str, Any] = message.get("result", {})
        return result

    async def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (promises awaited)."""
        result = await self.send(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
        )
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            raise BrowserError(f"evaluating {expression!r}: {text}")
        return result["result"].get("value")

    async def wait_for(self, expression: str, within: float, poll: float = 0.1) -> Any:
        """Poll ``expression`` until it is truthy (its value) or `within` runs out."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            value = await self.evaluate(expression)
            if value:
                return value
            if loop.time() >= deadline:
                raise AssertionError(f"{expression!r} still {value!r} after {within}s")
            await asyncio.sleep(poll)

    async def click(self, element: str) -> None:
        """A real mouse click (a user gesture, as clipboard access needs) at the
        middle of the element that the expression ``element`` finds, scrolled into
        view first."""
        box = await self.evaluate(
            f"""(() => {{
                const element = {element};
                element.scrollIntoView({{block: "center"}});
                const rect = element.getBoundingClientRect();
                return {{x: rect.x + rect.width / 2, y: rect.y + rect.height / 2}};
            }})()"""
        )
        for kind in ("mousePressed", "mouseReleased"):
            await self.send(
                "Input.dispatchMouseEvent",
                {"type": kind, "x": box["x"], "y": box["y"], "button": "left", "clickCount": 1},
            )

    async def set_viewport(self, viewport: Viewport) -> None:
        await self.send(
            "Emulation.setDeviceMetricsOverride",
            {
                "width": viewport.width,
                "height": viewport.height,
                "deviceScaleFactor": viewport.scale,
                "mobile": viewport.mobile,
            },
        )

    async def screenshot(self, *, full_page: bool = False) -> bytes:
        """A PNG of the viewport (or of the whole page)."""
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            metrics = await self.send("Page.getLayoutMetrics")
            size = metrics["cssContentSize"]
            params["captureBeyondViewport"] = True
            params["clip"] = {
                "x": 0,
                "y": 0,
                "width": size["width"],
                "height": size["height"],
                "scale": 1,
            }
        result = await self.send("Page.captureScreenshot", params)
        return base64.b64decode(result["data"])

    def describe(self) -> str:
        """The page's console and Chromium's output, for a failing assertion."""
        lines = ["console:", *(f"  {message}" for message in self.console)]
        lines.append(f"chromium exit: {self.chromium.chromium_exit}")
        lines.append(f"chromium command: {self.chromium.chromium_command}")
        lines.append(f"chromium output (tail):\n{self.chromium.chromium_stderr}")
        return "\n".join(lines)

    async def close(self) -> None:
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
        await self._websocket.close()

    async def _read(self) -> None:
        async for frame in self._websocket:
            if frame.type != aiohttp.WSMsgType.TEXT:
                break
            message = json.loads(frame.data)
            if "id" in message:
                answer = self._pending.get(message["id"])
                if answer is not None and not answer.done():
                    answer.set_result(message)
            else:
                self._on_event(message.get("method", ""), message.get("params", {}))
        for answer in self._pending.values():
            if not answer.done():
                answer.set_exception(BrowserError("DevTools connection closed"))

    def _on_event(self, method: str, params: dict[str, Any]) -> None:
        message: ConsoleMessage | None = None
        if method == "Runtime.consoleAPICalled":
            text = " ".join(_remote_object_text(arg) for arg in params.get("args", []))
            level = {"warning": "warning", "error": "error", "assert": "error"}.get(
                params.get("type", ""), "info"
            )
            message = ConsoleMessage(level, "console", text)
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            text = details.get("exception", {}).get("description") or details.get("text", "")
            message = ConsoleMessage("error", "exception", str(text))
        elif method == "Log.entryAdded":
            entry = params.get("entry", {})
            text = f"{entry.get('text', '')} {entry.get('url', '')}".rstrip()
            message = ConsoleMessage(
                str(entry.get("level", "")), str(entry.get("source", "")), text
            )
        if message is not None and len(self.console) < CONSOLE_LIMIT:
            self.console.append(message)


def _remote_object_text(value: dict[str, Any]) -> str:
    if "value" in value:
        return str(value["value"])
    return str(value.get("description", value.get("type", "")))


@contextlib.asynccontextmanager
async def open_page(
    url: str, *, viewport: Viewport = DESKTOP, color_scheme: str | None = None
) -> AsyncIterator[DevToolsPage]:
    """``url`` in headless Chromium, loaded, as a `DevToolsPage`; Chromium is stopped
    on the way out. ``color_scheme`` ("light" or "dark") overrides the system's.
    Raises `BrowserUnavailable` if there is no Chromium."""
    chromium = find_chromium()
    record = PlaybackReport(url)
    with tempfile.TemporaryDirectory(
        prefix="lpms-chromium-", ignore_cleanup_errors=True
    ) as profile:
        record.chromium_command = [
            chromium,
            *CHROMIUM_FLAGS,
            f"--window-size={viewport.width},{viewport.height}",
            "--remote-debugging-port=0",
            "--remote-debugging-address=127.0.0.1",
            f"--user-data-dir={profile}",
            "about:blank",
        ]
        async with (
            _chromium(record, profile) as process,
            aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=None, connect=START_TIMEOUT_S)
            ) as session,
        ):
            port = await _devtools_port(Path(profile), process)
            websocket_url = await _page_websocket_url(session, port, process)
            websocket = await session.ws_connect(
                websocket_url, max_msg_size=DEVTOOLS_MAX_MESSAGE, autoping=True
            )
            page = DevToolsPage(websocket, record)
            try:
                for domain in ("Runtime.enable", "Log.enable", "Page.enable"):
                    await page.send(domain)
                await page.set_viewport(viewport)
                if color_scheme is not None:
                    await page.send(
                        "Emulation.setEmulatedMedia",
                        {"features": [{"name": "prefers-color-scheme", "value": color_scheme}]},
                    )
                await page.send("Page.navigate", {"url": url})
                await page.wait_for("document.readyState === 'complete'", LOAD_TIMEOUT_S)
                yield page
            finally:
                await page.close()


async def _devtools_port(profile: Path, process: asyncio.subprocess.Process) -> int:
    """The port Chromium's DevTools listens on, from the file it writes once it does."""
    port_file = profile / DEVTOOLS_PORT_FILE
    loop = asyncio.get_running_loop()
    deadline = loop.time() + START_TIMEOUT_S
    while loop.time() < deadline and process.returncode is None:
        with contextlib.suppress(OSError, ValueError, IndexError):
            return int(port_file.read_text().splitlines()[0])
        await asyncio.sleep(DEVTOOLS_POLL_S)
    raise BrowserError(
        f"Chromium wrote no {DEVTOOLS_PORT_FILE} within {START_TIMEOUT_S}s"
        f" (exit status {process.returncode})"
    )


async def _page_websocket_url(
    session: aiohttp.ClientSession, port: int, process: asyncio.subprocess.Process
) -> str:
    """The DevTools WebSocket URL of Chromium's first page (about:blank)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + START_TIMEOUT_S
    while loop.time() < deadline and process.returncode is None:
        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
            async with session.get(
                f"http://127.0.0.1:{port}/json/list", timeout=aiohttp.ClientTimeout(total=2)
            ) as response:
                targets = await response.json(content_type=None)
            for target in targets:
                if target.get("type") == "page" and "webSocketDebuggerUrl" in target:
                    return str(target["webSocketDebuggerUrl"])
        await asyncio.sleep(DEVTOOLS_POLL_S)
    raise BrowserError(f"Chromium showed no page to DevTools within {START_TIMEOUT_S}s")
