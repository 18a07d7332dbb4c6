"""HLS end to end, in both formats (CMAF, the default, and MPEG-TS): FFmpeg publishes
over RTMP, FFmpeg's HLS demuxer and the m3u8 package read back what the server
serves. (LL-HLS and DASH: tests/e2e/test_llhls.py.)"""

from __future__ import annotations

import asyncio
import errno
import itertools
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import m3u8
import pytest

from lpms import (
    LPMS,
    HLSError,
    HLSFormat,
    HLSRequest,
    HLSSettings,
    RTMPRequest,
    Settings,
    Stream,
)
from tests.e2e.clients import CLIP_FPS, CLIP_HEIGHT, CLIP_WIDTH
from tests.e2e.conftest import (
    ClipFile,
    clip_file,
    decode_hls,
    play,
    publish,
    rtmp_url,
    start_publish,
    wait_for_stream,
)
from tests.e2e.test_rtmp import assert_whole_stream_from
from tests.flv_file import flv_packets

pytestmark = pytest.mark.e2e

SEGMENT_S = 2.0
CMAF = HLSSettings()
TS = HLSSettings(format=HLSFormat.TS)
BOTH = pytest.mark.parametrize("hls_server", [CMAF, TS], indirect=True, ids=["cmaf", "ts"])


@pytest.fixture(scope="session")
def audio_clip(tmp_path_factory: pytest.TempPathFactory) -> ClipFile:
    return clip_file(tmp_path_factory, 6.0, video=False)


def http_url(server: LPMS, path: str) -> str:
    return f"http://127.0.0.1:{server.http_port}/{path}"


async def fetch(url: str, **kwargs: object) -> tuple[int, dict[str, str], bytes]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(url, timeout=aiohttp.ClientTimeout(total=10), **kwargs) as response,  # type: ignore[arg-type]
    ):
        return response.status, dict(response.headers), await response.read()


async def wait_for_playlist(url: str, within: float) -> m3u8.M3U8:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while loop.time() < deadline:
        status, _, body = await fetch(url)
        if status == 200:
            return m3u8.loads(body.decode())
        await asyncio.sleep(0.05)
    raise AssertionError(f"no playlist at {url} within {within:.1f}s")


async def wait_for_endlist(url: str, within: float = 15.0) -> m3u8.M3U8:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while loop.time() < deadline:
        status, _, body = await fetch(url)
        if status == 200:
            playlist = m3u8.loads(body.decode())
            if playlist.is_endlist:
                return playlist
        await asyncio.sleep(0.1)
    raise AssertionError(f"{url} has no EXT-X-ENDLIST within {within:.1f}s")


def media_url(server: LPMS, stream_id: str, kind: str = "video") -> str:
    """A track's media playlist: the source's (MPEG-TS: its audio too), or a CMAF
    stream's audio rendition."""
    name = "audio" if kind == "audio" and server.settings.hls.format is HLSFormat.FMP4 else "source"
    return http_url(server, f"{stream_id}/{name}.m3u8")


def segment_ext(server: LPMS) -> str:
    return ".m4s" if server.settings.hls.format is HLSFormat.FMP4 else ".ts"


@pytest.fixture
async def hls_server(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[LPMS]:
    """A server with HLS settings from ``indirect`` parametrization (default: defaults)."""
    hls = getattr(request, "param", None) or HLSSettings()
    settings = Settings(hls=hls, workdir=str(tmp_path / "work"))
    server = LPMS(host="127.0.0.1", rtmp_port=0, http_port=0, settings=settings)
    await server.start()
    try:
        yield server
    finally:
        await server.close()


@BOTH
async def test_live_then_complete_playlist_that_ffmpeg_decodes(
    hls_server: LPMS, clip12: ClipFile
) -> None:
    server = hls_server
    url = http_url(server, "stream/live.m3u8")
    publisher = start_publish(rtmp_url(server, "stream/live"), clip12)
    await wait_for_stream(server, "stream/live")
    first_frame = asyncio.get_running_loop().time()
    live = await wait_for_playlist(media_url(server, "stream/live"), within=SEGMENT_S + 1.5)
    reachable_after = asyncio.get_running_loop().time() - first_frame
    assert not live.is_endlist
    assert live.segments, "a live playlist lists at least one segment (or part)"
    assert reachable_after <= SEGMENT_S + 1.5

    await asyncio.wait_for(publisher, 30)
    playlist = await wait_for_endlist(media_url(server, "stream/live"))
    durations = [segment.duration for segment in playlist.segments]
    assert sum(durations) == pytest.approx(12.0, abs=0.5)
    for duration in durations:
        assert duration == pytest.approx(SEGMENT_S, abs=0.5)
    assert playlist.target_duration >= max(round(d) for d in durations)
    assert all(s.program_date_time is not None for s in playlist.segments)
    assert all(not s.uri.startswith(("/", "http")) for s in playlist.segments)

    decoded = await decode_hls(url)
    assert decoded.error is None
    assert decoded.warnings == []
    video = clip12.clip.of_kind("video")
    audio = clip12.clip.of_kind("audio")
    assert len(decoded.video_pts) == len(video)  # every frame
    assert decoded.video_size == (CLIP_WIDTH, CLIP_HEIGHT)
    assert _rising(sorted(decoded.video_pts))  # no duplicated or lost presentation times
    assert len(decoded.audio_pts) == len(audio)
    assert _rising(decoded.audio_pts)
    # A/V sync: the first video frame and the first audio frame keep the offset
    # they had at the source.
    source_offset = (video[0].pts_ms - audio[0].pts_ms) / 1000
    played_offset = min(decoded.video_pts) - min(decoded.audio_pts)
    assert played_offset == pytest.approx(source_offset, abs=0.05)
    # Frames are 1/30 s apart throughout, across segment boundaries too.
    shown = sorted(decoded.video_pts)
    frame_gaps = [b - a for a, b in itertools.pairwise(shown)]
    assert max(frame_gaps) == pytest.approx(1 / CLIP_FPS, abs=0.002)


@pytest.mark.parametrize("hls_server", [TS], indirect=True)
async def test_every_segment_starts_with_a_keyframe(hls_server: LPMS, clip12: ClipFile) -> None:
    """Each MPEG-TS segment decodes on its own from a keyframe (a CMAF segment needs its
    init segment: tests/integration/test_cmaf.py)."""
    server = hls_server
    await publish(rtmp_url(server, "stream/keys"), clip12, realtime=False)
    playlist = await wait_for_endlist(http_url(server, "stream/keys.m3u8"))
    assert len(playlist.segments) >= 5
    for segment in playlist.segments:
        decoded = await decode_hls(http_url(server, f"stream/{segment.uri}"))
        assert decoded.error is None
        assert decoded.video_keyframes[0], f"{segment.uri} does not start on a keyframe"


@BOTH
async def test_publisher_returning_gives_a_discontinuity(hls_server: LPMS, clip: ClipFile) -> None:
    server = hls_server
    url = media_url(server, "stream/again")
    await publish(rtmp_url(server, "stream/again"), clip)
    first = await wait_for_endlist(url)
    await publish(rtmp_url(server, "stream/again"), clip)
    _, _, body = await fetch(url)
    playlist = m3u8.loads(body.decode())
    for _ in range(100):
        if playlist.is_endlist and len(playlist.segments) > len(first.segments):
            break
        await asyncio.sleep(0.1)
        _status, _, body = await fetch(url)
        playlist = m3u8.loads(body.decode())
    assert playlist.is_endlist
    flags = [segment.discontinuity for segment in playlist.segments]
    assert flags.count(True) == 1
    assert flags.index(True) == len(first.segments)
    sequences = [playlist.media_sequence + i for i in range(len(playlist.segments))]
    assert sequences == sorted(set(sequences))
    decoded = await decode_hls(http_url(server, "stream/again.m3u8"))
    assert decoded.error is None
    assert len(decoded.video_pts) == 2 * len(clip.clip.of_kind("video"))


@BOTH
async def test_audio_only_stream(hls_server: LPMS, audio_clip: ClipFile) -> None:
    server = hls_server
    await publish(rtmp_url(server, "stream/radio"), audio_clip)
    playlist = await wait_for_endlist(media_url(server, "stream/radio", "audio"))
    assert sum(s.duration for s in playlist.segments) == pytest.approx(6.0, abs=0.5)
    decoded = await decode_hls(http_url(server, "stream/radio.m3u8"))
    assert decoded.error is None
    assert decoded.video_pts == []
    assert len(decoded.audio_pts) == len(audio_clip.clip.of_kind("audio"))
    assert _rising(decoded.audio_pts)


@pytest.mark.parametrize(
    "hls_server",
    [HLSSettings(window=3), HLSSettings(window=3, format=HLSFormat.TS)],
    indirect=True,
    ids=["cmaf", "ts"],
)
async def test_sliding_window_slides(hls_server: LPMS, clip12: ClipFile) -> None:
    server = hls_server
    url = media_url(server, "stream/window")
    publisher = start_publish(rtmp_url(server, "stream/window"), clip12)
    await wait_for_stream(server, "stream/window")
    seen_sequences: set[int] = set()
    while not publisher.done():
        status, _, body = await fetch(url)
        if status == 200:
            playlist = m3u8.loads(body.decode())
            assert len([s for s in playlist.segments if s.uri]) <= 3
            seen_sequences.add(playlist.media_sequence)
        await asyncio.sleep(0.25)
    await publisher
    playlist = await wait_for_endlist(url)
    assert len(playlist.segments) == 3
    assert len(seen_sequences) >= 3, "the media sequence moved as segments slid out"
    decoded = await decode_hls(http_url(server, "stream/window.m3u8"))
    assert decoded.error is None
    assert len(decoded.video_pts) == pytest.approx(3 * SEGMENT_S * CLIP_FPS, abs=CLIP_FPS)


@pytest.mark.parametrize("hls_server", [TS], indirect=True)
async def test_hls_alias_and_http_behaviour(hls_server: LPMS, clip: ClipFile) -> None:
    server = hls_server
    await publish(rtmp_url(server, "stream/test"), clip, realtime=False)
    playlist_url = http_url(server, "stream/test.m3u8")
    await wait_for_endlist(playlist_url)
    status, headers, body = await fetch(playlist_url)
    alias_status, _, alias_body = await fetch(http_url(server, "stream/test_hls.m3u8"))
    assert (status, alias_status) == (200, 200)
    assert alias_body == body
    assert headers["Content-Type"] == "application/vnd.apple.mpegurl"
    assert headers["Access-Control-Allow-Origin"] == "*"
    assert "max-age" in headers["Cache-Control"]  # ended: cacheable for a while

    segment_uri = m3u8.loads(body.decode()).segments[0].uri
    segment_url = http_url(server, f"stream/{segment_uri}")
    await server.hls.disk.written()
    hls = server.hls.get("stream/test")
    assert hls is not None
    file = hls.renditions["source"].segment(int(segment_uri.rsplit("/", 1)[1][: -len(".ts")]))
    assert isinstance(file, Path), "served from a file, with sendfile"
    status, headers, segment = await fetch(segment_url)
    assert status == 200
    assert segment == file.read_bytes()
    assert headers["Content-Type"] == "video/mp2t"
    assert headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert headers["Access-Control-Allow-Origin"] == "*"
    assert headers["Accept-Ranges"] == "bytes"
    assert segment[0] == 0x47
    assert len(segment) % 188 == 0

    status, headers, part = await fetch(segment_url, headers={"Range": "bytes=188-375"})
    assert status == 206
    assert part == segment[188:376]
    assert headers["Content-Range"] == f"bytes 188-375/{len(segment)}"
    status, _, _ = await fetch(segment_url, headers={"Range": f"bytes={len(segment)}-"})
    assert status == 416

    async with (
        aiohttp.ClientSession() as session,
        session.head(segment_url) as response,
    ):
        assert response.status == 200
        assert int(response.headers["Content-Length"]) == len(segment)

    for missing in (
        "stream/nothing.m3u8",
        "stream/test/source/1.ts",
        "stream/test/other/1.ts",
        "stream/../../etc/passwd.ts",
        "stream/%2e%2e/%2e%2e/etc/passwd.m3u8",
        "stream/..%2f..%2fetc%2fpasswd.m3u8",
    ):
        status, _, _ = await fetch(http_url(server, missing))
        assert status == 404, missing


async def test_application_callbacks_and_segment_rtmp_to_hls(clip: ClipFile) -> None:
    settings = Settings(hls=HLSSettings(enabled=False))
    server = LPMS(host="127.0.0.1", rtmp_port=0, http_port=0, settings=settings)
    segmented: list[str] = []

    def got_stream(request: RTMPRequest, stream: Stream) -> None:
        # LPMS's example: the application segments the streams it wants as HLS.
        if request.name == "wanted":
            server.segment_rtmp_to_hls(stream)
            segmented.append(stream.id)

    async def master(request: HLSRequest) -> str | None:
        if request.path == "custom/playlist.m3u8":
            return "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-ENDLIST\n"
        return None

    server.handle_rtmp_publish(got_stream=got_stream)
    server.handle_hls_play(get_master_playlist=master)
    await server.start()
    try:
        await publish(rtmp_url(server, "stream/wanted"), clip, realtime=False)
        await publish(rtmp_url(server, "stream/unwanted"), clip, realtime=False)
        assert segmented == ["stream/wanted"]
        await wait_for_endlist(media_url(server, "stream/wanted"))
        status, _, _ = await fetch(http_url(server, "stream/unwanted.m3u8"))
        assert status == 404
        status, _, body = await fetch(http_url(server, "custom/playlist.m3u8"))
        assert status == 200
        assert body.startswith(b"#EXTM3U")
    finally:
        await server.close()


@pytest.mark.parametrize("hls_format", list(HLSFormat), ids=lambda f: f.value)
async def test_recording_plays_after_restart(
    tmp_path: Path, clip: ClipFile, hls_format: HLSFormat
) -> None:
    settings = Settings(workdir=str(tmp_path), hls=HLSSettings(record=True, format=hls_format))
    server = LPMS(host="127.0.0.1", rtmp_port=0, http_port=0, settings=settings)
    await server.start()
    try:
        await publish(rtmp_url(server, "stream/rec"), clip)
        live = await wait_for_endlist(media_url(server, "stream/rec"))
        assert live.playlist_type == "vod"
    finally:
        await server.close()
    assert (tmp_path / "stream" / "rec.m3u8").is_file()

    # A new server over the same directory serves the recording from disk.
    restarted = LPMS(host="127.0.0.1", rtmp_port=0, http_port=0, settings=settings)
    await restarted.start()
    try:
        playlist = await wait_for_endlist(media_url(restarted, "stream/rec"))
        assert sum(s.duration for s in playlist.segments) == pytest.approx(6.0, abs=0.5)
        decoded = await decode_hls(http_url(restarted, "stream/rec.m3u8"))
        assert decoded.error is None
        assert len(decoded.video_pts) == len(clip.clip.of_kind("video"))
    finally:
        await restarted.close()


@BOTH
async def test_a_full_disk_keeps_relay_and_hls_going(
    hls_server: LPMS, clip: ClipFile, caplog: pytest.LogCaptureFixture
) -> None:
    """Every segment write fails (ENOSPC): counted, logged once, segments served
    from memory, and RTMP players get the whole stream."""
    server = hls_server

    def full_disk(path: Path, data: bytes) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    server.hls.disk.write_file = full_disk
    url = rtmp_url(server, "stream/full")
    with caplog.at_level(logging.ERROR, logger="lpms.hls.store"):
        publisher = start_publish(url, clip)
        stream = await wait_for_stream(server, "stream/full")
        player = asyncio.create_task(play(url))
        live = await wait_for_playlist(media_url(server, "stream/full"), within=15)
        assert server.streams.get("stream/full") is stream
        segment_uri = next((s.uri for s in live.segments if s.uri), None)
        while segment_uri is None:  # (CMAF: parts come first)
            live = await wait_for_playlist(media_url(server, "stream/full"), within=15)
            segment_uri = next((s.uri for s in live.segments if s.uri), None)
        status, _, segment = await fetch(http_url(server, f"stream/full/{segment_uri}"))
        assert status == 200
        assert segment[0] == 0x47 if segment_ext(server) == ".ts" else segment[4:8] == b"moof"
        assert await asyncio.wait_for(publisher, 30) == len(clip.clip.packets)
        received = await player
    first = received.of_kind("video")[0]
    clip_video = clip.clip.of_kind("video")
    joined_at = next(i for i, p in enumerate(clip_video) if p.payload == first.payload)
    assert_whole_stream_from(received, clip.clip, joined_at)
    playlist = await wait_for_endlist(media_url(server, "stream/full"))
    assert playlist.segments
    await server.hls.disk.written()  # the writer thread has tried every segment
    assert server.metrics.value("lpms_segment_write_errors_total") >= len(playlist.segments)
    logged = [r for r in caplog.records if "stream/full" in r.getMessage()]
    assert len(logged) == 1, [r.getMessage() for r in logged]


@pytest.mark.parametrize("hls_format", list(HLSFormat), ids=lambda f: f.value)
async def test_private_segment_dir_is_gone_after_close(
    clip: ClipFile, hls_format: HLSFormat
) -> None:
    settings = Settings(hls=HLSSettings(format=hls_format))
    server = LPMS(host="127.0.0.1", rtmp_port=0, http_port=0, settings=settings)  # no workdir
    await server.start()
    try:
        await publish(rtmp_url(server, "stream/tmp"), clip, realtime=False)
        playlist = await wait_for_endlist(media_url(server, "stream/tmp"))
        await server.hls.disk.written()
        root = server.hls.disk.private_dir
        assert root is not None
        assert sorted(
            p.name for p in (root / "0" / "source").rglob(f"*{segment_ext(server)}")
        ) == sorted(s.uri.rsplit("/", 1)[1] for s in playlist.segments)
    finally:
        await server.close()
    assert not root.exists()


def _rising(values: list[float]) -> bool:
    return all(b > a for a, b in itertools.pairwise(values))


async def test_segmenting_a_stream_the_application_feeds(clip: ClipFile) -> None:
    """segment_rtmp_to_hls on a Stream that no RTMP publisher feeds."""
    settings = Settings(hls=HLSSettings(enabled=False))
    server = LPMS(host="127.0.0.1", rtmp_port=0, http_port=0, settings=settings)
    await server.start()
    try:
        stream = Stream("app/own")
        hls = server.segment_rtmp_to_hls(stream)
        assert server.segment_rtmp_to_hls(stream) is hls  # asking twice is harmless
        with pytest.raises(HLSError):
            server.segment_rtmp_to_hls(Stream("app/own"))  # another stream, same ID
        for packet in flv_packets(clip.clip.flv):
            stream.write(packet)
            await asyncio.sleep(0)
        stream.end()
        playlist = await wait_for_endlist(media_url(server, "app/own"))
        assert sum(s.duration for s in playlist.segments) == pytest.approx(6.0, abs=0.5)
        decoded = await decode_hls(http_url(server, "app/own.m3u8"))
        assert decoded.error is None
        assert len(decoded.video_pts) == len(clip.clip.of_kind("video"))
    finally:
        await server.close()
