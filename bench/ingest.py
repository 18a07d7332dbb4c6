#!/usr/bin/env python3
"""RTMP ingest and relay (and HLS), lpms side by side with nginx-rtmp, in one run.

N real-time 720p30 publishers (ffmpeg, stream copy), each with one RTMP player, run
first against one server and then against the other with the same N and duration.
The script prints each server's CPU (% of one core, per stream and in total) over the
steady-state window, its memory (RSS when idle before the publishers, its median over
the steady-state window, its peak, and the growth over idle per live stream), how many
players received the whole stream, and the lpms/nginx ratios. Ratios are the point:
the clients share the machine with the server, so absolute figures depend on the
machine and on how loaded it is.

With --players http-flv lpms's players read the same streams over HTTP-FLV
(``GET /stream/NAME.flv``, the same ffmpeg client), while nginx-rtmp, which has no
HTTP-FLV, keeps its RTMP players: lpms's FLV-over-HTTP fan-out against nginx-rtmp's
RTMP one, under the same load.

With --hls both servers also cut every stream into 2 s segments and serve the
playlists over HTTP (nginx-rtmp MPEG-TS; lpms its default, low-latency HLS over CMAF,
and ``lpms-ts`` is lpms with ``--hls-format ts``), and the script measures, per
stream, the time from starting its publisher to its playlist first listing a segment
(a master playlist is followed to its first variant).

Exit status: 0 when every player of every server got the whole stream (and, with
--hls, every playlist appeared, and every lpms playlist ended with EXT-X-ENDLIST), 1
when one did not (or a server failed), 2 when a tool is missing, 130 when interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Coroutine, Iterator, Sequence
from concurrent.futures import CancelledError, Future
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from types import FrameType
from typing import IO, Any, TypeVar
from urllib.parse import urljoin

try:
    import aiohttp
    import psutil
except ImportError as missing:  # pragma: no cover - only on a machine without the dev extras
    print(
        f"bench/ingest.py needs {missing.name}: run `make dev` (or pip install psutil aiohttp)",
        file=sys.stderr,
    )
    sys.exit(2)

_T = TypeVar("_T")

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
OUT_DIR = BENCH_DIR / "out"

APT_HINT = "apt-get install ffmpeg nginx libnginx-mod-rtmp"
NGINX_CANDIDATES = ("/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx")
NGINX_MODULE_CANDIDATES = (
    "/usr/lib/nginx/modules/ngx_rtmp_module.so",
    "/usr/lib64/nginx/modules/ngx_rtmp_module.so",
    "/usr/share/nginx/modules/ngx_rtmp_module.so",
    "/usr/local/nginx/modules/ngx_rtmp_module.so",
)
SERVER_NAMES = ("lpms", "nginx", "lpms-ts")  # lpms-ts: lpms --hls-format ts
PLAYER_KINDS = ("rtmp", "http-flv")  # what lpms's players read; nginx's read RTMP

# The test input: what a typical 720p30 contribution stream looks like.
FPS = 30
GOP_FRAMES = 2 * FPS  # a keyframe every 2 s
VIDEO_KBPS = 2500
AUDIO_KBPS = 128
AUDIO_RATE = 48000
AAC_FRAME_SAMPLES = 1024
INPUT_SECONDS = 10
INPUT_NAME = f"input-720p{FPS}-{VIDEO_KBPS}k-gop{GOP_FRAMES}-{INPUT_SECONDS}s.flv"

# Timing of one server's run.
PUBLISHER_STAGGER_S = 0.1  # spreads the publishers' start-up cost
JOIN_DELAY_S = 2.0  # a player starts this long after its publisher: it is live by then
PLAY_RETRY_S = 0.5  # a refused play is tried again after this long ...
JOIN_TIMEOUT_S = 15.0  # ... until this long after the first try
SETTLE_S = 1.0  # after the last player joined, before the CPU window opens
WINDOW_END_MARGIN_S = 1.0  # the CPU window closes this long before the first publisher stops
PLAYER_GRACE_S = 10.0  # a player must end by itself this long after its publisher stopped
SERVER_START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 5.0
TERM_RETRY_S = 1.0
POLL_S = 0.1
RSS_SAMPLE_S = 0.5
IDLE_SETTLE_S = 1.0  # after the server listens, before its idle RSS is taken
MIN_DURATION_S = 15.0
SATURATED_PCT = 90.0  # machine busy share above which the figures understate demand

# The lpms/nginx CPU per stream targets, by mode (--cpu-target overrides).
CPU_TARGET_RELAY = 1.0
CPU_TARGET_HLS = 1.0
CPU_TARGET_HTTP_FLV = 1.2  # lpms's HTTP-FLV players against nginx-rtmp's RTMP ones
# lpms's RSS growth over idle per live HLS stream, in MiB, at the input's 2.5 Mbit/s.
RSS_PER_STREAM_TARGET_HLS_MIB = 1.5

# HLS mode: the same segmenting on both servers, and how the first playlist is timed.
HLS_SEGMENT_S = 2  # lpms --segment-duration, nginx-rtmp hls_fragment
HLS_WINDOW = 6  # lpms --hls-window; nginx-rtmp hls_playlist_length is this many segments
PLAYLIST_POLL_S = 0.05  # each stream's playlist is asked for this often ...
PLAYLIST_TIMEOUT_S = 15.0  # ... until it lists a segment, or this long after its publisher
PLAYLIST_REQUEST_TIMEOUT_S = 1.0
PLAYLIST_WATCHER_TIMEOUT_S = 10.0  # starting and stopping the watcher's thread
# nginx-rtmp ends no playlist with EXT-X-ENDLIST when its publisher leaves; lpms does.
SERVERS_ENDING_PLAYLISTS = ("lpms", "lpms-ts")

# What "the whole stream" means for a player: exactly the packets its publisher sent,
# from the keyframe at or after its join point to the end (compared by checksum), and
# at least as many as were published while it was connected, less one GOP (a server
# without a GOP cache starts a new player at the next keyframe) and its connect time.
JOIN_ALLOWANCE_S = 1.5


class BenchError(Exception):
    """A server or a client could not be run; the message says which and why."""


class MissingTool(BenchError):
    """A required program is not installed."""


@dataclass(frozen=True, slots=True)
class Tools:
    ffmpeg: str
    nginx: str | None
    nginx_module: str | None


@dataclass(frozen=True, slots=True)
class BenchConfig:
    streams: int
    duration_s: float
    servers: tuple[str, ...]
    python: str
    tools: Tools
    input_path: Path
    hls: bool = False
    event_loop: str = "asyncio"
    players: str = "rtmp"  # PLAYER_KINDS: what lpms's players read


def reads_http_flv(name: str, config: BenchConfig) -> bool:
    """Whether server ``name``'s players read HTTP-FLV (nginx-rtmp has none: RTMP)."""
    return config.players == "http-flv" and name != "nginx"


@dataclass(frozen=True, slots=True)
class Track:
    """One media type's packets in a framecrc record, in the order they were written."""

    checksums: tuple[int, ...]
    size_bytes: int
    duration_s: float


@dataclass(frozen=True, slots=True)
class Capture:
    video: Track
    audio: Track


@dataclass(frozen=True, slots=True)
class PlayerResult:
    stream: int
    complete: bool
    reason: str
    attempts: int
    exit_code: int | None
    connected_s: float
    join_s: float | None
    video_frames: int
    audio_frames: int
    min_video_frames: int
    min_audio_frames: int
    published_video_frames: int
    published_audio_frames: int
    video_mbps: float


@dataclass(frozen=True, slots=True)
class PlaylistResult:
    """One stream's HLS playlist: when it first listed a segment, and how it ended."""

    stream: int
    url: str
    first_playlist_s: float | None  # from starting the publisher; None: not within the timeout
    last_answer: str  # what the last poll got: "ok", "404", "200 without #EXTINF", an error
    ended: bool | None  # EXT-X-ENDLIST after the publish; None where not checked


@dataclass(frozen=True, slots=True)
class ServerResult:
    server: str
    streams: int
    cpu_pct_total: float | None
    cpu_pct_per_stream: float | None
    peak_rss_mib: float
    window_s: float
    machine_busy_pct: float | None
    players_complete: int
    players: tuple[PlayerResult, ...]
    error: str | None = None
    hls: bool = False
    first_playlist_median_s: float | None = None
    first_playlist_max_s: float | None = None
    playlists_listed: int = 0  # playlists that listed a segment within the timeout
    playlists_ended: int | None = None  # with EXT-X-ENDLIST at the end; None: not checked
    playlists: tuple[PlaylistResult, ...] = ()
    idle_rss_mib: float | None = None  # before the first publisher
    steady_rss_mib: float | None = None  # median over the steady-state window
    # (steady - idle) / streams, and the same from the peak: what one more stream costs.
    rss_growth_per_stream_mib: float | None = None
    peak_rss_growth_per_stream_mib: float | None = None

    @property
    def ok(self) -> bool:
        players_ok = self.error is None and self.players_complete == self.streams
        if not self.hls:
            return players_ok
        return (
            players_ok
            and self.playlists_listed == self.streams
            and self.playlists_ended in (None, self.streams)
        )


@dataclass(slots=True)
class Publisher:
    stream: int
    process: subprocess.Popen[bytes]
    capture_path: Path
    started_at: float
    ended_at: float | None = None


@dataclass(slots=True)
class Player:
    stream: int
    url: str
    capture_path: Path
    log_path: Path
    not_before: float
    process: subprocess.Popen[bytes] | None = None
    first_try_at: float | None = None
    started_at: float | None = None
    joined_at: float | None = None
    ended_at: float | None = None
    attempts: int = 0
    killed: bool = False


# --- tools -----------------------------------------------------------------------------


def find_tools(servers: Sequence[str], nginx: str | None, nginx_module: str | None) -> Tools:
    """Locates ffmpeg and, when nginx is benchmarked, nginx and its RTMP module."""
    missing: list[str] = []
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        missing.append("ffmpeg")
    nginx_path = module_path = None
    if "nginx" in servers:
        nginx_path = nginx or shutil.which("nginx") or _first_existing(NGINX_CANDIDATES)
        module_path = nginx_module or _first_existing(NGINX_MODULE_CANDIDATES)
        if nginx_path is None or not Path(nginx_path).exists():
            missing.append("nginx")
        if module_path is None or not Path(module_path).exists():
            missing.append("the nginx RTMP module (ngx_rtmp_module.so)")
    if missing or ffmpeg is None:
        raise MissingTool(f"missing: {', '.join(missing)}")
    return Tools(ffmpeg=ffmpeg, nginx=nginx_path, nginx_module=module_path)


def _first_existing(paths: Sequence[str]) -> str | None:
    return next((path for path in paths if Path(path).exists()), None)


def lpms_env() -> dict[str, str]:
    """Lets `python -m lpms` find the checkout's package even when it is not installed."""
    env = dict(os.environ)
    src = str(REPO_DIR / "src")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    return env


def check_lpms(python: str) -> None:
    probe = subprocess.run(
        [python, "-c", "import lpms.cli"],
        capture_output=True,
        text=True,
        env=lpms_env(),
        timeout=60,
        check=False,
    )
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise MissingTool(
            f"`{python} -c 'import lpms.cli'` failed: {last}\n"
            "run `make dev`, or benchmark nginx alone with --servers nginx"
        )


def ensure_input(ffmpeg: str) -> Path:
    """Encodes the test input once; later runs reuse the cached file."""
    path = OUT_DIR / INPUT_NAME
    if path.exists():
        return path
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial.flv")
    log(f"encoding the test input {path.relative_to(REPO_DIR)} (once)")
    # testsrc2 compresses far below 2.5 Mbps; CBR with filler data gives the real rate.
    command = [
        *(ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error", "-y"),
        *("-f", "lavfi", "-i", f"testsrc2=size=1280x720:rate={FPS}"),
        *("-f", "lavfi", "-i", f"sine=frequency=440:sample_rate={AUDIO_RATE}"),
        *("-t", str(INPUT_SECONDS), "-map", "0:v", "-map", "1:a"),
        *("-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p"),
        *("-b:v", f"{VIDEO_KBPS}k", "-minrate", f"{VIDEO_KBPS}k", "-maxrate", f"{VIDEO_KBPS}k"),
        *("-bufsize", f"{2 * VIDEO_KBPS}k", "-x264-params", "nal-hrd=cbr"),
        *("-g", str(GOP_FRAMES), "-keyint_min", str(GOP_FRAMES), "-sc_threshold", "0"),
        *("-c:a", "aac", "-b:a", f"{AUDIO_KBPS}k", "-ac", "2"),
        *("-f", "flv", str(partial)),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    if done.returncode != 0:
        partial.unlink(missing_ok=True)
        raise BenchError(f"encoding the test input failed:\n{done.stderr.strip()}")
    partial.replace(path)
    return path


# --- processes -------------------------------------------------------------------------


class Children:
    """Every process the benchmark starts, so that all of them end with it."""

    def __init__(self) -> None:
        self._processes: list[subprocess.Popen[bytes]] = []
        self._logs: list[IO[bytes]] = []

    def spawn(
        self, command: Sequence[str], log_path: Path, **kwargs: Any
    ) -> subprocess.Popen[bytes]:
        log_file = log_path.open("wb")
        self._logs.append(log_file)
        process = subprocess.Popen(
            list(command),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log_file,
            **kwargs,
        )
        self._processes.append(process)
        return process

    def close(self) -> None:
        stop_processes(self._processes)
        for log_file in self._logs:
            log_file.close()


def stop_processes(processes: Sequence[subprocess.Popen[bytes]]) -> None:
    """Terminates processes, signalling twice before killing.

    ffmpeg blocked on a network read ignores the first SIGTERM once it is running; a
    second signal interrupts the read and it exits with what it has written.
    """
    for attempt_s in (TERM_RETRY_S, STOP_TIMEOUT_S):
        alive = [p for p in processes if p.poll() is None]
        for process in alive:
            with suppress(ProcessLookupError):
                process.terminate()
        deadline = time.monotonic() + attempt_s
        for process in alive:
            with suppress(subprocess.TimeoutExpired):
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait()


def stop_server(process: subprocess.Popen[bytes]) -> None:
    """Stops a server and every process under it (an nginx worker outlives a killed master)."""
    try:
        root = psutil.Process(process.pid)
        tree = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        tree = []
    stop_processes([process])
    _gone, alive = psutil.wait_procs(tree, timeout=STOP_TIMEOUT_S)
    for leftover in alive:
        with suppress(psutil.NoSuchProcess):
            leftover.kill()


class ProcessTree:
    """CPU time and memory of a server: its main process and all its descendants."""

    def __init__(self, pid: int) -> None:
        self._root = psutil.Process(pid)
        self._known: dict[int, psutil.Process] = {}
        # A process that exits keeps counting with the last CPU time seen for it.
        self._cpu_seen: dict[int, float] = {}

    def _processes(self) -> list[psutil.Process]:
        try:
            current = [self._root, *self._root.children(recursive=True)]
        except psutil.NoSuchProcess:
            current = []
        for process in current:
            self._known.setdefault(process.pid, process)
        return [self._known[p.pid] for p in current]

    def cpu_seconds(self) -> float:
        for process in self._processes():
            with suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                times = process.cpu_times()
                self._cpu_seen[process.pid] = times.user + times.system
        return sum(self._cpu_seen.values())

    def rss_bytes(self) -> int:
        total = 0
        for process in self._processes():
            with suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                total += process.memory_info().rss
        return total


class MachineCpu:
    """Whole-machine busy share over a window, to tell when the clients saturate it."""

    def __init__(self) -> None:
        self._start = psutil.cpu_times()

    def busy_pct(self) -> float:
        end = psutil.cpu_times()
        total = sum(end) - sum(self._start)
        idle = (end.idle - self._start.idle) + (
            getattr(end, "iowait", 0.0) - getattr(self._start, "iowait", 0.0)
        )
        return 100.0 * (1.0 - idle / total) if total > 0 else 0.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_for_port(port: int, process: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BenchError(
                f"the server exited with {process.returncode} before listening\n{tail(log_path)}"
            )
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.settimeout(1.0)
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(POLL_S)
    raise BenchError(
        f"the server did not listen on port {port} within {SERVER_START_TIMEOUT_S:.0f} s"
    )


def tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace").strip()
    except OSError:
        return f"({path} unreadable)"
    return "\n".join(f"  | {line}" for line in text.splitlines()[-lines:]) or f"  ({path} is empty)"


# --- servers ---------------------------------------------------------------------------


def nginx_conf(
    run_dir: Path, module: str, port: int, streams: int, hls_http_port: int | None = None
) -> str:
    """nginx-rtmp's configuration; with an HTTP port, it also writes and serves HLS."""
    # play_restart sends NetStream.Play.Stop when the publisher leaves: without it,
    # nginx-rtmp keeps a player waiting for the next publisher and ffmpeg never ends.
    hls = hls_http_port is not None
    return f"""# generated by bench/ingest.py
load_module {module};
daemon off;
master_process on;
worker_processes 1;
{_nginx_user() if hls else ""}error_log {run_dir / "error.log"} warn;
pid {run_dir / "nginx.pid"};
events {{ worker_connections {max(1024, 4 * streams)}; }}
rtmp {{
    server {{
        listen 127.0.0.1:{port};
        application stream {{
            live on;
            play_restart on;
{_nginx_hls_application(run_dir) if hls else ""}        }}
    }}
}}
{_nginx_hls_http(run_dir, hls_http_port) if hls_http_port is not None else ""}"""


def _nginx_user() -> str:
    # Run as root, nginx starts its worker as `nobody`, which cannot write the HLS files
    # under run_dir; as anyone else the directive is ignored (and not needed).
    return "user root;\n" if os.geteuid() == 0 else ""


def _nginx_hls_application(run_dir: Path) -> str:
    # The same segments as lpms's: cut at the first keyframe after HLS_SEGMENT_S, and a
    # live playlist of HLS_WINDOW of them.
    return f"""            hls on;
            hls_path {run_dir / "hls"};
            hls_fragment {HLS_SEGMENT_S}s;
            hls_playlist_length {HLS_SEGMENT_S * HLS_WINDOW}s;
"""


def _nginx_hls_http(run_dir: Path, port: int) -> str:
    # log_not_found off: the playlist is polled (404) until its first segment is written.
    # The temporary paths nginx was built with are outside run_dir (/var/lib/nginx on
    # Debian), where a user other than root cannot create them; none is used here.
    temp = run_dir / "temp"
    temp_paths = "".join(
        f"    {kind}_temp_path {temp / kind};\n"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return f"""http {{
    access_log off;
{temp_paths}    server {{
        listen 127.0.0.1:{port};
        location /hls/ {{
            alias {run_dir / "hls"}/;
            types {{ application/vnd.apple.mpegurl m3u8; video/mp2t ts; }}
            add_header Cache-Control no-cache;
            add_header Access-Control-Allow-Origin *;  # for browser players
            log_not_found off;
        }}
    }}
}}
"""


@dataclass(frozen=True, slots=True)
class RunningServer:
    process: subprocess.Popen[bytes]
    rtmp_port: int
    log_path: Path
    # HLS mode: stream `stream/NAME`'s playlist is at PLAYLIST_BASE/NAME.m3u8.
    playlist_base: str | None
    # --players http-flv (lpms): stream `stream/NAME` is played from FLV_BASE/NAME.flv.
    flv_base: str | None = None

    def playlist_url(self, name: str) -> str | None:
        return None if self.playlist_base is None else f"{self.playlist_base}/{name}.m3u8"

    def play_url(self, name: str) -> str:
        """Where a player of stream `stream/NAME` reads it: RTMP, or HTTP-FLV."""
        if self.flv_base is not None:
            return f"{self.flv_base}/{name}.flv"
        return f"rtmp://127.0.0.1:{self.rtmp_port}/stream/{name}"


def start_server(
    name: str, config: BenchConfig, run_dir: Path, children: Children
) -> RunningServer:
    """Starts one server on free loopback ports and waits until it listens."""
    rtmp_port, http_port = free_port(), free_port()
    log_path = run_dir / "server.log"
    if name == "nginx":
        assert config.tools.nginx is not None
        assert config.tools.nginx_module is not None
        conf_path = run_dir / "nginx.conf"
        hls_http_port = http_port if config.hls else None
        conf_path.write_text(
            nginx_conf(run_dir, config.tools.nginx_module, rtmp_port, config.streams, hls_http_port)
        )
        (run_dir / "hls").mkdir()
        (run_dir / "temp").mkdir()  # nginx creates only the last component of a temp path
        command = [config.tools.nginx, "-p", str(run_dir), "-c", str(conf_path)]
        command += ["-e", str(run_dir / "error.log")]
        process = children.spawn(command, log_path)
        log_path = run_dir / "error.log"
        playlist_base = f"http://127.0.0.1:{http_port}/hls"
    else:
        command = [config.python, "-m", "lpms", "serve", "--host", "127.0.0.1"]
        command += ["--rtmp-port", str(rtmp_port), "--http-port", str(http_port)]
        if config.hls:
            command += ["--segment-duration", str(HLS_SEGMENT_S)]
            command += ["--hls-window", str(HLS_WINDOW)]
            if name == "lpms-ts":
                command += ["--hls-format", "ts"]
        else:
            command += ["--no-hls"]  # as nginx-rtmp: no HLS unless asked
        command += ["--event-loop", config.event_loop, "--log-level", "warning"]
        process = children.spawn(command, log_path, env=lpms_env(), cwd=run_dir)
        playlist_base = f"http://127.0.0.1:{http_port}/stream"
    wait_for_port(rtmp_port, process, log_path)
    flv = reads_http_flv(name, config)
    if not config.hls and not flv:
        return RunningServer(process, rtmp_port, log_path, playlist_base=None)
    wait_for_port(http_port, process, log_path)
    return RunningServer(
        process,
        rtmp_port,
        log_path,
        playlist_base if config.hls else None,
        flv_base=f"http://127.0.0.1:{http_port}/stream" if flv else None,
    )


# --- clients ---------------------------------------------------------------------------

CLIENT_FLAGS = ("-nostdin", "-hide_banner", "-loglevel", "error", "-nostats")


def publisher_command(
    ffmpeg: str, input_path: Path, duration_s: float, url: str, capture_path: Path
) -> list[str]:
    # The second output records every packet sent, for the players to be compared with.
    output = ("-t", f"{duration_s:g}", "-map", "0", "-c", "copy")
    return [
        *(ffmpeg, *CLIENT_FLAGS, "-re", "-stream_loop", "-1", "-i", str(input_path)),
        *(*output, "-f", "flv", url),
        *(*output, "-f", "framecrc", "-y", str(capture_path)),
    ]


def player_command(ffmpeg: str, url: str, capture_path: Path) -> list[str]:
    # framecrc writes one line per packet (stream, dts, pts, duration, size, checksum):
    # a cheap, exact record of what arrived. -copyinkf keeps frames before the first
    # keyframe; -flush_packets makes the record current while the player runs.
    return [
        *(ffmpeg, *CLIENT_FLAGS, "-i", url, "-map", "0", "-c", "copy", "-copyinkf"),
        *("-f", "framecrc", "-flush_packets", "1", "-y", str(capture_path)),
    ]


def start_player(player: Player, ffmpeg: str, children: Children, now: float) -> None:
    player.attempts += 1
    player.first_try_at = player.first_try_at or now
    player.started_at = now
    player.capture_path.unlink(missing_ok=True)
    player.process = children.spawn(
        player_command(ffmpeg, player.url, player.capture_path),
        player.log_path.with_suffix(f".{player.attempts}.log"),
    )


def has_packets(capture_path: Path) -> bool:
    try:
        with capture_path.open("rb") as capture:
            return any(line.strip() and not line.startswith(b"#") for line in capture)
    except OSError:
        return False


def parse_capture(capture_path: Path) -> Capture:
    """Reads a framecrc record: `#tb N: a/b` and `#media_type N: kind` headers, then
    `stream, dts, pts, duration, size, checksum[, side data]` per packet."""
    time_base: dict[int, float] = {}
    media_type: dict[int, str] = {}
    packets: dict[str, list[tuple[int, int, int]]] = {"video": [], "audio": []}
    try:
        lines = capture_path.read_text(errors="replace").splitlines()
    except OSError:
        lines = []
    for line in lines:
        if line.startswith(("#tb ", "#media_type ")):
            key, _, value = line[1:].partition(":")
            index = int(key.split()[1])
            if key.startswith("tb"):
                num, _, den = value.strip().partition("/")
                time_base[index] = int(num) / int(den)
            else:
                media_type[index] = value.strip()
        elif line.strip() and not line.startswith("#"):
            fields = line.split(",")
            kind = media_type.get(int(fields[0]), "other")
            if kind in packets:
                packets[kind].append((int(fields[1]), int(fields[4]), int(fields[5], 16)))
    index_of = {kind: index for index, kind in media_type.items()}
    tracks = {
        kind: _track(rows, time_base.get(index_of.get(kind, -1), 0.001))
        for kind, rows in packets.items()
    }
    return Capture(video=tracks["video"], audio=tracks["audio"])


def _track(rows: list[tuple[int, int, int]], time_base: float) -> Track:
    return Track(
        checksums=tuple(checksum for _dts, _size, checksum in rows),
        size_bytes=sum(size for _dts, size, _checksum in rows),
        duration_s=(rows[-1][0] - rows[0][0]) * time_base if rows else 0.0,
    )


def common_suffix(received: Sequence[int], published: Sequence[int]) -> int:
    """How many packets at the end of both records are the same."""
    count = 0
    for mine, theirs in zip(reversed(received), reversed(published), strict=False):
        if mine != theirs:
            break
        count += 1
    return count


def check_track(kind: str, received: Track, published: Track, minimum: int) -> list[str]:
    """A player's track must be the tail of the published one, and long enough."""
    got = len(received.checksums)
    reasons = [f"{got} {kind} frames < {minimum}"] if got < minimum else []
    same = common_suffix(received.checksums, published.checksums)
    if got and same == 0:
        reasons.append(f"the last {kind} frame received is not the last one published")
    elif same < got:
        reasons.append(
            f"{kind} differs from what was published {same} frames before the end "
            "(a frame missing, added or altered)"
        )
    return reasons


def judge_player(player: Player, publisher: Publisher, publish_end: float) -> PlayerResult:
    """Did this player get every packet from its join point to the end of the publish?"""
    received = parse_capture(player.capture_path)
    published = parse_capture(publisher.capture_path)
    started = player.started_at if player.started_at is not None else publish_end
    connected_s = max(0.0, publish_end - started)
    counted_s = max(0.0, connected_s - GOP_FRAMES / FPS - JOIN_ALLOWANCE_S)
    min_video = int(counted_s * FPS)
    min_audio = int(counted_s * AUDIO_RATE / AAC_FRAME_SAMPLES)
    exit_code = player.process.returncode if player.process is not None else None
    reasons = process_problems(player, publisher)
    reasons += check_track("video", received.video, published.video, min_video)
    reasons += check_track("audio", received.audio, published.audio, min_audio)
    join_s = None
    if player.joined_at is not None and player.first_try_at is not None:
        join_s = player.joined_at - player.first_try_at
    video = received.video
    video_mbps = 8e-6 * video.size_bytes / video.duration_s if video.duration_s else 0.0
    return PlayerResult(
        stream=player.stream,
        complete=not reasons,
        reason="; ".join(reasons) or "ok",
        attempts=player.attempts,
        exit_code=exit_code,
        connected_s=round(connected_s, 2),
        join_s=None if join_s is None else round(join_s, 2),
        video_frames=len(video.checksums),
        audio_frames=len(received.audio.checksums),
        min_video_frames=min_video,
        min_audio_frames=min_audio,
        published_video_frames=len(published.video.checksums),
        published_audio_frames=len(published.audio.checksums),
        video_mbps=round(video_mbps, 2),
    )


def process_problems(player: Player, publisher: Publisher) -> list[str]:
    reasons = []
    if publisher.process.returncode != 0:
        reasons.append(f"publisher exited with {publisher.process.returncode}")
    if player.process is None:
        reasons.append("never started")
    elif player.killed:
        reasons.append(f"still playing {PLAYER_GRACE_S:.0f} s after the publish ended")
    elif player.process.returncode != 0:
        reasons.append(f"player exited with {player.process.returncode}")
    if player.joined_at is None:
        reasons.append(f"no packet within {JOIN_TIMEOUT_S:.0f} s ({player.attempts} tries)")
    return reasons


# --- HLS playlists ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PlaylistPoll:
    first_playlist_s: float | None
    last_answer: str
    media_url: str | None = None  # the media playlist polled (a master's first variant)


class PlaylistWatcher:
    """Polls every stream's playlist until it lists a segment, from a thread of its own.

    Each stream is polled on its own schedule (an asyncio task), so the time measured
    does not depend on the main loop's pace or on how many streams are still waiting.
    """

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="playlist-watcher", daemon=True
        )
        self._thread.start()
        self._session = self._run(self._open_session())
        self._polls: dict[int, Future[PlaylistPoll]] = {}

    def _run(self, coroutine: Coroutine[Any, Any, _T]) -> _T:
        future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        return future.result(timeout=PLAYLIST_WATCHER_TIMEOUT_S)

    async def _open_session(self) -> aiohttp.ClientSession:
        timeout = aiohttp.ClientTimeout(total=PLAYLIST_REQUEST_TIMEOUT_S)
        return aiohttp.ClientSession(timeout=timeout)

    def watch(self, stream: int, url: str, started_at: float) -> None:
        """Starts timing `stream`'s first playlist from `started_at` (time.monotonic())."""
        self._polls[stream] = asyncio.run_coroutine_threadsafe(
            self._first_playlist(url, started_at), self._loop
        )

    def result(self, stream: int) -> PlaylistPoll:
        poll = self._polls.get(stream)
        if poll is None:
            return PlaylistPoll(None, "never polled")
        try:
            # Done by now, after a publish: a poll ends by PLAYLIST_TIMEOUT_S after its
            # publisher started, plus the request in flight.
            return poll.result(timeout=PLAYLIST_TIMEOUT_S + PLAYLIST_REQUEST_TIMEOUT_S)
        except (CancelledError, TimeoutError):
            return PlaylistPoll(None, "still polling")

    def fetch(self, url: str) -> tuple[bytes | None, str]:
        """One GET: the body when it answered 200, and what it answered."""
        return self._run(self._fetch(url))

    async def _first_playlist(self, url: str, started_at: float) -> PlaylistPoll:
        deadline = started_at + PLAYLIST_TIMEOUT_S
        answer = "not asked"
        while (asked_at := time.monotonic()) < deadline:
            body, answer = await self._fetch(url)
            if body is not None and b"#EXTINF" in body:
                return PlaylistPoll(round(time.monotonic() - started_at, 3), "ok", url)
            if body is not None and (variant := first_variant(url, body)) is not None:
                url = variant
                continue
            if body is not None:
                answer = "200 without #EXTINF"
            await asyncio.sleep(max(0.0, asked_at + PLAYLIST_POLL_S - time.monotonic()))
        return PlaylistPoll(None, answer)

    async def _fetch(self, url: str) -> tuple[bytes | None, str]:
        try:
            async with self._session.get(url) as response:
                body = await response.read()
                if response.status != 200:
                    return None, str(response.status)
                return body, "200"
        except (aiohttp.ClientError, TimeoutError) as error:
            # Expected until the server has a playlist; the last one is reported.
            return None, f"{type(error).__name__}: {error}".rstrip(": ")

    async def _shutdown(self) -> None:
        current = asyncio.current_task()
        tasks = [task for task in asyncio.all_tasks() if task is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._session.close()

    def close(self) -> None:
        try:
            self._run(self._shutdown())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=PLAYLIST_WATCHER_TIMEOUT_S)
            if not self._thread.is_alive():
                self._loop.close()


def first_variant(url: str, body: bytes) -> str | None:
    """A master playlist's first variant, as an absolute URL; None for a media playlist."""
    lines = body.decode(errors="replace").splitlines()
    for index, line in enumerate(lines):
        if line.startswith("#EXT-X-STREAM-INF"):
            for uri in lines[index + 1 :]:
                if uri.strip() and not uri.startswith("#"):
                    return urljoin(url, uri.strip())
    return None


def judge_playlists(
    name: str, server: RunningServer, watcher: PlaylistWatcher, streams: int
) -> tuple[PlaylistResult, ...]:
    """First-playlist times, and (for a server that ends them) EXT-X-ENDLIST at the end."""
    results = []
    for stream in range(streams):
        url = server.playlist_url(stream_name(stream))
        assert url is not None
        poll = watcher.result(stream)
        ended = None
        if name in SERVERS_ENDING_PLAYLISTS:
            body, _answer = watcher.fetch(poll.media_url or url)
            ended = body is not None and b"#EXT-X-ENDLIST" in body
        results.append(
            PlaylistResult(
                stream=stream,
                url=url,
                first_playlist_s=poll.first_playlist_s,
                last_answer=poll.last_answer,
                ended=ended,
            )
        )
    return tuple(results)


# --- one server's run ------------------------------------------------------------------


@dataclass(slots=True)
class Measurement:
    """The server's CPU over the steady-state window and its peak memory over the run."""

    tree: ProcessTree
    window_opens_at: float | None = None
    window_closes_at: float = 0.0
    opened_at: float | None = None
    closed_at: float | None = None
    cpu_at_open: float = 0.0
    cpu_at_close: float = 0.0
    machine: MachineCpu | None = None
    machine_busy_pct: float | None = None
    peak_rss: int = 0
    next_rss_at: float = 0.0
    idle_rss: int | None = None
    window_rss: list[int] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def sample_idle(self) -> None:
        """The server's RSS before any publisher: what each stream's growth is over."""
        self.idle_rss = self.tree.rss_bytes()
        self.peak_rss = max(self.peak_rss, self.idle_rss)

    def sample(self, now: float) -> None:
        if now >= self.next_rss_at:
            rss = self.tree.rss_bytes()
            self.peak_rss = max(self.peak_rss, rss)
            if self.opened_at is not None and self.closed_at is None:
                self.window_rss.append(rss)
            self.next_rss_at = now + RSS_SAMPLE_S
        opens_at = self.window_opens_at
        if (
            self.opened_at is None
            and opens_at is not None
            and opens_at <= now < self.window_closes_at
        ):
            self.opened_at = now
            self.cpu_at_open = self.tree.cpu_seconds()
            self.machine = MachineCpu()
        if self.opened_at is not None and self.closed_at is None and now >= self.window_closes_at:
            self.closed_at = now
            self.cpu_at_close = self.tree.cpu_seconds()
            self.machine_busy_pct = self.machine.busy_pct() if self.machine else None

    def cpu_pct(self) -> float | None:
        if self.opened_at is None or self.closed_at is None:
            return None
        return 100.0 * (self.cpu_at_close - self.cpu_at_open) / (self.closed_at - self.opened_at)

    def window_s(self) -> float:
        if self.opened_at is None or self.closed_at is None:
            return 0.0
        return self.closed_at - self.opened_at

    def steady_rss(self) -> float | None:
        """The median RSS over the steady-state window (every stream live)."""
        return statistics.median(self.window_rss) if self.window_rss else None


def run_server(name: str, config: BenchConfig) -> ServerResult:
    run_dir = OUT_DIR / "-".join(
        ["run", name]
        + (["hls"] if config.hls else [])
        + (["http-flv"] if reads_http_flv(name, config) else [])
    )
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    children = Children()
    server: RunningServer | None = None
    watcher = PlaylistWatcher() if config.hls else None
    try:
        server = start_server(name, config, run_dir, children)
        log(
            f"{name}: listening on 127.0.0.1:{server.rtmp_port}; "
            f"{config.streams} publishers starting"
        )
        measurement = Measurement(tree=ProcessTree(server.process.pid))
        time.sleep(IDLE_SETTLE_S)
        measurement.sample_idle()
        publishers, players = start_clients(config, server, run_dir, children, measurement, watcher)
        drive_clients(name, config, server.process, publishers, players, children, measurement)
        playlists: tuple[PlaylistResult, ...] = ()
        if watcher is not None:
            playlists = judge_playlists(name, server, watcher, config.streams)
        result = summarize(name, config, publishers, players, measurement, playlists)
        if server.process.poll() is not None:
            result = _with_error(
                result, f"the server exited with {server.process.returncode}", server.log_path
            )
        return result
    except BenchError as error:
        return _failed(name, config, str(error))
    finally:
        if server is not None:
            stop_server(server.process)
        if watcher is not None:
            watcher.close()
        children.close()


def _failed(name: str, config: BenchConfig, error: str) -> ServerResult:
    return ServerResult(
        server=name,
        streams=config.streams,
        cpu_pct_total=None,
        cpu_pct_per_stream=None,
        peak_rss_mib=0.0,
        window_s=0.0,
        machine_busy_pct=None,
        players_complete=0,
        players=(),
        error=error,
        hls=config.hls,
    )


def _with_error(result: ServerResult, error: str, log_path: Path) -> ServerResult:
    return replace(result, error=f"{error}\n{tail(log_path)}")


def stream_name(stream: int) -> str:
    return f"bench{stream}"


def start_clients(
    config: BenchConfig,
    server: RunningServer,
    run_dir: Path,
    children: Children,
    measurement: Measurement,
    watcher: PlaylistWatcher | None,
) -> tuple[list[Publisher], list[Player]]:
    publishers: list[Publisher] = []
    players: list[Player] = []
    for stream in range(config.streams):
        url = f"rtmp://127.0.0.1:{server.rtmp_port}/stream/{stream_name(stream)}"
        record = run_dir / f"publisher-{stream:02d}.crc"
        command = publisher_command(
            config.tools.ffmpeg, config.input_path, config.duration_s, url, record
        )
        process = children.spawn(command, record.with_suffix(".log"))
        now = time.monotonic()
        publishers.append(Publisher(stream, process, record, started_at=now))
        playlist_url = server.playlist_url(stream_name(stream))
        if watcher is not None and playlist_url is not None:
            watcher.watch(stream, playlist_url, started_at=now)
        players.append(
            Player(
                stream=stream,
                url=server.play_url(stream_name(stream)),
                capture_path=run_dir / f"player-{stream:02d}.crc",
                log_path=run_dir / f"player-{stream:02d}.log",
                not_before=now + JOIN_DELAY_S,
            )
        )
        measurement.sample(now)
        time.sleep(PUBLISHER_STAGGER_S)
    first_stop = min(p.started_at for p in publishers) + config.duration_s
    measurement.window_closes_at = first_stop - WINDOW_END_MARGIN_S
    return publishers, players


def drive_clients(
    name: str,
    config: BenchConfig,
    server: subprocess.Popen[bytes],
    publishers: list[Publisher],
    players: list[Player],
    children: Children,
    measurement: Measurement,
) -> None:
    """Starts and retries players, opens and closes the CPU window, waits for the end."""
    hard_deadline = time.monotonic() + config.duration_s + JOIN_TIMEOUT_S + 3 * PLAYER_GRACE_S
    all_joined_logged = False
    while time.monotonic() < hard_deadline:
        now = time.monotonic()
        if server.poll() is not None:
            raise BenchError(f"{name} exited with {server.returncode} during the run")
        for publisher in publishers:
            if publisher.ended_at is None and publisher.process.poll() is not None:
                publisher.ended_at = now
        publishing = {p.stream for p in publishers if p.ended_at is None}
        for player in players:
            step_player(player, config.tools.ffmpeg, children, now, player.stream in publishing)
        if measurement.window_opens_at is None and _joined_or_given_up(players, now):
            measurement.window_opens_at = now + SETTLE_S
            if not all_joined_logged:
                joined = sum(p.joined_at is not None for p in players)
                log(f"{name}: {joined}/{len(players)} players receiving; measuring")
                all_joined_logged = True
        measurement.sample(now)
        if not publishing:
            last_end = max(p.ended_at or now for p in publishers)
            for player in players:
                _stop_overdue(player, now, last_end)
            if all(p.process is None or p.process.poll() is not None for p in players):
                for player in players:
                    player.ended_at = player.ended_at or now
                return
        time.sleep(POLL_S)
    raise BenchError(f"{name}: the run did not finish in time")


def step_player(
    player: Player, ffmpeg: str, children: Children, now: float, publishing: bool
) -> None:
    process = player.process
    if process is None:
        if now >= player.not_before and publishing:
            start_player(player, ffmpeg, children, now)
        return
    if player.joined_at is None and has_packets(player.capture_path):
        player.joined_at = now
    if process.poll() is None or player.joined_at is not None:
        return
    # Ended before its first packet: the play was refused (an lpms player must come after
    # its publisher) or failed; try again, within bounds, while the stream is live.
    if player.ended_at is None:
        player.ended_at = now
    retry_at = player.ended_at + PLAY_RETRY_S
    in_time = player.first_try_at is not None and now - player.first_try_at < JOIN_TIMEOUT_S
    if publishing and in_time and now >= retry_at:
        player.ended_at = None
        start_player(player, ffmpeg, children, now)


def _joined_or_given_up(players: list[Player], now: float) -> bool:
    return all(
        p.joined_at is not None
        or (p.first_try_at is not None and now - p.first_try_at >= JOIN_TIMEOUT_S)
        for p in players
    )


def _stop_overdue(player: Player, now: float, publish_end: float) -> None:
    """A player still running long after the publish ended never saw the end of stream."""
    process = player.process
    if process is not None and process.poll() is None and now - publish_end > PLAYER_GRACE_S:
        player.killed = True
        stop_processes([process])


def summarize(
    name: str,
    config: BenchConfig,
    publishers: list[Publisher],
    players: list[Player],
    measurement: Measurement,
    playlists: tuple[PlaylistResult, ...] = (),
) -> ServerResult:
    results = []
    for publisher, player in zip(publishers, players, strict=True):
        # The nominal end: a publisher may take a moment longer to exit than to send.
        publish_end = publisher.started_at + config.duration_s
        results.append(judge_player(player, publisher, publish_end))
    cpu_pct = measurement.cpu_pct()
    error = None
    if cpu_pct is None:
        error = "no steady-state window: players never joined, or --duration is too short"
    return ServerResult(
        server=name,
        streams=config.streams,
        cpu_pct_total=None if cpu_pct is None else round(cpu_pct, 2),
        cpu_pct_per_stream=None if cpu_pct is None else round(cpu_pct / config.streams, 3),
        peak_rss_mib=round(measurement.peak_rss / 2**20, 1),
        window_s=round(measurement.window_s(), 1),
        machine_busy_pct=(
            None if measurement.machine_busy_pct is None else round(measurement.machine_busy_pct, 1)
        ),
        players_complete=sum(r.complete for r in results),
        players=tuple(results),
        error=error,
        hls=config.hls,
        **playlist_figures(playlists),
        **rss_figures(measurement, config.streams),
    )


def rss_figures(measurement: Measurement, streams: int) -> dict[str, Any]:
    """ServerResult's memory fields: idle, steady and the growth per stream, in MiB."""
    mib = float(2**20)
    idle, steady = measurement.idle_rss, measurement.steady_rss()
    figures: dict[str, Any] = {
        "idle_rss_mib": None if idle is None else round(idle / mib, 1),
        "steady_rss_mib": None if steady is None else round(steady / mib, 1),
    }
    if idle is not None:
        figures["peak_rss_growth_per_stream_mib"] = round(
            (measurement.peak_rss - idle) / mib / streams, 2
        )
        if steady is not None:
            figures["rss_growth_per_stream_mib"] = round((steady - idle) / mib / streams, 2)
    return figures


def playlist_figures(playlists: tuple[PlaylistResult, ...]) -> dict[str, Any]:
    """ServerResult's HLS fields: first-playlist median and max over the streams that got one."""
    times = [p.first_playlist_s for p in playlists if p.first_playlist_s is not None]
    checked = [p.ended for p in playlists if p.ended is not None]
    return {
        "first_playlist_median_s": round(statistics.median(times), 2) if times else None,
        "first_playlist_max_s": round(max(times), 2) if times else None,
        "playlists_listed": len(times),
        "playlists_ended": sum(checked) if checked else None,
        "playlists": playlists,
    }


# --- report ----------------------------------------------------------------------------


def ratio(
    results: dict[str, ServerResult], key: str, over: str = "lpms", under: str = "nginx"
) -> float | None:
    """``over``'s figure ``key`` by ``under``'s, where both ran and measured it."""
    lpms, nginx = results.get(over), results.get(under)
    if lpms is None or nginx is None:
        return None
    numerator, denominator = getattr(lpms, key), getattr(nginx, key)
    if numerator is None or not denominator:
        return None
    return float(numerator) / float(denominator)


TABLE_HEADER = (
    "server",
    "streams",
    "CPU %/stream",
    "CPU % total",
    "idle RSS MiB",
    "steady RSS MiB",
    "peak RSS MiB",
    "MiB/stream",
    "complete",
    "window s",
    "machine busy %",
)
HLS_TABLE_HEADER = ("1st playlist med s", "1st playlist max s", "ENDLIST")


def table_row(result: ServerResult) -> list[str]:
    row = [
        result.server,
        str(result.streams),
        _fmt(result.cpu_pct_per_stream, 2),
        _fmt(result.cpu_pct_total, 1),
        _fmt(result.idle_rss_mib, 1),
        _fmt(result.steady_rss_mib, 1),
        f"{result.peak_rss_mib:.1f}",
        _fmt(result.rss_growth_per_stream_mib, 2),
        f"{result.players_complete}/{result.streams}",
        f"{result.window_s:.1f}",
        _fmt(result.machine_busy_pct, 0),
    ]
    if result.hls:
        ended = result.playlists_ended
        row += [
            _fmt(result.first_playlist_median_s, 2),
            _fmt(result.first_playlist_max_s, 2),
            "-" if ended is None else f"{ended}/{result.streams}",
        ]
    return row


def mode_line(config: BenchConfig) -> str:
    run = f"{config.streams} streams, {config.duration_s:g} s, lpms event loop {config.event_loop}"
    relay = "RTMP relay"
    if config.players == "http-flv":
        relay = "RTMP in, HTTP-FLV players on lpms, RTMP players on nginx"
    if not config.hls:
        return f"mode: {relay}, no HLS ({run})"
    return f"mode: {relay} + HLS, {HLS_SEGMENT_S} s segments, {HLS_WINDOW} in a playlist ({run})"


def print_table(config: BenchConfig, results: dict[str, ServerResult], cpu_target: float) -> None:
    header = [*TABLE_HEADER, *(HLS_TABLE_HEADER if config.hls else ())]
    rows = [header, *(table_row(r) for r in results.values())]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    print(mode_line(config))
    for row in rows:
        cells = [row[0].ljust(widths[0])]
        cells += [cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True)]
        print("  ".join(cells))
    cpu_ratio, rss_ratio = ratio(results, "cpu_pct_per_stream"), ratio(results, "peak_rss_mib")
    if cpu_ratio is not None:
        print(f"lpms/nginx CPU per stream: {cpu_ratio:.2f}x (target <= {cpu_target:.1f}x)")
    if rss_ratio is not None:
        print(f"lpms/nginx peak RSS: {rss_ratio:.2f}x")
    format_ratio = ratio(results, "cpu_pct_per_stream", under="lpms-ts")
    if format_ratio is not None:
        print(f"lpms (LL-HLS, CMAF)/lpms-ts (MPEG-TS) CPU per stream: {format_ratio:.2f}x")
    print_memory(config, results)
    playlist_ratio = ratio(results, "first_playlist_median_s")
    if config.hls and playlist_ratio is not None:
        print(f"lpms/nginx first playlist median: {playlist_ratio:.2f}x (target <= 1.0x)")
    for result in results.values():
        print_problems(result)


def print_memory(config: BenchConfig, results: dict[str, ServerResult]) -> None:
    """What one more live stream costs each server in RSS, and their ratio."""
    for result in results.values():
        growth, peak = result.rss_growth_per_stream_mib, result.peak_rss_growth_per_stream_mib
        if growth is None:
            continue
        line = (
            f"{result.server} RSS growth over idle per live stream: {growth:.2f} MiB "
            f"(steady {_fmt(result.steady_rss_mib, 1)} - idle {_fmt(result.idle_rss_mib, 1)} "
            f"MiB over {result.streams}; from the peak {_fmt(peak, 2)} MiB)"
        )
        if config.hls and result.server == "lpms":
            line += f" (target <= {RSS_PER_STREAM_TARGET_HLS_MIB:.1f} MiB)"
        print(line)
    growth_ratio = ratio(results, "rss_growth_per_stream_mib")
    if growth_ratio is not None:
        print(f"lpms/nginx RSS growth per stream: {growth_ratio:.2f}x")


def print_problems(result: ServerResult) -> None:
    if result.error:
        print(f"{result.server}: {result.error}")
    for player in result.players:
        if not player.complete:
            print(f"{result.server} stream {player.stream}: {player.reason}")
    for playlist in result.playlists:
        if playlist.first_playlist_s is None:
            print(
                f"{result.server} stream {playlist.stream}: no playlist listing a segment "
                f"within {PLAYLIST_TIMEOUT_S:.0f} s at {playlist.url} "
                f"(last answer: {playlist.last_answer})"
            )
        if playlist.ended is False:
            print(
                f"{result.server} stream {playlist.stream}: the playlist has no "
                "EXT-X-ENDLIST after the publish ended"
            )
    if result.machine_busy_pct is not None and result.machine_busy_pct > SATURATED_PCT:
        print(
            f"{result.server}: the machine was {result.machine_busy_pct:.0f}% busy; "
            "the server may have been starved of CPU"
        )


def _fmt(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def report_json(config: BenchConfig, results: dict[str, ServerResult], cpu_target: float) -> str:
    return json.dumps(
        {
            "streams": config.streams,
            "duration_s": config.duration_s,
            "input": {
                "path": str(config.input_path),
                "fps": FPS,
                "gop_frames": GOP_FRAMES,
                "video_kbps": VIDEO_KBPS,
                "audio_kbps": AUDIO_KBPS,
            },
            "cpus": psutil.cpu_count(),
            "mode": "hls" if config.hls else "relay",
            "players": config.players,
            "hls": (
                {
                    "segment_duration_s": HLS_SEGMENT_S,
                    "window_segments": HLS_WINDOW,
                    "poll_s": PLAYLIST_POLL_S,
                    "timeout_s": PLAYLIST_TIMEOUT_S,
                }
                if config.hls
                else None
            ),
            "servers": {name: {**asdict(r), "ok": r.ok} for name, r in results.items()},
            "ratios": {
                "cpu_per_stream": ratio(results, "cpu_pct_per_stream"),
                "peak_rss": ratio(results, "peak_rss_mib"),
                "rss_growth_per_stream": ratio(results, "rss_growth_per_stream_mib"),
                "first_playlist_median": ratio(results, "first_playlist_median_s"),
            },
            "cpu_ratio_target": cpu_target,
            "first_playlist_ratio_target": 1.0 if config.hls else None,
            "lpms_rss_growth_per_stream_target_mib": (
                RSS_PER_STREAM_TARGET_HLS_MIB if config.hls else None
            ),
            "ok": all(r.ok for r in results.values()),
        },
        indent=2,
    )


def done_line(result: ServerResult) -> str:
    line = f"{result.server}: done, {result.players_complete}/{result.streams} complete"
    if result.hls:
        line += (
            f", {result.playlists_listed}/{result.streams} playlists, first playlist median "
            f"{_fmt(result.first_playlist_median_s, 2)} s"
        )
    return line


def log(message: str) -> None:
    print(f"[ingest] {message}", file=sys.stderr, flush=True)


# --- main ------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=16, help="publishers (and players)")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds each publishes")
    parser.add_argument(
        "--servers",
        default="lpms,nginx",
        help="comma-separated, run in this order: lpms, nginx (default: lpms,nginx)",
    )
    parser.add_argument("--python", default=sys.executable, help="interpreter that runs lpms")
    parser.add_argument("--nginx", help="nginx binary (default: found on PATH or in /usr/sbin)")
    parser.add_argument("--nginx-module", help="path of ngx_rtmp_module.so")
    parser.add_argument(
        "--hls",
        action="store_true",
        help=f"both servers also serve HLS ({HLS_SEGMENT_S} s segments); times the first playlist",
    )
    parser.add_argument(
        "--players",
        choices=PLAYER_KINDS,
        default="rtmp",
        help="what lpms's players read: rtmp (default) or http-flv (/stream/NAME.flv, the same "
        "ffmpeg client); nginx-rtmp's players read RTMP either way",
    )
    parser.add_argument(
        "--cpu-target",
        type=float,
        help=f"lpms/nginx CPU target (default {CPU_TARGET_RELAY:g}, with --hls {CPU_TARGET_HLS:g}, "
        f"with --players http-flv {CPU_TARGET_HTTP_FLV:g})",
    )
    parser.add_argument(
        "--event-loop",
        choices=("asyncio", "uvloop", "auto"),
        default="asyncio",
        help="lpms serve's --event-loop (default asyncio, as lpms serve's own)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="run every server this many times, alternating the order; the table shows "
        "each server's median run",
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    servers = tuple(s.strip() for s in args.servers.split(",") if s.strip())
    unknown = set(servers) - set(SERVER_NAMES)
    if not servers or unknown or len(set(servers)) != len(servers):
        parser.error(f"--servers takes a list of {', '.join(SERVER_NAMES)}")
    if args.streams < 1:
        parser.error("--streams must be at least 1")
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if args.duration < MIN_DURATION_S:
        parser.error(f"--duration must be at least {MIN_DURATION_S:.0f} s")
    args.servers = servers
    if args.cpu_target is None:
        args.cpu_target = CPU_TARGET_HLS if args.hls else CPU_TARGET_RELAY
        if args.players == "http-flv":
            args.cpu_target = CPU_TARGET_HTTP_FLV
    return args


@contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM unwinds like Ctrl-C, so that every server and client is cleaned up."""

    def interrupt(_signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        tools = find_tools(args.servers, args.nginx, args.nginx_module)
        if any(name.startswith("lpms") for name in args.servers):
            check_lpms(args.python)
    except MissingTool as error:
        print(f"ingest: {error}", file=sys.stderr)
        if "lpms" not in str(error):
            print(f"install them with: {APT_HINT}", file=sys.stderr)
        return 2
    results: dict[str, ServerResult] = {}
    with terminate_as_interrupt():
        try:
            config = BenchConfig(
                streams=args.streams,
                duration_s=args.duration,
                servers=args.servers,
                python=args.python,
                tools=tools,
                input_path=ensure_input(tools.ffmpeg),
                hls=args.hls,
                event_loop=args.event_loop,
                players=args.players,
            )
            rounds: dict[str, list[ServerResult]] = {name: [] for name in config.servers}
            for round_index in range(args.rounds):
                # Every other round the other way round: a machine that grows busier
                # (or quieter) through a run weighs on both servers alike.
                order = config.servers if round_index % 2 == 0 else config.servers[::-1]
                for name in order:
                    result = run_server(name, config)
                    rounds[name].append(result)
                    log(done_line(result))
            results = {name: median_run(runs) for name, runs in rounds.items()}
        except KeyboardInterrupt:
            print("ingest: interrupted; servers and clients stopped", file=sys.stderr)
            return 130
        except BenchError as error:
            print(f"ingest: {error}", file=sys.stderr)
            return 1
    if args.json:
        print(report_json(config, results, args.cpu_target))
    else:
        print_table(config, results, args.cpu_target)
        if args.rounds > 1:
            print_rounds(rounds)
    every_run = [run for runs in rounds.values() for run in runs]
    return 0 if all(r.ok for r in every_run) else 1


def median_run(runs: list[ServerResult]) -> ServerResult:
    """The run whose CPU per stream is the median of a server's rounds (the lower
    middle one for an even count): its figures stand for the server in the table."""
    ranked = sorted(runs, key=lambda r: r.cpu_pct_per_stream or 0.0)
    return ranked[(len(ranked) - 1) // 2]


def print_rounds(rounds: dict[str, list[ServerResult]]) -> None:
    """Each round's CPU per stream, so the spread behind the median is on record."""
    for name, runs in rounds.items():
        figures = ", ".join(_fmt(r.cpu_pct_per_stream, 2) for r in runs)
        print(f"{name} CPU %/stream by round: {figures} (the table shows the median)")
    lpms, nginx = rounds.get("lpms"), rounds.get("nginx")
    if lpms and nginx:
        ratios = [
            f"{a.cpu_pct_per_stream / b.cpu_pct_per_stream:.2f}x"
            for a, b in zip(lpms, nginx, strict=True)
            if a.cpu_pct_per_stream and b.cpu_pct_per_stream
        ]
        print(f"lpms/nginx CPU per stream by round: {', '.join(ratios)}")


if __name__ == "__main__":
    sys.exit(main())
