"""Bitrate and frame rate of a track, measured over its last few seconds.

Measured on the media's own timestamps, not the wall clock: the listener hands a
publisher's packets over in batches (read pacing), so arrival times are lumpy while
timestamps are what the encoder meant. Each track keeps its packets' (dts, size) for
the window, so a measurement is a division, and adding a packet is an append and,
now and then, a pop.
"""

from __future__ import annotations

from collections import deque

DEFAULT_WINDOW_MS = 5000


class TrackMeter:
    """One track's recent packets; `bitrate` and `rate` over the window."""

    __slots__ = ("_bytes", "_samples", "packets", "window_ms")

    def __init__(self, window_ms: int = DEFAULT_WINDOW_MS) -> None:
        self.window_ms = window_ms
        self._samples: deque[tuple[int, int]] = deque()
        self._bytes = 0  # of every sample but the oldest: what the span carried
        self.packets = 0

    def add(self, dts: int, size: int) -> None:
        samples = self._samples
        if samples:
            self._bytes += size
            if dts < samples[-1][0]:  # a step back: the window restarts from here
                samples.clear()
                self._bytes = 0
        samples.append((dts, size))
        self.packets += 1
        oldest = dts - self.window_ms
        while samples[0][0] < oldest:
            samples.popleft()
            self._bytes -= samples[0][1]

    def _span_ms(self) -> int:
        samples = self._samples
        return samples[-1][0] - samples[0][0] if len(samples) > 1 else 0

    @property
    def bitrate(self) -> int:
        """Bits per second over the window (0 until two packets are in)."""
        span = self._span_ms()
        return self._bytes * 8000 // span if span > 0 else 0

    @property
    def rate(self) -> float:
        """Packets per second over the window: the frame rate of a video track."""
        span = self._span_ms()
        return (len(self._samples) - 1) * 1000 / span if span > 0 else 0.0
