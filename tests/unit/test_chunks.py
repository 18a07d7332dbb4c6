"""Where a file is cut into chunks (`lpms.transcode.chunks.plan_cuts`): only at
keyframes a chunk can start from (their leading pictures, if any, left to the chunk
before), no sooner than the chunk length asks, and at the first such keyframe
after it. Checked against the rules written out plainly, over any packet sequence."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lpms.transcode.chunks import VideoPacket, cut_points, plan_cuts

TIME_BASE = Fraction(1, 90)  # one tick a frame at 90 fps keeps the numbers small


def leading_pictures(packets: list[VideoPacket], index: int) -> int | None:
    """The rule, as a reader would check it by hand: the keyframe is shown after
    everything before it; its GOP is a run of leading pictures (shown before it, but
    after everything before it) then trailing ones; every timestamp is known."""
    packet = packets[index]
    if not packet.keyframe or packet.pts is None:
        return None
    later = range(index + 1, len(packets))
    gop_end = next((j for j in later if packets[j].keyframe), len(packets))
    gop = [p.pts for p in packets[index + 1 : gop_end]]
    before = [p.pts for p in packets[:index]]
    if None in gop or None in before or packet.pts in gop:
        return None
    latest_before = max(before, default=-(10**9))
    if latest_before >= packet.pts:
        return None
    leading = [pts for pts in gop if pts < packet.pts]
    if gop[: len(leading)] != leading:
        return None  # not a run right after the keyframe
    if any(pts <= latest_before for pts in leading):
        return None
    return len(leading)


def is_cut_point(packets: list[VideoPacket], index: int) -> bool:
    return leading_pictures(packets, index) is not None


packet_lists = st.lists(
    st.builds(
        VideoPacket,
        pts=st.one_of(st.none(), st.integers(-50, 400)) | st.integers(0, 400),
        keyframe=st.booleans(),
    ),
    max_size=60,
)


@given(packet_lists)
def test_cut_points_follow_the_rule(packets: list[VideoPacket]) -> None:
    assert cut_points(packets) == [leading_pictures(packets, i) for i in range(len(packets))]


@given(packet_lists, st.sampled_from([0.05, 0.2, 1.0, 2.5]))
def test_cuts_are_clean_keyframes_at_least_a_chunk_apart_and_the_first_such(
    packets: list[VideoPacket], seconds: float
) -> None:
    cuts = plan_cuts(packets, TIME_BASE, seconds)
    if not packets:
        assert cuts == []
        return
    assert cuts[0] == 0
    assert cuts == sorted(set(cuts))
    step = Fraction(seconds) / TIME_BASE
    timed = [i for i, p in enumerate(packets) if p.pts is not None]
    if not timed:
        assert cuts == [0]  # nothing to cut by: one chunk
        return
    for number, cut in enumerate(cuts):
        start = packets[timed[0]].pts if number == 0 else packets[cut].pts
        if number > 0:
            assert is_cut_point(packets, cut)
        end = cuts[number + 1] if number + 1 < len(cuts) else len(packets)
        assert start is not None
        later = [i for i in range(cut + 1, end) if is_cut_point(packets, i)]
        # No clean keyframe far enough on was passed over before the next cut...
        assert all(packets[i].pts - start < step for i in later)
        if number + 1 < len(cuts):
            # ...and the next cut is far enough on.
            assert packets[end].pts - start >= step


def closed_gops(frames: int, gop: int, b_frames: int) -> list[VideoPacket]:
    """A closed-GOP stream in decode order: I P B B P B B ... (pts in frames)."""
    packets = []
    for start in range(0, frames, gop):
        end = min(start + gop, frames)
        packets.append(VideoPacket(start, True))
        anchor = start
        while anchor + 1 < end:
            ref = min(anchor + b_frames + 1, end - 1)
            packets.append(VideoPacket(ref, False))
            packets.extend(VideoPacket(pts, False) for pts in range(anchor + 1, ref))
            anchor = ref
    return packets


def test_a_closed_gop_stream_is_cut_at_the_keyframe_after_each_chunk() -> None:
    packets = closed_gops(frames=90 * 10, gop=45, b_frames=2)  # 0.5 s GOPs at 90 fps
    cuts = plan_cuts(packets, TIME_BASE, 2.0)
    assert [packets[c].pts for c in cuts] == [0, 180, 360, 540, 720]


def test_an_open_gops_keyframe_is_cut_at_with_its_leading_pictures_counted() -> None:
    """Leading pictures (shown before their keyframe, decoded after it) reference
    the GOP before: the chunk before shows them; one that is out of place (shown
    before its keyframe after a picture shown after it) rules the cut out."""
    packets = [
        VideoPacket(0, True),
        VideoPacket(2, False),
        VideoPacket(1, False),
        VideoPacket(5, True),  # open: 3 and 4 follow it
        VideoPacket(3, False),
        VideoPacket(4, False),
        VideoPacket(6, False),
        VideoPacket(9, True),  # closed
        VideoPacket(10, False),
        VideoPacket(13, True),  # 11 is shown before it, but decoded after 14
        VideoPacket(14, False),
        VideoPacket(11, False),
    ]
    assert cut_points(packets) == [0, None, None, 2, None, None, None, 0, None, None, None, None]
    assert plan_cuts(packets, TIME_BASE, 0.001) == [0, 3, 7]


def test_chunks_must_last_some_time() -> None:
    with pytest.raises(ValueError, match="longer than 0"):
        plan_cuts([VideoPacket(0, True)], TIME_BASE, 0)
