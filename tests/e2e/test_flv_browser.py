"""Live FLV in a real browser: FFmpeg publishes over RTMP, mpegts.js plays lpms's
``/APP/NAME.flv`` in headless Chromium (tests/e2e/browser.py), over a WebSocket as
browser pages do, and over plain HTTP; skipped or failed (LPMS_REQUIRE_BROWSER=1)
without Chromium or the players, as `play_in_browser` decides."""

from __future__ import annotations

import pytest

from lpms import LPMS
from tests.e2e.clients import CLIP_HEIGHT, CLIP_WIDTH
from tests.e2e.conftest import (
    ClipFile,
    LivePublisher,
    play_in_browser,
    rtmp_url,
    wait_for_stream,
)
from tests.e2e.test_flv import flv_url

pytestmark = pytest.mark.e2e

PLAY_S = 6.0
MIN_ADVANCE_S = 2.0


@pytest.mark.parametrize(
    ("scheme", "protocol"), [("ws", "ws-flv"), ("http", "http-flv")], ids=["websocket", "http"]
)
async def test_mpegts_js_plays_the_live_flv_stream_in_chromium(
    server: LPMS, long_clip: ClipFile, scheme: str, protocol: str
) -> None:
    publisher = await LivePublisher.start(rtmp_url(server, "stream/browser"), long_clip)
    try:
        await wait_for_stream(server, "stream/browser")
        report = await play_in_browser(
            flv_url(server, "stream/browser", scheme), seconds=PLAY_S, player="mpegts"
        )
    finally:
        await publisher.stop()

    assert report.samples, report.describe()
    assert report.environment["mpegts_supported"], (
        "this Chromium cannot play live FLV through Media Source Extensions\n" + report.describe()
    )
    assert report.fatal_errors == [], report.describe()
    assert report.advanced >= MIN_ADVANCE_S, report.describe()
    assert report.video_size == (CLIP_WIDTH, CLIP_HEIGHT), report.describe()
    assert server.metrics.value("lpms_plays_total", protocol=protocol) == 1
