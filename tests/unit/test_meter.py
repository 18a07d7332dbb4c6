"""Track meters: bitrate and frame rate over a window of media time."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lpms.media.meter import MAX_SAMPLES, TrackMeter


def expected(samples: list[tuple[int, int]], window_ms: int) -> tuple[int, float]:
    """Bitrate and rate worked out from scratch: the packets since the last step back
    in time, within the window, at most MAX_SAMPLES of them."""
    start = 0
    for i in range(1, len(samples)):
        if samples[i][0] < samples[i - 1][0]:
            start = i
    kept = samples[start:]
    if kept:
        last = kept[-1][0]
        kept = [s for s in kept if s[0] >= last - window_ms][-MAX_SAMPLES:]
    if len(kept) < 2 or kept[-1][0] == kept[0][0]:
        return 0, 0.0
    span = kept[-1][0] - kept[0][0]
    carried = sum(size for _, size in kept[1:])
    return carried * 8000 // span, (len(kept) - 1) * 1000 / span


def test_a_steady_track_reads_its_bitrate_and_frame_rate() -> None:
    meter = TrackMeter()
    for frame in range(300):  # 10 s at 30 fps, 10,000 bytes a frame
        meter.add(frame * 100 // 3, 10_000)
    assert meter.rate == pytest.approx(30.0, rel=0.01)
    assert meter.bitrate == pytest.approx(2_400_000, rel=0.01)
    assert meter.packets == 300


def test_only_the_window_counts() -> None:
    meter = TrackMeter(window_ms=1000)
    for ms in range(0, 5000, 10):  # 100 packets a second: 1,000 bytes, then 2,000
        meter.add(ms, 1000 if ms < 3000 else 2000)
    assert meter.bitrate == 1_600_000  # the last second: 2,000 bytes 100 times
    assert meter.rate == 100.0


def test_a_step_back_in_time_restarts_the_window() -> None:
    meter = TrackMeter()
    for ms in range(0, 3000, 40):
        meter.add(ms, 500)
    meter.add(100, 500)
    assert (meter.bitrate, meter.rate) == (0, 0.0)  # one packet: nothing to measure yet
    meter.add(140, 500)
    assert meter.rate == 25.0


def test_nothing_or_one_packet_reads_zero() -> None:
    meter = TrackMeter()
    assert (meter.bitrate, meter.rate) == (0, 0.0)
    meter.add(0, 100)
    assert (meter.bitrate, meter.rate) == (0, 0.0)


def test_a_flood_of_packets_is_held_to_max_samples() -> None:
    meter = TrackMeter()
    for _ in range(10 * MAX_SAMPLES):
        meter.add(7, 100)  # every packet at one timestamp: none leaves the window
    assert len(meter._samples) == MAX_SAMPLES
    assert (meter.bitrate, meter.rate) == (0, 0.0)


@given(
    st.lists(st.tuples(st.integers(-50, 400), st.integers(0, 100_000)), max_size=1500),
    st.sampled_from([100, 1000, 5000]),
)
def test_figures_match_a_computation_from_scratch(
    steps: list[tuple[int, int]], window_ms: int
) -> None:
    meter = TrackMeter(window_ms=window_ms)
    samples: list[tuple[int, int]] = []
    dts = 0
    for step, size in steps:
        dts = max(dts + step, 0)
        samples.append((dts, size))
        meter.add(dts, size)
    bitrate, rate = expected(samples, window_ms)
    assert meter.bitrate == bitrate
    assert meter.rate == rate
    assert meter.packets == len(samples)
