"""Transcoding settings: the ladder, the hardware, the engine and its bounds.

Kept apart from the transcoder so `lpms.config` can read and check them without
importing PyAV or asyncio.
"""

from __future__ import annotations

import enum
import os
from dataclasses import dataclass

from lpms.errors import TranscodeError
from lpms.transcode.engines import Engine
from lpms.transcode.profiles import VideoProfile
from lpms.validate import at_least, positive

# The transcoder's hard caps: `TranscodeSettings`' fields of the same names (in lower
# case) document them; `lpms.Transcoder` takes them as parameters with these defaults.
DEFAULT_MAX_OUTPUTS = 10
DEFAULT_MAX_SEGMENT_SECONDS = 300.0
DEFAULT_MAX_FILE_SECONDS = 24 * 3600.0
DEFAULT_MAX_FRAMES_PER_DECODED = 25


@dataclass(frozen=True, slots=True)
class TranscodeCaps:
    """A `Transcoder`'s hard caps, as the engines hand them to each stream's session
    (`TranscodeSettings.caps`); `asdict` of it is the `Transcoder`'s parameters."""

    max_outputs: int = DEFAULT_MAX_OUTPUTS
    max_segment_seconds: float = DEFAULT_MAX_SEGMENT_SECONDS
    max_file_seconds: float = DEFAULT_MAX_FILE_SECONDS
    max_frames_per_decoded: int = DEFAULT_MAX_FRAMES_PER_DECODED


class Accel(enum.Enum):
    """Transcoding hardware."""

    SOFTWARE = "software"
    NVIDIA = "nvidia"

    @classmethod
    def parse(cls, text: str | Accel) -> Accel:
        if isinstance(text, Accel):
            return text
        try:
            return cls(text.strip().lower())
        except ValueError:
            known = ", ".join(a.value for a in cls)
            raise TranscodeError(f"unknown accel {text!r}; choose one of {known}") from None


@dataclass(frozen=True, slots=True)
class TranscodeSettings:
    """Live transcoding. No profiles: relay and HLS of the source only.

    ``engine``: where segments are transcoded: ``local`` (threads of this process)
    or ``ray`` (an actor per stream in the Ray cluster at ``ray_address``).
    ``max_backlog``: source segments that may wait for the transcoder besides the one
    it is working on; one more is dropped (listed as a gap) rather than queued.
    ``nice``: how much lower than the server the local transcoding threads run
    (Linux nice steps), so the source never waits for the CPU. ``finish_timeout``:
    how long a stream's end waits for its last segments to be transcoded.

    Ray: ``ray_address`` is a cluster's ``HOST:PORT`` (its GCS, as ``ray start
    --head`` prints), or ``local`` for a private Ray runtime on this machine; empty
    takes ``$RAY_ADDRESS``, else ``local``. ``ray_late_after``: a segment call
    not answered this many segment durations after it was due (one segment duration
    after it was sent) is given up, listed as a gap, and its actor replaced.
    ``ray_connect_timeout``: seconds to reach the cluster, at start and after a loss.
    ``ray_retry_interval``: seconds between reconnections while Ray is gone.
    ``ray_pixels_per_cpu``: output pixels per second one CPU is counted to encode;
    each stream's actor asks Ray for its ladder's pixel rate over this many CPUs
    (``ray_pixels_per_gpu`` the same for GPUs, with ``accel = "nvidia"``), so Ray
    spreads streams over nodes by what they cost.
    """

    profiles: tuple[VideoProfile, ...] = ()
    accel: Accel = Accel.SOFTWARE
    engine: Engine = Engine.LOCAL
    max_backlog: int = 1
    nice: int = 5
    finish_timeout: float = 30.0
    ray_address: str = ""
    ray_late_after: float = 1.0
    ray_connect_timeout: float = 30.0
    ray_retry_interval: float = 5.0
    ray_pixels_per_cpu: int = 30_000_000
    ray_pixels_per_gpu: int = 600_000_000

    # The transcoder's hard caps: what is past one is a `TranscodeError`, never a wait
    # while memory fills; a live stream's segment that meets one is left out of its
    # renditions (a gap) and the stream goes on.
    max_outputs: int = DEFAULT_MAX_OUTPUTS
    """Profiles one session encodes: LPMS's ``MAX_OUTPUT_SIZE`` ("Too many outputs")."""
    max_segment_seconds: float = DEFAULT_MAX_SEGMENT_SECONDS
    """Longest segment (or chunk) a session takes, by the container's duration or,
    where it tells none, the frames' timestamps: LPMS refuses inputs over five
    minutes (``ErrTranscoderDuration``, ffmpeg.go); a live segment is a few seconds."""
    max_file_seconds: float = DEFAULT_MAX_FILE_SECONDS
    """Longest file `Transcoder.transcode_file` (``lpms transcode``) takes: a day."""
    max_frames_per_decoded: int = DEFAULT_MAX_FRAMES_PER_DECODED
    """Output frames one decoded frame may become (repeated into a gap in its
    timestamps) before the output is given up as a runaway: LPMS's
    ``25 * decoded_frames`` (ffmpeg/encoder.c, ``lpms_ERR_ENC_RUNAWAY``). A 30 fps
    profile meets it only where the source's frames are more than 0.8 s apart."""

    def __post_init__(self) -> None:
        if len(self.profiles) > self.max_outputs:
            raise ValueError(
                f"{len(self.profiles)} profiles, more than max_outputs ({self.max_outputs})"
            )
        at_least(0, max_backlog=self.max_backlog, nice=self.nice)
        at_least(
            1, max_outputs=self.max_outputs, max_frames_per_decoded=self.max_frames_per_decoded
        )
        positive(
            max_segment_seconds=self.max_segment_seconds,
            max_file_seconds=self.max_file_seconds,
            finish_timeout=self.finish_timeout,
            ray_late_after=self.ray_late_after,
            ray_connect_timeout=self.ray_connect_timeout,
            ray_retry_interval=self.ray_retry_interval,
            ray_pixels_per_cpu=self.ray_pixels_per_cpu,
            ray_pixels_per_gpu=self.ray_pixels_per_gpu,
        )

    @property
    def caps(self) -> TranscodeCaps:
        """The hard caps each stream's `Transcoder` is made with."""
        return TranscodeCaps(
            self.max_outputs,
            self.max_segment_seconds,
            self.max_file_seconds,
            self.max_frames_per_decoded,
        )

    def resolved_ray_address(self) -> str:
        """Where the Ray engine connects: the setting, else $RAY_ADDRESS, else local."""
        return self.ray_address.strip() or os.environ.get("RAY_ADDRESS", "").strip() or "local"
