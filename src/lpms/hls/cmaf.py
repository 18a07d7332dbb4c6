"""CMAF segments and parts: what `lpms.hls.cutter.Cutter` cuts, as fMP4 per track.

`CMAFSegmenter` is synchronous and does no I/O, like the MPEG-TS `Segmenter`: packets
go in with `push`, and out come `PartReady` (an LL-HLS part of one track: one
``moof``/``mdat`` fragment) and `SegmentReady` (a track's segment: the fragments of
its parts, back to back, which is a CMAF segment). Video and audio are separate
tracks with init segments of their own (`InitSection`, a new one whenever a track's
decoder configuration changes), so HLS (video variants plus an audio rendition) and
DASH (one adaptation set per kind) serve the very same files.

Clocks: video runs at 90 kHz, from the cut timeline's milliseconds, so decode times
run on exactly from part to part. Audio runs at its sample rate, counted in frames
(1024 samples an AAC frame, an Opus packet's own length), and is anchored anew to
the cut timeline only where the two part by more than a frame (a gap in the
publisher's audio), so its durations carry no millisecond rounding.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from fractions import Fraction

from lpms.errors import HLSError, MediaError
from lpms.hls.cutter import (
    START_OFFSET_MS,
    CutPacket,
    CutPart,
    CutSegment,
    Cutter,
    CutterOptions,
)
from lpms.hls.fmp4 import (
    FMP4_AUDIO_CODECS,
    FMP4_VIDEO_CODECS,
    VIDEO_TIMESCALE,
    FragmentedVideo,
    Sample,
    Track,
    fragment,
    init_segment,
)
from lpms.hls.segmenter import Segment
from lpms.media.codecs import opus
from lpms.media.packet import Codec, CodecConfig, MediaPacket

CMAF_CODECS = FMP4_VIDEO_CODECS | FMP4_AUDIO_CODECS
TRACK_ID = 1  # one track per init segment and fragment (CMAF)
_MS_PER_SECOND = 1000


@dataclass(frozen=True, slots=True)
class InitSection:
    """A track's init segment (``EXT-X-MAP``, DASH's initialization) for one decoder
    configuration; ``number`` counts configurations within the track."""

    number: int
    config: CodecConfig
    timescale: int
    data: bytes


@dataclass(frozen=True, slots=True)
class MediaPart:
    """Part ``index`` of segment ``sequence`` of one track: one fragment."""

    sequence: int
    index: int
    data: bytes
    duration: float  # seconds
    independent: bool
    init: InitSection
    decode_time: int  # of its first sample, in the init's timescale
    decode_duration: int  # the sum of its samples' durations, same units
    samples: int
    program_date_time: datetime | None = None  # its segment's, on a segment's first part
    presentation_time: int = 0  # of its first sample (decode time + composition offset)


@dataclass(frozen=True, slots=True)
class CMAFTiming:
    """Where a CMAF segment is on its track's clock (what a DASH timeline lists)."""

    init: int
    timescale: int
    decode_time: int
    decode_duration: int
    presentation_time: int = 0  # of its first sample (its keyframe)


@dataclass(frozen=True, slots=True)
class PartReady:
    video: bool
    part: MediaPart


@dataclass(frozen=True, slots=True)
class SegmentReady:
    """A track's segment, or its place (``segment`` None) where the track had nothing
    in it (audio that stopped while video went on)."""

    video: bool
    sequence: int
    segment: Segment | None
    init: InitSection | None
    decode_time: int  # of its first sample, in the init's timescale
    decode_duration: int  # the sum of its samples' durations, same units
    parts: int
    duration: float  # seconds: the segment's own (of the cut), for a gap's place
    program_date_time: datetime
    presentation_time: int = 0  # of its first sample, in the init's timescale
    parts_made: tuple[MediaPart, ...] = ()  # a transcoded segment's: made all at once

    @property
    def timing(self) -> CMAFTiming | None:
        """Where the segment is on its track's clock (None for a place without one)."""
        if self.init is None:
            return None
        return CMAFTiming(
            self.init.number,
            self.init.timescale,
            self.decode_time,
            self.decode_duration,
            self.presentation_time,
        )


CMAFEvent = PartReady | SegmentReady


def validate_length_prefixed(packet: MediaPacket, config: CodecConfig) -> bytes:
    """An H.264/HEVC access unit as fMP4 carries it: the payload as RTMP sent it
    (4-byte lengths, ISO/IEC 14496-15), if its lengths tile it exactly."""
    payload = packet.payload
    if config.codec in (Codec.H264, Codec.HEVC):
        view = memoryview(payload)
        position = 0
        while position < len(view):
            if position + 4 > len(view):
                raise MediaError("a NAL unit length runs past the end of the frame")
            size = int.from_bytes(view[position : position + 4], "big")
            position += 4 + size
            if position > len(view):
                raise MediaError("a NAL unit runs past the end of the frame")
    return payload


@dataclass(slots=True)
class _TrackWriter:
    """One track's init sections and fragments, with its decode clock."""

    video: bool
    inits: list[InitSection] = field(default_factory=list)
    fragments: int = 0
    next_decode: int | None = None  # audio: where the last part's samples ended
    # The open segment's parts, as they were made.
    parts: list[MediaPart] = field(default_factory=list)

    def init_for(self, config: CodecConfig) -> InitSection:
        current = self.inits[-1] if self.inits else None
        if current is not None and current.config == config:
            return current
        timescale = VIDEO_TIMESCALE if self.video else _audio_timescale(config)
        data = init_segment([Track(TRACK_ID, config, timescale)])
        made = InitSection(len(self.inits), config, timescale, data)
        self.inits.append(made)
        return made

    def part(self, cut: CutPart) -> MediaPart | None:
        packets = [p for p in cut.packets if p.video == self.video]
        if not packets:
            return None
        init = self.init_for(packets[0].config)
        if self.video:
            decode_time, samples = _video_samples(packets)
        else:
            decode_time, samples = self._audio_samples(packets, init)
        independent = cut.independent if self.video else True
        return self.add_part(
            cut.sequence, init, decode_time, samples, independent, cut.program_date_time
        )

    def add_part(
        self,
        sequence: int,
        init: InitSection,
        decode_time: int,
        samples: list[Sample],
        independent: bool,
        program_date_time: datetime | None,
    ) -> MediaPart:
        """``samples`` as the open segment's next part: one fragment (the segment's
        PDT goes on its first part only)."""
        self.fragments += 1
        units = sum(s.duration for s in samples)
        made = MediaPart(
            sequence=sequence,
            index=len(self.parts),
            data=fragment(self.fragments, TRACK_ID, decode_time, samples),
            duration=units / init.timescale,
            independent=independent,
            init=init,
            decode_time=decode_time,
            decode_duration=units,
            samples=len(samples),
            program_date_time=program_date_time if not self.parts else None,
            presentation_time=decode_time + samples[0].composition_offset,
        )
        self.parts.append(made)
        return made

    def _audio_samples(
        self, packets: list[CutPacket], init: InitSection
    ) -> tuple[int, list[Sample]]:
        rate = init.timescale
        anchored = packets[0].dts * rate // _MS_PER_SECOND
        decode_time = self.next_decode
        first_length = _audio_frame_samples(packets[0], rate)
        if decode_time is None or abs(anchored - decode_time) > first_length:
            decode_time = anchored  # the first part, or a gap in the publisher's audio
        samples = [Sample(p.data, _audio_frame_samples(p, rate), True) for p in packets]
        self.next_decode = decode_time + sum(s.duration for s in samples)
        return decode_time, samples

    def segment(self, cut: CutSegment) -> SegmentReady:
        config = cut.video if self.video else cut.audio
        frames = cut.frames if self.video else sum(p.samples for p in self.parts)
        return self.segment_of(
            cut.sequence, cut.duration, cut.program_date_time, config, frames, cut.stream_start_ms
        )

    def segment_of(
        self,
        sequence: int,
        duration: float,
        program_date_time: datetime,
        config: CodecConfig | None,
        frames: int,
        start_ms: int = 0,
    ) -> SegmentReady:
        """The segment of the parts made since the last one: video segments keep the
        cut's duration, audio ones the sum of their samples'."""
        parts, self.parts = self.parts, []
        if not parts or config is None:
            return SegmentReady(
                self.video, sequence, None, None, 0, 0, 0, duration, program_date_time
            )
        init = parts[0].init
        segment = Segment(
            sequence=sequence,
            data=b"".join(p.data for p in parts),
            duration=duration if self.video else sum(p.duration for p in parts),
            start_ms=start_ms,
            program_date_time=program_date_time,
            video=config if self.video else None,
            audio=None if self.video else config,
            frames=frames,
        )
        return SegmentReady(
            self.video,
            sequence,
            segment,
            init,
            parts[0].decode_time,
            sum(p.decode_duration for p in parts),
            len(parts),
            duration,
            program_date_time,
            parts[0].presentation_time,
        )


def _video_samples(packets: list[CutPacket]) -> tuple[int, list[Sample]]:
    scale = VIDEO_TIMESCALE // _MS_PER_SECOND
    samples = [
        Sample(p.data, p.duration * scale, p.keyframe, (p.pts - p.dts) * scale) for p in packets
    ]
    return packets[0].dts * scale, samples


def _audio_timescale(config: CodecConfig) -> int:
    if config.codec is Codec.OPUS:
        return opus.SAMPLE_RATE  # RFC 7845: Opus timestamps always count 48 kHz samples
    if not config.sample_rate:
        raise HLSError(f"{config.codec.value} audio without a sample rate")
    return config.sample_rate


def _audio_frame_samples(packet: CutPacket, rate: int) -> int:
    """Samples in one audio packet, at the track's rate."""
    codec = packet.config.codec
    if codec is Codec.AAC:
        return 1024  # ISO/IEC 14496-3: an AAC-LC (core) frame
    if codec is Codec.OPUS:
        return opus.packet_samples(packet.data)
    if codec is Codec.MP3:
        return 1152 if rate >= 32000 else 576  # MPEG-1 Layer III, or MPEG-2/2.5
    return max(1, packet.duration * rate // _MS_PER_SECOND)


class CMAFSegmenter:
    """One stream's packets in, its tracks' parts and segments out (see the module
    docstring). ``part_duration`` None: one part per segment (no LL-HLS)."""

    def __init__(
        self,
        options: CutterOptions,
        first_sequence: int = 0,
        clock: Callable[[], float] = time.time,
        start_ms: int = START_OFFSET_MS,
    ) -> None:
        self._cutter = Cutter(
            options,
            CMAF_CODECS,
            validate_length_prefixed,
            first_sequence=first_sequence,
            clock=clock,
            start_ms=start_ms,
        )
        self._tracks = {True: _TrackWriter(True), False: _TrackWriter(False)}

    @property
    def next_sequence(self) -> int:
        return self._cutter.next_sequence

    @property
    def wallclock_base(self) -> float:
        """Unix time of media time 0 on the cut timeline (before any segment: 0)."""
        return self._cutter.wallclock_base

    @property
    def unreadable_packets(self) -> int:
        return self._cutter.unreadable_packets

    def push(self, packet: MediaPacket) -> list[CMAFEvent]:
        return self._events(self._cutter.push(packet))

    def finish(self) -> list[CMAFEvent]:
        return self._events(self._cutter.finish())

    def _events(self, cut: list[CutPart | CutSegment]) -> list[CMAFEvent]:
        events: list[CMAFEvent] = []
        for event in cut:
            if isinstance(event, CutPart):
                for video, track in self._tracks.items():
                    part = track.part(event)
                    if part is not None:
                        events.append(PartReady(video, part))
            else:
                for video, track in self._tracks.items():
                    config = event.video if video else event.audio
                    if config is not None or track.parts:
                        events.append(track.segment(event))
        return events


class TranscodedTrack:
    """A transcoded rendition's video track: its segments come whole (a fragmented
    MP4 from the transcoder, `read_fragmented_video`), and are cut here into parts of
    at most ``part_target`` seconds (None: one part), with this track's own init
    segments and fragment numbers, on the source's clock (``shift`` ticks on)."""

    def __init__(self, part_target: float | None) -> None:
        self._writer = _TrackWriter(True)
        self._part_target = part_target

    def segment(
        self,
        sequence: int,
        video: FragmentedVideo,
        shift: int,
        duration: float,
        program_date_time: datetime,
    ) -> SegmentReady:
        """The segment's parts (in `SegmentReady.parts_made`) and the segment."""
        if not video.samples:
            raise HLSError(f"segment {sequence}: the transcoded rendition has no frames")
        writer = self._writer
        writer.parts = []  # what a failed segment left
        init = writer.init_for(video.config)
        scale = Fraction(init.timescale, video.timescale)
        samples = [
            (
                Sample(
                    s.data,
                    round(s.duration * scale),
                    s.keyframe,
                    round(s.composition_offset * scale),
                ),
                round(s.decode_time * scale) + shift,
            )
            for s in video.samples
        ]
        for group in _part_groups(samples, init.timescale, self._part_target):
            first, decode_time = group[0]
            part_samples = [sample for sample, _ in group]
            writer.add_part(
                sequence, init, decode_time, part_samples, first.keyframe, program_date_time
            )
        parts = writer.parts
        made = writer.segment_of(sequence, duration, program_date_time, video.config, len(samples))
        return dataclasses.replace(made, parts_made=tuple(parts))


def _part_groups(
    samples: list[tuple[Sample, int]], timescale: int, part_target: float | None
) -> list[list[tuple[Sample, int]]]:
    """Samples in runs of at most ``part_target`` seconds (at least one sample each)."""
    if part_target is None:
        return [samples]
    limit = part_target * timescale
    groups: list[list[tuple[Sample, int]]] = [[]]
    length = 0
    for sample, decode_time in samples:
        if groups[-1] and length + sample.duration > limit:
            groups.append([])
            length = 0
        groups[-1].append((sample, decode_time))
        length += sample.duration
    return groups
