"""The cutter (`lpms.hls.cutter`), fed packets and a fake clock: segments start on
keyframes and end at the first one after the target, parts tile their segment
exactly and never exceed the part target, decode times rise, and nothing handed in
after the first keyframe is lost. Property tests over any stream a publisher can
send, and the rules one by one."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lpms.errors import MediaError
from lpms.hls.cutter import (
    START_OFFSET_MS,
    CutEvent,
    CutPart,
    CutSegment,
    Cutter,
    CutterOptions,
)
from lpms.media.packet import Codec, CodecConfig, MediaPacket, TrackKind

VIDEO = CodecConfig(Codec.H264, b"\x01avc", 640, 360)
AUDIO = CodecConfig(Codec.AAC, b"\x12\x10", sample_rate=48000, channels=2)
CODECS = {Codec.H264, Codec.AAC}
WALL = 1_700_000_000.0


def config(kind: TrackKind, codec_config: CodecConfig) -> MediaPacket:
    return MediaPacket(kind, codec_config.codec, 0, 0, False, b"", True, codec_config)


def frame(dts: int, keyframe: bool = False, cto: int = 0, size: int = 10) -> MediaPacket:
    return MediaPacket(
        TrackKind.VIDEO, Codec.H264, dts, dts + cto, keyframe, bytes(size), False, VIDEO
    )


def sound(dts: int, size: int = 5) -> MediaPacket:
    return MediaPacket(TrackKind.AUDIO, Codec.AAC, dts, dts, True, bytes(size), False, AUDIO)


def as_is(packet: MediaPacket, _config: CodecConfig) -> bytes:
    return packet.payload


def cutter(**options: float | None) -> Cutter:
    return Cutter(CutterOptions(**options), CODECS, as_is, first_sequence=100, clock=lambda: WALL)  # type: ignore[arg-type]


def run(cut: Cutter, packets: list[MediaPacket]) -> list[CutEvent]:
    events: list[CutEvent] = []
    for packet in packets:
        events += cut.push(packet)
    return events + cut.finish()


def av_stream(
    seconds: float, fps: int = 30, gop: int = 60, audio: bool = True
) -> list[MediaPacket]:
    """Configs, then video and AAC audio interleaved by time, as FLV sends them."""
    packets = [config(TrackKind.VIDEO, VIDEO)]
    if audio:
        packets.append(config(TrackKind.AUDIO, AUDIO))
    timed: list[tuple[int, int, MediaPacket]] = []
    for n in range(int(seconds * fps)):
        dts = 5000 + round(n * 1000 / fps)
        timed.append((dts, 0, frame(dts, keyframe=n % gop == 0)))
    if audio:
        for n in range(int(seconds * 48000 / 1024)):
            dts = 5000 + round(n * 1024 * 1000 / 48000)
            timed.append((dts, 1, sound(dts)))
    return packets + [packet for _, _, packet in sorted(timed, key=lambda t: t[:2])]


@dataclass
class Cut:
    segments: list[CutSegment]
    parts: list[CutPart]


def split(events: list[CutEvent]) -> Cut:
    return Cut(
        [e for e in events if isinstance(e, CutSegment)],
        [e for e in events if isinstance(e, CutPart)],
    )


def parts_of(cut: Cut, sequence: int) -> list[CutPart]:
    return [p for p in cut.parts if p.sequence == sequence]


# -- the rules ---------------------------------------------------------------------------


def test_segments_start_on_keyframes_and_end_at_the_first_one_after_the_target() -> None:
    cut = split(run(cutter(segment_duration=2.0), av_stream(7.0, gop=45)))  # 1.5 s GOPs
    assert [s.duration for s in cut.segments] == pytest.approx([3.0, 3.0, 1.0], abs=0.002)
    assert [s.sequence for s in cut.segments] == [100, 101, 102]
    assert cut.segments[0].start_ms == START_OFFSET_MS
    assert cut.segments[0].stream_start_ms == 5000
    for segment in cut.segments:
        first = parts_of(cut, segment.sequence)[0]
        assert first.packets[0].video
        assert first.packets[0].keyframe


def test_program_date_times_follow_the_timestamps_from_the_clock_at_the_start() -> None:
    cut = split(run(cutter(segment_duration=2.0), av_stream(6.0)))
    times = [s.program_date_time.timestamp() for s in cut.segments]
    assert times == pytest.approx([WALL, WALL + 2, WALL + 4])


def test_without_a_part_duration_a_segment_is_one_part() -> None:
    cut = split(run(cutter(segment_duration=2.0), av_stream(6.0)))
    assert [p.index for p in cut.parts] == [0, 0, 0]
    assert [s.parts for s in cut.segments] == [1, 1, 1]


def test_parts_of_a_third_of_a_second_at_30_fps() -> None:
    cut = split(run(cutter(segment_duration=2.0, part_duration=0.34), av_stream(4.0)))
    first = parts_of(cut, 100)
    assert [len([p for p in part.packets if p.video]) for part in first] == [10] * 6
    assert [part.independent for part in first] == [True] + [False] * 5
    assert cut.segments[0].parts == 6


def test_a_part_never_runs_past_its_target() -> None:
    cut = split(run(cutter(segment_duration=2.0, part_duration=0.333), av_stream(4.0)))
    assert max(p.end_ms - p.start_ms for p in cut.parts) <= 333
    # 60 frames a segment: six parts of 9 frames (300 ms: 10 would be 333.3), one of 6.
    assert [len([p for p in part.packets if p.video]) for part in cut.parts[:7]] == [9] * 6 + [6]


def test_audio_before_the_first_keyframe_plays_along_and_earlier_is_left_out() -> None:
    packets = [config(TrackKind.VIDEO, VIDEO), config(TrackKind.AUDIO, AUDIO)]
    packets += [sound(980), frame(990), sound(1000), frame(1000, keyframe=True), frame(1033)]
    cut = split(run(cutter(), packets))
    [part] = cut.parts
    assert [(p.video, p.dts) for p in part.packets] == [(True, 1000), (False, 1000), (True, 1033)]


def test_decode_times_rise_strictly_and_composition_offsets_stay() -> None:
    packets = [config(TrackKind.VIDEO, VIDEO)]
    packets += [frame(0, True, cto=66), frame(0, cto=33), frame(33), frame(20)]
    [part] = split(run(cutter(), packets)).parts
    assert [(p.dts, p.pts) for p in part.packets] == [
        (1000, 1066),
        (1001, 1034),
        (1033, 1033),
        (1034, 1034),
    ]


def test_a_new_configuration_starts_a_segment_at_its_first_keyframe() -> None:
    other = CodecConfig(Codec.H264, b"\x01other", 1280, 720)
    packets = av_stream(1.0, audio=False)
    packets += [
        config(TrackKind.VIDEO, other),
        MediaPacket(TrackKind.VIDEO, Codec.H264, 6000, 6000, False, b"x", False, other),
        MediaPacket(TrackKind.VIDEO, Codec.H264, 6033, 6033, True, b"k", False, other),
    ]
    cut = split(run(cutter(segment_duration=10.0), packets))
    assert [s.video for s in cut.segments] == [VIDEO, other]
    assert [len(p.packets) for p in cut.parts] == [30, 1]  # the frame before the keyframe: lost


def test_an_unreadable_frame_is_left_out_and_counted() -> None:
    def picky(packet: MediaPacket, _config: CodecConfig) -> bytes:
        if packet.payload == b"lies":
            raise MediaError("NAL length past the end")
        return packet.payload

    cut = Cutter(CutterOptions(), CODECS, picky, clock=lambda: WALL)
    packets = [config(TrackKind.VIDEO, VIDEO), frame(0, True)]
    packets.append(MediaPacket(TrackKind.VIDEO, Codec.H264, 33, 33, False, b"lies", False, VIDEO))
    packets.append(frame(66))
    [part] = split(run(cut, packets)).parts
    assert [p.dts for p in part.packets] == [1000, 1066]
    assert cut.unreadable_packets == 1


def test_a_codec_the_muxer_cannot_carry_leaves_its_track_out() -> None:
    vp9 = CodecConfig(Codec.VP9, b"\x01", 640, 360)
    packets = [config(TrackKind.VIDEO, vp9), config(TrackKind.AUDIO, AUDIO)]
    packets += [sound(n * 21) for n in range(200)]
    cut = split(run(cutter(segment_duration=2.0), packets))
    assert cut.segments
    assert all(s.video is None for s in cut.segments)
    assert all(not p.video for part in cut.parts for p in part.packets)


def test_a_segment_over_the_byte_limit_is_dropped_without_parts() -> None:
    packets = [config(TrackKind.VIDEO, VIDEO), frame(0, True, size=600)]
    packets += [frame(n * 33, size=600) for n in range(1, 60)]
    packets += [frame(2000, True), frame(2033)]
    cut = cutter(segment_duration=1.0, max_segment_bytes=10_000)
    result = split(run(cut, packets))
    assert [s.sequence for s in result.segments] == [100]  # the number is not skipped
    assert result.segments[0].start_ms == 3000
    assert cut.dropped_segments == 1


def test_with_parts_a_segment_over_the_byte_limit_ends_early() -> None:
    packets = [config(TrackKind.VIDEO, VIDEO), frame(0, True, size=600)]
    packets += [frame(n * 33, size=600) for n in range(1, 60)]
    packets += [frame(2000, True), frame(2033)]
    cut = cutter(segment_duration=1.0, part_duration=0.2, max_segment_bytes=10_000)
    result = split(run(cut, packets))
    assert [s.sequence for s in result.segments] == [100, 101]
    assert result.segments[1].start_ms == 3000
    assert cut.dropped_segments == 1


def test_audio_only_streams_cut_anywhere_near_the_target() -> None:
    packets = [config(TrackKind.AUDIO, AUDIO)] + [sound(n * 21) for n in range(300)]
    cut = split(run(cutter(segment_duration=2.0, part_duration=0.5), packets))
    assert all(1.99 <= s.duration <= 2.03 for s in cut.segments[:-1])
    assert all(p.independent for p in cut.parts)


# -- properties ---------------------------------------------------------------------------


@st.composite
def streams(draw: st.DrawFn) -> list[MediaPacket]:
    """Video (keyframes anywhere, jittery ms timestamps, B-frame offsets, stalls)
    interleaved with audio, configs first."""
    packets = [config(TrackKind.VIDEO, VIDEO), config(TrackKind.AUDIO, AUDIO)]
    dts = draw(st.integers(0, 10_000))
    for _ in range(draw(st.integers(1, 200))):
        dts += draw(st.sampled_from([0, 16, 33, 34, 40, 100, 700]))
        kind = draw(st.sampled_from(["key", "frame", "frame", "frame", "audio"]))
        if kind == "audio":
            packets.append(sound(dts))
        else:
            cto = draw(st.sampled_from([0, 0, 33, 66]))
            packets.append(frame(dts, keyframe=kind == "key", cto=cto))
    return packets


def video_after_first_keyframe(packets: list[MediaPacket]) -> Iterator[MediaPacket]:
    started = False
    for packet in packets:
        if packet.kind is TrackKind.VIDEO and not packet.is_config:
            started = started or packet.keyframe
            if started:
                yield packet


@settings(max_examples=300)
@given(streams(), st.sampled_from([None, 0.1, 0.334, 1.0]), st.sampled_from([0.5, 2.0, 6.0]))
def test_parts_tile_segments_that_start_on_keyframes(
    packets: list[MediaPacket], part: float | None, segment: float
) -> None:
    cut = split(run(cutter(segment_duration=segment, part_duration=part), packets))
    assert [s.sequence for s in cut.segments] == list(range(100, 100 + len(cut.segments)))
    for previous, following in zip(cut.segments, cut.segments[1:], strict=False):
        assert previous.end_ms == following.start_ms
    for number in (s.sequence for s in cut.segments):
        segment_parts = parts_of(cut, number)
        segment = next(s for s in cut.segments if s.sequence == number)
        assert [p.index for p in segment_parts] == list(range(segment.parts))
        assert segment_parts[0].start_ms == segment.start_ms
        assert segment_parts[-1].end_ms == segment.end_ms
        for left, right in itertools.pairwise(segment_parts):
            assert left.end_ms == right.start_ms
        first = segment_parts[0].packets[0]
        assert first.video
        assert first.keyframe
        for p in segment_parts:
            videos = [x for x in p.packets if x.video]
            assert p.independent == bool(
                videos and p.packets[0] is videos[0] and videos[0].keyframe
            )
    # Every video frame from the first keyframe is in some part, in order, rising.
    cut_video = [x for p in cut.parts for x in p.packets if x.video]
    assert len(cut_video) == len(list(video_after_first_keyframe(packets)))
    assert all(a.dts < b.dts for a, b in itertools.pairwise(cut_video))
    assert all(x.duration > 0 for x in cut_video)
    if part is not None:
        for p in cut.parts:
            # No frame starts at or past the part's target (the last one's duration
            # may carry it past: a frame rate the part cannot foresee).
            assert all(x.dts - p.start_ms < part * 1000 for x in p.packets if x.video)
