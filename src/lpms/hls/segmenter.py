"""Cut a stream's packets into MPEG-TS segments that each start on a keyframe.

`Segmenter` is synchronous and does no I/O: packets go in with `push`, finished
`Segment`s come out, and `finish` flushes the last one when the publisher leaves.
The asyncio side (`lpms.hls.live`) feeds it from a stream subscription.

Muxing is FFmpeg's MPEG-TS muxer through PyAV, one muxer per segment, so every
segment starts with PAT/PMT and stands on its own. The elementary streams are made
self-contained first (Annex B video with parameter sets on keyframes, ADTS audio;
see `lpms.hls.bitstream`) because PyAV's stream-copy muxing cannot carry codec
extradata. Two things a muxer per segment would break are repaired here:
continuity counters, which `ContinuityCounters` rewrites to run on across
segments, and timestamps, which stay the stream's own (rebased once so the first
packet is near zero) and therefore continuous across segments.
"""

from __future__ import annotations

import io
import logging
import re
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from fractions import Fraction

import av

from lpms.errors import HLSError, MediaError
from lpms.hls.bitstream import AnnexBConverter, adts_frame
from lpms.media.packet import Codec, CodecConfig, MediaPacket, TrackKind

log = logging.getLogger(__name__)

UNREADABLE_LOG_EVERY = 1000

MS = Fraction(1, 1000)
TS_PACKET_SIZE = 188
# The first packet is muxed at this time (ms), leaving room for audio that comes
# slightly before the first video frame and for B-frame reordering.
START_OFFSET_MS = 1000
EARLY_AUDIO_PACKETS = 16

_MUX_CODECS = {Codec.H264: "h264", Codec.HEVC: "hevc", Codec.AAC: "aac", Codec.MP3: "mp3"}


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
    """One finished MPEG-TS segment."""

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


@dataclass(slots=True)
class _Track:
    codec_config: CodecConfig
    stream: av.stream.Stream
    last_dts: int | None = None
    converter: AnnexBConverter | None = None


# A packet waiting to be muxed: (stream, data, dts, pts, keyframe).
_Pending = tuple[av.stream.Stream, bytes, int, int, bool]


@dataclass(slots=True)
class _OpenSegment:
    container: av.container.OutputContainer
    buffer: io.BytesIO
    start_ms: int
    video: _Track | None
    audio: _Track | None
    size: int = 0
    frames: int = 0
    last_end_ms: int = 0
    # (stream, data, dts, pts, keyframe) of every packet, muxed when the segment is
    # complete: one burst per segment keeps the muxer's state hot in the CPU cache,
    # where a packet at a time between other streams' work costs several times more.
    pending: list[_Pending] = field(default_factory=list)


class Segmenter:
    """Turns one stream's packets into segments (see the module docstring)."""

    def __init__(self, options: SegmenterOptions | None = None, first_sequence: int = 0) -> None:
        self.options = options or SegmenterOptions()
        self.next_sequence = first_sequence
        self._target_ms = int(self.options.segment_duration * 1000)
        self._max_segment_bytes = self.options.max_segment_bytes
        self._video_config: CodecConfig | None = None
        self._audio_config: CodecConfig | None = None
        self._has_video = False
        self._base_ms = 0  # stream dts that becomes START_OFFSET_MS; set by the first segment
        self._started = False
        self._wallclock_base: float = 0.0
        self._open: _OpenSegment | None = None
        self._waiting_for_keyframe = True
        # FLV interleaves by timestamp, so audio stamped at the first keyframe's time
        # may arrive just before it; a few packets are held while waiting.
        self._early_audio: deque[MediaPacket] = deque(maxlen=EARLY_AUDIO_PACKETS)
        self._counters = ContinuityCounters()
        self._converter_cache: tuple[CodecConfig, AnnexBConverter] | None = None
        self._last_video_interval = 0
        self._last_audio_interval = 0
        self._refused_codecs: set[Codec] = set()
        self.dropped_segments = 0
        self.unreadable_packets = 0  # frames whose payload could not be converted

    # -- input -----------------------------------------------------------------

    def push(self, packet: MediaPacket) -> list[Segment]:
        """Take one packet; the segments it completed (zero or one)."""
        kind = packet.kind
        if packet.is_config:
            self._take_config(packet)
            return []
        if kind is TrackKind.VIDEO:
            if self._video_config is None:
                return []  # before its configuration, or a codec TS cannot carry
            starts = packet.keyframe
        elif kind is TrackKind.AUDIO:
            if self._audio_config is None:
                return []
            starts = not self._has_video
        else:
            return []  # script data has no place in a TS segment
        done: list[Segment] = []
        if starts and self._should_cut(packet):
            done += self._close_segment(packet.dts)
            self._waiting_for_keyframe = False
        if self._waiting_for_keyframe:
            if kind is TrackKind.AUDIO:
                self._early_audio.append(packet)
            return done
        if self._open is None:
            self._start_segment(packet.dts)
            self._mux(packet)
            # Audio that arrived just before the keyframe it plays along with.
            for early in self._early_audio:
                if early.dts >= packet.dts:
                    self._mux(early)
            self._early_audio.clear()
        else:
            self._mux(packet)
        return done

    def finish(self) -> list[Segment]:
        """The publisher left: the segment in progress, if any, is complete."""
        return self._close_segment(None)

    # -- cutting -----------------------------------------------------------------

    def _take_config(self, packet: MediaPacket) -> None:
        config = packet.config
        if config is None or packet.kind not in (TrackKind.VIDEO, TrackKind.AUDIO):
            return
        if config.codec not in _MUX_CODECS:
            if config.codec not in self._refused_codecs:
                self._refused_codecs.add(config.codec)
                log.warning(
                    "HLS: %s %s cannot go into MPEG-TS segments; leaving that track out",
                    config.codec.value,
                    packet.kind.name.lower(),
                )
            return
        # A new configuration needs a new muxer: `_should_cut` starts a segment at
        # the next keyframe, and until then `_mux` drops what the old one cannot carry.
        if packet.kind is TrackKind.VIDEO:
            self._video_config = config
            self._has_video = True
        elif packet.kind is TrackKind.AUDIO:
            self._audio_config = config

    def _should_cut(self, packet: MediaPacket) -> bool:
        segment = self._open
        if segment is None:
            return True
        if not self._same_configs(segment):
            return True
        return self._rebase(packet.dts) - segment.start_ms >= self._target_ms

    def _same_configs(self, segment: _OpenSegment) -> bool:
        video = segment.video.codec_config if segment.video else None
        audio = segment.audio.codec_config if segment.audio else None
        return video == self._video_config and audio == self._audio_config

    def _start_segment(self, dts: int) -> None:
        if not self._started:
            self._started = True
            self._base_ms = dts - START_OFFSET_MS
            self._wallclock_base = time.time() - START_OFFSET_MS / 1000
        buffer = io.BytesIO()
        try:
            container = av.open(buffer, "w", format="mpegts")
            video = audio = None
            if self._video_config is not None:
                video = self._add_track(container, self._video_config)
                video.converter = self._converter(self._video_config)
            if self._audio_config is not None:
                audio = self._add_track(container, self._audio_config)
        except (av.FFmpegError, ValueError) as exc:
            raise HLSError(f"cannot start an MPEG-TS segment: {exc}") from exc
        self._open = _OpenSegment(container, buffer, self._rebase(dts), video, audio)

    def _converter(self, config: CodecConfig) -> AnnexBConverter:
        converter = self._converter_cache
        if converter is None or converter[0] != config:
            converter = self._converter_cache = (
                config,
                AnnexBConverter.from_config(config.codec, config.extradata),
            )
        return converter[1]

    @staticmethod
    def _add_track(container: av.container.OutputContainer, config: CodecConfig) -> _Track:
        # The TS muxer wants an audio stream's sample rate; the ADTS headers carry the rest.
        rate = config.sample_rate if config.sample_rate else None
        stream = container.add_mux_stream(_MUX_CODECS[config.codec], rate=rate)
        stream.time_base = MS
        return _Track(config, stream)

    def _close_segment(self, next_dts: int | None) -> list[Segment]:
        segment, self._open = self._open, None
        if segment is None:
            return []
        if segment.size > self.options.max_segment_bytes or not segment.frames:
            segment.container.close()
            return []
        _mux_all(segment)
        end_ms = segment.last_end_ms if next_dts is None else self._rebase(next_dts)
        duration = max(end_ms - segment.start_ms, 1) / 1000
        with segment.buffer.getbuffer() as written:
            self._counters.fix(written)
        data = segment.buffer.getvalue()
        sequence = self.next_sequence
        self.next_sequence += 1
        wallclock = self._wallclock_base + segment.start_ms / 1000
        return [
            Segment(
                sequence=sequence,
                data=data,
                duration=duration,
                start_ms=segment.start_ms + self._base_ms,
                program_date_time=datetime.fromtimestamp(wallclock, UTC),
                video=segment.video.codec_config if segment.video else None,
                audio=segment.audio.codec_config if segment.audio else None,
                frames=segment.frames,
            )
        ]

    # -- muxing ------------------------------------------------------------------

    def _rebase(self, dts: int) -> int:
        return dts - self._base_ms

    def _drop_unreadable(self, packet: MediaPacket, error: MediaError) -> None:
        """A frame that lies about its contents is left out, not the stream's HLS:
        logged on the first and then every 1000th, with the count."""
        self.unreadable_packets += 1
        if self.unreadable_packets % UNREADABLE_LOG_EVERY == 1:
            log.warning(
                "HLS: left out an unreadable %s frame at %d ms (%d so far): %s",
                packet.kind.name.lower(),
                packet.dts,
                self.unreadable_packets,
                error,
            )

    def _mux(self, packet: MediaPacket) -> None:
        segment = self._open
        assert segment is not None
        video = packet.kind is TrackKind.VIDEO
        track = segment.video if video else segment.audio
        if track is None:
            return
        if track.codec_config is not packet.config and track.codec_config != packet.config:
            return  # a packet of a configuration this segment was not opened with
        if segment.size > self._max_segment_bytes:
            if segment.frames:
                log.warning(
                    "segment over %d bytes without a keyframe: dropped",
                    self.options.max_segment_bytes,
                )
                self.dropped_segments += 1
                segment.frames = 0
            self._waiting_for_keyframe = True
            return
        dts = packet.dts - self._base_ms  # set when the first segment started
        if dts < 0:
            return  # from before the first segment's start: nothing to show it with
        if track.last_dts is not None:
            interval = dts - track.last_dts
            if interval <= 0:
                dts = track.last_dts + 1  # the muxer needs strictly rising dts
            elif video:
                self._last_video_interval = interval
            else:
                self._last_audio_interval = interval
        composition_offset = packet.pts - packet.dts
        pts = dts + composition_offset if composition_offset > 0 else dts
        track.last_dts = dts
        try:
            data = _elementary_stream_data(track, packet)
        except MediaError as exc:
            self._drop_unreadable(packet, exc)
            return
        segment.pending.append((track.stream, data, dts, pts, packet.keyframe))
        segment.size += len(data)
        if video or not self._has_video:
            # The timeline track: it counts frames and says where the segment ends.
            segment.frames += 1
            interval = self._last_video_interval if video else self._last_audio_interval
            segment.last_end_ms = max(segment.last_end_ms, dts + interval)


def _elementary_stream_data(track: _Track, packet: MediaPacket) -> bytes:
    """The packet's payload as MPEG-TS carries it (Annex B video, ADTS audio)."""
    if track.converter is not None:
        return track.converter.convert(packet.payload, packet.keyframe)
    if track.codec_config.codec is Codec.AAC:
        return adts_frame(track.codec_config.extradata, packet.payload)
    return packet.payload


def _mux_all(segment: _OpenSegment) -> None:
    container = segment.container
    try:
        for stream, data, dts, pts, keyframe in segment.pending:
            packet = av.Packet(data)
            packet.stream = stream
            packet.time_base = MS
            packet.dts = dts
            packet.pts = pts
            packet.is_keyframe = keyframe
            container.mux_one(packet)
        container.close()
    except av.FFmpegError as exc:
        raise HLSError(f"cannot mux an MPEG-TS segment: {exc}") from exc
    finally:
        segment.pending.clear()


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
