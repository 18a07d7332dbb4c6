#!/usr/bin/env python3
"""Concurrent live sessions: lpms against the ffmpeg CLI, livepeer_bench's metric, in one run.

How many live streams can one machine transcode and keep up? go-livepeer's
``livepeer_bench`` answers it this way, and so does this script: N sessions run at
once, each fed the same 2 s MPEG-TS segments (of a 720p30 H.264 + AAC input made with
the ffmpeg CLI, a keyframe every 2 s) at real-time pace, each making the ladder (by
default P360p30fps16x9, P240p30fps16x9, P144p30fps16x9, libx264 veryfast). For each N
in ``--sessions`` it runs two ways, one after the other (alternating which goes first):

- **lpms**: N `lpms.Transcoder` sessions in this one process, each fed from a thread
  of its own (as the live server's local engine runs them): ``transcode(bytes)`` per
  segment, outputs MPEG-TS in memory, audio copied, encoders on the session's threads;
- **ffmpeg**: N sessions of one ffmpeg CLI process per segment: ``ffmpeg -i SEG.ts``
  with a split filter graph (decode once, scale and encode each rung: the same sizes,
  bitrates, preset and keyframes, audio copied, one MPEG-TS file per rung). That is
  what a per-segment CLI transcoder does, and the closest CLI analogue of
  livepeer_bench's ``Transcode(segment)`` call: each call is timed on its own, the
  process's start and the encoders' opening included (lpms opens fresh x264 encoders
  for every segment too; only its decoder and threads stay). One ffmpeg per session
  reading a continuous stream would have no per-segment time to measure.

Pacing, as livepeer_bench's ``-live`` mode: session k starts 0.3 s after session
k - 1; after each segment a session sleeps for the segment's duration less the time
the segment took, so it sends the next one a segment's duration after the last one
was sent, or at once when that one was late. The figures, livepeer_bench's:

- **real-time segment ratio**: segments transcoded in no more than their duration /
  all segments;
- **real-time duration ratio**: total source duration / total transcode time (each
  segment's own time, summed over sessions). Above 1.0 means faster than real time
  on average. (livepeer_bench prints the inverse, transcode / source, under the same
  name; here higher is better, as the ratio lpms / ffmpeg reads.)

Each row also gives each way's CPU time per segment (lpms: this process's; ffmpeg:
its children's), which a busy machine disturbs far less than wall time. ``--rounds``
runs every N and way again (alternating the order) and pools the segments.

A way is **real time at N** when its segment ratio is at least ``--min-segment-ratio``
(1.0 by default: every segment of every session done within its duration, which is
what a live viewer needs); the largest real-time N is the largest tested N at which
it, and every smaller tested N, is real time. Targets: lpms's largest real-time N at
least ffmpeg's, and at every N lpms's duration ratio at least 1.0x ffmpeg's.

Exit status: 0 (with --check: 0 when both targets are met, 1 otherwise), 1 when a way
could not be run, 2 when a tool is missing, 130 when interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import resource
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

try:
    from lpms import Transcoder
    from transcode import (
        BenchError,
        Rung,
        Source,
        cut_segments,
        ffmpeg_way,
        ladder,
        make_input,
        print_table,
        probe_source,
        run_bench,
        segment_timing,
    )
except ImportError as missing:  # pragma: no cover - only outside the dev environment
    print(f"bench/concurrency.py needs {missing.name}: run `make dev`", file=sys.stderr)
    sys.exit(2)

SEGMENT_S = 2
DEFAULT_PROFILES = "P360p30fps16x9,P240p30fps16x9,P144p30fps16x9"
DEFAULT_SESSIONS = "1,2,3,4,6,8"
DEFAULT_SEGMENTS = 8
DEFAULT_ROUNDS = 1
DEFAULT_MIN_SEGMENT_RATIO = 1.0
SESSION_STAGGER_S = 0.3  # livepeer_bench starts its sessions this far apart
SEGMENT_TIMEOUT_S = 120.0  # one ffmpeg process

# Targets.
LARGEST_N_TARGET = 1.0  # lpms's largest real-time N / ffmpeg's, at least
DURATION_RATIO_TARGET = 1.0  # lpms's duration ratio / ffmpeg's at every N, at least

LPMS, FFMPEG = "lpms", "ffmpeg"


@dataclass(frozen=True, slots=True)
class LiveSegment:
    path: Path
    data: bytes
    duration: float  # seconds of video, from its timestamps


@dataclass(frozen=True, slots=True)
class SegmentTime:
    session: int
    index: int
    duration: float
    elapsed: float  # seconds the segment's transcode took

    @property
    def real_time(self) -> bool:
        return self.elapsed <= self.duration


@dataclass(frozen=True, slots=True)
class Trial:
    """One way at one N: every segment of every session."""

    way: str
    sessions: int
    times: tuple[SegmentTime, ...]
    wall_s: float
    cpu_s: float  # this process's (lpms) or its children's (ffmpeg) user + system time

    @property
    def cpu_per_segment(self) -> float:
        return self.cpu_s / len(self.times)

    @property
    def segment_ratio(self) -> float:
        return sum(t.real_time for t in self.times) / len(self.times)

    @property
    def duration_ratio(self) -> float:
        return sum(t.duration for t in self.times) / sum(t.elapsed for t in self.times)

    @property
    def worst_s(self) -> float:
        return max(t.elapsed for t in self.times)


# A session: opened once (untimed), then called once per segment (timed), then closed.
TranscodeOne = Callable[[int, LiveSegment], None]
SessionFactory = Callable[[int], contextlib.AbstractContextManager[TranscodeOne]]


# --- the two ways ----------------------------------------------------------------------


def lpms_sessions(profiles: str) -> SessionFactory:
    """A `Transcoder` per session, kept for all its segments, as a live stream's is."""

    @contextlib.contextmanager
    def session(_number: int) -> Iterator[TranscodeOne]:
        with Transcoder(profiles) as transcoder:

            def transcode_one(index: int, segment: LiveSegment) -> None:
                result = transcoder.transcode(segment.data)
                if any(output.frames == 0 for output in result.outputs):
                    raise BenchError(f"lpms: segment {index} left a rendition empty")

            yield transcode_one

    return session


def ffmpeg_sessions(
    ffmpeg: str, source: Source, rungs: Sequence[Rung], root: Path
) -> SessionFactory:
    """One ffmpeg process per segment, into a directory of the session's own."""

    @contextlib.contextmanager
    def session(number: int) -> Iterator[TranscodeOne]:
        session_root = root / f"session-{number}"

        def transcode_one(index: int, segment: LiveSegment) -> None:
            way = ffmpeg_way(
                ffmpeg, dataclasses.replace(source, path=segment.path), rungs, session_root
            )
            way.outdir.mkdir(parents=True, exist_ok=True)
            done = subprocess.run(
                way.command,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=SEGMENT_TIMEOUT_S,
                check=False,
            )
            if done.returncode != 0:
                raise BenchError(f"ffmpeg: segment {index} failed:\n{done.stderr.strip()}")

        yield transcode_one
        shutil.rmtree(session_root, ignore_errors=True)

    return session


# --- the live run ----------------------------------------------------------------------


def run_session(
    number: int,
    segments: Sequence[LiveSegment],
    open_session: SessionFactory,
    times: list[SegmentTime],
) -> None:
    """livepeer_bench's loop: each segment timed alone, then a sleep for the rest of
    its duration (none when it was late)."""
    with open_session(number) as transcode_one:
        for index, segment in enumerate(segments):
            iteration_start = time.perf_counter()
            transcode_one(index, segment)
            elapsed = time.perf_counter() - iteration_start
            times.append(SegmentTime(number, index, segment.duration, elapsed))
            left = segment.duration - (time.perf_counter() - iteration_start)
            if left > 0:
                time.sleep(left)


def run_trial(
    way: str, sessions: int, segments: Sequence[LiveSegment], open_session: SessionFactory
) -> Trial:
    """N sessions at once, each on its own thread, started SESSION_STAGGER_S apart."""
    times: list[SegmentTime] = []
    errors: list[BaseException] = []

    def session(number: int) -> None:
        try:
            run_session(number, segments, open_session, times)
        except BaseException as exc:  # reported by the caller's thread
            errors.append(exc)

    cpu_before = cpu_seconds(way)
    started = time.perf_counter()
    threads = []
    for number in range(sessions):
        thread = threading.Thread(target=session, args=(number,), name=f"{way}-{number}")
        thread.start()
        threads.append(thread)
        if number < sessions - 1:
            time.sleep(SESSION_STAGGER_S)
    for thread in threads:
        thread.join()
    if errors:
        error = errors[0]
        if isinstance(error, BenchError):
            raise error
        raise BenchError(f"{way}, {sessions} sessions: {type(error).__name__}: {error}")
    wall = time.perf_counter() - started
    return Trial(way, sessions, tuple(times), wall, cpu_seconds(way) - cpu_before)


def cpu_seconds(way: str) -> float:
    """lpms runs in this process; ffmpeg in children, each reaped when its segment ends."""
    usage = resource.getrusage(resource.RUSAGE_SELF if way == LPMS else resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_all(
    counts: Sequence[int],
    segments: Sequence[LiveSegment],
    ways: dict[str, SessionFactory],
    rounds: int,
) -> list[tuple[Trial, Trial]]:
    """Both ways at each N, back to back, in alternating order; each round's segments
    pooled into one trial per way and N."""
    times: dict[tuple[str, int], list[SegmentTime]] = {}
    walls: dict[tuple[str, int], float] = {}
    cpus: dict[tuple[str, int], float] = {}
    for round_index in range(rounds):
        for position, sessions in enumerate(counts):
            order = list(ways) if (position + round_index) % 2 == 0 else list(reversed(ways))
            for way in order:
                trial = run_trial(way, sessions, segments, ways[way])
                times.setdefault((way, sessions), []).extend(trial.times)
                walls[way, sessions] = walls.get((way, sessions), 0.0) + trial.wall_s
                cpus[way, sessions] = cpus.get((way, sessions), 0.0) + trial.cpu_s
                log(
                    f"round {round_index + 1}/{rounds}, {sessions} session(s), {way}: "
                    f"segment ratio {trial.segment_ratio:.2f}, "
                    f"duration ratio {trial.duration_ratio:.2f}"
                )

    def pooled(way: str, sessions: int) -> Trial:
        key = (way, sessions)
        return Trial(way, sessions, tuple(times[key]), walls[key], cpus[key])

    return [(pooled(LPMS, n), pooled(FFMPEG, n)) for n in counts]


# --- input -----------------------------------------------------------------------------


def live_segments(paths: Sequence[Path]) -> list[LiveSegment]:
    return [LiveSegment(path, path.read_bytes(), segment_timing(path)[0]) for path in paths]


# --- figures and report ----------------------------------------------------------------


def largest_real_time(trials: Sequence[Trial], min_segment_ratio: float) -> int:
    """The largest N at which this way, and every smaller N tried, kept up (0: none)."""
    largest = 0
    for trial in sorted(trials, key=lambda t: t.sessions):
        if trial.segment_ratio < min_segment_ratio:
            break
        largest = trial.sessions
    return largest


def print_report(
    source: Source,
    rungs: Sequence[Rung],
    segments: Sequence[LiveSegment],
    pairs: Sequence[tuple[Trial, Trial]],
    args: argparse.Namespace,
    load: float,
) -> bool:
    min_segment_ratio = args.min_segment_ratio
    ladder_text = ", ".join(f"{r.name} {r.width}x{r.height} {r.bitrate // 1000}k" for r in rungs)
    print(
        f"input: {source.width}x{source.height}, {len(segments)} segments of "
        f"~{SEGMENT_S} s per session, {'with' if source.has_audio else 'no'} audio"
    )
    print(f"ladder: {ladder_text} (libx264 veryfast)")
    print(
        f"{args.rounds} round{'' if args.rounds == 1 else 's'} of each N and way, pooled; "
        f"{os.cpu_count()} CPUs, load {load:.2f} at start, {os.getloadavg()[0]:.2f} at the end"
    )
    rows = [
        [
            "sessions",
            "lpms seg ratio",
            "lpms dur ratio",
            "lpms worst s",
            "lpms CPU s/seg",
            "ffmpeg seg ratio",
            "ffmpeg dur ratio",
            "ffmpeg worst s",
            "ffmpeg CPU s/seg",
            "dur ratio lpms/ffmpeg",
            "CPU ffmpeg/lpms",
        ]
    ]
    for lpms, ffmpeg in pairs:
        rows.append(
            [
                str(lpms.sessions),
                f"{lpms.segment_ratio:.2f}",
                f"{lpms.duration_ratio:.2f}",
                f"{lpms.worst_s:.2f}",
                f"{lpms.cpu_per_segment:.2f}",
                f"{ffmpeg.segment_ratio:.2f}",
                f"{ffmpeg.duration_ratio:.2f}",
                f"{ffmpeg.worst_s:.2f}",
                f"{ffmpeg.cpu_per_segment:.2f}",
                f"{lpms.duration_ratio / ffmpeg.duration_ratio:.2f}x",
                f"{ffmpeg.cpu_per_segment / lpms.cpu_per_segment:.2f}x",
            ]
        )
    print_table(rows)
    lpms_n = largest_real_time([p[0] for p in pairs], min_segment_ratio)
    ffmpeg_n = largest_real_time([p[1] for p in pairs], min_segment_ratio)
    largest_met = lpms_n >= ffmpeg_n * LARGEST_N_TARGET
    print(
        f"largest real-time N (segment ratio >= {min_segment_ratio:.2f}): lpms {lpms_n}, "
        f"ffmpeg {ffmpeg_n} (target: lpms >= ffmpeg) {'PASS' if largest_met else 'FAIL'}"
    )
    worst = min(lpms.duration_ratio / ffmpeg.duration_ratio for lpms, ffmpeg in pairs)
    ratio_met = worst >= DURATION_RATIO_TARGET
    print(
        f"duration ratio lpms/ffmpeg, lowest over N: {worst:.2f}x "
        f"(target >= {DURATION_RATIO_TARGET:.1f}x at every N) {'PASS' if ratio_met else 'FAIL'}"
    )
    return largest_met and ratio_met


def log(message: str) -> None:
    print(f"[concurrency] {message}", file=sys.stderr, flush=True)


# --- main ------------------------------------------------------------------------------


def session_counts(text: str) -> list[int]:
    try:
        counts = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of numbers: {text!r}") from None
    if not counts or counts[0] < 1:
        raise argparse.ArgumentTypeError("session counts must be at least 1")
    return counts


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "--sessions",
        type=session_counts,
        default=session_counts(DEFAULT_SESSIONS),
        help=f"the numbers of concurrent sessions to try (default {DEFAULT_SESSIONS})",
    )
    parser.add_argument(
        "--segments",
        type=int,
        default=DEFAULT_SEGMENTS,
        help=f"2 s segments per session (default {DEFAULT_SEGMENTS})",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=DEFAULT_ROUNDS,
        help=f"runs of every N and way, pooled (default {DEFAULT_ROUNDS})",
    )
    parser.add_argument(
        "--profiles", default=DEFAULT_PROFILES, help=f"the ladder (default {DEFAULT_PROFILES})"
    )
    parser.add_argument(
        "--min-segment-ratio",
        type=float,
        default=DEFAULT_MIN_SEGMENT_RATIO,
        help="the real-time segment ratio that counts as real time "
        f"(default {DEFAULT_MIN_SEGMENT_RATIO}: every segment)",
    )
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args(argv)
    if args.segments < 1 or args.rounds < 1:
        parser.error("--segments and --rounds must be at least 1")
    if not 0 < args.min_segment_ratio <= 1:
        parser.error("--min-segment-ratio must be in (0, 1]")
    return args


def bench(args: argparse.Namespace, ffmpeg: str, root: Path) -> int:
    load = os.getloadavg()[0]
    path = make_input(ffmpeg, root, args.segments * SEGMENT_S)
    cut = cut_segments(ffmpeg, path, root / "input-segments")
    source = probe_source(path, cut)
    rungs = ladder(args.profiles, source)
    segments = live_segments(cut)
    profiles = ",".join(r.name for r in rungs)
    ways = {
        LPMS: lpms_sessions(profiles),
        FFMPEG: ffmpeg_sessions(ffmpeg, source, rungs, root / "out"),
    }
    pairs = run_all(args.sessions, segments, ways, args.rounds)
    met = print_report(source, rungs, segments, pairs, args, load)
    return 0 if met or not args.check else 1


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    return run_bench("concurrency", args.keep, lambda ffmpeg, root: bench(args, ffmpeg, root))


if __name__ == "__main__":
    sys.exit(main())
