"""RTMP ingest and playback with FFmpeg's own RTMP client (through PyAV)."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from lpms import LPMS, ListenerSettings, RTMPRequest, Settings, Stream
from lpms.rtmp.listener import RECEIVE_BUFFER_SIZE
from tests.e2e.clients import CLIP_HEIGHT, CLIP_WIDTH, Clip, ClipPacket, Received
from tests.e2e.conftest import (
    ClipFile,
    PublishRefused,
    clip_file,
    play,
    publish,
    rtmp_url,
    start_publish,
    wait_for_stream,
)

pytestmark = pytest.mark.e2e


def payloads(packets: list[ClipPacket]) -> list[bytes]:
    return [p.payload for p in packets]


def assert_rising(packets: list[ClipPacket], *, strictly: bool) -> None:
    dts = [p.dts_ms for p in packets]
    pairs = list(itertools.pairwise(dts))
    if strictly:
        assert all(b > a for a, b in pairs), dts
    else:
        assert all(b >= a for a, b in pairs), dts


def assert_whole_stream_from(
    received: Received,
    clip: Clip,
    first_video_index: int,
    size: tuple[int, int] = (CLIP_WIDTH, CLIP_HEIGHT),
) -> None:
    """The player got every packet of the clip from a keyframe on, in order."""
    assert received.error is None, received.error
    clip_video = clip.of_kind("video")
    video = received.of_kind("video")
    assert video, "no video received"
    assert video[0].keyframe
    assert payloads(video) == payloads(clip_video[first_video_index:])
    start_dts = clip_video[first_video_index].dts_ms
    expected_audio = [p for p in clip.of_kind("audio") if p.dts_ms >= start_dts]
    assert payloads(received.of_kind("audio")) == payloads(expected_audio)
    assert_rising(video, strictly=True)
    assert_rising(received.of_kind("audio"), strictly=False)
    # Each player's clock starts near zero, wherever it joined.
    assert video[0].dts_ms < 100
    # Composition offsets (B-frames) survive the relay.
    assert [p.pts_ms - p.dts_ms for p in video] == [
        p.pts_ms - p.dts_ms for p in clip_video[first_video_index:]
    ]
    assert received.video_size == size


# Read pacing (the default) and reading as soon as data arrives must both relay it all.
@pytest.mark.parametrize(
    "server",
    [None, Settings(rtmp=ListenerSettings(read_interval=0))],
    ids=["paced-reads", "immediate-reads"],
    indirect=True,
)
async def test_two_players_get_every_packet(server: LPMS, clip: ClipFile) -> None:
    url = rtmp_url(server, "stream/test")
    publisher = start_publish(url, clip)
    await wait_for_stream(server, "stream/test")
    players = [asyncio.create_task(play(url)) for _ in range(2)]
    sent = await asyncio.wait_for(publisher, 30)
    results = await asyncio.wait_for(asyncio.gather(*players), 30)
    assert sent == len(clip.clip.packets)
    for received in results:
        assert_whole_stream_from(received, clip.clip, 0)
    assert results[0].packets == results[1].packets
    assert "stream/test" not in server.streams


async def test_a_publisher_sending_more_than_a_read_per_interval_is_relayed_whole(
    server: LPMS, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Past read_pacing_after a publisher is read once per read_interval, one
    receive buffer at a time, unless the read filled the buffer: a 4K camera's
    bitrate (here lossless 1080p, ~30 Mbit/s) must still go through whole."""
    big = clip_file(tmp_path_factory, 5.0, size=(1920, 1080), lossless=True, gop_frames=30)
    settings = server.settings.rtmp
    per_interval = RECEIVE_BUFFER_SIZE / settings.read_interval  # bytes a second
    assert len(big.clip.flv) / 5.0 > 1.5 * per_interval  # so the test means something
    url = rtmp_url(server, "stream/big")
    publisher = start_publish(url, big)
    await wait_for_stream(server, "stream/big")
    player = asyncio.create_task(play(url))
    assert await asyncio.wait_for(publisher, 60) == len(big.clip.packets)
    received = await asyncio.wait_for(player, 60)
    assert_whole_stream_from(received, big.clip, 0, size=(1920, 1080))


async def test_late_player_starts_on_keyframe(server: LPMS, clip: ClipFile) -> None:
    url = rtmp_url(server, "stream/late")
    publisher = start_publish(url, clip)
    stream = await wait_for_stream(server, "stream/late")
    # Join after the second keyframe (at 2.0 s): the GOP cache replays from it.
    for _ in range(500):
        gop = [p for p in stream.start_packets() if not p.is_config]
        if gop and gop[0].dts >= 2000:
            break
        await asyncio.sleep(0.02)
    else:
        raise AssertionError("the second GOP never started")
    received = await play(url)
    await asyncio.wait_for(publisher, 30)
    clip_video = clip.clip.of_kind("video")
    keyframes = [i for i, p in enumerate(clip_video) if p.keyframe]
    assert len(keyframes) >= 2
    first = received.of_kind("video")[0]
    joined_at = next(i for i in keyframes if clip_video[i].payload == first.payload)
    assert joined_at > 0, "a late player should not get the stream from its start"
    assert_whole_stream_from(received, clip.clip, joined_at)


async def test_two_streams_at_once(server: LPMS, clip: ClipFile) -> None:
    urls = [rtmp_url(server, f"live/cam{i}") for i in range(2)]
    publishers = [start_publish(url, clip) for url in urls]
    for i in range(2):
        await wait_for_stream(server, f"live/cam{i}")
    players = [asyncio.create_task(play(url)) for url in urls]
    await asyncio.wait_for(asyncio.gather(*publishers), 30)
    for received in await asyncio.wait_for(asyncio.gather(*players), 30):
        assert_whole_stream_from(received, clip.clip, 0)


async def test_callbacks_see_publish_and_end(server: LPMS, clip: ClipFile) -> None:
    seen: list[tuple[str, str, dict[str, str]]] = []
    ended = asyncio.Event()

    async def make_stream_id(request: RTMPRequest) -> str:
        await asyncio.sleep(0)  # coroutine callbacks are awaited
        return f"mapped/{request.name}"

    def got_stream(request: RTMPRequest, stream: Stream) -> None:
        seen.append(("got", stream.id, request.query))

    def end_stream(request: RTMPRequest, stream: Stream) -> None:
        seen.append(("end", stream.id, request.query))
        ended.set()

    server.handle_rtmp_publish(make_stream_id, got_stream, end_stream)
    await publish(rtmp_url(server, "stream/cb?key=secret"), clip, realtime=False)
    await asyncio.wait_for(ended.wait(), 10)
    assert seen == [
        ("got", "mapped/cb", {"key": "secret"}),
        ("end", "mapped/cb", {"key": "secret"}),
    ]


@pytest.mark.parametrize("refusal", ["no_id", "got_false", "raises"])
async def test_publish_refused_by_callback(server: LPMS, clip: ClipFile, refusal: str) -> None:
    def make_stream_id(request: RTMPRequest) -> str | None:
        if refusal == "raises":
            raise PermissionError("bad key")
        return None if refusal == "no_id" else request.path

    server.handle_rtmp_publish(make_stream_id, lambda request, stream: False)
    with pytest.raises(PublishRefused):
        await publish(rtmp_url(server, "stream/nope"), clip, realtime=False)
    assert len(server.streams) == 0


async def test_second_publisher_on_live_id_refused(server: LPMS, clip: ClipFile) -> None:
    url = rtmp_url(server, "stream/taken")
    first = start_publish(url, clip)
    await wait_for_stream(server, "stream/taken")
    with pytest.raises(PublishRefused):
        await publish(url, clip, realtime=False)
    stream = server.streams.get("stream/taken")
    assert stream is not None
    assert not stream.ended
    await asyncio.wait_for(first, 30)


async def test_play_of_unknown_stream_refused(server: LPMS) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    received = await play(rtmp_url(server, "stream/absent"))
    assert received.error is not None
    assert not received.packets
    assert loop.time() - started < 5, "a refused play must fail fast, not time out"


async def test_play_refused_by_callback(server: LPMS, clip: ClipFile) -> None:
    server.handle_rtmp_play(lambda request: None)
    url = rtmp_url(server, "stream/private")
    publisher = start_publish(url, clip)
    await wait_for_stream(server, "stream/private")
    received = await play(url)
    assert received.error is not None
    assert not received.packets
    await asyncio.wait_for(publisher, 30)
