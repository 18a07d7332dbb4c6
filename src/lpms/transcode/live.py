"""The live ladder: every source segment of a stream through a `Transcoder`, one
rendition segment per profile, listed beside the source in the stream's master playlist.

Each source segment becomes exactly one segment per profile with the same sequence
number, duration and timestamps, its first frame a keyframe, so all variants cut
at the same instants and players switch cleanly. Transcoding runs on a thread of its
own, at a lower CPU priority than the event loop, so the source (RTMP players and
its HLS rendition) keeps flowing whatever transcoding costs. If transcoding falls
behind real time, a new source segment that finds `TranscodeSettings.max_backlog`
segments already waiting is not transcoded: each profile lists it as an EXT-X-GAP,
the server logs it, and `LiveTranscoder.dropped` counts it, instead of a backlog
(and latency) that grows without end.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from lpms.errors import LPMSError
from lpms.hls.segmenter import Segment
from lpms.hls.store import HLSStream
from lpms.media.packet import Codec, CodecConfig
from lpms.transcode.accel import Accel
from lpms.transcode.profiles import VideoCodec, VideoProfile
from lpms.transcode.rendition import RenditionOutput, lower_priority
from lpms.transcode.session import Transcoder, TranscodeResult
from lpms.validate import at_least, positive

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TranscodeSettings:
    """Live transcoding. No profiles: relay and HLS of the source only.

    ``max_backlog``: source segments that may wait for the transcoder besides the one
    it is working on; one more is dropped (listed as a gap) rather than queued.
    ``nice``: how much lower than the server the transcoding threads run (Linux nice
    steps), so the source never waits for the CPU. ``finish_timeout``: how long a
    stream's end waits for its last segments to be transcoded.
    """

    profiles: tuple[VideoProfile, ...] = ()
    accel: Accel = Accel.SOFTWARE
    max_backlog: int = 1
    nice: int = 5
    finish_timeout: float = 30.0

    def __post_init__(self) -> None:
        at_least(0, max_backlog=self.max_backlog, nice=self.nice)
        positive(finish_timeout=self.finish_timeout)


@dataclass(slots=True)
class _Slot:
    """A source segment on its way through, kept in order until its turn to land."""

    segment: Segment
    result: TranscodeResult | None = None
    failed: bool = False
    done: bool = False


@dataclass(slots=True)
class LadderStats:
    """What the ladder of one stream has done, for logs, the API and metrics."""

    transcoded: int = 0
    dropped: int = 0
    failed: int = 0
    media_seconds: float = 0.0
    busy_seconds: float = 0.0
    last_speed: float = 0.0

    @property
    def realtime_factor(self) -> float:
        """Seconds of media transcoded per second of work (above 1 keeps up)."""
        return self.media_seconds / self.busy_seconds if self.busy_seconds > 0 else 0.0


class LiveTranscoder:
    """Transcodes one live stream's source segments into its HLS renditions."""

    def __init__(
        self,
        hls: HLSStream,
        settings: TranscodeSettings,
        *,
        on_behind: Callable[[Segment, int], None] | None = None,
        on_transcoded: Callable[[TranscodeResult], None] | None = None,
    ) -> None:
        """``on_behind(segment, waiting)`` is told of each segment left out;
        ``on_transcoded(result)`` of each one done (both on the loop)."""
        if not settings.profiles:
            raise ValueError("a live transcoder needs profiles")
        self.hls = hls
        self._on_behind = on_behind
        self._on_transcoded = on_transcoded
        self.settings = settings
        self.stats = LadderStats()
        self._loop = asyncio.get_running_loop()
        self._transcoder = Transcoder(settings.profiles, accel=settings.accel, nice=settings.nice)
        self._executor = ThreadPoolExecutor(
            1,
            thread_name_prefix="lpms-ladder",
            initializer=lower_priority,
            initargs=(settings.nice,),
        )
        self._slots: deque[_Slot] = deque()
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._closed = False
        self._behind_logged = False
        for profile in settings.profiles:
            hls.rendition(profile.name)  # listed from the start, in the profiles' order

    def submit(self, segment: Segment) -> None:
        """A new source segment (called on the loop, in order)."""
        if self._closed:
            return
        slot = _Slot(segment)
        self._slots.append(slot)
        if self._in_flight > self.settings.max_backlog:
            slot.done = True  # dropped: lands as a gap, in its turn
            self.stats.dropped += 1
            log.warning(
                "transcoding %s is behind real time (%d segments waiting): segment %d "
                "left out of its %d renditions",
                self.hls.id,
                self._in_flight,
                segment.sequence,
                len(self.settings.profiles),
            )
            if self._on_behind is not None:
                self._on_behind(segment, self._in_flight)
            self._land()
            return
        self._in_flight += 1
        self._idle.clear()
        future = self._loop.run_in_executor(
            self._executor, self._transcoder.transcode, segment.data
        )
        future.add_done_callback(lambda done: self._finished(slot, done))

    def _finished(self, slot: _Slot, future: asyncio.Future[TranscodeResult]) -> None:
        self._in_flight -= 1
        slot.done = True
        if future.cancelled():
            slot.failed = True
        elif (error := future.exception()) is not None:
            slot.failed = True
            self.stats.failed += 1
            level = logging.WARNING if isinstance(error, LPMSError) else logging.ERROR
            log.log(
                level,
                "transcoding %s segment %d failed: %s",
                self.hls.id,
                slot.segment.sequence,
                error,
            )
        else:
            slot.result = future.result()
            self._count(slot.result)
            if self._on_transcoded is not None:
                self._on_transcoded(slot.result)
        self._land()
        if self._in_flight == 0:
            self._idle.set()

    def _count(self, result: TranscodeResult) -> None:
        stats = self.stats
        stats.transcoded += 1
        stats.media_seconds += result.duration
        stats.busy_seconds += result.elapsed
        stats.last_speed = result.speed
        if result.speed < 1.0 and not self._behind_logged:
            self._behind_logged = True
            log.warning("transcoding %s runs at %.2fx real time", self.hls.id, result.speed)

    def _land(self) -> None:
        """Add finished slots to the renditions, oldest first, stopping at the first
        still being transcoded: every rendition lists segments in the source's order."""
        while self._slots and self._slots[0].done:
            slot = self._slots.popleft()
            for index, profile in enumerate(self.settings.profiles):
                rendition = self.hls.rendition(profile.name)
                if slot.result is None:
                    rendition.add_gap(slot.segment)
                else:
                    rendition.add(_rendition_segment(slot.segment, slot.result.outputs[index]))

    async def finish(self) -> None:
        """Wait (bounded) for the segments in flight, then free the transcoder."""
        if self._closed:
            return
        self._closed = True
        try:
            await asyncio.wait_for(self._idle.wait(), self.settings.finish_timeout)
        except TimeoutError:
            log.warning(
                "transcoding %s did not finish within %gs",
                self.hls.id,
                self.settings.finish_timeout,
            )
        await self._loop.run_in_executor(self._executor, self._transcoder.close)
        self._executor.shutdown(wait=False)


_CODECS = {VideoCodec.H264: Codec.H264, VideoCodec.HEVC: Codec.HEVC}


def _rendition_segment(source: Segment, output: RenditionOutput) -> Segment:
    video = CodecConfig(
        _CODECS[output.profile.codec],
        output.decoder_config or b"",
        width=output.width,
        height=output.height,
    )
    return Segment(
        sequence=source.sequence,
        data=output.data,
        duration=source.duration,
        start_ms=source.start_ms,
        program_date_time=source.program_date_time,
        video=video,
        audio=source.audio,
        frames=output.frames,
    )
