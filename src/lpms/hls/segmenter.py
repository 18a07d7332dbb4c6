"""MPEG-TS segments: what `lpms.hls.cutter.Cutter` cuts, muxed by FFmpeg.

`Segmenter` is synchronous and does no I/O: packets go in with `push`, finished
`Segment`s come out, and `finish` flushes the last one when the publisher leaves.
The asyncio side (`lpms.hls.live`) feeds it from a stream subscription. Where a
segment begins and ends is the cutter's business; this module only muxes.

Muxing is FFmpeg's MPEG-TS muxer through PyAV, one muxer per segment, so every
segment starts with PAT/PMT and stands on its own. The elementary streams are made
self-contained first (Annex B video with parameter sets on keyframes, ADTS audio;
see `lpms.media.codecs.annexb` and `lpms.media.codecs.aac`) because PyAV's
stream-copy muxing cannot carry codec extradata. Two things a muxer per segment
would break are repaired here: continuity counters, which `ContinuityCounters`
rewrites to run on across segments, and timestamps, which stay the stream's own
(rebased once so the first packet is near zero) and therefore continuous across
segments.
"""

from __future__ import annotations

import io
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from fractions import Fraction

import av

from lpms.errors import HLSError
from lpms.hls.cutter import (
    START_OFFSET_MS,
    CutPacket,
    CutPart,
    CutSegment,
    Cutter,
    CutterOptions,
)
from lpms.media.codecs.aac import adts_frame
from lpms.media.codecs.annexb import AnnexBConverter
from lpms.media.packet import Codec, CodecConfig, MediaPacket

log = logging.getLogger(__name__)

__all__ = ["START_OFFSET_MS", "Segment", "Segmenter", "SegmenterOptions"]

MS = Fraction(1, 1000)
TS_PACKET_SIZE = 188

_MUX_CODECS = {Codec.H264: "h264", Codec.HEVC: "hevc", Codec.AAC: "aac", Codec.MP3: "mp3"}
TS_CODECS = frozenset(_MUX_CODECS)


@dataclass(frozen=True, slots=True)
class SegmenterOptions:
    """How segments are cut.

    ``segment_duration`` is the target: a segment ends at the first keyframe at or
    after it, so a stream with sparse keyframes gets long segments, never one that
    starts without a keyframe. ``max_segment_bytes`` bounds the memory one segment
    may take while it waits for a keyframe; past it the segment is dropped (logged)
    and cutting resumes at the next keyframe.
    """

    segment_duration: float = 2.0
    max_segment_bytes: int = 64 << 20


@dataclass(frozen=True, slots=True)
class Segment:
    """One finished segment (MPEG-TS, or fMP4 fragments of one track)."""

    sequence: int
    data: bytes
    duration: float  # seconds, from the packets' timestamps
    start_ms: int  # dts of its first packet, on the stream's own clock
    program_date_time: datetime
    video: CodecConfig | None = None
    audio: CodecConfig | None = None
    frames: int = 0  # video frames, or audio frames in an audio-only stream

    @property
    def bitrate(self) -> int:
        """Bits per second over the segment's duration."""
        return int(len(self.data) * 8 / self.duration) if self.duration > 0 else 0


class Segmenter:
    """Turns one stream's packets into MPEG-TS segments (see the module docstring)."""

    def __init__(
        self,
        options: SegmenterOptions | None = None,
        first_sequence: int = 0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.options = options or SegmenterOptions()
        self._cutter = Cutter(
            CutterOptions(
                segment_duration=self.options.segment_duration,
                max_segment_bytes=self.options.max_segment_bytes,
            ),
            TS_CODECS,
            ElementaryStreams(),  # not a method of self: no cycle to wait for the GC
            first_sequence=first_sequence,
            clock=clock,
        )
        self._counters = ContinuityCounters()
        self._packets: list[CutPacket] = []

    @property
    def next_sequence(self) -> int:
        return self._cutter.next_sequence

    @property
    def dropped_segments(self) -> int:
        return self._cutter.dropped_segments

    @property
    def unreadable_packets(self) -> int:
        """Frames whose payload could not be converted, left out."""
        return self._cutter.unreadable_packets

    def push(self, packet: MediaPacket) -> list[Segment]:
        """Take one packet; the segments it completed (zero or one)."""
        return self._segments(self._cutter.push(packet))

    def finish(self) -> list[Segment]:
        """The publisher left: the segment in progress, if any, is complete."""
        return self._segments(self._cutter.finish())

    def _segments(self, events: list[CutPart | CutSegment]) -> list[Segment]:
        done = []
        for event in events:
            if isinstance(event, CutPart):
                self._packets += event.packets
            else:
                done.append(self._mux(event))
        return done

    def _mux(self, segment: CutSegment) -> Segment:
        packets, self._packets = self._packets, []
        buffer = io.BytesIO()
        try:
            container = av.open(buffer, "w", format="mpegts")
            video = _add_stream(container, segment.video)
            audio = _add_stream(container, segment.audio)
            # One burst per segment keeps the muxer's state hot in the CPU cache,
            # where a packet at a time between other streams' work costs far more.
            for cut in packets:
                packet = av.Packet(cut.data)
                stream = video if cut.video else audio
                assert stream is not None  # the cutter only passes a track's own packets
                packet.stream = stream
                packet.time_base = MS
                packet.dts = cut.dts
                packet.pts = cut.pts
                packet.is_keyframe = cut.keyframe
                container.mux_one(packet)
            container.close()
        except (av.FFmpegError, ValueError) as exc:
            raise HLSError(f"cannot mux an MPEG-TS segment: {exc}") from exc
        with buffer.getbuffer() as written:
            self._counters.fix(written)
        return Segment(
            sequence=segment.sequence,
            data=buffer.getvalue(),
            duration=segment.duration,
            start_ms=segment.stream_start_ms,
            program_date_time=segment.program_date_time,
            video=segment.video,
            audio=segment.audio,
            frames=segment.frames,
        )


class ElementaryStreams:
    """Packets' payloads as MPEG-TS carries them (Annex B video, ADTS audio): the
    cutter's ``prepare`` for TS."""

    __slots__ = ("_converter",)

    def __init__(self) -> None:
        self._converter: tuple[CodecConfig, AnnexBConverter] | None = None

    def __call__(self, packet: MediaPacket, config: CodecConfig) -> bytes:
        if config.codec in (Codec.H264, Codec.HEVC):
            return self._annex_b(config).convert(packet.payload, packet.keyframe)
        if config.codec is Codec.AAC:
            return adts_frame(config.extradata, packet.payload)
        return packet.payload

    def _annex_b(self, config: CodecConfig) -> AnnexBConverter:
        converter = self._converter
        if converter is None or converter[0] != config:
            converter = self._converter = (
                config,
                AnnexBConverter.from_config(config.codec, config.extradata),
            )
        return converter[1]


def _add_stream(
    container: av.container.OutputContainer, config: CodecConfig | None
) -> av.stream.Stream | None:
    if config is None:
        return None
    # The TS muxer wants an audio stream's sample rate; the ADTS headers carry the rest.
    rate = config.sample_rate if config.sample_rate else None
    stream = container.add_mux_stream(_MUX_CODECS[config.codec], rate=rate)
    stream.time_base = MS
    return stream


class ContinuityCounters:
    """Keeps each PID's 4-bit continuity counter running across segments.

    A fresh muxer starts every PID's counter at 0; a demuxer reading segments back
    to back would see a jump at every boundary and flag the data as corrupt
    (ISO 13818-1 2.4.3.3). Within one segment the muxer's counters already run on,
    so continuing them means adding one shift per PID to every packet's counter:
    the value that PID's counter should have had at the segment's start.

    This runs over every TS packet of every stream, so it works on strided slices
    (one byte per packet) with ``bytes.translate`` for the main PID, which carries
    nearly all packets, and touches the few others (audio, PAT, PMT, SDT) one by one.
    """

    __slots__ = ("_next",)

    def __init__(self) -> None:
        self._next: dict[int, int] = {}

    def fix(self, data: memoryview) -> None:
        """Rewrite the counters of ``data`` (whole TS packets) in place."""
        if len(data) % TS_PACKET_SIZE:
            raise HLSError(f"muxer wrote {len(data)} bytes, not whole TS packets")
        if not data:
            return
        next_counter = self._next
        size = TS_PACKET_SIZE
        # Per packet: scrambling, adaptation, payload flags and the counter.
        original = data[3::size].tobytes()
        pid_high = data[1::size].tobytes().translate(_LOW_FIVE_BITS)
        pid_low = data[2::size].tobytes()
        others = sorted(
            {m.start() for m in _NOT_MAIN_HIGH.finditer(pid_high)}
            | {m.start() for m in _NOT_MAIN_LOW.finditer(pid_low)}
        )
        counters = bytearray(original.translate(_SHIFTS[next_counter.get(MAIN_PID, 0)]))
        last: dict[int, int] = {}
        for index in others:
            pid = (pid_high[index] << 8) | pid_low[index]
            counters[index] = _SHIFTS[next_counter.get(pid, 0)][original[index]]
            last[pid] = index
        if len(others) < len(original):
            main_last = len(original) - 1
            while others and main_last == others[-1]:
                others.pop()
                main_last -= 1
            last[MAIN_PID] = main_last
        for pid, index in last.items():
            next_counter[pid] = (counters[index] + 1) & 0x0F
        data[3::size] = counters


# The muxer gives its first stream PID 0x100: the video of a stream that has video.
MAIN_PID = 0x100
_LOW_FIVE_BITS = bytes(value & 0x1F for value in range(256))
_NOT_MAIN_HIGH = re.compile(b"[^\\x%02x]" % (MAIN_PID >> 8))
_NOT_MAIN_LOW = re.compile(b"[^\\x%02x]" % (MAIN_PID & 0xFF))
# _SHIFTS[s][byte 3] adds s to the counter in the low four bits, keeping the flags.
_SHIFTS = tuple(
    bytes((value & 0xF0) | ((value + shift) & 0x0F) for value in range(256)) for shift in range(16)
)
