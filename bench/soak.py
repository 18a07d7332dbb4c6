#!/usr/bin/env python3
"""A bounded soak of `lpms serve`: streams joining and leaving for minutes, not hours.

``--lanes`` lanes (default 8) each publish one real-time 720p30 stream after another
with the ffmpeg CLI, every publish a random length (``--min-publish`` to
``--max-publish`` seconds) on a new stream name, and play each one with an ffmpeg
player that joins a little after its start. The server runs as `lpms serve` on its
defaults (HLS on, so every stream is also segmented), its RSS, open descriptors and
live streams sampled every 5 s. After the last publish the script waits out the HLS
grace period (60 s), when everything the streams held should be freed.

Each player's record is compared packet by packet (framecrc checksums) with its
publisher's: what it received must be exactly what was published from the keyframe
it joined at to the end, so "packets lost" counts every published packet after that
point that the player did not get (it must be 0: these players keep up). At the end
the script prints RSS over time, the cycles run, players complete, packets lost,
client and server errors, how RSS moved over the steady state (from the first minute
in which streams end as fast as they start to the last), and what is left above the
start once every stream has ended and been freed.

There is no peer here: a soak asks whether lpms stays flat and loses nothing over
time, not how it compares. bench/ingest.py is the side-by-side CPU benchmark; this
script reuses its input, clients and checks.

Exit status: 0 (with --check: 0 when nothing was lost, every player was complete,
the server logged no error, RSS grew less than --max-rss-growth over the steady
state and came back within --max-leftover MiB of the start), 1 otherwise,
2 when a tool is missing, 130 when interrupted.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

import ingest  # noqa: E402  (bench/ingest.py: the input, the clients and their checks)
from ingest import (  # noqa: E402
    BenchError,
    Children,
    MissingTool,
    ProcessTree,
    check_track,
    free_port,
    parse_capture,
    player_command,
    publisher_command,
    stop_server,
    wait_for_port,
)

DEFAULT_DURATION_S = 300.0
DEFAULT_LANES = 8
PUBLISH_RANGE_S = (6.0, 20.0)
JOIN_AFTER_S = (1.5, 3.0)  # a player starts this long after its publisher (random)
PLAY_RETRY_S = 0.5
JOIN_TIMEOUT_S = 10.0
PLAYER_GRACE_S = 15.0
SAMPLE_S = 5.0
MAX_RSS_GROWTH = 0.10  # last minute's median RSS over the first steady minute's
SUMMARY_WINDOW_S = 60.0
MAX_LEFTOVER_MIB = 48.0  # codecs loaded, allocator slack: not a stream's worth of segments
# An ended stream's HLS segments stay in memory for its grace period (60 s), so RSS
# rises until streams end as fast as they start: only after the grace period and the
# longest publish is it steady, and only from then on is growth a leak.
HLS_GRACE_S = 60.0


@dataclass(frozen=True, slots=True)
class Cycle:
    lane: int
    index: int
    publish_s: float
    complete: bool
    lost: int  # published packets after the player's first that it did not receive
    reason: str


@dataclass(frozen=True, slots=True)
class Sample:
    at_s: float
    rss_mib: float
    fds: int
    live_streams: int


@dataclass
class Soak:
    cycles: list[Cycle] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    drain_from: float = 0.0  # seconds into the run when the last stream ended


def lost_packets(received: Sequence[int], published: Sequence[int]) -> int:
    """Published packets from the player's first one on that it did not get."""
    if not received:
        return len(published)
    try:
        start = published.index(received[0])
    except ValueError:
        return len(published)
    missing = Counter(published[start:]) - Counter(received)
    return sum(missing.values())


def run_cycle(
    lane: int, index: int, args: argparse.Namespace, rtmp_port: int, work: Path, rng: random.Random
) -> Cycle:
    children = Children()
    publish_s = rng.uniform(args.min_publish, args.max_publish)
    url = f"rtmp://127.0.0.1:{rtmp_port}/stream/soak-{lane}-{index}"
    base = work / f"lane{lane}-{index}"
    published_path, played_path = base.with_suffix(".pub.crc"), base.with_suffix(".play.crc")
    try:
        publisher = children.spawn(
            publisher_command(args.ffmpeg, args.input, publish_s, url, published_path),
            base.with_suffix(".pub.log"),
        )
        time.sleep(rng.uniform(*JOIN_AFTER_S))
        player = None
        deadline = time.monotonic() + JOIN_TIMEOUT_S
        for attempt in range(100):
            player = children.spawn(
                player_command(args.ffmpeg, url, played_path),
                base.with_suffix(f".play.{attempt}.log"),
            )
            time.sleep(PLAY_RETRY_S)
            if player.poll() is None or player.returncode == 0 or time.monotonic() > deadline:
                break  # playing (or done): a refused play exits at once and is tried again
        assert player is not None
        publisher.wait(timeout=publish_s + 60)
        try:
            player.wait(timeout=PLAYER_GRACE_S)
        except Exception:
            return Cycle(lane, index, publish_s, False, -1, "player did not end with the stream")
        published, received = parse_capture(published_path), parse_capture(played_path)
        reasons = []
        if publisher.returncode != 0:
            reasons.append(f"publisher exited with {publisher.returncode}")
        if player.returncode != 0:
            reasons.append(f"player exited with {player.returncode}")
        reasons += check_track("video", received.video, published.video, 1)
        reasons += check_track("audio", received.audio, published.audio, 1)
        lost = lost_packets(received.video.checksums, published.video.checksums)
        lost += lost_packets(received.audio.checksums, published.audio.checksums)
        return Cycle(lane, index, publish_s, not reasons, lost, "; ".join(reasons) or "ok")
    finally:
        children.close()
        for path in base.parent.glob(base.name + ".*"):
            if not args.keep:
                path.unlink(missing_ok=True)


def run_lane(
    lane: int, args: argparse.Namespace, rtmp_port: int, work: Path, soak: Soak, end: float
) -> None:
    rng = random.Random(args.seed * 1000 + lane)
    time.sleep(lane * 0.5)  # spread the lanes' start-up
    index = 0
    while time.monotonic() + args.min_publish < end:
        cycle = run_cycle(lane, index, args, rtmp_port, work, rng)
        with soak.lock:
            soak.cycles.append(cycle)
        if not cycle.complete:
            ingest.log(f"lane {lane} cycle {index}: {cycle.reason}")
        index += 1


def live_streams(http_port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/api/streams", timeout=2) as r:
            return len(json.load(r)["streams"])
    except OSError:
        return -1


def sample_server(
    pid: int, http_port: int, soak: Soak, started: float, stop: threading.Event
) -> None:
    tree, server = ProcessTree(pid), psutil.Process(pid)
    while not stop.wait(0 if not soak.samples else SAMPLE_S):
        try:
            fds = server.num_fds()
        except psutil.Error:
            fds = -1
        soak.samples.append(
            Sample(
                round(time.monotonic() - started, 1),
                tree.rss_bytes() / (1 << 20),
                fds,
                live_streams(http_port),
            )
        )


def server_errors(log_path: Path) -> list[str]:
    lines = log_path.read_text(errors="replace").splitlines() if log_path.exists() else []
    return [line for line in lines if " ERROR " in line or line.startswith("Traceback")]


def warm_up_s(args: argparse.Namespace) -> float:
    return HLS_GRACE_S + args.max_publish + SAMPLE_S


def rss_growth(
    samples: Sequence[Sample], steady_from: float, steady_to: float, window_s: float
) -> tuple[float, float, float]:
    """Median RSS over the first ``window_s`` of the steady state and over the last
    (up to when the lanes stopped), and the growth between them."""
    steady = [s for s in samples if steady_from <= s.at_s <= steady_to]
    if not steady:
        return 0.0, 0.0, 0.0
    end = steady[-1].at_s
    first = [s.rss_mib for s in steady if s.at_s < steady_from + window_s]
    last = [s.rss_mib for s in steady if s.at_s >= end - window_s]
    head, tail_ = statistics.median(first), statistics.median(last)
    return head, tail_, (tail_ - head) / head if head else 0.0


def print_report(args: argparse.Namespace, soak: Soak, errors: list[str]) -> bool:
    print(f"soak: {args.lanes} lanes, {args.duration:g} s, lpms serve on its defaults (HLS on)")
    print(f"{'time s':>7}  {'RSS MiB':>8}  {'fds':>5}  {'live streams':>12}")
    for sample in soak.samples:
        print(
            f"{sample.at_s:7.1f}  {sample.rss_mib:8.1f}  {sample.fds:5d}  {sample.live_streams:12d}"
        )
    cycles = soak.cycles
    complete = sum(c.complete for c in cycles)
    lost = sum(max(c.lost, 0) for c in cycles)
    steady_from = warm_up_s(args)
    head, tail_, growth = rss_growth(soak.samples, steady_from, soak.drain_from, SUMMARY_WINDOW_S)
    print(
        f"cycles: {len(cycles)} streams published and played, "
        f"{sum(c.publish_s for c in cycles):.0f} s of media"
    )
    print(f"players complete: {complete}/{len(cycles)}")
    print(f"packets lost: {lost}")
    print(f"server errors logged: {len(errors)}")
    for line in errors[:10]:
        print(f"  {line}")
    for cycle in cycles:
        if not cycle.complete:
            print(f"  lane {cycle.lane} cycle {cycle.index}: {cycle.reason} (lost {cycle.lost})")
    peak = max((s.rss_mib for s in soak.samples), default=0.0)
    start = soak.samples[0].rss_mib if soak.samples else 0.0
    drained = soak.samples[-1].rss_mib if soak.samples else 0.0
    leftover = drained - start
    print(
        f"RSS at start {start:.1f} MiB, peak {peak:.1f} MiB, {drained:.1f} MiB once every "
        f"stream had ended and its HLS grace period passed: {leftover:+.1f} MiB "
        f"(limit {args.max_leftover:+.0f} MiB)"
    )
    print(
        f"RSS, steady from {steady_from:.0f} s (HLS grace period + longest publish) "
        f"to {soak.drain_from:.0f} s (the last stream's end): "
        f"median {head:.1f} MiB over its first {SUMMARY_WINDOW_S:.0f} s, {tail_:.1f} MiB "
        f"over the last: {growth:+.1%} (limit {args.max_rss_growth:+.0%})"
    )
    return (
        len(soak.samples) > 0
        and bool(cycles)
        and complete == len(cycles)
        and lost == 0
        and not errors
        and growth <= args.max_rss_growth
        and leftover <= args.max_leftover
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=DEFAULT_DURATION_S, help="seconds")
    parser.add_argument("--lanes", type=int, default=DEFAULT_LANES, help="streams at a time")
    parser.add_argument("--min-publish", type=float, default=PUBLISH_RANGE_S[0])
    parser.add_argument("--max-publish", type=float, default=PUBLISH_RANGE_S[1])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--max-rss-growth", type=float, default=MAX_RSS_GROWTH)
    parser.add_argument(
        "--max-leftover",
        type=float,
        default=MAX_LEFTOVER_MIB,
        help="MiB of RSS above the start allowed once everything has ended",
    )
    parser.add_argument("--python", default=sys.executable, help="interpreter that runs lpms")
    parser.add_argument("--check", action="store_true", help="exit 1 when a check fails")
    parser.add_argument("--keep", action="store_true", help="keep clients' records and logs")
    args = parser.parse_args(argv)
    if not 0 < args.min_publish <= args.max_publish:
        parser.error("need 0 < --min-publish <= --max-publish")
    if args.duration < warm_up_s(args) + 2 * SUMMARY_WINDOW_S:
        parser.error(
            f"--duration must be at least {warm_up_s(args) + 2 * SUMMARY_WINDOW_S:.0f} s: "
            "the warm-up and two minutes of steady state to compare"
        )
    return args


def soak_run(args: argparse.Namespace, work: Path) -> bool:
    ingest.check_lpms(args.python)
    tools = ingest.find_tools(["lpms"], None, None)
    args.ffmpeg = tools.ffmpeg
    args.input = ingest.ensure_input(tools.ffmpeg)
    rtmp_port, http_port = free_port(), free_port()
    log_path = work / "server.log"
    children = Children()
    command = [args.python, "-m", "lpms", "serve", "--host", "127.0.0.1"]
    command += ["--rtmp-port", str(rtmp_port), "--http-port", str(http_port)]
    server = children.spawn(command, log_path, env=ingest.lpms_env(), cwd=work)
    soak = Soak()
    stop = threading.Event()
    try:
        wait_for_port(rtmp_port, server, log_path)
        wait_for_port(http_port, server, log_path)
        started = time.monotonic()
        end = started + args.duration
        sampler = threading.Thread(
            target=sample_server,
            args=(server.pid, http_port, soak, started, stop),
            daemon=True,
        )
        sampler.start()
        lanes = [
            threading.Thread(target=run_lane, args=(lane, args, rtmp_port, work, soak, end))
            for lane in range(args.lanes)
        ]
        for lane in lanes:
            lane.start()
        for lane in lanes:
            lane.join()
        soak.drain_from = time.monotonic() - started
        # Every stream has ended: its HLS output is freed once the grace period is over.
        time.sleep(HLS_GRACE_S + 2 * SAMPLE_S + 2)
        stop.set()
        sampler.join(10)
    finally:
        stop.set()
        stop_server(server)
        children.close()
    return print_report(args, soak, server_errors(log_path))


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="lpms-soak-"))
    try:
        ok = soak_run(args, work)
    except MissingTool as missing:
        print(f"bench/soak.py: {missing} ({ingest.APT_HINT})", file=sys.stderr)
        return 2
    except BenchError as error:
        print(f"bench/soak.py: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    if args.keep:
        print(f"work directory kept: {work}")
    return 0 if ok or not args.check else 1


if __name__ == "__main__":
    sys.exit(main())
