"""Bitrate and frame rate of a track, measured over its last few seconds.

Measured on the media's own timestamps, not the wall clock: the listener hands a
publisher's packets over in batches (read pacing), so arrival times are lumpy while
timestamps are what the encoder meant. Each track keeps its packets' (dts, size) for
the window. Adding a packet is on every publisher's path, while the figures are read
only when someone asks (the API, the status page), so `add` only appends: samples
that fell out of the window are dropped in bulk now and then, and the sums are taken
when a figure is read.
"""

from __future__ import annotations

from collections import deque

DEFAULT_WINDOW_MS = 5000
# Samples held at most: 200 packets a second over the default window. A faster track
# is measured over its last MAX_SAMPLES packets instead, which gives the same rates.
MAX_SAMPLES = 1024
# Packets between two passes that drop what fell out of the window.
_TRIM_EVERY = 64


class TrackMeter:
    """One track's recent packets; `bitrate` and `rate` over the window."""

    __slots__ = ("_last_dts", "_samples", "packets", "window_ms")

    def __init__(self, window_ms: int = DEFAULT_WINDOW_MS) -> None:
        self.window_ms = window_ms
        self._samples: deque[tuple[int, int]] = deque(maxlen=MAX_SAMPLES)
        self._last_dts = -(1 << 62)
        self.packets = 0

    def add(self, dts: int, size: int) -> None:
        if dts < self._last_dts:  # a step back: the window restarts from here
            self._samples.clear()
        self._last_dts = dts
        self._samples.append((dts, size))
        self.packets += 1
        if not self.packets % _TRIM_EVERY:
            self._trim()

    def _trim(self) -> None:
        samples = self._samples
        oldest = self._last_dts - self.window_ms
        while samples[0][0] < oldest:
            samples.popleft()

    def _span(self) -> tuple[int, int]:
        """Milliseconds from the window's first packet to its last, and the bytes
        of every packet but the first: what was carried over that span."""
        if not self._samples:
            return 0, 0
        self._trim()
        samples = self._samples
        if len(samples) < 2:
            return 0, 0
        carried = sum(size for _, size in samples) - samples[0][1]
        return samples[-1][0] - samples[0][0], carried

    @property
    def bitrate(self) -> int:
        """Bits per second over the window (0 until two packets are in)."""
        span, carried = self._span()
        return carried * 8000 // span if span > 0 else 0

    @property
    def rate(self) -> float:
        """Packets per second over the window: the frame rate of a video track."""
        span, _ = self._span()
        return (len(self._samples) - 1) * 1000 / span if span > 0 else 0.0
