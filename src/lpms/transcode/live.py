"""The live ladder: every source segment of a stream through its engine's session,
one rendition segment per profile, listed beside the source in the stream's master
playlist.

Each source segment becomes exactly one segment per profile with the same sequence
number, duration and timestamps, its first frame a keyframe, so all variants cut
at the same instants and players switch cleanly. Where the work runs is the
engine's business (`lpms.transcode.engines`: threads here, or a Ray actor
elsewhere); the source (RTMP players and its HLS rendition) never waits for it. A
segment the engine gives nothing for (behind real time, a bad segment, a lost
worker, a late answer) is listed in every rendition as an EXT-X-GAP, in its turn, so
all renditions keep their numbering in step: a new source segment that finds
`TranscodeSettings.max_backlog` segments already waiting is not sent at all, instead
of a backlog (and latency) that grows without end. A rendition whose decoder
configuration changes (a new session after a lost worker, a new source) is marked
with an EXT-X-DISCONTINUITY.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

from lpms.errors import HLSError, LPMSError
from lpms.hls.cmaf import TranscodedTrack
from lpms.hls.fmp4 import read_fragmented_video
from lpms.hls.rendition import Rendition
from lpms.hls.segmenter import Segment
from lpms.hls.settings import HLSFormat
from lpms.hls.store import SOURCE, HLSStream
from lpms.media.packet import Codec, CodecConfig
from lpms.transcode.engines import (
    Engine,
    EngineFactory,
    EngineFailure,
    EngineObserver,
    SegmentTranscoder,
)
from lpms.transcode.profiles import VideoCodec, VideoProfile
from lpms.transcode.rendition import OutputContainer, RenditionOutput
from lpms.transcode.session import TranscodeResult
from lpms.transcode.settings import Accel, TranscodeCaps, TranscodeSettings

log = logging.getLogger(__name__)


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


def local_engine(
    nice: int = 0,
    observer: EngineObserver | None = None,
    output: OutputContainer | None = None,
    caps: TranscodeCaps | None = None,
) -> EngineFactory:
    """The factory of the local engine (a thread per stream, ``nice`` steps down),
    its renditions in ``output`` (None: MPEG-TS), its sessions within ``caps``
    (None: the defaults)."""
    from lpms.transcode.engines.local import LocalEngine  # PyAV: only when transcoding

    def make(stream_id: str, profiles: tuple[VideoProfile, ...], accel: Accel) -> LocalEngine:
        return LocalEngine(profiles, accel, nice=nice, observer=observer, output=output, caps=caps)

    return make


class LiveTranscoder:
    """Transcodes one live stream's source segments into its HLS renditions."""

    def __init__(
        self,
        hls: HLSStream,
        settings: TranscodeSettings,
        *,
        engine: EngineFactory | None = None,
        on_behind: Callable[[Segment, int], None] | None = None,
        on_transcoded: Callable[[TranscodeResult], None] | None = None,
    ) -> None:
        """``engine`` makes the stream's session (default: the local engine);
        ``on_behind(segment, waiting)`` is told of each segment left out;
        ``on_transcoded(result)`` of each one done (both on the loop)."""
        if not settings.profiles:
            raise ValueError("a live transcoder needs profiles")
        self.hls = hls
        self._on_behind = on_behind
        self._on_transcoded = on_transcoded
        self.settings = settings
        self.stats = LadderStats()
        self._loop = asyncio.get_running_loop()
        factory = engine if engine is not None else local_engine(settings.nice, caps=settings.caps)
        self._engine: SegmentTranscoder = factory(hls.id, settings.profiles, settings.accel)
        self._slots: deque[_Slot] = deque()
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._closed = False
        self._behind_logged = False
        self._no_video_logged = False
        self._decoder_configs: list[bytes | None] = [None] * len(settings.profiles)
        for profile in settings.profiles:
            hls.rendition(profile.name)  # listed from the start, in the profiles' order
        # CMAF: each rendition's segments arrive as fragmented MP4s, cut here into parts.
        self._tracks: dict[str, TranscodedTrack] | None = None
        if hls.container is HLSFormat.FMP4:
            part_target = hls.settings.part_target
            self._tracks = {p.name: TranscodedTrack(part_target) for p in settings.profiles}

    @property
    def engine(self) -> Engine:
        return self._engine.engine

    def submit(self, segment: Segment) -> None:
        """A new source segment (called on the loop, in order)."""
        if self._closed:
            return
        if segment.video is None:
            # Nothing to transcode: no video renditions (never listed, as they never
            # get a segment), and one line saying why, not one per segment.
            if not self._no_video_logged:
                self._no_video_logged = True
                log.info("transcoding %s: the stream has no video, so no renditions", self.hls.id)
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
        task = self._loop.create_task(self._engine.transcode(segment))
        task.add_done_callback(lambda done: self._finished(slot, done))

    def _finished(self, slot: _Slot, task: asyncio.Future[TranscodeResult]) -> None:
        self._in_flight -= 1
        slot.done = True
        if task.cancelled():
            slot.failed = True
        elif (error := task.exception()) is not None:
            slot.failed = True
            self.stats.failed += 1
            expected = isinstance(error, LPMSError | EngineFailure)
            reason = f" ({error.reason.value})" if isinstance(error, EngineFailure) else ""
            log.log(
                logging.WARNING if expected else logging.ERROR,
                "transcoding %s segment %d failed%s: %s",
                self.hls.id,
                slot.segment.sequence,
                reason,
                error,
                exc_info=None if expected else error,
            )
        else:
            slot.result = task.result()
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
                    continue
                output = slot.result.outputs[index]
                known = self._decoder_configs[index]
                if known is not None and output.decoder_config != known:
                    rendition.discontinuity()  # a new session or source: new parameters
                self._decoder_configs[index] = output.decoder_config
                if self._tracks is None:
                    rendition.add(_rendition_segment(slot.segment, output))
                else:
                    self._add_cmaf(rendition, self._tracks[profile.name], slot.segment, output)

    def _add_cmaf(
        self,
        rendition: Rendition,
        track: TranscodedTrack,
        source: Segment,
        output: RenditionOutput,
    ) -> None:
        """A rendition's fragmented MP4 as parts and a segment, on the source's clock:
        its first frame shown when the source's first frame is (FFmpeg's muxer starts
        every output's clock at 0)."""
        timing = self.hls.renditions[SOURCE].timing.get(source.sequence)
        try:
            video = read_fragmented_video(output.data)
            if timing is None or not video.samples:
                raise HLSError("the source segment's clock is not known")
            first = video.samples[0]
            scale = Fraction(timing.timescale, video.timescale)
            shift = timing.presentation_time - round(
                (first.decode_time + first.composition_offset) * scale
            )
            made = track.segment(
                source.sequence, video, shift, source.duration, source.program_date_time
            )
        except HLSError as exc:
            log.warning("transcoding %s segment %d: %s", self.hls.id, source.sequence, exc)
            rendition.add_gap(source)
            return
        assert made.segment is not None
        for part in made.parts_made:
            rendition.add_part(part)
        rendition.add(dataclasses.replace(made.segment, start_ms=source.start_ms), made.timing)

    async def finish(self) -> None:
        """Wait (bounded) for the segments in flight, then close the session."""
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
        await self._engine.close()


_CODECS = {
    VideoCodec.H264: Codec.H264,
    VideoCodec.HEVC: Codec.HEVC,
    VideoCodec.AV1: Codec.AV1,
    VideoCodec.VP9: Codec.VP9,
}


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
