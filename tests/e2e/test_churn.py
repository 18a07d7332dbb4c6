"""Churn: hundreds of publish/play cycles leave nothing behind in the server: no
tasks, threads, streams, HLS state, connections or file descriptors, and its memory
comes back to where it was."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import sys
import threading
from pathlib import Path

import psutil
import pytest

from lpms import LPMS, HLSSettings, HLSStream, Settings, Stream, Subscription
from lpms.hls.live import LiveSegmenter
from lpms.hls.segmenter import Segmenter
from lpms.rtmp.connection import RTMPConnection
from lpms.rtmp.listener import RTMPServerProtocol
from tests.e2e.clients import make_clip
from tests.e2e.conftest import CLIENT_TIMEOUT

pytestmark = pytest.mark.e2e

WORKERS = 4
CYCLES_PER_WORKER = 50  # 200 publish/play cycles in all
WARMUP_CYCLES = 3
RSS_MARGIN = 24 << 20  # allocator slack after 200 streams' worth of segments
SETTLE_WITHIN_S = 15.0


OWN_TYPES = (
    Stream,
    Subscription,
    HLSStream,
    LiveSegmenter,
    Segmenter,
    RTMPServerProtocol,
    RTMPConnection,
)


def own_objects() -> dict[str, int]:
    """Our objects still reachable or in uncollected cycles, without collecting."""
    counts = dict.fromkeys((t.__name__ for t in OWN_TYPES), 0)
    for obj in gc.get_objects():
        if isinstance(obj, OWN_TYPES):
            counts[type(obj).__name__] += 1
    return {name: count for name, count in counts.items() if count}


def snapshot(server: LPMS) -> dict[str, int]:
    gc.collect()  # (what a full pass frees is checked separately, before it)
    return {
        "tasks": len(asyncio.all_tasks()),
        "threads": threading.active_count(),
        "fds": len(os.listdir("/proc/self/fd")),
        "streams": len(server.streams),
        "hls_streams": len(server.hls),
        "connections": len(server._rtmp_connections),
        "segmenters": len(server._segmenters),
    }


async def run_churn(url: str, clip_path: Path, cycles: int) -> dict[str, int]:
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "tests.e2e.clients", "churn", url, str(clip_path), str(cycles)),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), CLIENT_TIMEOUT * 4)
    assert process.returncode == 0, err.decode()
    totals: dict[str, int] = json.loads(out)
    return totals


@pytest.mark.timeout(400)
async def test_publish_play_churn_leaves_nothing_behind(tmp_path: Path) -> None:
    clip = make_clip(0.7, gop_frames=10)
    clip_path = tmp_path / "short.flv"
    clip_path.write_bytes(clip.flv)
    # A short grace period so ended HLS streams are freed within the test.
    settings = Settings(hls=HLSSettings(grace_period=0.5))
    server = LPMS(host="127.0.0.1", rtmp_port=0, http_port=0, settings=settings)
    await server.start()
    process = psutil.Process()
    try:
        base = f"rtmp://127.0.0.1:{server.rtmp_port}/churn"
        warm = await run_churn(f"{base}/warmup", clip_path, WARMUP_CYCLES)
        assert warm["play_errors"] == 0
        await settle(server)
        before, rss_before = snapshot(server), process.memory_info().rss
        # Without the cycle collector, nothing may be left: a reference cycle through
        # a stream, a connection or a segmenter holds its buffers until a full GC pass,
        # which a busy server runs rarely (bench/soak.py saw RSS climb by hundreds of
        # MiB that way).
        gc.disable()

        results = await asyncio.gather(
            *(run_churn(f"{base}/w{w}", clip_path, CYCLES_PER_WORKER) for w in range(WORKERS))
        )
        assert sum(r["cycles"] for r in results) == WORKERS * CYCLES_PER_WORKER
        assert sum(r["publish_errors"] for r in results) == 0
        assert sum(r["play_errors"] for r in results) == 0
        assert server.metrics.value("lpms_publishes_total", protocol="rtmp") == (
            WARMUP_CYCLES + WORKERS * CYCLES_PER_WORKER
        )

        await settle(server)
        left_in_cycles = own_objects()
        gc.enable()
        after, rss_after = snapshot(server), process.memory_info().rss
    finally:
        gc.enable()
        await server.close()
    assert left_in_cycles == {}
    print(f"churn: {before} -> {after}, RSS {rss_before >> 20} -> {rss_after >> 20} MiB")
    assert after == before
    assert rss_after - rss_before < RSS_MARGIN, f"RSS grew {(rss_after - rss_before) >> 20} MiB"


async def settle(server: LPMS) -> None:
    """Wait (bounded) until no stream, connection or HLS state is left."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + SETTLE_WITHIN_S
    while loop.time() < deadline:
        if not (len(server.streams) or len(server.hls) or len(server._rtmp_connections)):
            await asyncio.sleep(0.2)  # let closing tasks finish
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"server still holds state: {snapshot(server)}")
