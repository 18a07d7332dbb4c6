"""Stream settings: what one live stream may hold in memory, and its timestamps' rules.

Kept apart from `stream` so `lpms.config` can read and check them without
importing asyncio.
"""

from __future__ import annotations

from dataclasses import dataclass

from lpms.validate import at_least


@dataclass(frozen=True, slots=True)
class StreamLimits:
    """Bounds on what one stream holds in memory, and on its timestamps.

    ``max_timestamp_jump`` (seconds) is the largest step, forward or back, a track's
    timestamps may take and still be one timeline; a larger one is a discontinuity
    (an encoder restart, a clock step) and is re-based to continue smoothly. Smaller
    backward steps are held at the previous timestamp (see `lpms.media.timestamps`).
    A track that pauses while another runs on is no jump. The default is FFmpeg's
    ``dts_delta_threshold``.
    """

    max_queue_packets: int = 1024
    max_gop_packets: int = 2048
    max_gop_bytes: int = 32 << 20
    max_timestamp_jump: float = 10.0

    def __post_init__(self) -> None:
        if not 0 < self.max_timestamp_jump < 2**31 / 1000:
            raise ValueError(
                f"max_timestamp_jump must be over 0 s and under 2^31 ms, "
                f"got {self.max_timestamp_jump}"
            )
        at_least(
            1,
            max_queue_packets=self.max_queue_packets,
            max_gop_packets=self.max_gop_packets,
            max_gop_bytes=self.max_gop_bytes,
        )
