"""The live ABR ladder end to end: FFmpeg publishes over RTMP, the server transcodes
every source segment, and FFmpeg's HLS demuxer and the m3u8 package read back the
master playlist and every variant."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import m3u8
import pytest

from lpms import LPMS, Settings, output_size, parse_profiles
from lpms.transcode.live import TranscodeSettings
from tests.e2e.clients import CLIP_HEIGHT, CLIP_WIDTH
from tests.e2e.conftest import ClipFile, decode_hls, publish, rtmp_url
from tests.e2e.test_hls import fetch, http_url, wait_for_endlist

pytestmark = pytest.mark.e2e

PROFILES = parse_profiles("P360p30fps16x9,P240p30fps16x9")


@pytest.fixture
async def ladder_server() -> AsyncIterator[LPMS]:
    settings = Settings(transcode=TranscodeSettings(profiles=PROFILES))
    server = LPMS(host="127.0.0.1", rtmp_port=0, http_port=0, settings=settings)
    await server.start()
    try:
        yield server
    finally:
        await server.close()


def _number(uri: str) -> str:
    """``RENDITION/N.ts`` -> ``N``."""
    return uri.rsplit("/", 1)[-1].removesuffix(".ts")


async def _master(server: LPMS, path: str) -> m3u8.M3U8:
    status, _, body = await fetch(http_url(server, path))
    assert status == 200
    master = m3u8.loads(body.decode())
    assert master.is_variant
    return master


async def test_live_ladder_variants_line_up_with_the_source(
    ladder_server: LPMS, clip: ClipFile
) -> None:
    server = ladder_server
    await publish(rtmp_url(server, "stream/abr"), clip)
    # Every variant ends (ENDLIST) once its last segment is transcoded.
    master = await _master(server, "stream/abr.m3u8")
    names = [p.uri.removeprefix("abr/").removesuffix(".m3u8") for p in master.playlists]
    assert names == ["source", *(p.name for p in PROFILES)]

    playlists = {
        name: await wait_for_endlist(http_url(server, f"stream/abr/{name}.m3u8"), within=30)
        for name in names
    }
    source = playlists["source"]
    assert len(source.segments) >= 3
    for name in names[1:]:
        variant = playlists[name]
        # Same count, same numbers, same boundaries: players switch at any segment.
        assert variant.media_sequence == source.media_sequence
        assert [_number(s.uri) for s in variant.segments] == [
            _number(s.uri) for s in source.segments
        ]
        assert [s.duration for s in variant.segments] == [s.duration for s in source.segments]

    master = await _master(server, "stream/abr.m3u8")  # now with every variant measured
    by_uri = {p.uri: p.stream_info for p in master.playlists}
    for profile in PROFILES:
        info = by_uri[f"abr/{profile.name}.m3u8"]
        assert info.resolution == output_size(profile, CLIP_WIDTH, CLIP_HEIGHT)
        assert info.codecs is not None
        assert info.codecs.startswith("avc1.")
        assert "mp4a.40.2" in info.codecs
        assert 0 < info.bandwidth < by_uri["abr/source.m3u8"].bandwidth * 20

    for profile in PROFILES:
        width, height = output_size(profile, CLIP_WIDTH, CLIP_HEIGHT)
        url = http_url(server, f"stream/abr/{profile.name}.m3u8")
        decoded = await decode_hls(url)
        assert decoded.error is None
        assert decoded.warnings == []
        assert decoded.video_size == (width, height)
        source_frames = len(clip.clip.of_kind("video"))
        assert len(decoded.video_pts) == source_frames  # 30 fps in, 30 fps out
        assert len(decoded.audio_pts) == len(clip.clip.of_kind("audio"))
        # Every variant segment opens on a keyframe, like the source's.
        for segment in playlists[profile.name].segments:
            one = await decode_hls(http_url(server, f"stream/abr/{segment.uri}"))
            assert one.error is None
            assert one.video_keyframes[0], f"{profile.name}/{segment.uri} starts on no keyframe"


async def test_ladder_keeps_source_timestamps(ladder_server: LPMS, clip: ClipFile) -> None:
    """A variant's frames carry the source's presentation times, so switching
    variants mid-stream shows no jump."""
    server = ladder_server
    await publish(rtmp_url(server, "stream/ts"), clip)
    source_url = http_url(server, "stream/ts/source.m3u8")
    await wait_for_endlist(source_url)
    name = PROFILES[1].name
    await wait_for_endlist(http_url(server, f"stream/ts/{name}.m3u8"), within=30)
    source = await decode_hls(source_url)
    variant = await decode_hls(http_url(server, f"stream/ts/{name}.m3u8"))
    assert sorted(variant.video_pts) == pytest.approx(sorted(source.video_pts), abs=0.002)


async def test_ladder_behind_real_time_drops_rendition_segments_not_source(
    ladder_server: LPMS, clip12: ClipFile, caplog: pytest.LogCaptureFixture
) -> None:
    """Published as fast as the network allows, segments arrive far quicker than two
    cores can transcode them: the renditions skip some (EXT-X-GAP) instead of
    queueing, the source keeps every one, and the server says so."""
    server = ladder_server
    await publish(rtmp_url(server, "stream/fast"), clip12, realtime=False)
    source = await wait_for_endlist(http_url(server, "stream/fast/source.m3u8"))
    name = PROFILES[0].name
    url = http_url(server, f"stream/fast/{name}.m3u8")
    variant = await wait_for_endlist(url, within=30)
    status, _, body = await fetch(url)
    assert status == 200
    gaps = body.decode().count("#EXT-X-GAP")
    assert 0 < gaps < len(variant.segments)
    assert len(variant.segments) == len(source.segments)  # numbering kept in step
    assert "behind real time" in caplog.text
    decoded = await decode_hls(http_url(server, "stream/fast/source.m3u8"))
    assert decoded.error is None
    assert len(decoded.video_pts) == len(clip12.clip.of_kind("video"))
    for segment in variant.segments:
        status, _, _ = await fetch(http_url(server, f"stream/fast/{segment.uri}"))
        assert status in (200, 404)


async def test_stream_without_profiles_serves_a_media_playlist(
    server: LPMS, clip: ClipFile
) -> None:
    await publish(rtmp_url(server, "stream/plain"), clip, realtime=False)
    playlist = await wait_for_endlist(http_url(server, "stream/plain.m3u8"))
    assert not playlist.is_variant
    await asyncio.sleep(0)
