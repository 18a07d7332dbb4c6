#!/usr/bin/env python3
"""Transcoding an ABR ladder: lpms side by side with the ffmpeg CLI, in one run.

A live stream's ladder (by default P360p30fps16x9, P240p30fps16x9, P144p30fps16x9,
libx264 veryfast) is made from the same 720p30 input three ways:

- ``lpms transcode INPUT --profiles ... --outdir DIR``: the whole file, by the CLI;
- the `lpms.Transcoder` API fed the input's 2 s segments one after another in one
  session, as a live stream is transcoded (a child process, so that its imports and
  start-up count as the CLI's and ffmpeg's do);
- one ffmpeg CLI process with a split filter graph (decode once, scale and encode
  each rung), the well-known peer, with the same sizes, bitrates, preset and
  keyframes (``-force_key_frames source``, as lpms keeps the source's keyframes).

Each way is a child process timed from its start to its exit, over several rounds
in alternating order; the script prints the median wall time (and CPU time) of each,
the ratios against the targets, and the live ladder's real-time factor. Ratios are
the point: absolute figures depend on the machine and on how loaded it is. It then
checks the last round's outputs: each one exists, decodes with PyAV at the expected
size, carries the audio, and has its measured video bitrate printed against the
profile's.

Exit status: 0 (with --check: 0 when every target is met and every output is good,
1 otherwise), 1 when a way could not be run, 2 when a tool is missing, 130 when
interrupted.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

try:
    import av

    from lpms import profile_by_name
    from lpms.transcode import output_size
except ImportError as missing:  # pragma: no cover - only outside the dev environment
    print(f"bench/transcode.py needs {missing.name}: run `make dev`", file=sys.stderr)
    sys.exit(2)

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent

# The test input: a typical 720p30 contribution stream, cut into live-sized segments.
FPS = 30
GOP_FRAMES = 2 * FPS  # a keyframe every 2 s, where the segments are cut
VIDEO_KBPS = 3000
AUDIO_KBPS = 128
AUDIO_RATE = 48000
INPUT_SECONDS = 10
SEGMENT_S = 2

DEFAULT_PROFILES = "P360p30fps16x9,P240p30fps16x9,P144p30fps16x9"
PRESET = "veryfast"
DEFAULT_ROUNDS = 3
CHILD_TIMEOUT_S = 600.0

# Targets.
FFMPEG_OVER_CLI_TARGET = 1.0  # ffmpeg wall / lpms transcode wall, at least
SEGMENTS_OVER_FFMPEG_TARGET = 1.2  # segment API wall / ffmpeg wall, at most
REAL_TIME_TARGET = 1.0  # input duration / segment API time, above

CLI, SEGMENTS, FFMPEG = "cli", "segments", "ffmpeg"

# The child that feeds the segments to one Transcoder session, in order, and appends
# each profile's output segments to PROFILE.ts (a valid TS: the session carries the
# continuity counters on). It prints what the session measured, as JSON.
SEGMENT_CHILD = """\
import json, sys
from pathlib import Path
from typing import Any
from lpms import Transcoder
profiles, outdir, *segments = sys.argv[1:]
out = Path(outdir)
out.mkdir(parents=True, exist_ok=True)
elapsed = media = 0.0
with Transcoder(profiles) as session:
    files = {p.name: open(out / f"{p.name}.ts", "wb") for p in session.profiles}
    for segment in segments:
        result = session.transcode(segment)
        elapsed += result.elapsed
        media += result.duration
        for output in result.outputs:
            files[output.profile.name].write(output.data)
    for file in files.values():
        file.close()
print(json.dumps({"elapsed_s": elapsed, "media_s": media, "segments": len(segments)}))
"""

# The stand-in for `lpms transcode` while the CLI has no such command.
FILE_CHILD = """\
import json, sys
from lpms import Transcoder
profiles, source, outdir = sys.argv[1:]
with Transcoder(profiles) as session:
    result = session.transcode_file(source, outdir)
print(json.dumps({"elapsed_s": result.elapsed, "media_s": result.duration, "segments": 1}))
"""


class BenchError(Exception):
    """A way or a tool could not be run; the message says which and why."""


class MissingTool(BenchError):
    """A required program is not installed."""


@dataclass(frozen=True, slots=True)
class Rung:
    """One profile of the ladder, at the size it takes for this source."""

    name: str
    width: int
    height: int
    bitrate: int  # bits per second, the profile's target


@dataclass(frozen=True, slots=True)
class Source:
    path: Path
    segments: tuple[Path, ...]
    width: int
    height: int
    frames: int
    duration_s: float
    has_audio: bool


@dataclass(frozen=True, slots=True)
class Way:
    """One way of making the ladder: a command whose outputs are OUTDIR/PROFILE.ts."""

    key: str
    label: str
    command: tuple[str, ...]
    outdir: Path
    reports: bool  # prints the session's own timing as JSON on its last stdout line


@dataclass(frozen=True, slots=True)
class Run:
    wall_s: float
    cpu_s: float  # the child's user + system time
    elapsed_s: float | None  # summed TranscodeResult.elapsed, where the child reports it


@dataclass(frozen=True, slots=True)
class WayResult:
    key: str
    label: str
    runs: tuple[Run, ...]

    @property
    def wall_s(self) -> float:
        return statistics.median(r.wall_s for r in self.runs)

    @property
    def cpu_s(self) -> float:
        return statistics.median(r.cpu_s for r in self.runs)

    @property
    def elapsed_s(self) -> float | None:
        values = [r.elapsed_s for r in self.runs if r.elapsed_s is not None]
        return statistics.median(values) if values else None


@dataclass(frozen=True, slots=True)
class OutputCheck:
    way: str
    profile: str
    path: str
    exists: bool
    error: str | None
    width: int
    height: int
    expected_width: int
    expected_height: int
    frames: int
    duration_s: float
    video_bitrate: int  # measured: video packet bits / video duration
    target_bitrate: int
    has_audio: bool
    audio_expected: bool

    @property
    def ok(self) -> bool:
        return (
            self.exists
            and self.error is None
            and self.frames > 0
            and (self.width, self.height) == (self.expected_width, self.expected_height)
            and (self.has_audio or not self.audio_expected)
        )


@dataclass(frozen=True, slots=True)
class Verdict:
    name: str
    value: float | None
    target: str
    passed: bool


# --- tools and input -------------------------------------------------------------------


def find_ffmpeg() -> str:
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise MissingTool("missing: ffmpeg (apt-get install ffmpeg)")
    return ffmpeg


def lpms_env() -> dict[str, str]:
    """Lets `python -m lpms` find the checkout's package even when it is not installed."""
    env = dict(os.environ)
    src = str(REPO_DIR / "src")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    return env


def lpms_command(python: str) -> tuple[str, ...]:
    """The console script beside the interpreter, or ``python -m lpms`` without one."""
    script = Path(python).parent / "lpms"
    if script.is_file() and os.access(script, os.X_OK):
        return (str(script),)
    return (python, "-m", "lpms")


def has_transcode_command(lpms: Sequence[str]) -> bool:
    probe = subprocess.run(
        [*lpms, "transcode", "--help"],
        capture_output=True,
        env=lpms_env(),
        timeout=60,
        check=False,
    )
    return probe.returncode == 0


def ffmpeg_run(ffmpeg: str, args: Sequence[str], what: str) -> None:
    command = [ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    if done.returncode != 0:
        raise BenchError(f"{what} failed:\n{done.stderr.strip()}")


def make_input(ffmpeg: str, directory: Path, seconds: int = INPUT_SECONDS) -> Path:
    """Encodes the 720p30 H.264 + AAC MPEG-TS test input (10 s unless told)."""
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


def cut_segments(ffmpeg: str, source: Path, directory: Path) -> tuple[Path, ...]:
    """The input's live segments: stream copy, cut at the first keyframe after 2 s."""
    directory.mkdir(parents=True, exist_ok=True)
    ffmpeg_run(
        ffmpeg,
        [
            *("-i", str(source), "-c", "copy", "-f", "segment"),
            *("-segment_time", str(SEGMENT_S), "-reset_timestamps", "0"),
            str(directory / "seg%d.ts"),
        ],
        f"cutting {source} into segments",
    )
    segments = sorted(directory.glob("seg*.ts"), key=lambda p: int(p.stem[3:]))
    if not segments:
        raise BenchError(f"ffmpeg cut no segments from {source}")
    return tuple(segments)


def video_span(packets: Sequence[av.Packet[Any]], rate: Fraction | None) -> float:
    """Seconds from the first frame to the end of the last, from the packets' pts."""
    stamps = [p.pts for p in packets if p.pts is not None]
    if not stamps:
        return 0.0
    time_base = packets[0].time_base or Fraction(1, 90000)
    period = float(1 / rate) if rate else 0.0
    return float((max(stamps) - min(stamps)) * time_base) + period


def segment_timing(path: Path) -> tuple[float, int]:
    """A segment's video duration (seconds, from its timestamps) and frames."""
    try:
        with av.open(str(path)) as container:
            video = container.streams.video[0]
            rate = video.average_rate or video.guessed_rate
            packets = [p for p in container.demux(video) if p.size]
    except (av.FFmpegError, IndexError) as exc:
        raise BenchError(f"cannot read segment {path}: {exc}") from None
    return video_span(packets, Fraction(rate) if rate else None), len(packets)


def probe_source(path: Path, segments: tuple[Path, ...]) -> Source:
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise BenchError(f"{path} has no video track")
            video = container.streams.video[0]
            has_audio = bool(container.streams.audio)
            width, height = video.codec_context.width, video.codec_context.height
            rate = video.average_rate or video.guessed_rate
            packets = [p for p in container.demux(video) if p.size]
    except av.FFmpegError as exc:
        raise BenchError(f"cannot read {path}: {exc}") from None
    return Source(
        path=path,
        segments=segments,
        width=width,
        height=height,
        frames=len(packets),
        duration_s=video_span(packets, Fraction(rate) if rate else None),
        has_audio=has_audio,
    )


def ladder(names: str, source: Source) -> tuple[Rung, ...]:
    rungs = []
    for name in (n.strip() for n in names.split(",")):
        profile = profile_by_name(name)
        if profile.preset != PRESET:
            raise BenchError(f"{profile.name} uses preset {profile.preset}, not {PRESET}")
        width, height = output_size(profile, source.width, source.height)
        rungs.append(Rung(profile.name, width, height, profile.bitrate))
    return tuple(rungs)


# --- the three ways --------------------------------------------------------------------


def cli_way(lpms: Sequence[str], python: str, source: Source, profiles: str, root: Path) -> Way:
    outdir = root / "out" / CLI
    if has_transcode_command(lpms):
        command = (*lpms, "transcode", str(source.path), "--profiles", profiles)
        return Way(CLI, "lpms transcode", (*command, "--outdir", str(outdir)), outdir, False)
    command = (python, "-c", FILE_CHILD, profiles, str(source.path), str(outdir))
    return Way(CLI, "Transcoder.transcode_file", command, outdir, True)


def segment_way(python: str, source: Source, profiles: str, root: Path) -> Way:
    outdir = root / "out" / SEGMENTS
    command = (python, "-c", SEGMENT_CHILD, profiles, str(outdir), *map(str, source.segments))
    return Way(SEGMENTS, "lpms Transcoder, 2 s segments", command, outdir, True)


def ffmpeg_way(ffmpeg: str, source: Source, rungs: Sequence[Rung], root: Path) -> Way:
    """One ffmpeg process: decode once, split, scale and encode each rung."""
    outdir = root / "out" / FFMPEG
    labels = [f"v{i}" for i in range(len(rungs))]
    graph = f"[0:v]split={len(rungs)}" + "".join(f"[{label}]" for label in labels)
    for label, rung in zip(labels, rungs, strict=True):
        graph += f";[{label}]scale={rung.width}:{rung.height}[{label}o]"
    outputs: list[str] = []
    for label, rung in zip(labels, rungs, strict=True):
        outputs += [
            *("-map", f"[{label}o]", "-c:v", "libx264", "-preset", PRESET),
            *("-b:v", str(rung.bitrate), "-force_key_frames", "source"),
            *("-map", "0:a?", "-c:a", "copy", str(outdir / f"{rung.name}.ts")),
        ]
    command = (
        *(ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error", "-y"),
        *("-i", str(source.path), "-filter_complex", graph, *outputs),
    )
    return Way(FFMPEG, "ffmpeg CLI, split graph", command, outdir, False)


def run_once(way: Way, logs: Path, round_index: int) -> Run:
    """Runs a way from a clean output directory; wall and CPU time of its process."""
    shutil.rmtree(way.outdir, ignore_errors=True)
    way.outdir.mkdir(parents=True)
    out_path = logs / f"{way.key}-{round_index}.out"
    err_path = logs / f"{way.key}-{round_index}.err"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        started = time.perf_counter()
        process = subprocess.Popen(
            way.command, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=lpms_env()
        )
        timer = threading.Timer(CHILD_TIMEOUT_S, process.kill)
        timer.start()
        reaped = False
        try:
            _pid, status, usage = os.wait4(process.pid, 0)
            reaped = True
        finally:
            timer.cancel()
            if not reaped:  # interrupted: the child goes too
                process.kill()
                process.wait()
        wall = time.perf_counter() - started
    code = os.waitstatus_to_exitcode(status)
    process.returncode = code
    if code != 0:
        raise BenchError(f"{way.label} exited with {code}:\n{tail(err_path)}")
    elapsed = None
    if way.reports:
        lines = out_path.read_text().strip().splitlines()
        try:
            elapsed = float(json.loads(lines[-1])["elapsed_s"])
        except (IndexError, ValueError, KeyError) as exc:
            raise BenchError(f"{way.label} printed no report ({exc})") from None
    return Run(wall_s=wall, cpu_s=usage.ru_utime + usage.ru_stime, elapsed_s=elapsed)


def run_rounds(ways: Sequence[Way], rounds: int, logs: Path) -> dict[str, WayResult]:
    """Every way once a round, in the opposite order every other round."""
    logs.mkdir(parents=True, exist_ok=True)
    runs: dict[str, list[Run]] = {way.key: [] for way in ways}
    for index in range(rounds):
        order = ways if index % 2 == 0 else list(reversed(ways))
        for way in order:
            run = run_once(way, logs, index)
            runs[way.key].append(run)
            log(f"round {index + 1}/{rounds}: {way.label}: {run.wall_s:.2f} s")
    return {w.key: WayResult(w.key, w.label, tuple(runs[w.key])) for w in ways}


# --- checking the outputs --------------------------------------------------------------


def check_output(way: Way, rung: Rung, source: Source) -> OutputCheck:
    """Decodes one output with PyAV: its size, frames, video bitrate and audio."""
    path = way.outdir / f"{rung.name}.ts"
    found = path.is_file()
    width = height = frames = 0
    duration = 0.0
    video_bytes = 0
    has_audio = False
    error = None if found else "missing"
    if found:
        try:
            with av.open(str(path)) as container:
                video = container.streams.video[0]
                has_audio = bool(container.streams.audio)
                rate = video.average_rate or video.guessed_rate
                packets = [p for p in container.demux(video) if p.size]
                sizes: set[tuple[int, int]] = set()
                for packet in [*packets, None]:
                    for frame in video.codec_context.decode(packet):
                        sizes.add((frame.width, frame.height))
                        frames += 1
            video_bytes = sum(p.size for p in packets)
            duration = video_span(packets, Fraction(rate) if rate else None)
            if len(sizes) > 1:
                error = f"frame sizes change: {sorted(sizes)}"
            elif sizes:
                width, height = sizes.pop()
        except (av.FFmpegError, IndexError) as exc:
            error = f"does not decode: {exc}"
    return OutputCheck(
        way=way.key,
        profile=rung.name,
        path=str(path),
        exists=found,
        error=error,
        width=width,
        height=height,
        expected_width=rung.width,
        expected_height=rung.height,
        frames=frames,
        duration_s=duration,
        video_bitrate=int(video_bytes * 8 / duration) if duration > 0 else 0,
        target_bitrate=rung.bitrate,
        has_audio=has_audio,
        audio_expected=source.has_audio,
    )


# --- figures and report ----------------------------------------------------------------


def verdicts(results: dict[str, WayResult], source: Source) -> list[Verdict]:
    cli, segments, ffmpeg = results[CLI], results[SEGMENTS], results[FFMPEG]
    ffmpeg_over_cli = ffmpeg.wall_s / cli.wall_s
    segments_over_ffmpeg = segments.wall_s / ffmpeg.wall_s
    elapsed = segments.elapsed_s
    real_time = source.duration_s / elapsed if elapsed else None
    return [
        Verdict(
            f"ffmpeg / {cli.label}",
            ffmpeg_over_cli,
            f">= {FFMPEG_OVER_CLI_TARGET:.1f}x",
            ffmpeg_over_cli >= FFMPEG_OVER_CLI_TARGET,
        ),
        Verdict(
            "segment API / ffmpeg",
            segments_over_ffmpeg,
            f"<= {SEGMENTS_OVER_FFMPEG_TARGET:.1f}x",
            segments_over_ffmpeg <= SEGMENTS_OVER_FFMPEG_TARGET,
        ),
        Verdict(
            "live ladder real-time factor",
            real_time,
            f"> {REAL_TIME_TARGET:.1f}x",
            real_time is not None and real_time > REAL_TIME_TARGET,
        ),
    ]


def header_lines(source: Source, rungs: Sequence[Rung], rounds: int, load: float) -> list[str]:
    ladder_text = ", ".join(f"{r.name} {r.width}x{r.height} {kbps(r.bitrate)}k" for r in rungs)
    return [
        f"input: {source.path.name}: {source.width}x{source.height}, {source.frames} frames, "
        f"{source.duration_s:.2f} s, {len(source.segments)} segments of ~{SEGMENT_S} s"
        f"{', with audio' if source.has_audio else ', no audio'}",
        f"ladder: {ladder_text} (libx264 {PRESET})",
        f"{rounds} round{'' if rounds == 1 else 's'}, alternating order; "
        f"{os.cpu_count()} CPUs, load {load:.2f} at start",
    ]


def print_table(rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        cells = [row[0].ljust(widths[0])]
        cells += [cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True)]
        print("  ".join(cells))


def print_report(
    source: Source,
    rungs: Sequence[Rung],
    results: dict[str, WayResult],
    checks: Sequence[OutputCheck],
    rounds: int,
    load: float,
) -> None:
    for line in header_lines(source, rungs, rounds, load):
        print(line)
    if results[CLI].label != "lpms transcode":
        print(
            "note: `lpms transcode` is not available; timing Transcoder.transcode_file "
            "in a `python -c` child instead"
        )
    rows = [["way", "wall s (median)", "min", "max", "rounds", "CPU s (median)"]]
    for result in results.values():
        walls = [r.wall_s for r in result.runs]
        rows.append(
            [
                result.label,
                f"{result.wall_s:.2f}",
                f"{min(walls):.2f}",
                f"{max(walls):.2f}",
                " ".join(f"{w:.2f}" for w in walls),
                f"{result.cpu_s:.2f}",
            ]
        )
    print_table(rows)
    found = verdicts(results, source)
    ratio, segment_ratio, real_time = found
    print(
        f"{ratio.name} wall: {fmt(ratio.value)}x (target {ratio.target}: lpms transcode at "
        f"least as fast as the ffmpeg CLI) {pass_fail(ratio)}"
    )
    print(
        f"{segment_ratio.name} wall: {fmt(segment_ratio.value)}x "
        f"(target {segment_ratio.target}) {pass_fail(segment_ratio)}"
    )
    segments = results[SEGMENTS]
    wall_factor = source.duration_s / segments.wall_s
    print(
        f"{real_time.name}: {fmt(real_time.value)}x from TranscodeResult.elapsed "
        f"({fmt(segments.elapsed_s)} s for {source.duration_s:.2f} s), {wall_factor:.2f}x "
        f"wall (target {real_time.target}: keeps up with live) {pass_fail(real_time)}"
    )
    cli, ffmpeg = results[CLI], results[FFMPEG]
    print(
        f"CPU time, no target: ffmpeg / {cli.label} {ffmpeg.cpu_s / cli.cpu_s:.2f}x, "
        f"segment API / ffmpeg {segments.cpu_s / ffmpeg.cpu_s:.2f}x"
    )
    print("outputs (last round), video bitrate = video packet bits / video duration:")
    rows = [["way", "profile", "size", "expected", "frames", "kb/s", "target", "%", "audio", "ok"]]
    for check in checks:
        rows.append(
            [
                check.way,
                check.profile,
                f"{check.width}x{check.height}",
                f"{check.expected_width}x{check.expected_height}",
                str(check.frames),
                kbps(check.video_bitrate),
                kbps(check.target_bitrate),
                f"{100 * check.video_bitrate / check.target_bitrate:.0f}",
                "yes" if check.has_audio else "no",
                "ok" if check.ok else f"FAIL {check.error or ''}".strip(),
            ]
        )
    print_table(rows)
    good = sum(c.ok for c in checks)
    print(f"outputs: {good}/{len(checks)} good {'PASS' if good == len(checks) else 'FAIL'}")


def report_json(
    source: Source,
    rungs: Sequence[Rung],
    ways: Sequence[Way],
    results: dict[str, WayResult],
    checks: Sequence[OutputCheck],
    load: float,
) -> str:
    found = verdicts(results, source)
    return json.dumps(
        {
            "input": {**asdict(source), "path": str(source.path), "segments": len(source.segments)},
            "ladder": [asdict(r) for r in rungs],
            "preset": PRESET,
            "cpus": os.cpu_count(),
            "load_at_start": load,
            "ways": {
                w.key: {
                    "label": w.label,
                    "command": [c if "\n" not in c else "<python code>" for c in w.command],
                    "wall_s": results[w.key].wall_s,
                    "cpu_s": results[w.key].cpu_s,
                    "elapsed_s": results[w.key].elapsed_s,
                    "runs": [asdict(r) for r in results[w.key].runs],
                }
                for w in ways
            },
            "targets": [asdict(v) for v in found],
            "outputs": [{**asdict(c), "ok": c.ok} for c in checks],
            "ok": all(v.passed for v in found) and all(c.ok for c in checks),
        },
        indent=2,
    )


def kbps(bitrate: int) -> str:
    return f"{bitrate / 1000:.0f}"


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def pass_fail(verdict: Verdict) -> str:
    return "PASS" if verdict.passed else "FAIL"


def tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace").strip()
    except OSError:
        return f"({path} unreadable)"
    return "\n".join(f"  | {line}" for line in text.splitlines()[-lines:]) or f"  ({path} is empty)"


def log(message: str) -> None:
    print(f"[transcode] {message}", file=sys.stderr, flush=True)


# --- main ------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "--input", type=Path, help="transcode this file instead of the generated 720p30 input"
    )
    parser.add_argument(
        "--profiles", default=DEFAULT_PROFILES, help=f"the ladder (default {DEFAULT_PROFILES})"
    )
    parser.add_argument(
        "--rounds", type=int, default=DEFAULT_ROUNDS, help=f"default {DEFAULT_ROUNDS}"
    )
    parser.add_argument("--python", default=sys.executable, help="interpreter that runs lpms")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if args.input is not None and not args.input.is_file():
        parser.error(f"--input {args.input}: no such file")
    return args


def bench(args: argparse.Namespace, ffmpeg: str, root: Path) -> int:
    load = os.getloadavg()[0]
    path = args.input.resolve() if args.input else make_input(ffmpeg, root)
    source = probe_source(path, cut_segments(ffmpeg, path, root / "input-segments"))
    rungs = ladder(args.profiles, source)
    profiles = ",".join(r.name for r in rungs)
    ways = [
        cli_way(lpms_command(args.python), args.python, source, profiles, root),
        segment_way(args.python, source, profiles, root),
        ffmpeg_way(ffmpeg, source, rungs, root),
    ]
    if ways[0].label != "lpms transcode":
        log("`lpms transcode` is not available: timing Transcoder.transcode_file instead")
    results = run_rounds(ways, args.rounds, root / "logs")
    checks = [check_output(way, rung, source) for way in ways for rung in rungs]
    if args.json:
        print(report_json(source, rungs, ways, results, checks, load))
    else:
        print_report(source, rungs, results, checks, args.rounds, load)
    met = all(v.passed for v in verdicts(results, source)) and all(c.ok for c in checks)
    return 0 if met or not args.check else 1


def run_bench(name: str, keep: bool, body: Callable[[str, Path], int]) -> int:
    """Runs ``body(ffmpeg, work_directory)`` in a fresh work directory, removed after
    unless ``keep``; a missing tool is exit status 2, a `BenchError` 1, an interrupt 130."""
    try:
        ffmpeg = find_ffmpeg()
    except MissingTool as error:
        print(f"{name}: {error}", file=sys.stderr)
        return 2
    root = Path(tempfile.mkdtemp(prefix=f"lpms-bench-{name}-"))
    try:
        return body(ffmpeg, root)
    except KeyboardInterrupt:
        print(f"{name}: interrupted", file=sys.stderr)
        return 130
    except BenchError as error:
        print(f"{name}: {error}", file=sys.stderr)
        return 1
    finally:
        if keep:
            print(f"[{name}] work directory kept: {root}", file=sys.stderr, flush=True)
        else:
            shutil.rmtree(root, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    return run_bench("transcode", args.keep, lambda ffmpeg, root: bench(args, ffmpeg, root))


if __name__ == "__main__":
    sys.exit(main())
