"""Stream fan-out: GOP cache, bounded queues, whole-GOP drops, end of stream."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from lpms.errors import StreamError
from lpms.media.packet import Codec, MediaPacket, TrackKind
from lpms.media.registry import StreamRegistry
from lpms.media.settings import StreamLimits
from lpms.media.stream import Stream, StreamEnded


def video(dts: int, *, key: bool = False, config: bool = False) -> MediaPacket:
    return MediaPacket(
        TrackKind.VIDEO, Codec.H264, dts, dts, key or config, b"v%d" % dts, is_config=config
    )


def audio(dts: int, *, config: bool = False) -> MediaPacket:
    return MediaPacket(TrackKind.AUDIO, Codec.AAC, dts, dts, True, b"a%d" % dts, is_config=config)


def metadata() -> MediaPacket:
    return MediaPacket(TrackKind.DATA, Codec.AMF0, 0, 0, False, b"meta", is_config=True)


def drain(subscription: object) -> list[MediaPacket]:
    out = []
    while (packet := subscription.pop()) is not None:  # type: ignore[attr-defined]
        out.append(packet)
    return out


def publish_gop(stream: Stream, start: int, frames: int = 5) -> None:
    stream.write(video(start, key=True))
    for i in range(1, frames):
        stream.write(audio(start + i * 10 - 5))
        stream.write(video(start + i * 10))


def test_new_subscriber_gets_metadata_configs_then_last_gop() -> None:
    stream = Stream("app/name")
    stream.write(metadata())
    stream.write(video(0, config=True))
    stream.write(audio(0, config=True))
    publish_gop(stream, 0)
    publish_gop(stream, 100)
    got = drain(stream.subscribe("p"))
    assert got[0].payload == b"meta"
    assert got[1].is_config
    assert got[1].kind is TrackKind.VIDEO
    assert got[2].is_config
    assert got[2].kind is TrackKind.AUDIO
    assert got[3].keyframe
    assert got[3].dts == 100
    assert [p.dts for p in got[3:]] == [100, 105, 110, 115, 120, 125, 130, 135, 140]


def test_live_packets_reach_every_subscriber_in_order() -> None:
    stream = Stream("a/b")
    subs = [stream.subscribe(f"p{i}") for i in range(3)]
    publish_gop(stream, 0)
    expected = [p.dts for p in drain(subs[0])]
    assert expected == [0, 5, 10, 15, 20, 25, 30, 35, 40]
    assert [p.dts for p in drain(subs[1])] == expected
    assert [p.dts for p in drain(subs[2])] == expected


def test_on_ready_fires_for_push_consumers() -> None:
    stream = Stream("a/b")
    calls = []
    stream.subscribe("p", on_ready=lambda: calls.append(1))
    stream.write(video(0, key=True))
    assert calls == [1]


def test_subscriber_joining_mid_gop_without_cache_waits_for_keyframe() -> None:
    stream = Stream("a/b", StreamLimits(max_gop_packets=3))
    publish_gop(stream, 0, frames=4)  # overflows the GOP cache
    sub = stream.subscribe("p")
    stream.write(video(50))
    stream.write(audio(55))
    stream.write(video(60, key=True))
    got = drain(sub)
    assert got[0].dts == 60
    assert got[0].keyframe


def test_slow_subscriber_drops_whole_gops_and_others_keep_everything() -> None:
    stream = Stream("a/b", StreamLimits(max_queue_packets=12))
    slow = stream.subscribe("slow")
    fast = stream.subscribe("fast")
    fast_got: list[MediaPacket] = []
    stream.write(video(0, config=True))
    for gop in range(4):
        publish_gop(stream, gop * 100)
        fast_got += drain(fast)
    assert len(fast_got) == 1 + 4 * 9
    got = drain(slow)
    assert slow.dropped > 0
    media = [p for p in got if not p.is_config]
    # What the slow one kept starts on a keyframe and has no holes after it.
    assert media[0].keyframe
    assert media[0].kind is TrackKind.VIDEO
    assert [p.dts for p in media] == [
        p.dts for p in fast_got if p.dts >= media[0].dts and not p.is_config
    ]
    assert media[0].dts == 300  # the newest GOP survived
    assert len(slow) == 0


def test_one_huge_gop_drops_everything_and_waits_for_keyframe() -> None:
    stream = Stream("a/b", StreamLimits(max_queue_packets=4))
    sub = stream.subscribe("p")
    stream.write(video(0, config=True))
    for i in range(10):
        stream.write(video(i * 10, key=i == 0))
    assert [p.is_config for p in drain(sub)] == [True]
    stream.write(video(200, key=True))
    assert [p.dts for p in drain(sub)] == [200]


def test_audio_only_stream_drops_and_resumes_at_once() -> None:
    stream = Stream("a/b", StreamLimits(max_queue_packets=4))
    sub = stream.subscribe("p")
    for i in range(10):
        stream.write(audio(i * 20))
    got = drain(sub)
    assert sub.dropped > 0
    assert sub.dropped + len(got) == 10
    # What is left is the newest audio, without holes.
    assert [p.dts for p in got] == list(range(200 - 20 * len(got), 200, 20))


async def test_async_consumer_gets_packets_then_stream_ended() -> None:
    stream = Stream("a/b")
    sub = stream.subscribe("hls")

    async def consume() -> list[int]:
        return [p.dts async for p in sub]

    task = asyncio.create_task(consume())
    await asyncio.sleep(0)
    publish_gop(stream, 0, frames=2)
    stream.end()
    assert await asyncio.wait_for(task, 1) == [0, 5, 10]
    with pytest.raises(StreamEnded):
        await sub.get()


def test_end_callbacks_and_subscribe_after_end() -> None:
    stream = Stream("a/b")
    ended: list[str] = []
    stream.on_end(lambda s: ended.append(s.id))
    stream.end()
    stream.end()
    assert ended == ["a/b"]
    assert stream.subscribe("late").ended
    stream.write(video(0, key=True))  # ignored once ended
    assert stream.packets_in == 0


def test_unsubscribe_stops_delivery() -> None:
    stream = Stream("a/b")
    sub = stream.subscribe("p")
    sub.close()
    sub.close()
    stream.write(video(0, key=True))
    assert stream.subscriber_count == 0
    assert sub.pop() is None


def test_registry_refuses_taken_ids_and_limits_count() -> None:
    registry = StreamRegistry(max_streams=2)
    first = registry.create("a/1")
    with pytest.raises(StreamError, match="already"):
        registry.create("a/1")
    registry.create("a/2")
    with pytest.raises(StreamError, match="limit"):
        registry.create("a/3")
    registry.remove(first)
    assert registry.get("a/1") is None
    registry.create("a/1")
    # Removing a stale stream object does not remove its successor.
    registry.remove(first)
    assert "a/1" in registry


def test_subscribers_get_a_jumping_timeline_repaired_and_monotonic() -> None:
    stream = Stream("stream/test")
    live = stream.subscribe("p")
    stream.write(video(0, config=True))
    stream.write(audio(0, config=True))
    publish_gop(stream, 0, frames=30)
    publish_gop(stream, 3_600_000, frames=30)  # the encoder's clock jumps an hour
    publish_gop(stream, 0, frames=30)  # then it restarts at 0
    got = drain(live)
    late = drain(stream.subscribe("late"))  # the GOP cache holds the repaired timeline
    for packets in (got, late):
        for kind in (TrackKind.VIDEO, TrackKind.AUDIO):
            times = [p.dts for p in packets if p.kind is kind and not p.is_config]
            assert times == sorted(times)
            assert max(b - a for a, b in itertools.pairwise(times)) <= 20
    assert late[-1] is got[-1]
    assert stream.timestamp_repairs.jumps == 2
    assert stream.timestamp_repairs.backward_steps == 0
