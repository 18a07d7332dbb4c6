"""The segmenter on real encoded media: cuts, durations, keyframes, continuity."""

from __future__ import annotations

import dataclasses
import io
import itertools
from functools import cache

import av
import pytest

from lpms.hls.segmenter import TS_PACKET_SIZE, Segment, Segmenter, SegmenterOptions
from lpms.media.packet import Codec, CodecConfig, MediaPacket, TrackKind
from tests.e2e.clients import CLIP_FPS, make_clip
from tests.flv_file import flv_packets


@cache
def clip_packets(
    seconds: float, *, gop_frames: int = 60, video: bool = True, audio: bool = True
) -> list[MediaPacket]:
    return flv_packets(make_clip(seconds, gop_frames=gop_frames, video=video, audio=audio).flv)


def segment_all(packets: list[MediaPacket], **options: float) -> list[Segment]:
    segmenter = Segmenter(SegmenterOptions(**options))  # type: ignore[arg-type]
    segments: list[Segment] = []
    for packet in packets:
        segments += segmenter.push(packet)
    return segments + segmenter.finish()


def decode(data: bytes) -> tuple[list[av.VideoFrame], list[av.AudioFrame], list[str]]:
    """Decode TS bytes with FFmpeg; its frames and its warnings."""
    video: list[av.VideoFrame] = []
    audio: list[av.AudioFrame] = []
    # PyAV passes FFmpeg's log on only when a level is set.
    av.logging.set_level(av.logging.WARNING)
    with av.logging.Capture() as logs, av.open(io.BytesIO(data), format="mpegts") as container:
        streams = [s for s in container.streams if s.type in ("video", "audio")]
        for packet in container.demux(*streams):
            for frame in packet.decode():
                (video if packet.stream.type == "video" else audio).append(frame)  # type: ignore[arg-type]
    warnings = [message for level, _name, message in logs if level <= av.logging.WARNING]
    return video, audio, warnings


def test_cuts_at_each_keyframe_after_the_target() -> None:
    packets = clip_packets(10.0)
    segments = segment_all(packets, segment_duration=2.0)
    assert len(segments) == 5
    assert [s.duration for s in segments] == pytest.approx([2.0] * 5, abs=0.05)
    assert [s.sequence for s in segments] == [0, 1, 2, 3, 4]
    assert sum(s.frames for s in segments) == sum(
        1 for p in packets if p.kind is TrackKind.VIDEO and not p.is_config
    )


def test_every_segment_decodes_alone_from_a_keyframe() -> None:
    segments = segment_all(clip_packets(6.0), segment_duration=2.0)
    for segment in segments:
        assert len(segment.data) % TS_PACKET_SIZE == 0
        video, audio, warnings = decode(segment.data)
        assert video[0].key_frame
        assert len(video) == segment.frames
        assert audio
        assert warnings == []


def test_segments_back_to_back_are_one_clean_stream() -> None:
    """Continuity counters and timestamps run on across segment boundaries."""
    packets = clip_packets(6.0)
    segments = segment_all(packets, segment_duration=2.0)
    video, audio, warnings = decode(b"".join(s.data for s in segments))
    assert warnings == []
    assert len(video) == CLIP_FPS * 6
    times = sorted(float(frame.time) for frame in video)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert max(gaps) == pytest.approx(1 / CLIP_FPS, abs=0.002)
    audio_frames = sum(1 for p in packets if p.kind is TrackKind.AUDIO and not p.is_config)
    assert len(audio) == audio_frames
    for index in range(len(segments) - 1):
        assert continuity_follows(segments[index].data, segments[index + 1].data)


def continuity_follows(first: bytes, second: bytes) -> bool:
    """Each PID's first counter in ``second`` follows its last one in ``first``."""
    last: dict[int, int] = {}
    for offset in range(0, len(first), TS_PACKET_SIZE):
        pid = ((first[offset + 1] & 0x1F) << 8) | first[offset + 2]
        if first[offset + 3] & 0x10:
            last[pid] = first[offset + 3] & 0x0F
    seen: set[int] = set()
    for offset in range(0, len(second), TS_PACKET_SIZE):
        pid = ((second[offset + 1] & 0x1F) << 8) | second[offset + 2]
        if pid in seen or pid not in last or not second[offset + 3] & 0x10:
            continue
        seen.add(pid)
        if second[offset + 3] & 0x0F != (last[pid] + 1) & 0x0F:
            return False
    return bool(seen)


def test_sparse_keyframes_make_long_segments_never_keyframeless_ones() -> None:
    segments = segment_all(clip_packets(10.0, gop_frames=150), segment_duration=2.0)
    assert [s.duration for s in segments] == pytest.approx([5.0, 5.0], abs=0.05)
    for segment in segments:
        video, _audio, _warnings = decode(segment.data)
        assert video[0].key_frame


def test_audio_only_cuts_anywhere_near_the_target() -> None:
    segments = segment_all(clip_packets(6.0, video=False), segment_duration=2.0)
    assert len(segments) == 3
    assert [s.duration for s in segments] == pytest.approx([2.0] * 3, abs=0.05)
    for segment in segments:
        video, audio, warnings = decode(segment.data)
        assert video == []
        assert audio
        assert warnings == []


def test_nothing_before_the_first_keyframe_and_nothing_lost_after() -> None:
    packets = clip_packets(4.0)
    first_key = next(
        i
        for i, p in enumerate(packets)
        if p.keyframe and p.kind is TrackKind.VIDEO and not p.is_config
    )
    configs = [p for p in packets if p.is_config]
    # Drop the first keyframe: the segmenter must wait for the next one.
    later = configs + [p for p in packets[first_key + 1 :] if not p.is_config]
    segments = segment_all(later, segment_duration=2.0)
    assert len(segments) == 1
    video, _audio, _warnings = decode(segments[0].data)
    assert video[0].key_frame
    assert len(video) == 2 * CLIP_FPS


def test_segment_over_the_byte_limit_is_dropped() -> None:
    segmenter = Segmenter(SegmenterOptions(segment_duration=2.0, max_segment_bytes=20_000))
    segments: list[Segment] = []
    for packet in clip_packets(6.0):
        segments += segmenter.push(packet)
    segments += segmenter.finish()
    assert segments == []
    assert segmenter.dropped_segments == 3


def test_program_date_times_follow_the_timestamps() -> None:
    segments = segment_all(clip_packets(6.0), segment_duration=2.0)
    for first, second in itertools.pairwise(segments):
        elapsed = (second.program_date_time - first.program_date_time).total_seconds()
        assert elapsed == pytest.approx(first.duration, abs=0.002)


def test_video_codec_ts_cannot_carry_leaves_an_audio_only_stream() -> None:
    vp9 = CodecConfig(Codec.VP9, b"\x01\x00", width=320, height=240)
    packets = [
        dataclasses.replace(p, codec=Codec.VP9, config=vp9) if p.kind is TrackKind.VIDEO else p
        for p in clip_packets(6.0)
    ]
    segments = segment_all(packets, segment_duration=2.0)
    assert len(segments) == 3
    for segment in segments:
        assert segment.video is None
        video, audio, warnings = decode(segment.data)
        assert video == []
        assert audio
        assert warnings == []


def test_video_only_stream() -> None:
    segments = segment_all(clip_packets(6.0, audio=False), segment_duration=2.0)
    assert [s.duration for s in segments] == pytest.approx([2.0] * 3, abs=0.05)
    for segment in segments:
        assert segment.audio is None
        video, audio, warnings = decode(segment.data)
        assert video[0].key_frame
        assert len(video) == 2 * CLIP_FPS
        assert audio == []
        assert warnings == []


def renumbered(data: bytes, next_counter: dict[int, int]) -> bytes:
    """Reference continuity repair, packet by packet: payload packets take the PID's
    next counter, packets without payload repeat the last one."""
    out = bytearray(data)
    for offset in range(0, len(out), TS_PACKET_SIZE):
        pid = ((out[offset + 1] & 0x1F) << 8) | out[offset + 2]
        flags = out[offset + 3]
        counter = next_counter.get(pid, 0)
        if flags & 0x10:
            out[offset + 3] = (flags & 0xF0) | counter
            next_counter[pid] = (counter + 1) & 0x0F
        else:
            out[offset + 3] = (flags & 0xF0) | ((counter - 1) & 0x0F)
    return bytes(out)


@pytest.mark.parametrize(("audio", "video"), [(True, True), (True, False), (False, True)])
def test_continuity_repair_matches_packet_by_packet_renumbering(audio: bool, video: bool) -> None:
    segments = segment_all(clip_packets(6.0, audio=audio, video=video), segment_duration=1.0)
    assert len(segments) >= 3
    reference: dict[int, int] = {}
    for segment in segments:
        # The segmenter's output is the fast repair of the muxer's fresh counters
        # (numbered from 0 again here); renumbering those one packet at a time,
        # carrying on from the previous segment, must give the same bytes.
        fresh = renumbered(segment.data, {})
        assert renumbered(fresh, reference) == segment.data


def test_a_frame_that_lies_about_its_nal_lengths_is_left_out_not_the_stream() -> None:
    """A publisher's damaged frame (NAL length far past its end) costs that frame,
    counted and logged; segmenting goes on and every segment still plays."""
    packets = list(clip_packets(6.0))
    video = [i for i, p in enumerate(packets) if p.kind is TrackKind.VIDEO and not p.is_config]
    liar = video[10]  # a non-keyframe in the first GOP
    assert not packets[liar].keyframe
    packets[liar] = dataclasses.replace(packets[liar], payload=b"\x7f\xff\xff\xff" + bytes(20))
    segmenter = Segmenter(SegmenterOptions(segment_duration=2.0))
    segments: list[Segment] = []
    for packet in packets:
        segments += segmenter.push(packet)
    segments += segmenter.finish()
    assert segmenter.unreadable_packets == 1
    assert len(segments) == 3
    assert sum(s.frames for s in segments) == len(video) - 1
    for segment in segments:
        frames, audio, _warnings = decode(segment.data)
        assert frames[0].key_frame
        assert audio
