"""Timestamp repair: monotonic DTS per track, jumps re-based, A/V sync and B-frames kept."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lpms.media.packet import Codec, MediaPacket, TrackKind
from lpms.media.timestamps import MAX_HELD_MS, WRAP, TimestampRepair

HOUR = 3_600_000
LIMIT = 10_000  # ms: TimestampRepair's default max_jump


def video(dts: int, cts: int = 0, *, key: bool = False, config: bool = False) -> MediaPacket:
    return MediaPacket(TrackKind.VIDEO, Codec.H264, dts, dts + cts, key, b"v", is_config=config)


def audio(dts: int, *, config: bool = False) -> MediaPacket:
    return MediaPacket(TrackKind.AUDIO, Codec.AAC, dts, dts, True, b"a", is_config=config)


def script(dts: int) -> MediaPacket:
    return MediaPacket(TrackKind.DATA, Codec.AMF0, dts, dts, False, b"d")


def av_stream(start: int, end: int, *, audio_lead: int = 0) -> list[MediaPacket]:
    """30 fps video and ~43 fps audio from ``start`` to ``end`` ms, interleaved by time
    as FLV sends them; audio ``audio_lead`` ms ahead of the video it plays with."""
    frames = [video(t, key=(t - start) % 1000 == 0) for t in range(start, end, 33)]
    sounds = [audio(t + audio_lead) for t in range(start, end, 23)]
    return sorted(frames + sounds, key=lambda p: (p.dts, p.kind is TrackKind.VIDEO))


def run(packets: Iterable[MediaPacket], repair: TimestampRepair | None = None) -> list[MediaPacket]:
    repair = repair or TimestampRepair("stream/test")
    return [repair.repair(packet) for packet in packets]


def dts_of(packets: list[MediaPacket], kind: TrackKind) -> list[int]:
    return [p.dts for p in packets if p.kind is kind and not p.is_config]


def assert_monotonic(packets: list[MediaPacket]) -> None:
    for kind in (TrackKind.VIDEO, TrackKind.AUDIO):
        times = dts_of(packets, kind)
        assert times == sorted(times), kind


@pytest.mark.parametrize("audio_lead", [-60, 0, 40])
def test_interleaved_audio_and_video_with_small_offsets_are_untouched(audio_lead: int) -> None:
    # With audio ahead of or behind video, the tracks interleave out of order with
    # each other: only each track's own order matters.
    packets = av_stream(0, 40_000, audio_lead=audio_lead)
    repair = TimestampRepair("stream/test")
    out = run(packets, repair)
    assert all(o is p for o, p in zip(out, packets, strict=True))
    assert (repair.jumps, repair.backward_steps, repair.wraps) == (0, 0, 0)


def test_b_frame_pts_reordering_is_untouched() -> None:
    # I P B B P B B ...: pts goes back and forth, dts rises; nothing to repair.
    offsets = [66, 133, 33, 33, 133, 33, 33]
    packets = [video(i * 33, offsets[i % len(offsets)], key=i == 0) for i in range(60)]
    repair = TimestampRepair("stream/test")
    out = run(packets, repair)
    assert all(o is p for o, p in zip(out, packets, strict=True))
    assert repair.backward_steps == 0


def test_small_backward_step_is_held_and_the_rest_untouched() -> None:
    packets = [video(0, key=True), video(33, 66), video(66), video(50, 40), video(100)]
    repair = TimestampRepair("stream/test")
    out = run(packets, repair)
    assert [p.dts for p in out] == [0, 33, 66, 66, 100]
    assert out[3].pts - out[3].dts == 40  # composition offset kept
    assert out[4] is packets[4]
    assert (repair.backward_steps, repair.jumps) == (1, 0)


def test_backward_steps_are_logged_once_per_interval_with_a_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    packets = []
    for t in range(0, 3000, 100):
        packets += [video(t), video(t - 10)]  # every second packet steps back
    caplog.set_level(logging.WARNING)
    repair = TimestampRepair("stream/test")
    run(packets, repair)
    assert repair.backward_steps == 30
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1
    assert "stream/test" in lines[0]
    assert "went back 0.010 s on video: held at 0.000 s" in lines[0]


def assert_continues_smoothly(out: list[MediaPacket]) -> None:
    """Video steps by one frame throughout, and no track goes back."""
    assert_monotonic(out)
    frames = [p.dts for p in out if p.kind is TrackKind.VIDEO]
    assert max(b - a for a, b in itertools.pairwise(frames)) <= 33


def av_offsets(out: list[MediaPacket], packets: list[MediaPacket]) -> set[int]:
    """Output minus input dts, over every packet: one value per timeline."""
    return {o.dts - p.dts for o, p in zip(out, packets, strict=True)}


@pytest.mark.parametrize("jump", [HOUR, -HOUR])
def test_jump_on_av_stream_is_rebased_with_one_offset_for_both_tracks(
    jump: int, caplog: pytest.LogCaptureFixture
) -> None:
    before = av_stream(HOUR, HOUR + 5000, audio_lead=15)
    after = av_stream(HOUR + 5000 + jump, HOUR + 10_000 + jump, audio_lead=15)
    # FLV interleaving: the first video frame on the new timeline arrives while an
    # audio packet of the old one is still to come.
    first_new_video = next(i for i, p in enumerate(after) if p.kind is TrackKind.VIDEO)
    late_audio = audio(before[-1].dts + 5)
    packets = before + after[: first_new_video + 1] + [late_audio] + after[first_new_video + 1 :]
    caplog.set_level(logging.WARNING)
    repair = TimestampRepair("stream/test")
    out = run(packets, repair)
    assert repair.jumps == 1
    assert_continues_smoothly(out)
    # The old timeline, late audio included, is untouched; the new one is one offset
    # for both tracks, so audio still leads video by 15 ms.
    assert out[: len(before)] == before
    assert out[len(before) + first_new_video + 1] is late_audio
    assert len(av_offsets(out, packets)) == 2
    video_out = [p for p in out if p.kind is TrackKind.VIDEO]
    last_old = next(p for p in reversed(before) if p.kind is TrackKind.VIDEO)
    first_new = video_out[video_out.index(last_old) + 1]
    assert first_new.dts == last_old.dts + 33  # the track's own frame interval
    [line] = [r.getMessage() for r in caplog.records]
    sign = "+" if jump > 0 else "-"
    assert f"timestamps of stream/test jumped {sign}3600.0" in line
    assert f"on video: re-based to continue at {first_new.dts / 1000:.3f} s" in line


def test_encoder_restart_at_zero_seen_first_on_audio() -> None:
    before = av_stream(0, 60_000, audio_lead=20)
    # A restart: audio comes back first, at 0, then video at 0.
    after = [audio(0), audio(23), video(0, key=True), audio(46), video(33), video(66)]
    repair = TimestampRepair("stream/test")
    out = run(before + after, repair)
    assert repair.jumps == 1
    assert_monotonic(out)
    new = out[len(before) :]
    offset = new[0].dts - after[0].dts
    assert all(o.dts - p.dts == offset for o, p in zip(new, after, strict=True))
    assert new[0].dts == dts_of(before, TrackKind.AUDIO)[-1] + 23


def test_restart_within_the_limit_is_held_briefly_then_rebased() -> None:
    before = av_stream(0, 8000, audio_lead=10)
    after = av_stream(5000, 8000, audio_lead=10)  # back 3 s, and on from there
    repair = TimestampRepair("stream/test")
    out = run(before + after, repair)
    assert repair.jumps == 1
    assert_monotonic(out)
    new = out[len(before) :]
    offsets = [o.dts - p.dts for o, p in zip(new, after, strict=True)]
    resumed = next(i for i in range(len(new)) if len(set(offsets[i:])) == 1)
    # Both tracks are held where they were for at most MAX_HELD_MS of their input,
    # then go on together on one offset.
    assert {p.dts for p in new[:resumed]} == {7986, 7991}
    assert 0 < after[resumed].dts - after[0].dts <= MAX_HELD_MS + 33
    assert new[resumed].dts > 7991


def test_encoder_stamping_b_frames_out_of_order_is_only_held() -> None:
    # DTS that repeat the B-frames' display order: 0, 100, 33, 66, 200, 133, 166, ...
    order = [0, 3, 1, 2]
    packets = [video(gop * 132 + i * 33) for gop in range(100) for i in order]
    packets.append(video(100 * 132))
    repair = TimestampRepair("stream/test")
    out = run(packets, repair)
    assert repair.jumps == 0
    assert repair.backward_steps == 200
    assert_monotonic(out)
    assert out[-1] is packets[-1]


def test_track_pausing_while_the_other_runs_on_is_not_a_jump() -> None:
    packets = av_stream(0, 5000)
    packets += [audio(t) for t in range(5000, 30_000, 23)]  # video stalls 25 s
    packets += av_stream(30_000, 35_000)
    repair = TimestampRepair("stream/test")
    out = run(packets, repair)
    assert all(o is p for o, p in zip(out, packets, strict=True))
    assert repair.jumps == 0


def test_track_starting_on_a_timeline_of_its_own_starts_where_the_stream_is() -> None:
    packets = [video(t) for t in range(0, 1000, 33)] + [audio(HOUR), video(1023), audio(HOUR + 23)]
    repair = TimestampRepair("stream/test")
    out = run(packets, repair)
    assert repair.jumps == 1
    assert [p.dts for p in out[-3:]] == [990, 1023, 1013]


def test_32_bit_wrap_is_unwrapped_not_a_jump(caplog: pytest.LogCaptureFixture) -> None:
    start = WRAP - 3000
    unwrapped = av_stream(start, start + 6000, audio_lead=10)
    packets = [p.with_timestamps(p.dts % WRAP, p.pts % WRAP) for p in unwrapped]
    caplog.set_level(logging.INFO)
    repair = TimestampRepair("stream/test")
    out = run(packets, repair)
    assert [(p.dts, p.pts) for p in out] == [(p.dts, p.pts) for p in unwrapped]
    assert (repair.wraps, repair.jumps, repair.backward_steps) == (1, 0, 0)
    assert len([r for r in caplog.records if "2^32" in r.getMessage()]) == 1


def test_a_late_frame_from_before_the_wrap_is_not_a_jump() -> None:
    packets = [video(WRAP - 66), audio(WRAP - 40), audio(3), video(WRAP - 33), video(0)]
    repair = TimestampRepair("stream/test")
    out = run(packets, repair)
    assert [p.dts for p in out] == [WRAP - 66, WRAP - 40, WRAP + 3, WRAP - 33, WRAP]
    assert (repair.wraps, repair.jumps) == (1, 0)


def test_configs_and_script_data_follow_the_timeline_and_start_no_jump() -> None:
    start = [
        script(0),
        video(0, config=True),
        audio(0, config=True),
        video(0, key=True),
        audio(10),
    ]
    repair = TimestampRepair("stream/test")
    out = run(start, repair)
    assert all(o is p for o, p in zip(out, start, strict=True))  # the usual start
    media = run(av_stream(33, 60_000, audio_lead=5), repair)
    last_video = dts_of(media, TrackKind.VIDEO)[-1]
    last_audio = dts_of(media, TrackKind.AUDIO)[-1]
    newest = max(last_video, last_audio)
    # Out-of-line timestamps on configs and script data are put in line, move nothing.
    stray = [
        video(0, config=True),
        audio(HOUR, config=True),
        script(5),
        script(newest + 100),
        video(last_video + 5, config=True),
    ]
    out = run(stray, repair)
    assert repair.jumps == 0
    assert [p.dts for p in out] == [last_video, last_audio, newest, newest + 100, last_video + 5]
    assert out[-2:] == stray[-2:]
    # An encoder restart resends its configs before its frames: they stay in line too.
    restart = [video(0, config=True), audio(0, config=True), video(0, key=True), audio(5)]
    out = run(restart, repair)
    assert repair.jumps == 1
    assert [p.dts for p in out] == [last_video, last_audio, last_video + 33, last_video + 38]


@pytest.mark.parametrize("limit", [0.0, -1.0, float(WRAP)])
def test_limit_must_be_sane(limit: float) -> None:
    with pytest.raises(ValueError, match="max_timestamp_jump"):
        TimestampRepair("stream/test", limit)


# -- properties ---------------------------------------------------------------

KINDS = [TrackKind.VIDEO, TrackKind.AUDIO]
steps = st.one_of(
    st.integers(0, 50),
    st.integers(-200, 0),
    st.integers(-2 * LIMIT, 2 * LIMIT),
    st.sampled_from([HOUR, -HOUR, LIMIT, LIMIT + 1, -LIMIT, -LIMIT - 1]),
)
packet_specs = st.lists(
    st.tuples(st.sampled_from(KINDS), steps, st.integers(-50, 200), st.booleans()),
    max_size=120,
)


def build(specs: list[tuple[TrackKind, int, int, bool]]) -> list[MediaPacket]:
    """Packets whose dts steps by ``step`` from the track's previous one."""
    last = {TrackKind.VIDEO: HOUR, TrackKind.AUDIO: HOUR}
    packets = []
    for kind, step, cts, config in specs:
        dts = last[kind] = max(last[kind] + step, 0)
        packets.append(MediaPacket(kind, Codec.OPAQUE, dts, dts + cts, True, b"", is_config=config))
    return packets


def breaks_the_rules(packet: MediaPacket, last: dict[TrackKind, int]) -> bool:
    """What the repair must change: a step back, a jump, a track starting far off,
    a config out of line with its track (or the stream, before its track starts)."""
    newest = max(last.values(), default=None)
    previous = last.get(packet.kind)
    if newest is None:
        return False
    if packet.is_config:
        if previous is None:
            return abs(packet.dts - newest) > LIMIT
        return not previous <= packet.dts <= previous + LIMIT
    if previous is None:
        return abs(packet.dts - newest) > LIMIT
    return packet.dts < previous or packet.dts > newest + LIMIT


@given(packet_specs)
def test_output_is_monotonic_and_changed_only_where_the_input_broke_the_rules(
    specs: list[tuple[TrackKind, int, int, bool]],
) -> None:
    packets = build(specs)
    repair = TimestampRepair("stream/test")
    out = run(packets, repair)
    last_in: dict[TrackKind, int] = {}
    last_out: dict[TrackKind, int] = {}
    broken = False
    for packet, got in zip(packets, out, strict=True):
        assert got.pts - got.dts == packet.pts - packet.dts
        assert got.payload is packet.payload
        broken = broken or breaks_the_rules(packet, last_in)
        if not broken:
            assert got is packet
        if packet.is_config:
            if packet.kind in last_out:
                assert got.dts >= last_out[packet.kind]
            continue
        assert got.dts >= last_out.get(packet.kind, got.dts)
        last_in[packet.kind] = packet.dts
        last_out[packet.kind] = got.dts
    assert broken or (repair.jumps, repair.backward_steps) == (0, 0)


@given(
    st.integers(0, WRAP - 1),
    st.lists(st.tuples(st.sampled_from(KINDS), st.integers(0, LIMIT)), max_size=60),
)
def test_rising_timelines_come_out_unwrapped(
    start: int, specs: list[tuple[TrackKind, int]]
) -> None:
    # Both tracks rise from ``start``; each sent modulo 2**32, as RTMP does.
    last = {TrackKind.VIDEO: start, TrackKind.AUDIO: start}
    unwrapped = []
    for kind, step in specs:
        last[kind] += step
        if abs(last[TrackKind.VIDEO] - last[TrackKind.AUDIO]) > LIMIT // 2:
            last[kind] -= step  # keep the tracks near each other
        unwrapped.append(MediaPacket(kind, Codec.OPAQUE, last[kind], last[kind], True, b""))
    sent = [p.with_timestamps(p.dts % WRAP, p.pts % WRAP) for p in unwrapped]
    repair = TimestampRepair("stream/test")
    out = run(sent, repair)
    # The first packet is taken as sent, the rest continue from it.
    epoch = unwrapped[0].dts - sent[0].dts if sent else 0
    assert [p.dts for p in out] == [p.dts - epoch for p in unwrapped]
    assert repair.jumps == repair.backward_steps == 0


def test_a_track_starting_just_before_the_wrap_that_the_other_passed() -> None:
    packets = [video(3), audio(WRAP - 5), audio(WRAP - 2), video(36), audio(1), audio(24)]
    repair = TimestampRepair("stream/test")
    out = run(packets, repair)
    assert [p.dts for p in out] == [3, -5, -2, 36, 1, 24]
    assert (repair.wraps, repair.jumps, repair.backward_steps) == (0, 0, 0)
