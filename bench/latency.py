#!/usr/bin/env python3
"""Glass-to-glass latency: lpms LL-HLS, lpms ``--hls-format ts``, nginx-rtmp HLS and lpms
WebSocket-FLV, in one run.

For each contender in turn, on the same machine and with the same publisher and player:

- **The publisher** is this script's ``publish`` command in a process of its own:
  FFmpeg's libx264 (veryfast, zerolatency, a keyframe every ``--gop`` frames) and AAC
  encoders and its RTMP muxer, through PyAV, fed a real-time testsrc2 picture. Each
  frame carries a *stamp* drawn across its top: 2 rows of 20 square blocks, white or
  black, giving the wall-clock millisecond it was captured at (32 bits, mod 2^32) and
  an 8-bit check. The publisher logs every frame's capture time.
  It connects before its clock starts, as an encoder does before it goes live.
- **The player** is hls.js 1.7.4 in Debian's headless Chromium
  (``tests/e2e/browser.py``), opened ``--join-after`` (10) seconds into the stream as
  a viewer comes to a live stream, with the same configuration for every contender:
  ``lowLatencyMode: true`` and ``maxLiveSyncPlaybackRate: --catch-up`` (1.5: it may
  play up to 1.5x to get back to its target latency, as live players are set up;
  hls.js's own default, 1, never catches up from a slow start). For every frame the
  page presents it reads the stamp back off the picture (``requestVideoFrameCallback``,
  a canvas) and reports when, on the wall clock, that frame is on screen.
  The WebSocket-FLV contender (``lpms-flv``: ``ws://.../stream/NAME.flv`` from the
  same lpms, LL-HLS on as by default) is played by mpegts.js in the same page, set
  up for low latency as live pages set it: no stash buffer,
  ``liveBufferLatencyChasing`` (a jump to 0.3 s from the buffer's end once it holds
  more than 1 s) and ``liveSync`` at ``--catch-up``.

**Latency** is that moment less the frame's capture time: what a viewer sees, from
the camera's shutter to the screen, measured the same way for every contender,
whatever its playlists say. Where the playlists carry ``EXT-X-PROGRAM-DATE-TIME``
(lpms's, which is the ingest time of each segment's first frame; nginx-rtmp writes
none) the script also prints the figure the issue first asked for: the wall clock
less hls.js's ``playingDate``; and hls.js's own view, its latency to the live edge
and its target (lpms LL-HLS: ``PART-HOLD-BACK``). Each is the median (and p95) over
``--seconds`` (30) of playback, after ``--warmup`` (10) seconds from the first frame.

For lpms's LL-HLS it also measures, outside the server, when each part is listed: a
client holds blocking playlist reloads (``_HLS_msn``/``_HLS_part``, for the part the
``EXT-X-PRELOAD-HINT`` names) on the video playlist and notes when each returns. The
part's last frame is found from the playlist's ``EXT-X-PROGRAM-DATE-TIME`` and part
durations; the delay printed is from that frame's arrival at the server (the PDT
clock: the first frame's arrival, then media time, the publisher being real-time;
target p95 <= 0.2 s), and, as an upper bound, from its capture (with the encoder and
the trip to the server).

Last, unless ``--no-cpu``, it runs ``bench/ingest.py --hls`` on ``lpms`` (LL-HLS over
CMAF, the default) and ``lpms-ts`` (``--hls-format ts``) with ``--cpu-streams``
streams and prints their CPU per stream and its ratio (target <= 1.3x).

With ``--rounds N`` every contender is run N times, alternating the order, and the
table shows each one's latencies over all its rounds. Everything listens on 127.0.0.1.

Exit status: 0 when every contender played (with --check: and the targets were
met), 1 otherwise, 2 when a tool is missing, 130 when interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import re
import shutil
import statistics
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from fractions import Fraction
from pathlib import Path
from typing import Any

SCRIPT = Path(__file__).resolve()
BENCH_DIR = SCRIPT.parent
REPO_DIR = BENCH_DIR.parent
if str(REPO_DIR) not in sys.path:
    sys.path.insert(0, str(REPO_DIR))  # tests.e2e.browser, the player harness

try:
    import aiohttp
    import av
    from tests.e2e import browser

    import ingest
except ImportError as missing:  # pragma: no cover - only on a machine without the dev extras
    sys.exit(f"latency: {missing}; run `make dev` first")

FPS = 30
GOP_FRAMES = 2 * FPS  # a keyframe every 2 s, as streaming services ask of OBS users
WIDTH, HEIGHT = 1280, 720
VIDEO_KBPS = 2500
AUDIO_RATE = 48000
AUDIO_KBPS = 128
AAC_FRAME_SAMPLES = 1024
SEGMENT_S = ingest.HLS_SEGMENT_S  # lpms --segment-duration, nginx-rtmp hls_fragment

# The stamp (tests/e2e/browser/player.html reads it the same way).
STAMP_COLUMNS = 20
STAMP_ROWS = 2
STAMP_BITS = STAMP_COLUMNS * STAMP_ROWS  # 32 of time, 8 of check
WHITE, BLACK, GREY = 235, 16, 128  # limited-range luma and neutral chroma

CONTENDERS = ("lpms-ll", "lpms-ts", "nginx", "lpms-flv")
FLV_CONTENDERS = ("lpms-flv",)  # played over WebSocket-FLV by mpegts.js, not HLS
LATENCY_TARGET_S = 1.5  # lpms LL-HLS median
NGINX_RATIO_TARGET = 0.3
PART_DELAY_TARGET_S = 0.2
CPU_RATIO_TARGET = 1.3

CATCH_UP = 1.5  # hls.js maxLiveSyncPlaybackRate, as live players set it
PUBLISH_MARGIN_S = 15.0  # the publisher runs this much longer than the playback
PLAYLIST_TIMEOUT_S = 20.0  # from the publisher's start to a playlist
PLAYLIST_POLL_S = 0.1
REQUEST_TIMEOUT_S = 10.0  # a blocking reload is held up to 3 target durations
PUBLISHER_EXIT_S = 10.0


class BenchError(Exception):
    """The run could not be made; the message says why."""


# --- the publisher ----------------------------------------------------------------------


def stamp_bits(captured_ms: int) -> list[int]:
    """The stamp's bits, most significant first: the time, then the XOR of its bytes."""
    value = captured_ms % 2**32
    data = value.to_bytes(4, "big")
    check = data[0] ^ data[1] ^ data[2] ^ data[3]
    word = (value << 8) | check
    return [(word >> (STAMP_BITS - 1 - i)) & 1 for i in range(STAMP_BITS)]


def read_stamp(bits: Sequence[int]) -> int | None:
    """The capture time a stamp's bits give, or None when the check fails."""
    word = 0
    for bit in bits:
        word = word * 2 + bit
    value, check = word >> 8, word & 0xFF
    data = value.to_bytes(4, "big")
    return value if data[0] ^ data[1] ^ data[2] ^ data[3] == check else None


def draw_stamp(frame: av.VideoFrame, captured_ms: int) -> None:
    """Draws the stamp into a yuv420p frame's top rows, in place."""
    width = frame.width
    block = width // STAMP_COLUMNS
    bits = stamp_bits(captured_ms)
    luma, chroma = frame.planes[0], frame.planes[1:]
    y_plane = memoryview(luma)  # type: ignore[arg-type]
    for row in range(STAMP_ROWS):
        line = b"".join(
            bytes((WHITE if bit else BLACK,)) * block
            for bit in bits[row * STAMP_COLUMNS : (row + 1) * STAMP_COLUMNS]
        )
        for y in range(row * block, (row + 1) * block):
            start = y * luma.line_size
            y_plane[start : start + len(line)] = line
    grey = bytes((GREY,)) * (block * STAMP_COLUMNS // 2)
    for plane in chroma:
        view = memoryview(plane)  # type: ignore[arg-type]
        for y in range(STAMP_ROWS * block // 2):
            start = y * plane.line_size
            view[start : start + len(grey)] = grey


def publish(url: str, seconds: float, size: tuple[int, int], gop: int, log_path: Path) -> None:
    """Publishes ``seconds`` of stamped picture and tone to ``url`` in real time, and
    writes each frame's capture time (Unix ms) to ``log_path``, one per line."""
    width, height = size
    picture = av.open(f"testsrc2=size={width}x{height}:rate={FPS}", format="lavfi")
    tone = av.open(f"sine=frequency=440:sample_rate={AUDIO_RATE}", format="lavfi")
    frames, samples = picture.decode(video=0), tone.decode(audio=0)
    output = av.open(url, "w", format="flv")
    video = output.add_stream("libx264", rate=FPS)
    video.width, video.height, video.pix_fmt = width, height, "yuv420p"
    video.bit_rate = VIDEO_KBPS * 1000
    video.options = {
        "preset": "veryfast",
        "tune": "zerolatency",  # no lookahead, no B-frames: out as soon as it is in
        "g": str(gop),
        "keyint_min": str(gop),
        "sc_threshold": "0",
    }
    audio = output.add_stream("aac", rate=AUDIO_RATE)
    audio.bit_rate = AUDIO_KBPS * 1000
    # Connect (TCP, RTMP handshake, publish) before the clock starts, as an encoder
    # does before it goes live; FFmpeg would otherwise connect on the first packet,
    # and the server would see that frame late.
    output.start_encoding()
    captured = log_path.open("w", buffering=1)  # a line each: read after a SIGTERM too
    start = time.monotonic()
    next_frame = 0
    audio_pts = 0
    try:
        while next_frame < seconds * FPS:
            video_due = start + next_frame / FPS
            audio_due = start + audio_pts / AUDIO_RATE
            due = min(video_due, audio_due)
            time.sleep(max(0.0, due - time.monotonic()))
            if audio_due <= video_due:
                chunk = next(samples)
                chunk.pts, chunk.time_base = audio_pts, Fraction(1, AUDIO_RATE)
                audio_pts += chunk.samples
                for packet in audio.encode(chunk):
                    output.mux(packet)
                continue
            frame = next(frames)
            # lavfi marks every frame I; left so, x264 would make each one an IDR.
            frame.pict_type = av.video.frame.PictureType.NONE
            now_ms = round(time.time() * 1000)
            draw_stamp(frame, now_ms)
            frame.pts, frame.time_base = next_frame, Fraction(1, FPS)
            captured.write(f"{now_ms}\n")
            next_frame += 1
            for packet in video.encode(frame):
                output.mux(packet)
        for stream in (video, audio):
            for packet in stream.encode(None):
                output.mux(packet)
    finally:
        captured.close()
        output.close()
        picture.close()
        tone.close()


# --- the contenders ---------------------------------------------------------------------


@dataclass(slots=True)
class PartListing:
    """One part of the video playlist, as the blocking-reload client saw it listed."""

    sequence: int
    index: int
    listed_at: float  # time.time()
    end_ms: float  # its end, on the wall clock the playlist's PDTs are on


@dataclass(slots=True)
class Run:
    contender: str
    round: int
    stamp_latencies: list[float] = field(default_factory=list)
    pdt_latencies: list[float] = field(default_factory=list)
    edge_latencies: list[float] = field(default_factory=list)  # hls.js's, to the live edge
    target_latencies: list[float] = field(default_factory=list)  # hls.js's aim
    unreadable_stamps: int = 0
    stalls: int = 0
    part_delays: list[float] = field(default_factory=list)  # after the last frame arrived
    part_delays_from_capture: list[float] = field(default_factory=list)
    player: str = ""  # the player's version (hls.js or mpegts.js) and the browser's
    error: str | None = None


INGEST_SERVERS = {"lpms-ll": "lpms", "lpms-ts": "lpms-ts", "nginx": "nginx", "lpms-flv": "lpms"}
"""Each contender by its name in bench/ingest.py, which starts it."""


def start_contender(
    contender: str, tools: ingest.Tools, run_dir: Path, children: ingest.Children
) -> ingest.RunningServer:
    """One server on free loopback ports, serving HLS as ``bench/ingest.py --hls``
    starts it (and, for an FLV contender, HTTP-FLV as with ``--players http-flv``)."""
    name = INGEST_SERVERS[contender]
    config = ingest.BenchConfig(
        streams=1,
        duration_s=0.0,
        servers=(name,),
        python=sys.executable,
        tools=tools,
        input_path=Path(),  # the publisher here is this script's own
        hls=True,
        players="http-flv" if contender in FLV_CONTENDERS else "rtmp",
    )
    return ingest.start_server(name, config, run_dir, children)


def player_source(contender: str, server: ingest.RunningServer, name: str) -> tuple[str, str]:
    """What the page plays for ``contender``: its URL and the player (browser.play_hls's
    ``player``): the HLS playlist with hls.js, or WebSocket-FLV with mpegts.js."""
    if contender in FLV_CONTENDERS:
        return "ws" + server.play_url(name).removeprefix("http"), "mpegts"
    url = server.playlist_url(name)
    assert url is not None  # served with HLS
    return url, "hls"


async def wait_for_playlist(session: aiohttp.ClientSession, url: str, publisher: Any) -> str:
    """Polls until ``url`` (a master playlist's first variant, for a master) lists a
    segment or a part; returns the media playlist's URL."""
    deadline = time.monotonic() + PLAYLIST_TIMEOUT_S
    while time.monotonic() < deadline:
        if publisher.poll() is not None:
            raise BenchError(f"the publisher exited with {publisher.returncode}")
        try:
            async with session.get(url) as response:
                body = await response.read() if response.status == 200 else b""
        except (aiohttp.ClientError, TimeoutError):
            body = b""
        if b"#EXTINF" in body or b"#EXT-X-PART:" in body:
            return url
        if (variant := ingest.first_variant(url, body)) is not None:
            url = variant
            continue
        await asyncio.sleep(PLAYLIST_POLL_S)
    raise BenchError(f"{url} listed nothing within {PLAYLIST_TIMEOUT_S:.0f} s of publishing")


PART_LINE = re.compile(r'#EXT-X-PART:DURATION=([0-9.]+)[^\n]*URI="([^"]+)"')
PART_URI = re.compile(r"(\d+)\.(\d+)\.m4s$")
HINT_URI = re.compile(r'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="[^"]*?(\d+)\.(\d+)\.m4s"')


def parse_parts(text: str) -> tuple[dict[int, datetime], dict[tuple[int, int], float]]:
    """The PDT of each segment and the duration of each part a playlist lists."""
    pdts: dict[int, datetime] = {}
    durations: dict[tuple[int, int], float] = {}
    sequence = 0
    for line in text.splitlines():
        if line.startswith("#EXT-X-MEDIA-SEQUENCE:"):
            sequence = int(line.split(":", 1)[1])
        elif line.startswith("#EXT-X-SKIP:"):
            sequence += int(line.split("SKIPPED-SEGMENTS=", 1)[1].split(",")[0])
        elif line.startswith("#EXT-X-PROGRAM-DATE-TIME:"):
            pdts[sequence] = datetime.fromisoformat(line.split(":", 1)[1])
        elif (part := PART_LINE.match(line)) is not None:
            if (numbers := PART_URI.search(part.group(2))) is not None:
                key = (int(numbers.group(1)), int(numbers.group(2)))
                durations[key] = float(part.group(1))
        elif line and not line.startswith("#"):
            sequence += 1
    return pdts, durations


async def watch_parts(
    session: aiohttp.ClientSession,
    url: str,
    until: float,
    listings: list[PartListing],
    pdts: dict[int, datetime],
) -> None:
    """Holds blocking reloads for the hinted part until ``until`` (time.time()), noting
    when each returns: the moment the server listed the part it was waiting for; and
    the PDT of every segment seen in ``pdts``. Started as the stream starts, so that
    its first answer lists the stream's first segment."""
    durations: dict[tuple[int, int], float] = {}
    query = ""
    waiting_for: tuple[int, int] | None = None
    while time.time() < until:
        async with session.get(url + query) as response:
            text = (await response.read()).decode()
            listed_at = time.time()
            if response.status != 200:
                raise BenchError(f"{url}{query} answered {response.status}: {text[:200]}")
        found_pdts, found = parse_parts(text)
        pdts.update(found_pdts)
        durations.update(found)
        if waiting_for is not None and waiting_for in found and waiting_for[0] in pdts:
            sequence, index = waiting_for
            offset = sum(durations.get((sequence, i), math.nan) for i in range(index + 1))
            end_ms = pdts[sequence].timestamp() * 1000 + offset * 1000
            if not math.isnan(end_ms):
                listings.append(PartListing(sequence, index, listed_at, end_ms))
        hint = HINT_URI.search(text)
        if hint is None:
            raise BenchError(f"{url} has no EXT-X-PRELOAD-HINT: is low-latency HLS on?")
        waiting_for = (int(hint.group(1)), int(hint.group(2)))
        query = f"?_HLS_msn={waiting_for[0]}&_HLS_part={waiting_for[1]}"


def part_delays(
    listings: list[PartListing], first_pdt: datetime, captured_ms: list[int]
) -> tuple[list[float], list[float]]:
    """For each part listed, seconds to its listing from its last frame's arrival at
    the server, and from that frame's capture.

    The playlist's clock starts at the PDT of the stream's first segment: the
    server's clock when the publisher's frame 0 (its first keyframe) arrived. It runs
    on media time, and the publisher sends in real time, so frame ``n`` arrives at
    ``first_pdt + n / FPS``. A part's last frame is the last to start before its end.
    """
    first_ms = first_pdt.timestamp() * 1000
    after_arrival, after_capture = [], []
    for listing in listings:
        frame = math.floor((listing.end_ms - first_ms) * FPS / 1000 - 0.5)
        if 0 <= frame < len(captured_ms):
            after_arrival.append(listing.listed_at - (first_ms / 1000 + frame / FPS))
            after_capture.append(listing.listed_at - captured_ms[frame] / 1000)
    return after_arrival, after_capture


async def play_one(
    contender: str,
    round_index: int,
    args: argparse.Namespace,
    tools: ingest.Tools,
) -> Run:
    run = Run(contender, round_index)
    run_dir = ingest.OUT_DIR / f"latency-{contender}"
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    children = ingest.Children()
    server = None
    try:
        server = start_contender(contender, tools, run_dir, children)
        name = "latency"
        capture_log = run_dir / "captured.txt"
        seconds = args.join_after + args.warmup + args.seconds + PUBLISH_MARGIN_S
        publisher = children.spawn(
            [
                *(sys.executable, str(SCRIPT), "publish"),
                f"rtmp://127.0.0.1:{server.rtmp_port}/stream/{name}",
                *("--seconds", f"{seconds:g}", "--size", args.size, "--gop", str(args.gop)),
                *("--log", str(capture_log)),
            ],
            run_dir / "publisher.log",
        )
        timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            playlist = server.playlist_url(name)
            assert playlist is not None  # served with HLS
            # The playlist listing a segment: the stream is live, for every contender.
            media_url = await wait_for_playlist(session, playlist, publisher)
            url, player = player_source(contender, server, name)
            listings: list[PartListing] = []
            pdts: dict[int, datetime] = {}
            watcher = None
            if contender == "lpms-ll":
                until = time.time() + args.join_after + args.warmup + args.seconds
                watcher = asyncio.create_task(
                    watch_parts(session, media_url, until, listings, pdts)
                )
            # A viewer comes to a stream that has been live a while, with a playlist
            # of several segments to choose a starting point from.
            await asyncio.sleep(args.join_after)
            report = await browser.play_hls(
                url,
                seconds=args.warmup + args.seconds,
                player=player,
                low_latency=True,
                stamps=True,
                catch_up=args.catch_up,
                stop_when_ended=False,
            )
            if watcher is not None:
                if watcher.done() and watcher.exception() is not None:
                    raise BenchError(f"the part watcher failed: {watcher.exception()}")
                watcher.cancel()
                await asyncio.gather(watcher, return_exceptions=True)
        start = report.first_frame_at
        if start is None or report.fatal_errors:
            raise BenchError(f"{contender} did not play:\n{report.describe()}")
        run.stamp_latencies = [s for at, s in report.stamp_latencies if at >= start + args.warmup]
        run.pdt_latencies = report.latencies(after=args.warmup)
        measured = [s for s in report.samples if s.at >= start + args.warmup]
        run.edge_latencies = [s.live_edge_latency for s in measured if s.live_edge_latency]
        run.target_latencies = [s.target_latency for s in measured if s.target_latency]
        run.unreadable_stamps = report.unreadable_stamps
        environment = report.environment
        chrome = re.search(r"Chrome/([\d.]+)", str(environment.get("user_agent", "")))
        version = (
            f"mpegts.js {environment.get('mpegts_version')}"
            if player == "mpegts"
            else f"hls.js {environment.get('hls_version')}"
        )
        run.player = f"{version} in Chromium {chrome.group(1) if chrome else '(version unknown)'}"
        run.stalls = sum(1 for e in report.errors if e.details == "bufferStalledError")
        if not run.stamp_latencies:
            raise BenchError(
                f"{contender}: no frame stamp read ({report.unreadable_stamps} unreadable)"
            )
        ingest.stop_processes([publisher])
        if contender == "lpms-ll":
            if not pdts:
                raise BenchError("the video playlist showed no EXT-X-PROGRAM-DATE-TIME")
            captured = [int(line) for line in capture_log.read_text().split()]
            run.part_delays, run.part_delays_from_capture = part_delays(
                listings, pdts[min(pdts)], captured
            )
        if server.process.poll() is not None:
            raise BenchError(
                f"the server exited with {server.process.returncode}\n"
                f"{ingest.tail(server.log_path)}"
            )
    except BenchError as error:
        run.error = str(error)
    finally:
        if server is not None:
            ingest.stop_server(server.process)
        children.close()
    return run


# --- figures ----------------------------------------------------------------------------


def percentile(values: Sequence[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(share * len(ordered)) - 1)]


def figures(values: Sequence[float]) -> tuple[float, float] | None:
    """Median and p95, or None for no values."""
    return (statistics.median(values), percentile(values, 0.95)) if values else None


def _median(groups: Iterable[list[float]]) -> str:
    values = [v for group in groups for v in group]
    return f"{statistics.median(values):.2f}" if values else "-"


def _cell(pair: tuple[float, float] | None) -> str:
    return "-" if pair is None else f"{pair[0]:.2f} / {pair[1]:.2f}"


@dataclass(slots=True)
class Outcome:
    """What the run found, and whether each target was met (None: not measured)."""

    lines: list[str] = field(default_factory=list)
    met: dict[str, bool | None] = field(default_factory=dict)
    report: dict[str, Any] = field(default_factory=dict)


def judge(runs: list[Run], cpu: dict[str, float | None]) -> Outcome:
    outcome = Outcome()
    by_contender = {c: [r for r in runs if r.contender == c] for c in CONTENDERS}
    header = (
        "contender",
        "glass-to-glass med / p95 s",
        "PDT med / p95 s",
        "hls.js edge / target s",
        "frames",
        "stalls",
    )
    rows = [header]
    medians: dict[str, float] = {}
    for contender, contender_runs in by_contender.items():
        if not contender_runs:
            continue
        stamps = [s for r in contender_runs for s in r.stamp_latencies]
        pdt = [s for r in contender_runs for s in r.pdt_latencies]
        glass = figures(stamps)
        if glass is not None:
            medians[contender] = glass[0]
        unreadable = sum(r.unreadable_stamps for r in contender_runs)
        rows.append(
            (
                contender,
                _cell(glass),
                _cell(figures(pdt)) if pdt else "- (no PDT)",
                f"{_median(r.edge_latencies for r in contender_runs)} / "
                f"{_median(r.target_latencies for r in contender_runs)}",
                f"{len(stamps)} (+{unreadable} unread)",
                str(sum(r.stalls for r in contender_runs)),
            )
        )
        outcome.report[contender] = {
            "glass_to_glass_s": glass,
            "pdt_s": figures(pdt),
            "frames": len(stamps),
            "unreadable": unreadable,
            "errors": [r.error for r in contender_runs if r.error],
        }
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    outcome.lines += [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows
    ]
    ll = medians.get("lpms-ll")
    if ll is not None:
        outcome.met["latency"] = ll <= LATENCY_TARGET_S
        outcome.lines.append(
            f"lpms LL-HLS glass-to-glass median: {ll:.2f} s (target <= {LATENCY_TARGET_S} s)"
        )
        if (nginx := medians.get("nginx")) is not None:
            outcome.met["nginx_ratio"] = ll / nginx <= NGINX_RATIO_TARGET
            outcome.lines.append(
                f"lpms LL-HLS / nginx-rtmp HLS median: {ll / nginx:.2f}x "
                f"(target <= {NGINX_RATIO_TARGET}x)"
            )
        if (ts := medians.get("lpms-ts")) is not None:
            outcome.lines.append(f"lpms LL-HLS / lpms --hls-format ts median: {ll / ts:.2f}x")
    flv = medians.get("lpms-flv")
    if flv is not None:
        line = f"lpms WebSocket-FLV (mpegts.js) glass-to-glass median: {flv:.2f} s"
        if ll is not None:
            line += f"; lpms WebSocket-FLV / lpms LL-HLS median: {flv / ll:.2f}x"
        outcome.lines.append(line)
    delays = [d for r in by_contender["lpms-ll"] for d in r.part_delays]
    if (delay := figures(delays)) is not None:
        outcome.met["part_delay"] = delay[1] <= PART_DELAY_TARGET_S
        outcome.lines.append(
            f"part listed after its last frame arrived: median {delay[0]:.3f} s, p95 "
            f"{delay[1]:.3f} s, max {max(delays):.3f} s over {len(delays)} parts "
            f"(target: p95 <= {PART_DELAY_TARGET_S} s)"
        )
        outcome.report["part_delay_s"] = {"median": delay[0], "p95": delay[1], "n": len(delays)}
    captured = [d for r in by_contender["lpms-ll"] for d in r.part_delays_from_capture]
    if (delay := figures(captured)) is not None:
        outcome.lines.append(
            f"part listed after its last frame was captured (with encoding and the trip "
            f"in): median {delay[0]:.3f} s, p95 {delay[1]:.3f} s"
        )
        outcome.report["part_delay_from_capture_s"] = {"median": delay[0], "p95": delay[1]}
    ll_cpu, ts_cpu = cpu.get("lpms"), cpu.get("lpms-ts")
    if ll_cpu is not None and ts_cpu:
        outcome.met["cpu"] = ll_cpu / ts_cpu <= CPU_RATIO_TARGET
        outcome.lines.append(
            f"CPU per stream: LL-HLS {ll_cpu:.2f} %, --hls-format ts {ts_cpu:.2f} %: "
            f"{ll_cpu / ts_cpu:.2f}x (target <= {CPU_RATIO_TARGET}x)"
        )
        outcome.report["cpu_pct_per_stream"] = cpu
    for run in runs:
        if run.error:
            outcome.lines.append(f"{run.contender} round {run.round + 1} failed: {run.error}")
    return outcome


def measure_cpu(args: argparse.Namespace, tools: ingest.Tools) -> dict[str, float | None]:
    """``bench/ingest.py --hls`` on lpms's two formats: CPU % of a core per stream."""
    config = ingest.BenchConfig(
        streams=args.cpu_streams,
        duration_s=args.cpu_duration,
        servers=("lpms", "lpms-ts"),
        python=sys.executable,
        tools=tools,
        input_path=ingest.ensure_input(tools.ffmpeg),
        hls=True,
    )
    results: dict[str, list[float]] = {"lpms": [], "lpms-ts": []}
    for round_index in range(args.rounds):
        order = config.servers if round_index % 2 == 0 else config.servers[::-1]
        for name in order:
            result = ingest.run_server(name, config)
            log(ingest.done_line(result))
            if not result.ok:
                raise BenchError(f"the CPU run on {name} failed: {result.error}")
            if result.cpu_pct_per_stream is not None:
                results[name].append(result.cpu_pct_per_stream)
    return {name: statistics.median(v) if v else None for name, v in results.items()}


def _player(runs: list[Run]) -> str:
    versions = {r.player for r in runs if r.player}
    return ", ".join(sorted(versions)) or "no player ran"


def log(message: str) -> None:
    print(f"[latency] {message}", file=sys.stderr, flush=True)


# --- main -------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command")
    publisher = commands.add_parser("publish", help="(internal) the stamped publisher")
    publisher.add_argument("url")
    publisher.add_argument("--seconds", type=float, required=True)
    publisher.add_argument("--size", default=f"{WIDTH}x{HEIGHT}")
    publisher.add_argument("--gop", type=int, default=GOP_FRAMES)
    publisher.add_argument("--log", type=Path, required=True)
    parser.add_argument(
        "--contenders",
        default=",".join(CONTENDERS),
        help=f"comma-separated, in this order (default {','.join(CONTENDERS)})",
    )
    parser.add_argument("--seconds", type=float, default=30.0, help="playback measured")
    parser.add_argument("--warmup", type=float, default=10.0, help="playback before that")
    parser.add_argument(
        "--join-after", type=float, default=10.0, help="seconds live before the player opens"
    )
    parser.add_argument("--size", default=f"{WIDTH}x{HEIGHT}", help="the publisher's picture")
    parser.add_argument(
        "--gop", type=int, default=GOP_FRAMES, help=f"frames a keyframe (default {GOP_FRAMES})"
    )
    parser.add_argument(
        "--catch-up",
        type=float,
        default=CATCH_UP,
        help="hls.js maxLiveSyncPlaybackRate: how much faster it may play to get back to "
        f"its target latency (default {CATCH_UP:g}; 1, hls.js's own default, never does)",
    )
    parser.add_argument("--rounds", type=int, default=1, help="runs of each contender")
    parser.add_argument("--no-cpu", action="store_true", help="skip the CPU comparison")
    parser.add_argument("--cpu-streams", type=int, default=8, help="streams in the CPU run")
    parser.add_argument("--cpu-duration", type=float, default=30.0, help="seconds of each")
    parser.add_argument("--nginx", help="nginx binary (default: found on PATH or in /usr/sbin)")
    parser.add_argument("--nginx-module", help="path of ngx_rtmp_module.so")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    if args.command == "publish":
        return args
    contenders = tuple(c.strip() for c in args.contenders.split(",") if c.strip())
    if not contenders or set(contenders) - set(CONTENDERS):
        parser.error(f"--contenders takes a list of {', '.join(CONTENDERS)}")
    args.contenders = contenders
    if args.rounds < 1 or args.seconds <= 0 or args.warmup < 0 or args.join_after < 0:
        parser.error(
            "--rounds must be at least 1, --seconds positive, --warmup and --join-after "
            "not negative"
        )
    return args


def parse_size(text: str) -> tuple[int, int]:
    width, _, height = text.partition("x")
    return int(width), int(height)


async def play_all(args: argparse.Namespace, tools: ingest.Tools) -> list[Run]:
    runs = []
    for round_index in range(args.rounds):
        order = args.contenders if round_index % 2 == 0 else args.contenders[::-1]
        for contender in order:
            log(f"{contender}: round {round_index + 1}, {args.warmup + args.seconds:g} s of play")
            run = await play_one(contender, round_index, args, tools)
            glass = figures(run.stamp_latencies)
            log(f"{contender}: {run.error or f'median/p95 {_cell(glass)} s'}")
            runs.append(run)
    return runs


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.command == "publish":
        # Stopped by the bench with SIGTERM: it ends there, without a traceback.
        with ingest.terminate_as_interrupt(), contextlib.suppress(KeyboardInterrupt):
            publish(args.url, args.seconds, parse_size(args.size), args.gop, args.log)
        return 0
    try:
        servers = ("nginx",) if "nginx" in args.contenders else ()
        tools = ingest.find_tools(servers, args.nginx, args.nginx_module)
        ingest.check_lpms(sys.executable)
        browser.require_browser()
    except (ingest.MissingTool, browser.BrowserUnavailable) as error:
        print(f"latency: {error}", file=sys.stderr)
        return 2
    with ingest.terminate_as_interrupt():
        try:
            runs = asyncio.run(play_all(args, tools))
            cpu = {} if args.no_cpu else measure_cpu(args, tools)
        except KeyboardInterrupt:
            print("latency: interrupted; servers and clients stopped", file=sys.stderr)
            return 130
        except (BenchError, ingest.BenchError) as error:
            print(f"latency: {error}", file=sys.stderr)
            return 1
    outcome = judge(runs, cpu)
    if args.json:
        print(json.dumps(outcome.report, indent=2))
    else:
        print(
            f"latency: {args.size} {FPS} fps, a keyframe every {args.gop} frames, "
            f"{SEGMENT_S} s segments; the player joins {args.join_after:g} s into the "
            f"stream, {args.seconds:g} s measured after {args.warmup:g} s, "
            f"hls.js lowLatencyMode, maxLiveSyncPlaybackRate {args.catch_up:g} (mpegts.js "
            f"for lpms-flv: latency chasing, liveSyncPlaybackRate {args.catch_up:g}), "
            f"{args.rounds} round(s); {_player(runs)}"
        )
        print("\n".join(outcome.lines))
    if any(run.error for run in runs):
        return 1
    if args.check and not all(outcome.met.values()):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
