"""Low-latency HLS and DASH end to end, on the server's defaults (CMAF): FFmpeg
publishes over RTMP; FFmpeg's HLS and DASH demuxers, the m3u8 package, plain HTTP
requests, hls.js (LL-HLS mode) and Shaka Player in headless Chromium read back what
the server serves."""

from __future__ import annotations

import asyncio
import itertools
import statistics
import time
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urljoin

import m3u8
import pytest

from lpms import LPMS, HLSSettings, Settings, parse_profiles
from lpms.transcode.settings import TranscodeSettings
from tests.e2e.clients import CLIP_HEIGHT, CLIP_WIDTH
from tests.e2e.conformance import Program, require
from tests.e2e.conftest import (
    ClipFile,
    LivePublisher,
    decode_hls,
    play_in_browser,
    publish,
    rtmp_url,
    serving,
)
from tests.e2e.test_hls import fetch, http_url, wait_for_endlist, wait_for_playlist

pytestmark = pytest.mark.e2e

FFPROBE = Program("ffprobe", "ffmpeg")
WITHIN = 30.0  # bounds, not paces: a busy machine is slow to start FFmpeg and Chromium
IMMUTABLE = "public, max-age=31536000, immutable"


@pytest.fixture
async def cmaf_server(tmp_path: Path) -> AsyncIterator[LPMS]:
    """The defaults (fMP4, LL-HLS), every segment of a test's stream kept listed."""
    settings = Settings(hls=HLSSettings(window=200), workdir=str(tmp_path / "work"))
    async with serving(settings) as server:
        yield server


async def media_playlist(server: LPMS, path: str, query: str = "") -> tuple[int, str, float]:
    """(status, text, seconds the answer took)."""
    started = time.monotonic()
    status, _, body = await fetch(http_url(server, path) + query)
    return status, body.decode(), time.monotonic() - started


async def until_parts(server: LPMS, path: str, segments: int) -> m3u8.M3U8:
    """The playlist once it lists ``segments`` whole segments."""
    deadline = time.monotonic() + WITHIN
    while time.monotonic() < deadline:
        status, text, _ = await media_playlist(server, path)
        if status == 200:
            playlist = m3u8.loads(text)
            if len([s for s in playlist.segments if s.uri]) >= segments:
                return playlist
        await asyncio.sleep(0.1)
    raise AssertionError(f"{path} did not list {segments} segments within {WITHIN}s")


def _steady(pts: list[float]) -> bool:
    """Frames 1/30 s apart, none missing or twice."""
    ordered = sorted(pts)
    return all(abs(b - a - 1 / 30) < 0.002 for a, b in itertools.pairwise(ordered))


async def ffprobe_frames(url: str) -> dict[str, list[float]]:
    """Every frame ffprobe decodes from ``url``, by media type (video, audio)."""
    process = await asyncio.create_subprocess_exec(
        "ffprobe", "-v", "error", "-show_entries", "frame=media_type,pts_time",
        "-of", "csv=p=0", url,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        out, err = await asyncio.wait_for(process.communicate(), WITHIN * 4)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise AssertionError(f"ffprobe {url} did not finish") from None
    assert process.returncode == 0, err.decode()
    frames: dict[str, list[float]] = {"video": [], "audio": []}
    for line in out.decode().splitlines():
        kind, _, at = line.partition(",")
        if kind in frames and at.strip() not in ("", "N/A"):
            frames[kind].append(float(at.split(",")[0]))
    return frames


async def until_gone(server: LPMS, path: str) -> None:
    """Until ``path`` is a 404: the stream's grace period is over."""
    deadline = time.monotonic() + WITHIN
    while time.monotonic() < deadline:
        status, _, _ = await fetch(http_url(server, path))
        if status == 404:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{path} still served after {WITHIN}s")


# -- a finished stream: every frame, from both manifests ----------------------------------


async def test_every_frame_of_a_finished_stream_from_hls_and_from_dash(
    cmaf_server: LPMS, clip12: ClipFile
) -> None:
    server = cmaf_server
    await publish(rtmp_url(server, "stream/done"), clip12)
    await wait_for_endlist(http_url(server, "stream/done/source.m3u8"))
    await wait_for_endlist(http_url(server, "stream/done/audio.m3u8"))
    master = m3u8.loads((await fetch(http_url(server, "stream/done.m3u8")))[2].decode())
    [variant] = master.playlists
    assert variant.stream_info.codecs.split(",")[1] == "mp4a.40.2"
    assert variant.stream_info.audio == "audio"
    assert [m.uri for m in master.media] == ["done/audio.m3u8"]
    source = await wait_for_endlist(http_url(server, "stream/done/source.m3u8"))
    assert all(s.init_section is not None for s in source.segments)
    assert not any(s.parts for s in source.segments)  # an ended playlist: whole segments
    video = clip12.clip.of_kind("video")
    audio = clip12.clip.of_kind("audio")
    # FFmpeg's HLS demuxer (through PyAV) on the master playlist.
    decoded = await decode_hls(http_url(server, "stream/done.m3u8"))
    assert decoded.error is None
    assert decoded.video_size == (CLIP_WIDTH, CLIP_HEIGHT)
    assert (len(decoded.video_pts), len(decoded.audio_pts)) == (len(video), len(audio))
    assert _steady(decoded.video_pts)
    # FFmpeg's DASH demuxer (the ffmpeg CLI's ffprobe: PyAV's FFmpeg has none).
    require([FFPROBE], "reading DASH with FFmpeg")
    frames = await ffprobe_frames(http_url(server, "stream/done.mpd"))
    assert (len(frames["video"]), len(frames["audio"])) == (len(video), len(audio))
    assert _steady(frames["video"])


# -- LL-HLS while live -----------------------------------------------------------------------


async def test_blocking_reload_preload_hints_and_delta_updates(
    cmaf_server: LPMS, long_clip: ClipFile
) -> None:
    server = cmaf_server
    path = "stream/ll/source.m3u8"
    publisher = await LivePublisher.start(rtmp_url(server, "stream/ll"), long_clip)
    try:
        playlist = await until_parts(server, path, 1)
        assert playlist.server_control.can_block_reload == "YES"
        assert playlist.part_inf.part_target == pytest.approx(0.333)
        hint = playlist.preload_hint.uri
        sequence, index = (int(x) for x in hint.rsplit("/", 1)[1].split(".")[:2])

        # The hinted part, asked for before it exists: answered once it is complete.
        part_url = urljoin(http_url(server, path), hint)
        status, headers, body = await fetch(part_url)
        assert status == 200
        assert body[4:8] == b"moof"
        assert headers["Cache-Control"] == IMMUTABLE

        # A blocking reload for the part after it: held until it is there, and holds it.
        query = f"?_HLS_msn={sequence}&_HLS_part={index + 1}"
        status, text, _ = await media_playlist(server, path, query)
        assert status == 200
        uris = [p.uri for s in m3u8.loads(text).segments for p in s.parts]
        wanted = f"{sequence}.{index + 1}.m4s"
        following = f"{sequence + 1}.0.m4s"  # past a segment's last part: the next's first
        assert any(uri.endswith((wanted, following)) for uri in uris), text

        # Too far ahead, or a part without its segment: refused at once.
        status, _, took = await media_playlist(server, path, f"?_HLS_msn={sequence + 9}")
        assert (status, took < 3.0) == (400, True)  # not held (a hold lasts 3 x 2 s)
        status, _, _ = await media_playlist(server, path, "?_HLS_part=1")
        assert status == 400

        # Reports of the audio rendition's edge, and a delta update once there is a
        # segment past the skip boundary (six target durations).
        latest = m3u8.loads((await media_playlist(server, path))[1])
        assert [r.uri for r in latest.rendition_reports] == ["audio.m3u8"]
        await until_parts(server, path, 8)
        status, delta, _ = await media_playlist(server, path, "?_HLS_skip=YES")
        assert status == 200
        assert "#EXT-X-SKIP:SKIPPED-SEGMENTS=" in delta
        assert "#EXT-X-VERSION:9" in delta
    finally:
        await publisher.stop()


async def test_caching_headers_a_cdn_gets_right(cmaf_server: LPMS, long_clip: ClipFile) -> None:
    server = cmaf_server
    path = "stream/cache/source.m3u8"
    publisher = await LivePublisher.start(rtmp_url(server, "stream/cache"), long_clip)
    try:
        playlist = await until_parts(server, path, 1)
        segment = next(s for s in playlist.segments if s.uri)
        base = http_url(server, path)
        for uri in (segment.uri, segment.init_section.uri, segment.parts[0].uri):
            status, headers, _ = await fetch(urljoin(base, uri))
            assert (status, headers["Cache-Control"]) == (200, IMMUTABLE), uri
        # One that does not exist yet: nobody may keep its 404.
        epoch = segment.uri.split("/")[1]
        future = urljoin(base, f"source/{epoch}/{playlist.media_sequence + 500}.m4s")
        status, headers, _ = await fetch(future)
        assert (status, headers["Cache-Control"]) == (404, "no-store")
        # A playlist answered 304 to the ETag it was sent with, while unchanged.
        status, headers, _text = await fetch(http_url(server, "stream/cache.m3u8"))
        assert status == 200
        assert "max-age" in headers["Cache-Control"]
        etag = next(value for name, value in headers.items() if name.lower() == "etag")
        again, _, body = await fetch(
            http_url(server, "stream/cache.m3u8"), headers={"If-None-Match": etag}
        )
        assert (again, body) == (304, b"")
    finally:
        await publisher.stop()


async def test_a_new_publish_after_the_grace_period_gets_new_urls(
    tmp_path: Path, long_clip: ClipFile
) -> None:
    """Segment URLs carry the publish's epoch: a stream ID published again (here
    after its grace period) never reuses one a CDN may hold."""
    settings = Settings(hls=HLSSettings(grace_period=0.0), workdir=str(tmp_path))
    async with serving(settings) as server:
        epochs = []
        for _ in range(2):
            # Read while live: with no grace period the playlist goes when it ends.
            publisher = await LivePublisher.start(rtmp_url(server, "stream/again"), long_clip)
            try:
                playlist = await until_parts(server, "stream/again/source.m3u8", 1)
            finally:
                await publisher.stop()
            epochs.append(next(s.uri for s in playlist.segments if s.uri).split("/")[1])
            await until_gone(server, "stream/again.m3u8")
        assert epochs[0] != epochs[1]


# -- players in a browser ----------------------------------------------------------------------


@pytest.fixture
async def ladder_server(tmp_path: Path) -> AsyncIterator[LPMS]:
    settings = Settings(
        transcode=TranscodeSettings(profiles=parse_profiles("P144p30fps16x9")),
        workdir=str(tmp_path),
    )
    async with serving(settings) as server:
        yield server


async def test_hls_js_in_low_latency_mode_plays_a_ladder_close_to_live(
    ladder_server: LPMS, long_clip: ClipFile
) -> None:
    """hls.js (lowLatencyMode) plays the default output of a stream with a ladder:
    it plays on, without a fatal error, and the frame on screen stays within a few
    seconds of the wall clock (bench/latency.py measures how close)."""
    server = ladder_server
    publisher = await LivePublisher.start(rtmp_url(server, "stream/browser"), long_clip)
    try:
        await wait_for_playlist(http_url(server, "stream/browser.m3u8"), within=WITHIN)
        report = await play_in_browser(
            http_url(server, "stream/browser.m3u8"), seconds=16.0, low_latency=True
        )
    finally:
        await publisher.stop()
    assert not report.fatal_errors, report.describe()
    assert report.advanced >= 8.0, report.describe()
    latencies = report.latencies(after=6.0)
    assert latencies, report.describe()
    assert statistics.median(latencies) < 6.0, report.describe()
    assert max(latencies) < 10.0, report.describe()  # it holds: no drift away from live


async def test_shaka_player_plays_the_mpd(cmaf_server: LPMS, long_clip: ClipFile) -> None:
    server = cmaf_server
    publisher = await LivePublisher.start(rtmp_url(server, "stream/dash"), long_clip)
    try:
        await until_parts(server, "stream/dash/source.m3u8", 2)
        report = await play_in_browser(
            http_url(server, "stream/dash.mpd"), seconds=12.0, player="shaka"
        )
    finally:
        await publisher.stop()
    assert not report.fatal_errors, report.describe()
    assert report.advanced >= 5.0, report.describe()
    assert report.video_size == (CLIP_WIDTH, CLIP_HEIGHT), report.describe()
