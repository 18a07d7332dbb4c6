"""`lpms.transcode.clip`: From/To checked, and which audio packets a clip keeps."""

from __future__ import annotations

from fractions import Fraction

import pytest

from lpms import TranscodeError
from lpms.transcode.clip import AudioGate, Clip

FRAME = Fraction(1024, 48000)  # one AAC frame


@pytest.mark.parametrize(
    ("start", "end", "message"),
    [
        (-1, None, "from must not be negative"),
        (None, -0.5, "to must not be negative"),
        (3, 3, "from (3 s) must be before to (3 s)"),
        (5, 2, "from (5 s) must be before to (2 s)"),
        (float("nan"), None, "finite"),
        (None, float("inf"), "finite"),
    ],
)
def test_bad_clips_are_transcode_errors(
    start: float | None, end: float | None, message: str
) -> None:
    with pytest.raises(TranscodeError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Clip.of(start, end)


def test_from_zero_is_no_from() -> None:
    assert Clip.of(0, None) == Clip()
    assert not Clip.of(0, None).trims
    assert Clip.of(None, 2).trims


def test_from_past_the_end() -> None:
    Clip.of(2, None).check_within(0.0)  # length unknown: not checked
    Clip.of(2, None).check_within(2.5)
    with pytest.raises(TranscodeError, match=r"past the end of the input \(2.00 s\)"):
        Clip.of(2, None).check_within(2.0)


def test_window_starts_the_clip_where_the_input_started() -> None:
    assert Clip.of(2, 5).window(Fraction(1)) == (Fraction(1), Fraction(4))
    assert Clip.of(2, None).window(Fraction(1)) == (Fraction(1), None)
    assert Clip.of(None, 5).window(Fraction(1)) == (None, Fraction(6))
    assert Clip().window(Fraction(1)) == (None, None)


def test_gate_keeps_packets_starting_inside_the_window() -> None:
    gate = AudioGate((Fraction(1), Fraction(2)))
    starts = [index * FRAME for index in range(200)]
    kept = [start for start in starts if gate.admits(start, FRAME)]
    assert kept[0] >= 1
    assert kept[0] - 1 < FRAME
    assert kept[-1] < 2
    assert 2 - kept[-1] <= FRAME
    assert not gate.admits(None, FRAME)


def test_gate_without_a_window_keeps_everything() -> None:
    gate = AudioGate((None, None))
    assert gate.admits(None, FRAME)
    assert gate.admits(Fraction(-1), FRAME)


def test_a_joined_input_keeps_its_audio_after_the_last_packet_and_its_video() -> None:
    gate = AudioGate((None, None))
    assert gate.admits(Fraction(9), FRAME)
    gate.join(Fraction(9))  # its video starts before the last audio packet ends
    assert not gate.admits(Fraction(9), FRAME)
    assert gate.admits(Fraction(9) + FRAME, FRAME)
    gate.join(Fraction(20))  # its video starts later: audio before it is left out
    assert not gate.admits(Fraction(19), FRAME)
    assert gate.admits(Fraction(20), FRAME)
