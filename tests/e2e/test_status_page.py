"""The status page at ``/`` in headless Chromium, driven over the DevTools Protocol
(tests/e2e/browser.py `open_page`): the real server, a real FFmpeg publisher, and
the page's own hls.js player.

Skipped where Chromium is missing (the reason says how to install it), unless
LPMS_REQUIRE_BROWSER=1, as .ci/run sets it, makes that a failure. The screenshot the
first test takes goes to its temporary directory, or to LPMS_SCREENSHOT_DIR when
that is set (``python -m tests.e2e.screenshot`` refreshes the README's).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

import lpms
from lpms import LPMS
from lpms.http.status import add_status_routes
from tests.e2e.browser import BrowserUnavailable, DevToolsPage, find_chromium, open_page
from tests.e2e.conftest import (
    ClipFile,
    LivePublisher,
    clip_file,
    rtmp_url,
    wait_for_stream,
)

pytestmark = pytest.mark.e2e

CARD_WITHIN_S = 10.0  # the page refreshes every 2 s
PLAYING_WITHIN_S = 30.0  # the first segment (2 s), then hls.js starting
MIN_ADVANCE_S = 1.5
ADVANCE_WITHIN_S = 30.0
ENDED_WITHIN_S = 15.0
COPY_WITHIN_S = 5.0
HAVE_CURRENT_DATA = 2
# The publisher is stopped once the checks are done; the clip only bounds the test.
CLIP_S = 120.0


@pytest.fixture
def chromium() -> str:
    try:
        return find_chromium()
    except BrowserUnavailable as exc:
        if os.environ.get("LPMS_REQUIRE_BROWSER") == "1":
            pytest.fail(f"LPMS_REQUIRE_BROWSER=1, but {exc}")
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory: pytest.TempPathFactory) -> ClipFile:
    return clip_file(tmp_path_factory, CLIP_S)


def page_url(port: int) -> str:
    return f"http://127.0.0.1:{port}/"


def card(stream_id: str) -> str:
    """A JavaScript expression for the stream's card (or undefined)."""
    return (
        "[...document.querySelectorAll('#streams .card')]"
        f".find((c) => c.dataset.streamId === {json.dumps(stream_id)})"
    )


def field(stream_id: str, name: str) -> str:
    return f"{card(stream_id)}?.querySelector('[data-field={name}]')?.textContent"


async def copied_text(page: DevToolsPage, value_expression: str) -> str:
    """Click the Copy button next to an element; what the clipboard then holds."""
    button = f"{value_expression}.closest('.copy-field').querySelector('.copy-button')"
    await page.click(button)
    await page.wait_for(f"{button}.dataset.state === 'copied'", COPY_WITHIN_S)
    text: str = await page.evaluate("navigator.clipboard.readText()")
    return text


async def allow_clipboard(page: DevToolsPage, port: int) -> None:
    await page.send(
        "Browser.grantPermissions",
        {
            "permissions": ["clipboardReadWrite", "clipboardSanitizedWrite"],
            "origin": f"http://127.0.0.1:{port}",
        },
    )
    await page.send("Emulation.setFocusEmulationEnabled", {"enabled": True})


def screenshot_dir(tmp_path: Path) -> Path:
    chosen = os.environ.get("LPMS_SCREENSHOT_DIR")
    return Path(chosen) if chosen else tmp_path


async def test_status_page_plays_a_live_stream(
    chromium: str, server: LPMS, long_clip: ClipFile, tmp_path: Path
) -> None:
    stream_id = "stream/page"
    publisher = await LivePublisher.start(rtmp_url(server, stream_id), long_clip)
    try:
        await wait_for_stream(server, stream_id)
        async with open_page(page_url(server.http_port)) as page:
            await allow_clipboard(page, server.http_port)
            await page.wait_for(f"Boolean({card(stream_id)})", CARD_WITHIN_S)
            rtmp = f"rtmp://127.0.0.1:{server.rtmp_port}/{stream_id}"
            assert await page.evaluate(field(stream_id, "rtmp-url")) == rtmp
            assert await page.evaluate(field(stream_id, "obs-server")) == rtmp.rsplit("/", 1)[0]
            assert await page.evaluate(field(stream_id, "obs-key")) == "page"
            assert (
                await copied_text(page, f"{card(stream_id)}.querySelector('[data-field=rtmp-url]')")
                == rtmp
            )

            video = f"{card(stream_id)}.querySelector('video')"
            await page.wait_for(f"{video}.readyState >= {HAVE_CURRENT_DATA}", PLAYING_WITHIN_S)
            await page.evaluate(f"{video}.dataset.original = 'yes'")
            before = await stats(page, stream_id, video)
            # Played on, and the stats refreshed meanwhile (the page polls every 2 s).
            await page.wait_for(
                f"{video}.currentTime >= {before['current_time'] + MIN_ADVANCE_S}"
                f" && {field(stream_id, 'uptime')} !== {json.dumps(before['uptime'])}"
                f" && {field(stream_id, 'bytes-in')} !== {json.dumps(before['bytes_in'])}",
                ADVANCE_WITHIN_S,
            )
            after = await stats(page, stream_id, video)

            assert after["current_time"] - before["current_time"] >= MIN_ADVANCE_S, (before, after)
            assert after["original"] == "yes", "the player was replaced on a refresh"
            assert after["uptime"] != before["uptime"], (before, after)
            assert after["bytes_in"] != before["bytes_in"], "stats did not refresh"
            assert after["refreshes"] > before["refreshes"], (before, after)
            assert after["video_size"] == [320, 240], after
            assert "H.264" in after["video_track"], after
            (screenshot_dir(tmp_path) / "status-page-test.png").write_bytes(await page.screenshot())
            assert page.errors == [], page.describe()

            # The publisher leaves: the card goes, the how-to comes back.
            await publisher.stop()
            await page.wait_for(
                f"!{card(stream_id)} && !document.getElementById('empty').hidden", ENDED_WITHIN_S
            )
            assert page.errors == [], page.describe()
    finally:
        await publisher.stop()


async def stats(page: DevToolsPage, stream_id: str, video: str) -> dict[str, Any]:
    value: dict[str, Any] = await page.evaluate(
        f"""(() => {{
            const video = {video};
            return {{
                current_time: video.currentTime,
                video_size: [video.videoWidth, video.videoHeight],
                original: video.dataset.original || null,
                uptime: {field(stream_id, "uptime")},
                bytes_in: {field(stream_id, "bytes-in")},
                video_track: {card(stream_id)}.querySelector('.details').textContent,
                refreshes: performance.getEntriesByType('resource')
                    .filter((entry) => entry.name.endsWith('/api/streams')).length,
            }};
        }})()"""
    )
    return value


async def test_status_page_without_streams_says_how_to_publish(chromium: str, server: LPMS) -> None:
    async with open_page(page_url(server.http_port)) as page:
        server_url = f"rtmp://127.0.0.1:{server.rtmp_port}/stream"
        await page.wait_for(
            "!document.getElementById('empty').hidden"
            f" && document.getElementById('howto-server').textContent === {json.dumps(server_url)}",
            CARD_WITHIN_S,
        )
        ffmpeg = await page.evaluate("document.getElementById('howto-ffmpeg').textContent")
        assert ffmpeg == f"ffmpeg -re -i input.mp4 -c copy -f flv {server_url}/test"
        assert await page.evaluate("document.getElementById('howto-key').textContent") == "test"
        # As on http://HOST:8000 (not a secure context): no navigator.clipboard for
        # the page, so the Copy button falls back to a selection and execCommand.
        await allow_clipboard(page, server.http_port)
        await page.evaluate("void Object.defineProperty(window, 'isSecureContext', {value: false})")
        assert await copied_text(page, "document.getElementById('howto-server')") == server_url
        version = await page.evaluate("document.getElementById('server-version').textContent")
        assert version == f"v{lpms.__version__}"
        assert await page.evaluate("document.getElementById('server-streams').textContent") == "0"
        assert await page.evaluate("document.querySelectorAll('#streams .card').length") == 0
        assert page.errors == [], page.describe()


# -- against a stand-in API: what a publisher names a stream is text, never markup ------

HOSTILE_NAME = '<img src=x onerror="window.pwned = 1">'
STARTING_STREAM = {
    "id": f"stream/{HOSTILE_NAME}",
    "app": "stream",
    "name": HOSTILE_NAME,
    "uptime_s": 0.2,
    "publisher": {"protocol": "rtmp", "address": None},
    "tracks": [],
    "renditions": [],
    "players": {"rtmp": 0, "hls": 0},
    "bytes_in": 0,
    "bytes_out": 0,
    "urls": {
        "rtmp": f"rtmp://127.0.0.1:1935/stream/{HOSTILE_NAME}",
        "hls": "/stream/x.m3u8",
        "obs_server": "rtmp://127.0.0.1:1935/stream",
        "obs_key": HOSTILE_NAME,
    },
}


async def test_status_page_shows_stream_names_as_text(chromium: str) -> None:
    async def api_server(request: web.Request) -> web.Response:
        return web.json_response({"version": "0.1.0", "uptime_s": 1.0, "rtmp_port": 1935})

    async def api_streams(request: web.Request) -> web.Response:
        return web.json_response({"streams": [STARTING_STREAM]})

    app = web.Application()
    add_status_routes(app)
    app.router.add_get("/api/server", api_server)
    app.router.add_get("/api/streams", api_streams)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        async with open_page(page_url(runner.addresses[0][1])) as page:
            stream_id = str(STARTING_STREAM["id"])
            await page.wait_for(f"Boolean({card(stream_id)})", CARD_WITHIN_S)
            assert await page.evaluate(field(stream_id, "id")) == stream_id
            assert await page.evaluate(field(stream_id, "obs-key")) == HOSTILE_NAME
            assert await page.evaluate(f"{card(stream_id)}.querySelectorAll('img').length") == 0
            assert await page.evaluate("window.pwned === undefined")
            # A stream that has only just started: no tracks, no segment yet.
            details = await page.evaluate(
                f"{card(stream_id)}.querySelector('.details').textContent"
            )
            assert "Waiting for the publisher" in details
            assert await page.evaluate(field(stream_id, "bitrate")) == "\N{EN DASH}"
            assert await page.evaluate(field(stream_id, "publisher")) == "Published over RTMP"
            assert page.errors == [], page.describe()
    finally:
        await runner.cleanup()
