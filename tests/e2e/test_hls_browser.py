"""HLS in a real browser: FFmpeg publishes over RTMP, hls.js plays lpms's playlist
in headless Chromium (tests/e2e/browser.py).

Skipped where Chromium or hls.js is missing (the reason says how to install them),
unless LPMS_REQUIRE_BROWSER=1, as .ci/run sets it, makes that a failure.
"""

from __future__ import annotations

import asyncio
import os

import aiohttp
import pytest

from lpms import LPMS
from tests.e2e.browser import BrowserUnavailable, play_hls, require_browser
from tests.e2e.clients import CLIP_HEIGHT, CLIP_WIDTH
from tests.e2e.conftest import (
    CLIENT_TIMEOUT,
    ClipFile,
    rtmp_url,
    start_publish,
    wait_for_stream,
)

pytestmark = pytest.mark.e2e

PLAY_S = 5.0
MIN_ADVANCE_S = 1.5
PLAYLIST_WITHIN_S = 10.0


@pytest.fixture
def chromium() -> str:
    try:
        return require_browser()
    except BrowserUnavailable as exc:
        if os.environ.get("LPMS_REQUIRE_BROWSER") == "1":
            pytest.fail(f"LPMS_REQUIRE_BROWSER=1, but {exc}")
        pytest.skip(str(exc))


async def wait_for_ok(url: str, within: float) -> None:
    """Poll ``url`` until it answers 200 (bounded)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    last = "no answer"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
        while loop.time() < deadline:
            try:
                async with session.get(url) as response:
                    if response.status == 200:
                        return
                    last = f"HTTP {response.status}"
            except (aiohttp.ClientError, TimeoutError) as exc:
                last = repr(exc)
            await asyncio.sleep(0.1)
    raise AssertionError(f"{url} did not answer 200 within {within}s (last: {last})")


async def test_hls_js_plays_the_live_stream_in_chromium(
    chromium: str, server: LPMS, clip: ClipFile
) -> None:
    url = f"http://127.0.0.1:{server.http_port}/stream/browser.m3u8"
    publisher = start_publish(rtmp_url(server, "stream/browser"), clip)
    try:
        await wait_for_stream(server, "stream/browser")
        await wait_for_ok(url, PLAYLIST_WITHIN_S)
        report = await play_hls(url, seconds=PLAY_S)
    finally:
        await asyncio.wait_for(publisher, CLIENT_TIMEOUT)

    assert report.samples, report.describe()
    assert report.environment["mse"]["h264_aac_mp4"], (
        "this Chromium cannot play H.264 and AAC through Media Source Extensions\n"
        + report.describe()
    )
    assert report.fatal_errors == [], report.describe()
    assert report.advanced >= MIN_ADVANCE_S, report.describe()
    assert report.video_size == (CLIP_WIDTH, CLIP_HEIGHT), report.describe()
