"""`lpms serve` on each event loop it offers: asyncio's own (the default) and uvloop
(the `uvloop` extra). The same FFmpeg publisher and player, the same HLS playlist,
the same clean shutdown on SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import urllib.request

import pytest

from tests.e2e.conftest import ClipFile, play, publish
from tests.e2e.test_shutdown import serving, stop

pytestmark = pytest.mark.e2e

PLAYLIST_WITHIN_S = 20.0


def playlist_lists_a_segment(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return b"#EXTINF" in response.read()
    except OSError:
        return False


@pytest.mark.parametrize("event_loop", ["uvloop", "asyncio"])
async def test_serve_relays_and_segments_on_each_event_loop(
    clip12: ClipFile, event_loop: str
) -> None:
    pytest.importorskip(event_loop)
    async with serving("--event-loop", event_loop) as (server, rtmp_port, http_port):
        loop = asyncio.get_running_loop()
        url = f"rtmp://127.0.0.1:{rtmp_port}/stream/loop"
        publisher = asyncio.create_task(publish(url, clip12))
        playlist = f"http://127.0.0.1:{http_port}/stream/loop/source.m3u8"
        deadline = loop.time() + PLAYLIST_WITHIN_S
        while not await asyncio.to_thread(playlist_lists_a_segment, playlist):
            assert loop.time() < deadline, "no HLS segment listed"
            assert not publisher.done(), "the publisher ended before a segment was listed"
            await asyncio.sleep(0.1)
        received = await play(url)
        await asyncio.wait_for(publisher, 60)
        log = await stop(server, signal.SIGTERM)
    assert server.returncode == 0, log
    assert f"(event loop: {event_loop})" in log
    assert received.error is None
    clip_video = [p.payload for p in clip12.clip.of_kind("video")]
    video = [p.payload for p in received.of_kind("video")]
    assert video
    assert video == clip_video[clip_video.index(video[0]) :]
