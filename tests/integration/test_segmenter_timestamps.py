"""A jumping publisher timeline, repaired at the stream, makes ordinary HLS segments."""

from __future__ import annotations

import itertools

import pytest

from lpms.hls.playlist import target_duration_for
from lpms.hls.segmenter import Segment
from lpms.media.packet import MediaPacket, TrackKind
from lpms.media.stream import Stream
from lpms.media.timestamps import MAX_HELD_MS
from tests.e2e.clients import CLIP_FPS
from tests.integration.test_segmenter import clip_packets, decode, segment_all

HOUR = 3_600_000


def jumping(packets: list[MediaPacket], at_ms: int, jump: int) -> list[MediaPacket]:
    """``packets`` with every media packet from ``at_ms`` on moved by ``jump``."""
    return [
        p.with_timestamps(p.dts + jump, p.pts + jump) if p.dts >= at_ms and not p.is_config else p
        for p in packets
    ]


def through_stream(packets: list[MediaPacket]) -> tuple[list[MediaPacket], Stream]:
    """What a subscriber of a `Stream` fed ``packets`` receives."""
    stream = Stream("stream/test")
    subscription = stream.subscribe("hls")
    received = []
    for packet in packets:
        stream.write(packet)
        while (got := subscription.pop()) is not None:
            received.append(got)
    return received, stream


def test_a_jump_of_an_hour_makes_no_huge_segment_once_repaired() -> None:
    packets = jumping(clip_packets(10.0), 5000, HOUR)
    # Unrepaired, the jump lands in one segment and the target duration follows it.
    raw = segment_all(packets, segment_duration=2.0)
    assert max(s.duration for s in raw) > 3600
    assert target_duration_for((s.duration for s in raw), 2) > 3600
    received, stream = through_stream(packets)
    assert stream.timestamp_repairs.jumps == 1
    segments = segment_all(received, segment_duration=2.0)
    assert [s.duration for s in segments] == pytest.approx([2.0] * 5, abs=0.05)
    assert target_duration_for((s.duration for s in segments), 2) == 2
    assert_one_clean_timeline(segments, packets)


def test_a_restart_a_few_seconds_back_loses_at_most_half_a_second() -> None:
    # Back 4.5 s, within the jump limit: held at first, then re-based once the
    # tracks have stayed behind for MAX_HELD_MS.
    packets = jumping(clip_packets(10.0), 5000, -4500)
    received, stream = through_stream(packets)
    assert stream.timestamp_repairs.jumps == 1
    segments = segment_all(received, segment_duration=2.0)
    total = sum(s.duration for s in segments)
    assert 10.0 - MAX_HELD_MS / 1000 - 0.05 <= total <= 10.05
    # Keyframes come every 2 s of the input, so the half second lost makes one
    # segment run on to the next: 3.5 s, never the 4.5 s the step was.
    assert max(s.duration for s in segments) < 4.0
    # The audio track saw the restart first; video, which adopts its offset, may
    # resume a frame later than its own interval would have put it.
    assert_one_clean_timeline(segments, packets, max_gap_frames=2)


def assert_one_clean_timeline(
    segments: list[Segment], packets: list[MediaPacket], max_gap_frames: int = 1
) -> None:
    """Played back to back, the segments decode without a warning, every frame
    there, and no gap in the video longer than ``max_gap_frames``."""
    video, audio, warnings = decode(b"".join(s.data for s in segments))
    assert warnings == []
    assert len(video) == CLIP_FPS * 10
    times = sorted(float(frame.time) for frame in video)
    assert max(b - a for a, b in itertools.pairwise(times)) <= max_gap_frames / CLIP_FPS + 0.002
    sent_audio = sum(1 for p in packets if p.kind is TrackKind.AUDIO and not p.is_config)
    assert len(audio) == sent_audio
