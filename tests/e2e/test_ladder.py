"""The live ABR ladder end to end, in both formats: FFmpeg publishes over RTMP, the
server transcodes every source segment, and FFmpeg's HLS demuxer and the m3u8 package
read back the master playlist and every variant. (CMAF variants are video alone, with
the stream's audio a rendition of its own; MPEG-TS ones carry the audio too.)"""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import AsyncIterator
from urllib.parse import urljoin

import av
import m3u8
import pytest

from lpms import LPMS, HLSFormat, HLSSettings, Settings, output_size, parse_profiles
from lpms.transcode.settings import TranscodeSettings
from tests.e2e.clients import CLIP_HEIGHT, CLIP_WIDTH
from tests.e2e.conftest import ClipFile, clip_file, decode_hls, publish, rtmp_url
from tests.e2e.test_hls import fetch, http_url, wait_for_endlist

pytestmark = pytest.mark.e2e

PROFILES = parse_profiles("P360p30fps16x9,P240p30fps16x9")


@pytest.fixture(params=list(HLSFormat), ids=lambda f: f.value)
async def ladder_server(request: pytest.FixtureRequest) -> AsyncIterator[LPMS]:
    settings = Settings(
        hls=HLSSettings(format=request.param),
        transcode=TranscodeSettings(profiles=PROFILES),
    )
    server = LPMS(host="127.0.0.1", rtmp_port=0, http_port=0, settings=settings)
    await server.start()
    try:
        yield server
    finally:
        await server.close()


def _number(uri: str) -> str:
    """``RENDITION/N.ts`` (``RENDITION/EPOCH/N.m4s``) -> ``N``."""
    return uri.rsplit("/", 1)[-1].removesuffix(".ts").removesuffix(".m4s")


def _cmaf(server: LPMS) -> bool:
    return server.settings.hls.format is HLSFormat.FMP4


async def _first_frame_is_a_keyframe(
    server: LPMS, playlist_url: str, segment: m3u8.Segment
) -> bool:
    """Decodes the segment (after its init segment, for CMAF) with PyAV."""
    data = b""
    if segment.init_section is not None:
        _, _, data = await fetch(urljoin(playlist_url, segment.init_section.uri))
    status, _, body = await fetch(urljoin(playlist_url, segment.uri))
    assert status == 200
    with av.open(io.BytesIO(data + body)) as container:
        frame = next(container.decode(video=0))
    return bool(frame.key_frame)


async def master_playlist(server: LPMS, path: str) -> m3u8.M3U8:
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
    master = await master_playlist(server, "stream/abr.m3u8")
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

    master = await master_playlist(server, "stream/abr.m3u8")  # now with every variant measured
    by_uri = {p.uri: p.stream_info for p in master.playlists}
    for profile in PROFILES:
        info = by_uri[f"abr/{profile.name}.m3u8"]
        assert info.resolution == output_size(profile, CLIP_WIDTH, CLIP_HEIGHT)
        assert info.codecs is not None
        assert info.codecs.startswith("avc1.")
        assert "mp4a.40.2" in info.codecs  # its own audio, or the audio rendition's
        assert info.frame_rate == 30.0
        assert 0 < info.bandwidth < by_uri["abr/source.m3u8"].bandwidth * 20
        assert (info.audio == "audio") == _cmaf(server)

    audio_frames = len(clip.clip.of_kind("audio"))
    for profile in PROFILES:
        width, height = output_size(profile, CLIP_WIDTH, CLIP_HEIGHT)
        url = http_url(server, f"stream/abr/{profile.name}.m3u8")
        decoded = await decode_hls(url)
        assert decoded.error is None
        assert decoded.warnings == []
        assert decoded.video_size == (width, height)
        source_frames = len(clip.clip.of_kind("video"))
        assert len(decoded.video_pts) == source_frames  # 30 fps in, 30 fps out
        assert len(decoded.audio_pts) == (0 if _cmaf(server) else audio_frames)
        # Every variant segment opens on a keyframe, like the source's.
        for segment in playlists[profile.name].segments:
            assert await _first_frame_is_a_keyframe(server, url, segment), segment.uri
    if _cmaf(server):
        audio = await decode_hls(http_url(server, "stream/abr/audio.m3u8"))
        assert len(audio.audio_pts) == audio_frames


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


@pytest.mark.parametrize(
    "server",
    [Settings(), Settings(hls=HLSSettings(format=HLSFormat.TS))],
    indirect=True,
    ids=["cmaf", "ts"],
)
async def test_stream_without_profiles_serves_the_source(server: LPMS, clip: ClipFile) -> None:
    """MPEG-TS: the source's media playlist at APP/NAME.m3u8 (today's output); CMAF: a
    master playlist of the source and its audio rendition."""
    await publish(rtmp_url(server, "stream/plain"), clip, realtime=False)
    await wait_for_endlist(http_url(server, "stream/plain/source.m3u8"))
    status, _, body = await fetch(http_url(server, "stream/plain.m3u8"))
    assert status == 200
    top = m3u8.loads(body.decode())
    if server.settings.hls.format is HLSFormat.TS:
        assert not top.is_variant
        assert top.is_endlist
    else:
        assert [p.uri for p in top.playlists] == ["plain/source.m3u8"]
        assert [m.uri for m in top.media] == ["plain/audio.m3u8"]
    await asyncio.sleep(0)


async def test_an_audio_only_stream_gets_no_video_renditions_and_one_line_saying_so(
    ladder_server: LPMS, tmp_path_factory: pytest.TempPathFactory, caplog: pytest.LogCaptureFixture
) -> None:
    server = ladder_server
    radio = clip_file(tmp_path_factory, 6.0, video=False)
    with caplog.at_level(logging.INFO, logger="lpms"):
        await publish(rtmp_url(server, "stream/radio"), radio)
        track = "audio" if _cmaf(server) else "source"
        await wait_for_endlist(http_url(server, f"stream/radio/{track}.m3u8"))
    said = [r.getMessage() for r in caplog.records if "stream/radio" in r.getMessage()]
    assert sum("has no video" in line for line in said) == 1, said
    assert not any("failed" in line for line in said), said
    status, _, body = await fetch(http_url(server, "stream/radio.m3u8"))
    assert status == 200
    top = m3u8.loads(body.decode())
    listed = [p.uri for p in top.playlists] if top.is_variant else []
    assert not any(profile.name in uri for profile in PROFILES for uri in listed)
