#!/usr/bin/env python3
"""Transcoding on Ray: what the Ray engine costs over the local one, in one run.

Two parts, on the same 720p30 H.264 + AAC input (generated with the ffmpeg CLI) and
the same ladder (by default P360p30fps16x9, P240p30fps16x9, P144p30fps16x9):

1. **Per segment, live.** The input's 2 s MPEG-TS segments go one at a time, in
   order, as a live stream's do, to a `LocalEngine` session and to a Ray engine
   session (`RayEngineHost`: its driver process and one actor, on a private Ray
   runtime by default, or the cluster at ``--ray-address``), alternating which gets
   each segment first so that drift in the machine's load falls on both. After the
   warm-up segments (the actor's start), it prints the median and p95 of the round
   trip each way, of the paired difference (Ray less local, the target: at most
   3 % of the segment duration), and of each engine's own reported overhead (its
   round trip less the transcoding, from `EngineObserver.engine_call`).
2. **A whole file.** A loopback Ray cluster of a head and two worker nodes of one CPU
   each (`scripts/ray_cluster.py`), ``lpms transcode --engine ray`` on it against
   ``lpms transcode --engine local`` and one ffmpeg CLI process making the same
   ladder (a split filter graph, libx264 veryfast, the profiles' bitrates, the
   source's keyframes), each a child process timed from start to exit, over
   ``--rounds`` rounds in alternating order. On one 2-core machine this shows
   Ray's overhead, not its scale.

Every Ray socket must stay on loopback: the processes this run starts are sampled
with psutil while Ray is up and any socket listening on another address is named.
Every process the run starts is stopped before it exits (never ``ray stop``: other
clusters may run on the machine).

Exit status: 0 (with --check: 0 when the overhead target is met and every socket
was on loopback, 1 otherwise), 1 when a part could not be run, 2 when a tool is
missing, 130 when interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import math
import os
import re
import secrets
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

try:
    import av
    import psutil  # type: ignore[import-untyped]  # no types-psutil in the dev venv

    from lpms.errors import TranscodeError
    from lpms.hls.segmenter import Segment
    from lpms.transcode.engines import Engine, EngineFailure, FailureReason, SegmentTranscoder
    from lpms.transcode.engines.local import LocalEngine
    from lpms.transcode.engines.ray import RayEngineHost
    from lpms.transcode.profiles import VideoProfile, parse_profiles
    from lpms.transcode.settings import Accel, TranscodeSettings
    from transcode import (
        BenchError,
        MissingTool,
        Rung,
        Source,
        Way,
        cut_segments,
        ffmpeg_run,
        ffmpeg_way,
        find_ffmpeg,
        ladder,
        lpms_command,
        lpms_env,
        print_table,
        probe_source,
        segment_timing,
        tail,
    )
except ImportError as missing:  # pragma: no cover - only outside the dev environment
    print(f"bench/distributed.py needs {missing.name}: run `make dev`", file=sys.stderr)
    sys.exit(2)

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
CLUSTER_SCRIPT = REPO_DIR / "scripts" / "ray_cluster.py"

# The test input: a 720p30 contribution stream, a keyframe every 2 s (where it is cut).
FPS = 30
GOP_FRAMES = 2 * FPS
VIDEO_KBPS = 3000
AUDIO_KBPS = 128
AUDIO_RATE = 48000
SEGMENT_S = 2
PRESET = "veryfast"

DEFAULT_SECONDS = 60
DEFAULT_PROFILES = "P360p30fps16x9,P240p30fps16x9,P144p30fps16x9"
DEFAULT_WARMUP = 2
DEFAULT_ROUNDS = 3
DEFAULT_CHUNK_S = 10.0
CLUSTER_WORKERS = 2
CPUS_PER_WORKER = 1

OVERHEAD_TARGET = 0.03  # Ray less local round trip, as a share of the segment, at most

# Bounds: every wait of the run has one (a busy 2-core machine starts Ray slowly).
HOST_START_TIMEOUT_S = 120.0  # the Ray engine's driver and (private) runtime
CALL_TIMEOUT_S = 60.0  # one segment, either engine (the first Ray call starts the actor)
CLOSE_TIMEOUT_S = 30.0
CLUSTER_START_TIMEOUT_S = 180.0
CLUSTER_STOP_TIMEOUT_S = 30.0
CHILD_TIMEOUT_S = 300.0  # one `lpms transcode` or ffmpeg run
TOOL_TIMEOUT_S = 600.0  # making the input
SAMPLE_INTERVAL_S = 1.0  # socket sampling while a Ray run is going

START_TIME = datetime(2026, 1, 1, tzinfo=UTC)

FFMPEG, LOCAL, RAY = "ffmpeg", "local", "ray"

RAY_TOKEN_ENV = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
"""The cluster of part 2 has Ray's token authentication on, as ``ray start`` has by
default; ``lpms transcode`` is given the token as an operator would give it."""


# --- results ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Call:
    """One segment through one engine."""

    engine: Engine
    index: int  # the segment's place in the stream
    first: bool  # this engine had the segment before the other one
    round_trip_s: float  # from the call to its answer, as the live transcoder waits
    elapsed_s: float  # the transcoding itself (TranscodeResult.elapsed)
    overhead_s: float  # what the engine reported to its observer


@dataclass(slots=True)
class CallRecorder:
    """An `EngineObserver` that keeps what it is told."""

    overheads: dict[Engine, list[float]] = field(
        default_factory=lambda: {Engine.LOCAL: [], Engine.RAY: []}
    )
    failures: list[tuple[Engine, FailureReason]] = field(default_factory=list)
    recreated: int = 0

    def engine_call(self, engine: Engine, overhead: float) -> None:
        self.overheads[engine].append(overhead)

    def engine_failure(self, engine: Engine, reason: FailureReason) -> None:
        self.failures.append((engine, reason))

    def engine_recreated(self, engine: Engine) -> None:
        self.recreated += 1


@dataclass(frozen=True, slots=True)
class SegmentPart:
    """Part 1's measurements."""

    calls: tuple[Call, ...]
    warmup: int
    segments: int
    segment_s: float  # the median segment duration
    ray_address: str
    ray_info: dict[str, object]
    failures: tuple[tuple[Engine, FailureReason], ...]
    recreated: int

    def measured(self, engine: Engine) -> list[Call]:
        return [c for c in self.calls if c.engine is engine and c.index >= self.warmup]

    def differences(self) -> list[float]:
        """Ray less local round trip, per segment both engines answered."""
        local = {c.index: c for c in self.measured(Engine.LOCAL)}
        ray = {c.index: c for c in self.measured(Engine.RAY)}
        return [ray[i].round_trip_s - local[i].round_trip_s for i in sorted(local) if i in ray]


@dataclass(frozen=True, slots=True)
class FileRun:
    way: str
    wall_s: float
    working_s: float | None  # what `lpms transcode` reports ("in X s"): wall less start-up


@dataclass(frozen=True, slots=True)
class OutputFrames:
    way: str
    profile: str
    frames: int  # video packets in its output
    error: str | None


@dataclass(frozen=True, slots=True)
class FilePart:
    """Part 2's measurements."""

    labels: dict[str, str]
    runs: tuple[FileRun, ...]
    outputs: tuple[OutputFrames, ...]
    commands: dict[str, tuple[str, ...]]
    cluster: dict[str, object]

    def walls(self, way: str) -> list[float]:
        return [r.wall_s for r in self.runs if r.way == way]

    def median(self, way: str) -> float:
        return statistics.median(self.walls(way))


# --- sockets stay on loopback ----------------------------------------------------------


def is_loopback(host: str) -> bool:
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host == "localhost"
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


@dataclass(slots=True)
class SocketWatch:
    """Every process this run started (descendants of this one, and the cluster's
    process group), and every socket one of them listened on."""

    groups: set[int] = field(default_factory=set)
    seen: dict[int, tuple[float, str, bool]] = field(default_factory=dict)  # pid: made, name, ray
    listening: dict[tuple[int, str, int, str], str] = field(default_factory=dict)
    samples: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def processes(self) -> list[psutil.Process]:
        me = psutil.Process()
        found = {p.pid: p for p in me.children(recursive=True)}
        if self.groups:
            for proc in psutil.process_iter():
                with contextlib.suppress(psutil.Error, ProcessLookupError):
                    if proc.pid != me.pid and os.getpgid(proc.pid) in self.groups:
                        found.setdefault(proc.pid, proc)
        return list(found.values())

    def sample(self) -> None:
        with self._lock:
            self.samples += 1
            for proc in self.processes():
                with contextlib.suppress(psutil.Error):
                    self._note(proc)

    def _note(self, proc: psutil.Process) -> None:
        if proc.pid not in self.seen:
            command = " ".join(proc.cmdline()) or proc.name()
            ray = "ray" in command.lower() or proc.name() in ("raylet", "gcs_server")
            self.seen[proc.pid] = (proc.create_time(), proc.name(), ray)
        for conn in proc.net_connections(kind="inet"):
            listening = conn.status == psutil.CONN_LISTEN or (
                conn.type == socket.SOCK_DGRAM and not conn.raddr
            )
            if listening and conn.laddr:
                kind = "tcp" if conn.type == socket.SOCK_STREAM else "udp"
                key = (proc.pid, conn.laddr.ip, conn.laddr.port, kind)
                self.listening[key] = self.seen[proc.pid][1]

    def exposed(self) -> list[str]:
        return [
            f"{name} (pid {pid}) {kind} {host}:{port}"
            for (pid, host, port, kind), name in sorted(self.listening.items())
            if not is_loopback(host)
        ]

    def ray_processes(self) -> int:
        return sum(1 for _made, _name, ray in self.seen.values() if ray)

    def summary(self) -> str:
        exposed = self.exposed()
        counts = (
            f"{self.ray_processes()} Ray processes ({len(self.seen)} processes in all) "
            f"over {self.samples} samples, {len(self.listening)} listening sockets"
        )
        if not exposed:
            return f"loopback: {counts}, every one on loopback: OK"
        return f"loopback: {counts}; NOT on loopback: {'; '.join(exposed)}: FAIL"

    def kill_leftovers(self) -> int:
        """Kills every process it saw that still runs (the same process, by its
        start time), and says how many there were."""
        me = os.getpid()
        left: list[psutil.Process] = []
        for pid, (made, _name, _ray) in self.seen.items():
            with contextlib.suppress(psutil.Error):
                proc = psutil.Process(pid)
                if pid != me and proc.create_time() == made and proc.is_running():
                    left.append(proc)
        for proc in left:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        psutil.wait_procs(left, timeout=10)
        return len(left)


class Sampler:
    """Samples a `SocketWatch` on a thread of its own while a Ray run is going."""

    def __init__(self, watch: SocketWatch) -> None:
        self._watch = watch
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="socket-watch", daemon=True)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_INTERVAL_S):
            self._watch.sample()


# --- input -----------------------------------------------------------------------------


def make_input(ffmpeg: str, directory: Path, seconds: int) -> Path:
    """The 720p30 H.264 + AAC MPEG-TS test input, a keyframe every 2 s."""
    path = directory / f"input-720p{FPS}-{VIDEO_KBPS}k-gop{GOP_FRAMES}-{seconds}s.ts"
    log(f"encoding the test input ({seconds} s, 720p{FPS})")
    ffmpeg_run(
        ffmpeg,
        [
            *("-f", "lavfi", "-i", f"testsrc2=size=1280x720:rate={FPS}"),
            *("-f", "lavfi", "-i", f"sine=frequency=440:sample_rate={AUDIO_RATE}"),
            *("-t", str(seconds), "-c:v", "libx264", "-preset", PRESET),
            *("-b:v", f"{VIDEO_KBPS}k", "-g", str(GOP_FRAMES)),
            *("-keyint_min", str(GOP_FRAMES), "-sc_threshold", "0"),
            *("-c:a", "aac", "-b:a", f"{AUDIO_KBPS}k", "-f", "mpegts", str(path)),
        ],
        "encoding the test input",
    )
    return path


def live_segments(paths: Sequence[Path]) -> list[Segment]:
    """The cut files as the segmenter hands them to the live transcoder."""
    segments = []
    start = 0.0
    for sequence, path in enumerate(paths):
        duration, frames = segment_timing(path)
        segments.append(
            Segment(
                sequence=sequence,
                data=path.read_bytes(),
                duration=duration,
                start_ms=round(start * 1000),
                program_date_time=START_TIME + timedelta(seconds=start),
                frames=frames,
            )
        )
        start += duration
    return segments


# --- part 1: per segment, local against Ray --------------------------------------------


async def call_engine(
    engine: SegmentTranscoder, segment: Segment, recorder: CallRecorder, first: bool
) -> Call | None:
    """One segment through one engine; None where the Ray engine gave up on it."""
    reported = recorder.overheads[engine.engine]
    before = len(reported)
    started = time.perf_counter()
    try:
        result = await asyncio.wait_for(engine.transcode(segment), CALL_TIMEOUT_S)
    except (EngineFailure, TranscodeError) as exc:
        if engine.engine is Engine.LOCAL:
            raise BenchError(f"the local engine failed segment {segment.sequence}: {exc}") from None
        log(f"segment {segment.sequence}: the Ray engine gave nothing: {exc}")
        return None
    except TimeoutError:
        raise BenchError(
            f"segment {segment.sequence}: no answer from the {engine.engine.value} engine "
            f"within {CALL_TIMEOUT_S:g} s"
        ) from None
    round_trip = time.perf_counter() - started
    overhead = reported[-1] if len(reported) > before else math.nan
    return Call(engine.engine, segment.sequence, first, round_trip, result.elapsed, overhead)


async def segment_part(
    segments: Sequence[Segment],
    profiles: tuple[VideoProfile, ...],
    ray_address: str,
    warmup: int,
    watch: SocketWatch,
) -> SegmentPart:
    recorder = CallRecorder()
    settings = TranscodeSettings(profiles=profiles, engine=Engine.RAY, ray_address=ray_address)
    host = RayEngineHost(settings, recorder)
    log(f"part 1: starting the Ray engine ({host.address})")
    try:
        await asyncio.wait_for(host.start(), HOST_START_TIMEOUT_S)
    except TimeoutError:
        await host.close()
        raise BenchError(
            f"the Ray engine did not start within {HOST_START_TIMEOUT_S:g} s"
        ) from None
    local = LocalEngine(profiles, Accel.SOFTWARE, observer=recorder)
    ray = host.session("bench", profiles, Accel.SOFTWARE)
    calls: list[Call] = []
    try:
        for segment in segments:
            ray_first = segment.sequence % 2 == 1
            order: tuple[SegmentTranscoder, ...] = (ray, local) if ray_first else (local, ray)
            for position, engine in enumerate(order):
                call = await call_engine(engine, segment, recorder, position == 0)
                if call is not None:
                    calls.append(call)
            if segment.sequence in (warmup, len(segments) - 1):  # the actor is up
                await asyncio.to_thread(watch.sample)
            log(f"part 1: segment {segment.sequence + 1}/{len(segments)}")
    finally:
        await asyncio.wait_for(ray.close(), CLOSE_TIMEOUT_S)
        await asyncio.wait_for(local.close(), CLOSE_TIMEOUT_S)
        await asyncio.wait_for(host.close(), CLOSE_TIMEOUT_S)
    return SegmentPart(
        calls=tuple(calls),
        warmup=warmup,
        segments=len(segments),
        segment_s=statistics.median(s.duration for s in segments),
        ray_address=host.address,
        ray_info=dict(host.info),
        failures=tuple(recorder.failures),
        recreated=recorder.recreated,
    )


# --- part 2: a whole file, `lpms transcode --engine ray` on a cluster -------------------


class RayCluster:
    """``scripts/ray_cluster.py``: a head and worker nodes on 127.0.0.1, in a process
    group of its own (stopping the group stops every Ray process it started)."""

    def __init__(self, python: str, log_path: Path, watch: SocketWatch) -> None:
        self._python = python
        self._log = log_path
        self._watch = watch
        self.process: subprocess.Popen[str] | None = None
        self.report: dict[str, object] = {}

    def start(self) -> str:
        command = [
            self._python,
            str(CLUSTER_SCRIPT),
            f"--workers={CLUSTER_WORKERS}",
            f"--cpus-per-worker={CPUS_PER_WORKER}",
        ]
        log(f"part 2: starting a loopback Ray cluster ({CLUSTER_WORKERS} worker nodes)")
        with self._log.open("ab") as err:
            self.process = subprocess.Popen(
                command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
                env={**lpms_env(), **RAY_TOKEN_ENV},
                start_new_session=True,
            )
        self._watch.groups.add(self.process.pid)
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], CLUSTER_START_TIMEOUT_S)
        line = self.process.stdout.readline() if ready else ""
        if not line:
            raise BenchError(
                f"the Ray cluster did not start within {CLUSTER_START_TIMEOUT_S:g} s:\n"
                f"{tail(self._log)}"
            )
        self.report = json.loads(line)
        return str(self.report["address"])

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        with contextlib.suppress(OSError):
            assert process.stdin is not None
            process.stdin.close()  # the script shuts its cluster down
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=CLUSTER_STOP_TIMEOUT_S)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)  # what outlived it, to be sure
        if process.poll() is None:
            process.kill()
        process.wait()


def has_ray_cli(lpms: Sequence[str]) -> bool:
    """``lpms transcode`` takes ``--engine``, ``--ray-address`` and ``--chunk-seconds``."""
    probe = subprocess.run(
        [*lpms, "transcode", "--help"],
        capture_output=True,
        text=True,
        env=lpms_env(),
        timeout=60,
        check=False,
    )
    return probe.returncode == 0 and all(
        flag in probe.stdout for flag in ("--engine", "--ray-address", "--chunk-seconds")
    )


def lpms_way(
    lpms: Sequence[str], source: Source, profiles: str, root: Path, engine: str, extra: list[str]
) -> Way:
    outdir = root / "out" / engine
    command = (
        *lpms,
        "transcode",
        *("--engine", engine, *extra, "--profiles", profiles, "--outdir", str(outdir)),
        str(source.path),
    )
    return Way(engine, f"lpms transcode --engine {engine}", command, outdir, False)


def run_way(way: Way, logs: Path, round_index: int) -> float:
    """Runs a way from a clean output directory, in a session of its own; its wall time."""
    shutil.rmtree(way.outdir, ignore_errors=True)
    way.outdir.mkdir(parents=True)
    err_path = logs / f"{way.key}-{round_index}.err"
    env = {**lpms_env(), **RAY_TOKEN_ENV} if way.key == RAY else lpms_env()
    with (logs / f"{way.key}-{round_index}.out").open("wb") as out, err_path.open("wb") as err:
        started = time.perf_counter()
        process = subprocess.Popen(
            way.command,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            env=env,
            start_new_session=True,
        )
        try:
            code = process.wait(timeout=CHILD_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            code = None
        finally:
            wall = time.perf_counter() - started
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)  # the child, or what it left behind
            process.wait()
    if code is None:
        raise BenchError(f"{way.label} did not finish within {CHILD_TIMEOUT_S:g} s")
    if code != 0:
        raise BenchError(f"{way.label} exited with {code}:\n{tail(err_path)}")
    return wall


def reported_seconds(way: Way, logs: Path, round_index: int) -> float | None:
    """The seconds ``lpms transcode`` says it took ("decoded ... in X s"): from the
    file's opening to its last output, without Python's start-up or Ray's connection."""
    if way.key == FFMPEG:
        return None
    text = (logs / f"{way.key}-{round_index}.out").read_text(errors="replace")
    found = re.search(r"\bin ([0-9.]+) s \(", text)
    return float(found.group(1)) if found else None


def count_frames(way: Way, rungs: Sequence[Rung]) -> list[OutputFrames]:
    found = []
    for rung in rungs:
        path = way.outdir / f"{rung.name}.ts"
        frames, error = 0, None
        try:
            with av.open(str(path)) as container:
                video = container.streams.video[0]
                frames = sum(1 for p in container.demux(video) if p.size)
        except (av.FFmpegError, IndexError, FileNotFoundError) as exc:
            error = f"unreadable: {exc}"
        found.append(OutputFrames(way.key, rung.name, frames, error))
    return found


def file_part(
    args: argparse.Namespace,
    ffmpeg: str,
    source: Source,
    rungs: Sequence[Rung],
    root: Path,
    watch: SocketWatch,
) -> FilePart:
    lpms = lpms_command(args.python)
    profiles = ",".join(r.name for r in rungs)
    cluster = RayCluster(args.python, root / "logs" / "cluster.log", watch)
    try:
        address = cluster.start()
        watch.sample()
        chunk = ["--ray-address", address, "--chunk-seconds", f"{args.chunk_seconds:g}"]
        ways = [
            lpms_way(lpms, source, profiles, root, RAY, chunk),
            lpms_way(lpms, source, profiles, root, LOCAL, []),
            ffmpeg_way(ffmpeg, source, rungs, root),
        ]
        runs = []
        for index in range(args.rounds):
            for way in ways if index % 2 == 0 else list(reversed(ways)):
                with Sampler(watch) if way.key == RAY else contextlib.nullcontext():
                    wall = run_way(way, root / "logs", index)
                runs.append(FileRun(way.key, wall, reported_seconds(way, root / "logs", index)))
                log(f"part 2: round {index + 1}/{args.rounds}: {way.label}: {wall:.2f} s")
        watch.sample()
        report = dict(cluster.report)
    finally:
        cluster.stop()
    return FilePart(
        labels={w.key: w.label for w in ways},
        runs=tuple(runs),
        outputs=tuple(o for way in ways for o in count_frames(way, rungs)),
        commands={w.key: w.command for w in ways},
        cluster=report,
    )


# --- report ----------------------------------------------------------------------------


def p95(values: Sequence[float]) -> float:
    """The nearest-rank 95th percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


def ms(seconds: float) -> str:
    return f"{1000 * seconds:.1f}"


def share(seconds: float, of: float) -> str:
    return f"{100 * seconds / of:.2f} %"


def overhead_met(part: SegmentPart) -> bool:
    differences = part.differences()
    return bool(differences) and statistics.median(differences) <= OVERHEAD_TARGET * part.segment_s


def print_segment_part(part: SegmentPart, rungs: Sequence[Rung]) -> None:
    nodes = part.ray_info.get("nodes", "?")
    resources = part.ray_info.get("resources", {})
    cpus = resources.get("CPU", "?") if isinstance(resources, dict) else "?"
    measured = len(part.differences())
    print(
        f"part 1: per-segment round trip, local engine against Ray engine (Ray at "
        f"{part.ray_address}: {nodes} node(s), {cpus} CPUs)"
    )
    print(
        f"  {part.segments} segments of {part.segment_s:.2f} s (median), fed one at a time, "
        f"alternating which engine goes first; {part.warmup} warm-up left out, "
        f"{measured} measured; ladder {', '.join(r.name for r in rungs)}"
    )
    rows = [
        [
            "engine",
            "round trip ms med",
            "p95",
            "transcode ms med",
            "reported overhead ms med",
            "p95",
            "% of segment med",
        ]
    ]
    for engine in (Engine.LOCAL, Engine.RAY):
        calls = part.measured(engine)
        if not calls:
            rows.append([engine.value, *["-"] * 6])
            continue
        overheads = [c.overhead_s for c in calls if not math.isnan(c.overhead_s)]
        rows.append(
            [
                engine.value,
                ms(statistics.median(c.round_trip_s for c in calls)),
                ms(p95([c.round_trip_s for c in calls])),
                ms(statistics.median(c.elapsed_s for c in calls)),
                ms(statistics.median(overheads)) if overheads else "-",
                ms(p95(overheads)) if overheads else "-",
                share(statistics.median(overheads), part.segment_s) if overheads else "-",
            ]
        )
    print_table(rows)
    differences = part.differences()
    if not differences:
        print("ray - local: no segment answered by both engines after the warm-up")
        return
    median, high = statistics.median(differences), p95(differences)
    print(
        f"ray - local round trip, per segment: median {ms(median)} ms "
        f"({share(median, part.segment_s)} of {part.segment_s:.2f} s), p95 {ms(high)} ms "
        f"({share(high, part.segment_s)}), min {ms(min(differences))}, "
        f"max {ms(max(differences))}"
    )
    for engine in (Engine.LOCAL, Engine.RAY):
        firsts = [c.round_trip_s for c in part.measured(engine) if c.first]
        seconds = [c.round_trip_s for c in part.measured(engine) if not c.first]
        if firsts and seconds:
            print(
                f"  {engine.value} round trip going first {ms(statistics.median(firsts))} ms, "
                f"second {ms(statistics.median(seconds))} ms (median)"
            )
    if part.failures or part.recreated:
        failures = ", ".join(f"{e.value} {r.value}" for e, r in part.failures) or "none"
        print(f"  engine failures: {failures}; Ray sessions made anew: {part.recreated}")
    met = "met" if overhead_met(part) else "NOT met"
    print(
        f"overhead {ms(median)} ms = {share(median, part.segment_s)} of "
        f"{part.segment_s:g} s; target <= {100 * OVERHEAD_TARGET:g} % "
        f"(<= {ms(OVERHEAD_TARGET * part.segment_s)} ms): {met}"
    )


def print_file_part(part: FilePart, source: Source, chunk_s: float) -> None:
    address = part.cluster.get("address", "?")
    print(
        f"part 2: {source.duration_s:.1f} s file, whole ladder; Ray: a loopback cluster at "
        f"{address}, head with no CPUs + {CLUSTER_WORKERS} worker nodes of "
        f"{CPUS_PER_WORKER} CPU, --chunk-seconds {chunk_s:g}"
    )
    rows = [["way", "wall s (median)", "min", "max", "rounds"]]
    for key, label in part.labels.items():
        walls = part.walls(key)
        rows.append(
            [
                label,
                f"{part.median(key):.2f}",
                f"{min(walls):.2f}",
                f"{max(walls):.2f}",
                " ".join(f"{w:.2f}" for w in walls),
            ]
        )
    print_table(rows)
    ray, local, ffmpeg = part.median(RAY), part.median(LOCAL), part.median(FFMPEG)
    print(
        f"wall ratios (medians): ray/ffmpeg {ray / ffmpeg:.2f}x, local/ffmpeg "
        f"{local / ffmpeg:.2f}x, ray/local {ray / local:.2f}x"
    )
    by_round = [f"{r / f:.2f}x" for r, f in zip(part.walls(RAY), part.walls(FFMPEG), strict=True)]
    print(f"  ray/ffmpeg by round: {', '.join(by_round)}")
    print(
        f"  ray - local: {ray - local:+.2f} s over {source.duration_s:.1f} s of media "
        f"(start-up and chunking included)"
    )
    for key in (RAY, LOCAL):
        working = [r.working_s for r in part.runs if r.way == key and r.working_s is not None]
        if working:
            inner = statistics.median(working)
            print(
                f"  {part.labels[key]}: {inner:.2f} s reading, transcoding and writing "
                f"(median), {part.median(key) - inner:.2f} s before it (Python start-up"
                f"{', the Ray connection' if key == RAY else ''})"
            )
    print_frames(part)


def print_frames(part: FilePart) -> None:
    profiles = list(dict.fromkeys(o.profile for o in part.outputs))
    frames = {(o.way, o.profile): o for o in part.outputs}
    rows = [["frames (video packets)", *(part.labels[k] for k in part.labels), "ray = local"]]
    for profile in profiles:
        cells = []
        for key in part.labels:
            output = frames[(key, profile)]
            cells.append(str(output.frames) if output.error is None else "unreadable")
        same = frames[(RAY, profile)].frames == frames[(LOCAL, profile)].frames
        rows.append([profile, *cells, "yes" if same else "NO"])
    print_table(rows)


def log(message: str) -> None:
    print(f"[distributed] {message}", file=sys.stderr, flush=True)


# --- main ------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "--seconds",
        type=int,
        default=DEFAULT_SECONDS,
        help=f"length of the generated input (default {DEFAULT_SECONDS})",
    )
    parser.add_argument(
        "--profiles", default=DEFAULT_PROFILES, help=f"the ladder (default {DEFAULT_PROFILES})"
    )
    parser.add_argument(
        "--warmup",
        type=int,
        default=DEFAULT_WARMUP,
        help=f"part 1: segments left out at the start (default {DEFAULT_WARMUP})",
    )
    parser.add_argument(
        "--ray-address",
        default="local",
        help="part 1: a Ray cluster's HOST:PORT (default local: a private runtime)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=DEFAULT_ROUNDS,
        help=f"part 2: rounds of the three ways (default {DEFAULT_ROUNDS})",
    )
    parser.add_argument(
        "--chunk-seconds",
        type=float,
        default=DEFAULT_CHUNK_S,
        help=f"part 2: lpms transcode --engine ray's chunks (default {DEFAULT_CHUNK_S:g})",
    )
    parser.add_argument(
        "--parts",
        default="segments,file",
        help="which parts: segments, file or both (default segments,file)",
    )
    parser.add_argument("--python", default=sys.executable, help="interpreter that runs lpms")
    parser.add_argument(
        "--check",
        action="store_true",
        help="exit 1 when the target is missed or a socket is not on loopback",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args(argv)
    args.parts = {p.strip() for p in args.parts.split(",") if p.strip()}
    if not args.parts or not args.parts <= {"segments", "file"}:
        parser.error("--parts takes segments, file or segments,file")
    if args.seconds < 4 * SEGMENT_S:
        parser.error(f"--seconds must be at least {4 * SEGMENT_S}")
    if args.warmup < 1 or args.warmup >= args.seconds // SEGMENT_S - 1:
        parser.error("--warmup must be at least 1 and leave segments to measure")
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if args.chunk_seconds <= 0:
        parser.error("--chunk-seconds must be positive")
    return args


def bench(args: argparse.Namespace, ffmpeg: str, root: Path, watch: SocketWatch) -> int:
    (root / "logs").mkdir(parents=True)
    load = os.getloadavg()[0]
    path = make_input(ffmpeg, root, args.seconds)
    source = probe_source(path, cut_segments(ffmpeg, path, root / "input-segments"))
    rungs = ladder(args.profiles, source)
    profiles = parse_profiles(",".join(r.name for r in rungs))
    print(
        f"input: {source.width}x{source.height} {FPS} fps, {source.frames} frames, "
        f"{source.duration_s:.2f} s, {len(source.segments)} segments; ladder "
        + ", ".join(f"{r.name} {r.width}x{r.height} {r.bitrate // 1000}k" for r in rungs)
        + f" (libx264 {PRESET}); {os.cpu_count()} CPUs, load {load:.2f} at start"
    )
    met = True
    if "segments" in args.parts:
        segments = live_segments(source.segments)
        part = asyncio.run(segment_part(segments, profiles, args.ray_address, args.warmup, watch))
        print_segment_part(part, rungs)
        met = overhead_met(part)
    if "file" in args.parts:
        if has_ray_cli(lpms_command(args.python)):
            print_file_part(
                file_part(args, ffmpeg, source, rungs, root, watch), source, args.chunk_seconds
            )
        else:
            print(
                "part 2 skipped: `lpms transcode` has no --engine/--ray-address/"
                "--chunk-seconds here"
            )
    if args.ray_address != "local" and "segments" in args.parts:
        print("note: part 1's cluster was not started by this run; only its driver is checked")
    print(watch.summary())
    met = met and not watch.exposed()
    return 0 if met or not args.check else 1


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        ffmpeg = find_ffmpeg()
    except MissingTool as error:
        print(f"distributed: {error}", file=sys.stderr)
        return 2
    if not CLUSTER_SCRIPT.is_file():
        print(f"distributed: missing {CLUSTER_SCRIPT}", file=sys.stderr)
        return 2
    root = Path(tempfile.mkdtemp(prefix="lpms-bench-distributed-"))
    watch = SocketWatch()
    try:
        return bench(args, ffmpeg, root, watch)
    except KeyboardInterrupt:
        print("distributed: interrupted", file=sys.stderr)
        return 130
    except BenchError as error:
        print(f"distributed: {error}", file=sys.stderr)
        return 1
    finally:
        left = watch.kill_leftovers()
        if left:
            log(f"killed {left} process(es) left running")
        if args.keep:
            log(f"work directory kept: {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
