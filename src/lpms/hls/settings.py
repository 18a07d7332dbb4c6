"""HLS settings: a module of its own, importing neither PyAV nor asyncio, so the
settings tree loads light."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from lpms.validate import at_least

READS_PER_PART = 3
"""With parts, a publisher is read at least this often per part duration: a part is
listed when the frame after it is read, and RTMP read pacing (``rtmp.read_interval``,
0.2 s) would otherwise hold it back by up to that long (bench/latency.py)."""


class HLSFormat(enum.Enum):
    """What segments are made of: CMAF (fMP4, the default: LL-HLS and DASH from the
    same files, every codec) or MPEG-TS (classic HLS, as every old player reads)."""

    FMP4 = "fmp4"
    TS = "ts"


@dataclass(frozen=True, slots=True)
class HLSSettings:
    """HLS output: format, segment and part length, live window, memory and lifetime.

    ``format``: ``fmp4`` (CMAF: LL-HLS, DASH at ``APP/NAME.mpd``, every codec) or
    ``ts`` (MPEG-TS segments, classic HLS only). ``low_latency`` (fMP4 only) cuts
    each segment into parts of at most ``part_duration`` seconds and serves LL-HLS
    (blocking playlist reload, preload hints, delta updates). ``window`` segments
    are listed in a live playlist; ``extra_segments`` more stay fetchable (on disk)
    for players that fetched the playlist just before it slid. ``grace_period`` is
    how long a finished stream stays served (and how long a returning publisher
    continues it). With ``record`` (and a ``workdir``) every segment is kept on disk
    and the playlist becomes a growing event playlist, then VOD.
    """

    enabled: bool = True
    format: HLSFormat = HLSFormat.FMP4
    low_latency: bool = True
    segment_duration: float = 2.0
    part_duration: float = 0.333
    window: int = 6
    extra_segments: int = 3
    grace_period: float = 60.0
    record: bool = False
    max_segment_bytes: int = 64 << 20

    def __post_init__(self) -> None:
        if not 0.5 <= self.segment_duration <= 60:
            raise ValueError(
                f"segment_duration must be 0.5 to 60 seconds, got {self.segment_duration}"
            )
        if not 0.1 <= self.part_duration <= self.segment_duration:
            raise ValueError(
                f"part_duration must be 0.1 s to segment_duration ({self.segment_duration} s), "
                f"got {self.part_duration}"
            )
        at_least(1, window=self.window, max_segment_bytes=self.max_segment_bytes)
        at_least(0, extra_segments=self.extra_segments, grace_period=self.grace_period)

    @property
    def parts(self) -> bool:
        """Whether segments are cut into LL-HLS parts."""
        return self.low_latency and self.format is HLSFormat.FMP4

    @property
    def part_target(self) -> float | None:
        """The LL-HLS part target (``part_duration``), or None without parts."""
        return self.part_duration if self.parts else None

    @property
    def max_read_interval(self) -> float | None:
        """The longest RTMP read pacing that low-latency HLS allows (see
        `READS_PER_PART`); None when HLS is off or has no parts."""
        part_target = self.part_target
        if not self.enabled or part_target is None:
            return None
        return part_target / READS_PER_PART
