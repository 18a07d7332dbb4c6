"""Codecs beyond H.264 and AAC, end to end on the server's defaults (CMAF): HEVC with
Opus published over Enhanced RTMP by FFmpeg 8 (PyAV's), read back by FFmpeg's HLS
demuxer and, where this Chromium can decode HEVC, played by hls.js; and an AV1
rendition transcoded live from an H.264 source."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import AsyncIterator
from fractions import Fraction

import pytest

from lpms import LPMS, Settings, output_size, parse_profiles
from lpms.transcode.profiles import VideoCodec
from lpms.transcode.settings import TranscodeSettings
from tests.e2e.clients import CLIP_FPS, CLIP_HEIGHT, CLIP_WIDTH
from tests.e2e.conftest import (
    ClipFile,
    LivePublisher,
    clip_file,
    decode_hls,
    play_in_browser,
    publish,
    rtmp_url,
    serving,
)
from tests.e2e.test_hls import http_url, wait_for_endlist, wait_for_playlist
from tests.e2e.test_ladder import master_playlist
from tests.e2e.test_llhls import WITHIN

pytestmark = pytest.mark.e2e

HEVC_MSE_TYPE = "hevc_mp4"  # the key browser.py's page reports isTypeSupported under
AV1_PROFILE = dataclasses.replace(
    parse_profiles("P144p30fps16x9")[0], name="av1_144p", codec=VideoCodec.AV1
)


@pytest.fixture(scope="module")
def hevc_clip(tmp_path_factory: pytest.TempPathFactory) -> ClipFile:
    """6 s of HEVC (a keyframe every 2 s) and Opus, as FFmpeg 8 writes them in FLV."""
    return clip_file(tmp_path_factory, 6.0, video_codec="libx265", audio_codec="libopus")


@pytest.fixture(scope="module")
def long_hevc_clip(tmp_path_factory: pytest.TempPathFactory) -> ClipFile:
    """Longer than the browser test needs (a bound, not a pace)."""
    return clip_file(tmp_path_factory, 40.0, video_codec="libx265", audio_codec="libopus")


def _steady(pts: list[float], fps: int) -> bool:
    """Frames 1/fps apart, none missing or twice."""
    ordered = sorted(pts)
    return all(abs(b - a - 1 / fps) < 0.002 for a, b in itertools.pairwise(ordered))


async def test_hevc_and_opus_over_enhanced_rtmp_come_out_whole(
    server: LPMS, hevc_clip: ClipFile
) -> None:
    await publish(rtmp_url(server, "stream/hevc"), hevc_clip)
    await wait_for_endlist(http_url(server, "stream/hevc/source.m3u8"))
    await wait_for_endlist(http_url(server, "stream/hevc/audio.m3u8"))
    master = await master_playlist(server, "stream/hevc.m3u8")
    [variant] = master.playlists
    video_codec, audio_codec = variant.stream_info.codecs.split(",")
    assert video_codec.startswith("hvc1.")  # RFC 6381, as browsers' MSE ask for it
    assert audio_codec == "opus"
    video = hevc_clip.clip.of_kind("video")
    audio = hevc_clip.clip.of_kind("audio")
    decoded = await decode_hls(http_url(server, "stream/hevc.m3u8"))
    assert decoded.error is None
    assert decoded.video_size == (CLIP_WIDTH, CLIP_HEIGHT)
    assert len(decoded.video_pts) == len(video)
    assert _steady(decoded.video_pts, CLIP_FPS)
    assert len(decoded.audio_pts) == len(audio)
    assert decoded.audio_samples >= 0.95 * 6.0 * 48_000


async def test_hevc_plays_in_chromium_where_it_has_hevc(
    server: LPMS, long_hevc_clip: ClipFile
) -> None:
    publisher = await LivePublisher.start(rtmp_url(server, "stream/hevcweb"), long_hevc_clip)
    try:
        await wait_for_playlist(http_url(server, "stream/hevcweb.m3u8"), within=WITHIN)
        report = await play_in_browser(
            http_url(server, "stream/hevcweb.m3u8"), seconds=10.0, low_latency=True
        )
    finally:
        await publisher.stop()
    if not report.environment.get("mse", {}).get(HEVC_MSE_TYPE):
        # Debian's Chromium decodes HEVC only through a platform decoder (VA-API),
        # which a machine without a GPU has not: hls.js must then say so, not hang.
        assert any("codec" in str(e).lower() for e in report.errors), report.describe()
        pytest.skip("this Chromium has no HEVC decoder (MSE isTypeSupported hvc1: false)")
    assert not report.fatal_errors, report.describe()
    assert report.advanced >= 5.0, report.describe()
    assert report.video_size == (CLIP_WIDTH, CLIP_HEIGHT), report.describe()


@pytest.fixture
async def av1_server() -> AsyncIterator[LPMS]:
    async with serving(Settings(transcode=TranscodeSettings(profiles=(AV1_PROFILE,)))) as server:
        yield server


async def test_an_av1_rendition_of_an_h264_source_decodes_at_its_size_and_rate(
    av1_server: LPMS, clip: ClipFile
) -> None:
    server = av1_server
    await publish(rtmp_url(server, "stream/av1"), clip)
    rendition = await wait_for_endlist(
        http_url(server, f"stream/av1/{AV1_PROFILE.name}.m3u8"), within=WITHIN
    )
    assert all(s.init_section is not None for s in rendition.segments)
    master = await master_playlist(server, "stream/av1.m3u8")
    by_uri = {p.uri: p.stream_info for p in master.playlists}
    info = by_uri[f"av1/{AV1_PROFILE.name}.m3u8"]
    width, height = output_size(AV1_PROFILE, CLIP_WIDTH, CLIP_HEIGHT)
    assert info.codecs is not None
    assert info.codecs.startswith("av01.")
    assert info.resolution == (width, height)
    assert AV1_PROFILE.framerate == Fraction(30)
    assert info.frame_rate == 30.0
    decoded = await decode_hls(http_url(server, f"stream/av1/{AV1_PROFILE.name}.m3u8"))
    assert decoded.error is None
    assert decoded.video_size == (width, height)
    assert len(decoded.video_pts) == len(clip.clip.of_kind("video"))
    assert _steady(decoded.video_pts, 30)
