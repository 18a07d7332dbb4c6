"""Clipping and joining, as numbers: LPMS's ``TranscodeOptions.From``/``To`` checked,
and which audio packets a clipped or joined output keeps. No PyAV here.

LPMS (``doc/trim_output_tracks.md``, ``ffmpeg/encoder.c`` ``process_out``): From and
To count from the first video frame; video starts at the first frame at or after
From, forced to a keyframe, and stops before To; audio is trimmed to its own
boundary, and audio before the first video frame is left out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

from lpms.errors import TranscodeError

Seconds = Fraction
"""Seconds, exactly (timestamps times their time base)."""

JOIN_SLACK = Fraction(1, 1000)
"""An audio packet of a joined input may start this much before the end of the last
one kept (timestamps rounded to ticks) and still be kept."""


@dataclass(frozen=True, slots=True)
class Clip:
    """The stretch of the input(s) an output keeps: from ``start`` (None: the
    beginning) up to ``end`` (None: the end), seconds from the first video frame."""

    start: Seconds | None = None
    end: Seconds | None = None

    @classmethod
    def of(cls, start: float | Fraction | None, end: float | Fraction | None) -> Clip:
        """A checked clip: `TranscodeError` for a negative, infinite or NaN time, or
        ``start`` at or after ``end``."""
        first, last = _seconds("from", start), _seconds("to", end)
        if first is not None and last is not None and first >= last:
            raise TranscodeError(f"from ({float(first):g} s) must be before to ({float(last):g} s)")
        return cls(first or None, last)

    @property
    def trims(self) -> bool:
        return self.start is not None or self.end is not None

    def check_within(self, seconds: float) -> None:
        """`TranscodeError` when the clip starts at or past the end of an input of
        ``seconds`` (0: length unknown, not checked)."""
        if self.start is not None and seconds > 0 and self.start >= Fraction(seconds):
            raise TranscodeError(
                f"from ({float(self.start):g} s) is past the end of the input ({seconds:.2f} s)"
            )

    def window(self, base: Seconds) -> tuple[Seconds | None, Seconds | None]:
        """The clip on an output whose first frame is at ``base`` seconds, once the
        input has been moved back by ``start`` (so the clip starts where the input did)."""
        start = self.start or Fraction(0)
        return (
            base if self.start is not None else None,
            base + self.end - start if self.end is not None else None,
        )


def _seconds(name: str, value: float | Fraction | None) -> Seconds | None:
    if value is None:
        return None
    if isinstance(value, float) and not math.isfinite(value):
        raise TranscodeError(f"{name} must be a finite number of seconds, not {value}")
    if value < 0:
        raise TranscodeError(f"{name} must not be negative ({float(value):g} s)")
    return Fraction(value)


class AudioGate:
    """Which audio packets an output keeps: those starting inside the window
    (seconds, once moved), each track trimmed at its own packets' boundaries, and,
    after a join, none starting before the end of the last one kept (the new input's
    audio from before its first video frame, as LPMS leaves out)."""

    __slots__ = ("_end", "_floor", "_high", "_low")

    def __init__(self, window: tuple[Seconds | None, Seconds | None]) -> None:
        self._low, self._high = window
        self._floor: Seconds | None = None
        self._end: Seconds | None = None

    def join(self, start: Seconds) -> None:
        """A new input begins, its video at ``start``: its audio keeps on after the
        last packet kept, and not before its video."""
        floor = start if self._end is None else max(start, self._end - JOIN_SLACK)
        self._floor = floor

    def admits(self, start: Seconds | None, duration: Seconds) -> bool:
        """Whether a packet starting at ``start`` (None: unknown) for ``duration`` is kept."""
        if start is None:
            return self._low is None and self._high is None and self._floor is None
        if self._low is not None and start < self._low:
            return False
        if self._high is not None and start >= self._high:
            return False
        if self._floor is not None and start < self._floor:
            return False
        self._end = start + duration
        return True
