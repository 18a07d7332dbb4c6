"""Where a live stream's segments and parts begin and end: a sans-IO cutter.

`Cutter` takes a stream's `MediaPacket` objects in arrival order and says where
segments and LL-HLS parts begin and end; muxers (`lpms.hls.segmenter` for MPEG-TS,
`lpms.hls.cmaf` for fMP4) turn what it cuts into bytes. It does no I/O and reads no
clock but the one it is given, so every rule below is tested by feeding it packets.

- A segment starts on a keyframe (in a stream with video; anywhere in an audio-only
  one) and ends at the first keyframe ``segment_duration`` or more after its start,
  or where a track's decoder configuration changes, or at the stream's end.
- With ``part_duration``, a segment is cut into parts: a part ends before the
  timeline track's packet that would carry it past ``part_duration`` (so no part is
  longer than the target, RFC 8216bis 4.4.4.9), and always where its segment ends.
  A part need not start on a keyframe; ``independent`` says whether it does.
- Timestamps are the stream's own in milliseconds, rebased once so the first
  segment starts at `START_OFFSET_MS`; each track's decode times rise strictly.
- Audio that arrives just before the keyframe a segment starts with plays along
  with it (FLV interleaves by timestamp); a segment that grows past
  ``max_segment_bytes`` without a keyframe is dropped and cutting resumes at the
  next one; a frame the muxer cannot read (``prepare`` raises `MediaError`) is left
  out, logged once per thousand.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime

from lpms.errors import MediaError
from lpms.media.packet import Codec, CodecConfig, MediaPacket, TrackKind

log = logging.getLogger(__name__)

# The first packet is at this time (ms), leaving room for audio that comes slightly
# before the first video frame and for B-frame reordering.
START_OFFSET_MS = 1000
EARLY_AUDIO_PACKETS = 16
UNREADABLE_LOG_EVERY = 1000


@dataclass(frozen=True, slots=True)
class CutterOptions:
    """How a stream is cut. ``part_duration`` None: segments only (no parts)."""

    segment_duration: float = 2.0
    part_duration: float | None = None
    max_segment_bytes: int = 64 << 20


@dataclass(slots=True)
class CutPacket:
    """A packet on the cut timeline: its payload as the muxer wants it (``prepare``),
    times in ms from the stream's rebased start."""

    video: bool
    data: bytes
    dts: int
    pts: int
    keyframe: bool
    config: CodecConfig
    duration: int = 0  # ms to its track's next packet; 0 until known


@dataclass(slots=True)
class CutPart:
    """Part ``index`` of segment ``sequence``: its packets, in arrival order."""

    sequence: int
    index: int
    start_ms: int
    end_ms: int
    independent: bool
    packets: list[CutPacket] = field(default_factory=list)
    program_date_time: datetime | None = None  # its segment's, on a segment's first part

    @property
    def duration(self) -> float:
        return max(self.end_ms - self.start_ms, 1) / 1000


@dataclass(slots=True)
class CutSegment:
    """A finished segment: where it is on the timeline and the wall clock, what its
    tracks are, how many parts it was cut into (the last of them came just before)."""

    sequence: int
    start_ms: int  # rebased
    end_ms: int
    stream_start_ms: int  # its first dts on the stream's own clock
    program_date_time: datetime
    video: CodecConfig | None
    audio: CodecConfig | None
    frames: int
    parts: int
    size: int

    @property
    def duration(self) -> float:
        return max(self.end_ms - self.start_ms, 1) / 1000


CutEvent = CutPart | CutSegment
Prepare = Callable[[MediaPacket, CodecConfig], bytes]
"""A packet's payload as its muxer carries it; raises `MediaError` when it cannot."""


@dataclass(slots=True)
class _Open:
    sequence: int
    start_ms: int
    start_pts: int  # of its first frame, where the next segment's distance is measured
    video: CodecConfig | None
    audio: CodecConfig | None
    part: CutPart
    parts: int = 0
    size: int = 0
    frames: int = 0
    last_end_ms: int = 0
    last_packet: dict[bool, CutPacket] = field(default_factory=dict)
    dropped: bool = False


class Cutter:
    """Cuts one stream (see the module docstring). ``codecs``: what the muxer can
    carry; a track of another codec is left out, with one warning."""

    def __init__(
        self,
        options: CutterOptions,
        codecs: Collection[Codec],
        prepare: Prepare,
        *,
        first_sequence: int = 0,
        clock: Callable[[], float],
        start_ms: int = START_OFFSET_MS,
    ) -> None:
        """``start_ms``: where the first segment starts on the cut timeline (a publisher
        returning to a CMAF stream carries on its timeline, past the last one's)."""
        self.options = options
        self.next_sequence = first_sequence
        self._codecs = codecs
        self._prepare = prepare
        self._clock = clock
        self._target_ms = int(options.segment_duration * 1000)
        self._part_ms = None if options.part_duration is None else options.part_duration * 1000
        self._video_config: CodecConfig | None = None
        self._audio_config: CodecConfig | None = None
        self._has_video = False
        self._start_ms = start_ms
        self._base_ms = 0  # stream dts that becomes start_ms
        self._started = False
        self._wallclock_base = 0.0
        self._open: _Open | None = None
        self._waiting_for_keyframe = True
        self._early_audio: deque[MediaPacket] = deque(maxlen=EARLY_AUDIO_PACKETS)
        self._interval = {True: 0, False: 0}  # the last decode interval, by "is video"
        self._last_dts: dict[bool, int] = {}  # rebased, by "is video": rising across segments
        self._refused: set[Codec] = set()
        self.dropped_segments = 0
        self.unreadable_packets = 0

    @property
    def wallclock_base(self) -> float:
        """Wall-clock seconds (Unix time) of the rebased time 0 ms."""
        return self._wallclock_base

    @property
    def has_video(self) -> bool:
        return self._has_video

    # -- input -----------------------------------------------------------------

    def push(self, packet: MediaPacket) -> list[CutEvent]:
        """Take one packet; the parts and segments it completed, in order."""
        if packet.is_config:
            self._take_config(packet)
            return []
        video = packet.kind is TrackKind.VIDEO
        if video:
            if self._video_config is None:
                return []  # before its configuration, or a codec not carried
            starts = packet.keyframe
        elif packet.kind is TrackKind.AUDIO:
            if self._audio_config is None:
                return []
            starts = not self._has_video
        else:
            return []  # script data goes in no segment
        done: list[CutEvent] = []
        if starts and self._should_cut(packet):
            done += self._close(self._timeline_dts(packet))
            self._waiting_for_keyframe = False
        if self._waiting_for_keyframe:
            if not video:
                self._early_audio.append(packet)
            return done
        if self._open is None:
            self._start(packet)
            self._add(packet, done)
            # Audio that arrived just before the keyframe it plays along with.
            for early in self._early_audio:
                if early.dts >= packet.dts:
                    self._add(early, done)
            self._early_audio.clear()
        else:
            self._add(packet, done)
        return done

    def finish(self) -> list[CutEvent]:
        """The publisher left: the segment in progress, if any, is complete."""
        return self._close(None)

    # -- segments ---------------------------------------------------------------

    def _take_config(self, packet: MediaPacket) -> None:
        config = packet.config
        if config is None or packet.kind not in (TrackKind.VIDEO, TrackKind.AUDIO):
            return
        if config.codec not in self._codecs:
            if config.codec not in self._refused:
                self._refused.add(config.codec)
                log.warning(
                    "HLS: %s %s cannot go into these segments; leaving that track out",
                    config.codec.value,
                    packet.kind.name.lower(),
                )
            return
        # A new configuration needs a new segment: `_should_cut` starts one at the
        # next keyframe, and until then `_add` drops what the old one cannot carry.
        if packet.kind is TrackKind.VIDEO:
            self._video_config = config
            self._has_video = True
        else:
            self._audio_config = config

    def _should_cut(self, packet: MediaPacket) -> bool:
        segment = self._open
        if segment is None:
            return True
        if segment.video != self._video_config or segment.audio != self._audio_config:
            return True
        # Measured in presentation time: an encoder's decode delay may differ from one
        # keyframe to the next (x265's first GOP), and 2 s GOPs must make 2 s segments.
        return packet.pts - self._base_ms - segment.start_pts >= self._target_ms

    def _timeline_dts(self, packet: MediaPacket) -> int:
        """The packet's decode time on the cut timeline (rebased, above its track's
        last), without taking it."""
        dts = packet.dts - self._base_ms
        last = self._last_dts.get(packet.kind is TrackKind.VIDEO)
        return last + 1 if last is not None and dts <= last else dts

    def _start(self, packet: MediaPacket) -> None:
        if not self._started:
            self._started = True
            self._base_ms = packet.dts - self._start_ms
            self._wallclock_base = self._clock() - self._start_ms / 1000
        start = self._timeline_dts(packet)
        sequence = self.next_sequence
        self.next_sequence += 1
        when = self._wallclock(start)
        part = CutPart(sequence, 0, start, start, independent=True, program_date_time=when)
        start_pts = packet.pts - self._base_ms
        self._open = _Open(sequence, start, start_pts, self._video_config, self._audio_config, part)

    def _wallclock(self, ms: int) -> datetime:
        """The wall-clock time of ``ms`` on the cut timeline (a segment's PDT)."""
        return datetime.fromtimestamp(self._wallclock_base + ms / 1000, UTC)

    def _close(self, next_dts: int | None) -> list[CutEvent]:
        """End the open segment where the next one starts (``next_dts``, on the cut
        timeline) or, at the stream's end, one frame after its last."""
        segment, self._open = self._open, None
        if segment is None:
            return []
        if segment.dropped or not segment.frames:
            self.next_sequence = segment.sequence  # nothing was handed out under it
            return []
        end = segment.last_end_ms if next_dts is None else next_dts
        last_frame = self._last_dts.get(self._has_video)
        if last_frame is not None:
            end = max(end, last_frame + 1)  # its last frame is in it, whatever comes next
        done: list[CutEvent] = []
        if segment.part.packets:
            done.append(self._close_part(segment, end))
        done.append(
            CutSegment(
                sequence=segment.sequence,
                start_ms=segment.start_ms,
                end_ms=end,
                stream_start_ms=segment.start_ms + self._base_ms,
                program_date_time=self._wallclock(segment.start_ms),
                video=segment.video,
                audio=segment.audio,
                frames=segment.frames,
                parts=segment.parts,
                size=segment.size,
            )
        )
        return done

    # -- parts ----------------------------------------------------------------------

    def _close_part(self, segment: _Open, end_ms: int) -> CutPart:
        part = segment.part
        part.end_ms = max(end_ms, part.start_ms + 1)
        timeline = self._has_video
        for video, last in segment.last_packet.items():
            if last.duration == 0:  # its track's next packet is not here yet
                if video == timeline and part.end_ms > last.dts:
                    last.duration = part.end_ms - last.dts  # the next one starts the next part
                else:
                    last.duration = self._interval[video] or max(part.end_ms - last.dts, 1)
        segment.parts += 1
        segment.part = CutPart(segment.sequence, part.index + 1, part.end_ms, part.end_ms, False)
        return part

    def _part_full(self, segment: _Open, dts: int) -> bool:
        """Would a timeline packet at ``dts`` carry the part past its target?"""
        part_ms = self._part_ms
        part = segment.part
        if part_ms is None or not part.packets:
            return False
        # The next frame is expected an interval on; 1 ms more for RTMP's rounding
        # of a frame rate's intervals (33, 33, 34 ms at 30 fps).
        interval = self._interval[self._has_video]
        return dts + interval + 1 - part.start_ms > part_ms

    # -- packets ----------------------------------------------------------------------

    def _add(self, packet: MediaPacket, done: list[CutEvent]) -> None:
        segment = self._open
        assert segment is not None
        video = packet.kind is TrackKind.VIDEO
        config = segment.video if video else segment.audio
        if config is None or (packet.config is not config and packet.config != config):
            return  # a packet of a configuration this segment was not opened with
        if segment.dropped:
            return
        if segment.size > self.options.max_segment_bytes:
            self._too_big(segment, packet, done)
            return
        dts = packet.dts - self._base_ms
        if dts < 0:
            return  # from before the first segment's start: nothing to show it with
        last_dts = self._last_dts.get(video)
        if last_dts is not None:
            interval = dts - last_dts
            if interval <= 0:
                dts = last_dts + 1  # decode times must rise strictly
            else:
                self._interval[video] = interval
        composition_offset = packet.pts - packet.dts
        pts = dts + composition_offset if composition_offset > 0 else dts
        try:
            data = self._prepare(packet, config)
        except MediaError as exc:
            self._unreadable(packet, exc)
            return
        previous = segment.last_packet.get(video)
        if previous is not None and previous.duration == 0:
            previous.duration = max(dts - previous.dts, 1)
        timeline = video or not self._has_video
        if timeline and self._part_full(segment, dts):
            done.append(self._close_part(segment, dts))
        cut = CutPacket(video, data, dts, pts, packet.keyframe, config)
        part = segment.part
        if not part.packets:
            part.independent = timeline and (packet.keyframe or not self._has_video)
        part.packets.append(cut)
        self._last_dts[video] = dts
        segment.last_packet[video] = cut
        segment.size += len(data)
        if timeline:
            segment.frames += 1
            segment.last_end_ms = max(segment.last_end_ms, dts + max(self._interval[video], 1))
            part.end_ms = max(part.end_ms, dts)

    def _too_big(self, segment: _Open, packet: MediaPacket, done: list[CutEvent]) -> None:
        """No keyframe came before the segment outgrew its bound. Without parts it is
        dropped whole; with parts, some are out already, so it ends here. Either way
        cutting resumes at the next keyframe."""
        log.warning(
            "segment over %d bytes without a keyframe: %s",
            self.options.max_segment_bytes,
            "ended early" if self._part_ms is not None else "dropped",
        )
        self.dropped_segments += 1
        self._waiting_for_keyframe = True
        if self._part_ms is not None:
            done += self._close(self._timeline_dts(packet))
        else:
            segment.dropped = True

    def _unreadable(self, packet: MediaPacket, error: MediaError) -> None:
        """A frame that lies about its contents is left out, not the stream: logged
        on the first and then every 1000th, with the count."""
        self.unreadable_packets += 1
        if self.unreadable_packets % UNREADABLE_LOG_EVERY == 1:
            log.warning(
                "HLS: left out an unreadable %s frame at %d ms (%d so far): %s",
                packet.kind.name.lower(),
                packet.dts,
                self.unreadable_packets,
                error,
            )
