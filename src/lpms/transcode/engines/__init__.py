"""Where a live stream's segments are transcoded: the engine seam.

`LiveTranscoder` hands each source segment to a `SegmentTranscoder`, one per stream,
and knows nothing else of where the work runs. Two engines exist: ``local`` (a
`Transcoder` on a thread of this process, `lpms.transcode.engines.local`) and
``ray`` (a Ray actor per stream somewhere in a cluster, reached through a driver
process of its own, `lpms.transcode.engines.ray`). This module imports neither
PyAV nor Ray, so settings can name an engine without loading one.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from lpms.hls.segmenter import Segment
    from lpms.transcode.profiles import VideoProfile
    from lpms.transcode.session import TranscodeResult
    from lpms.transcode.settings import Accel


class Engine(enum.Enum):
    LOCAL = "local"
    RAY = "ray"


class FailureReason(enum.Enum):
    """Why an engine call gave no result (a metrics label, a log word)."""

    ERROR = "error"  # the segment itself: unreadable, no video, an encoder failure
    LATE = "late"  # no answer by the call's deadline
    WORKER_LOST = "worker_lost"  # the session's process or node died
    UNREACHABLE = "unreachable"  # the engine itself is down (Ray gone)


class EngineFailure(Exception):
    """A segment an engine could not transcode, with why (an LPMSError when the
    segment is at fault, so it is logged as a warning, not a bug)."""

    def __init__(self, reason: FailureReason, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class SegmentTranscoder(Protocol):
    """One live stream's transcoding session, wherever it runs.

    Calls come from the event loop, in segment order; an engine may run several at
    once but must answer each with the outputs of that segment alone.
    `EngineFailure` (or `TranscodeError`) says a segment gave nothing; the next
    call must work again if it can (a new session where the old one died).
    """

    engine: Engine

    async def transcode(self, segment: Segment) -> TranscodeResult: ...

    async def close(self) -> None: ...


class EngineObserver(Protocol):
    """Told of every engine call, for metrics (the server's `Metrics` implements it)."""

    def engine_call(self, engine: Engine, overhead: float) -> None:
        """A call answered; ``overhead``: its round trip less the transcoding itself."""

    def engine_failure(self, engine: Engine, reason: FailureReason) -> None: ...

    def engine_recreated(self, engine: Engine) -> None:
        """A stream's session was made anew after its old one was lost."""


EngineFactory = Callable[[str, "tuple[VideoProfile, ...]", "Accel"], SegmentTranscoder]
"""Makes the session of one stream: (stream ID, profiles, accel) -> engine."""
