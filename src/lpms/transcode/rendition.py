"""One profile's half of a transcode: scale, encode, mux, on a thread of its own.

The session decodes each frame once and hands it to every `RenditionEncoder`; each
scales it to its profile's size, encodes and muxes MPEG-TS on its own thread, so
the profiles' encoders run side by side on separate cores (PyAV lets go of the GIL
inside FFmpeg's scale and encode calls). Every PyAV object an encoder makes stays
on its thread; only decoded frames (which nobody writes to after decoding) and
plain bytes cross over, through a bounded queue, so a slow encoder holds the
decoder back instead of piling frames up in memory.

An encoder is opened at the first frame of each output and drained at its end:
x264 cannot take frames again once drained (its lookahead thread has stopped), so,
as LPMS does for software encoders, each segment gets a fresh encoder while the
thread, scaler and output state live on for the whole session. NVENC can be drained
and reused, and is, into MPEG-TS.

Outputs are MPEG-TS (H.264, HEVC), or an MP4 of the video alone (any codec, AV1 and
VP9 too): fragmented (CMAF), or one index at the front (``faststart``), written by
FFmpeg's mp4 muxer, which builds each codec's configuration record (avcC, hvcC,
av1C, vpcC) as players need it; that encoder belongs to its output's stream, one
per output.

Rate control is LPMS's (``ffmpeg/encoder.c``, ``ffmpeg/ffmpeg.go``): a bitrate is the
encoder's average, minimum and maximum rate, and its VBV buffer holds one second
of it; a quality is a CRF (NVENC: CQ at quality + 7), the bitrate then only the
maximum. A profile's own encoder options go last, over all of these, and one the
encoder does not know is refused when the `RenditionEncoder` is made.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import math
import os
import queue
import shutil
import tempfile
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, BinaryIO

import av
from av.video.frame import PictureType
from av.video.reformatter import Interpolation, VideoReformatter

from lpms.errors import HLSError, TranscodeError
from lpms.hls.fmp4 import read_video_config
from lpms.media.codecs.aac import adts_to_raw, is_adts
from lpms.media.codecs.h264 import avc_config_from_annex_b
from lpms.transcode.accel import encoder_name, encoder_preset
from lpms.transcode.muxing import MP4_MUXERS, muxer_name, open_output
from lpms.transcode.output_options import VideoMode
from lpms.transcode.profiles import (
    INTRA_ONLY,
    H264Profile,
    OutputFormat,
    VideoCodec,
    VideoProfile,
    output_size,
)
from lpms.transcode.settings import DEFAULT_MAX_FRAMES_PER_DECODED, Accel

log = logging.getLogger(__name__)

DEFAULT_QUEUE_FRAMES = 8
"""Decoded frames waiting for one encoder: enough to ride out jitter between threads,
few enough (1.4 MB per 720p frame) that a slow encoder blocks the decoder quickly."""

MIN_STEERING_SECONDS = 0.5
MIN_RATE_SCALE = 0.5
MAX_RATE_SCALE = 2.0

_ASSUMED_FRAMERATE = Fraction(30)  # for a GOP in seconds when the source gives no rate

_MUX_NAMES = {VideoCodec.H264: "h264", VideoCodec.HEVC: "hevc"}
MAX_PENDING_AUDIO = 1000  # audio packets held until an MP4's video stream is made

OutputContainer = OutputFormat
"""What a rendition's output is written as (MP4 and CMAF: the video alone)."""


@dataclass(frozen=True, slots=True)
class AudioTrack:
    """The audio an output carries: packets arrive already encoded (copied or AAC)."""

    codec_name: str
    sample_rate: int
    time_base: Fraction
    channels: int = 2


@dataclass(frozen=True, slots=True)
class RenditionOutput:
    """What one profile made of one segment (or of a whole file)."""

    profile: VideoProfile
    data: bytes  # the MPEG-TS segment; empty when the output went to a file
    size: int  # bytes written
    frames: int  # video frames encoded
    keyframes: int
    width: int
    height: int
    duration: float  # seconds, from the first frame's pts to the end of the last
    video_bytes: int  # encoded video alone, without audio or TS overhead
    first_keyframe: bool  # the first video packet is a keyframe
    decoder_config: bytes | None = None  # avcC of an H.264 output, for CODECS
    busy_seconds: float = 0.0  # its encoder thread's time on it: scaling, encoding, muxing

    @property
    def realtime_factor(self) -> float:
        """Seconds of media per second of this profile's work (above 1 keeps up)."""
        return self.duration / self.busy_seconds if self.busy_seconds > 0 else 0.0

    @property
    def pixels(self) -> int:
        return self.frames * self.width * self.height

    @property
    def bitrate(self) -> int:
        """Video bits per second (what a profile's bitrate targets)."""
        return int(self.video_bytes * 8 / self.duration) if self.duration > 0 else 0

    @property
    def framerate(self) -> float:
        return self.frames / self.duration if self.duration > 0 else 0.0


@dataclass(slots=True)
class _Output:
    """State of the output being written."""

    sink: BinaryIO
    container: av.container.OutputContainer
    video: av.stream.Stream | None  # MP4: made with its encoder, at the first frame
    audio: av.stream.Stream | None
    time_base: Fraction
    audio_time_base: Fraction
    framerate: Fraction | None
    steer: bool = True
    error: BaseException | None = None
    frames: int = 0
    keyframes: int = 0
    video_bytes: int = 0
    first_keyframe: bool | None = None
    decoder_config: bytes | None = None
    first_pts: int | None = None
    end_pts: int = 0
    size: tuple[int, int] = (0, 0)
    frame_step: Fraction | None = None  # time-base units between kept frames, if reducing
    frame_duration: int = 0  # of an output frame, in the time base
    grid_start: Fraction | None = None  # where the output's frame grid starts
    next_slot: int = 0  # the first slot of that grid not yet filled
    received: int = 0  # decoded frames given to this output
    picture: av.VideoFrame | None = None  # the last one encoded, to repeat into a gap
    picture_shared: bool = False  # it is the decoded frame, which other threads read
    next_dts: int = 0  # the least DTS a video packet may have
    busy_seconds: float = 0.0  # this thread's time on the output (scale, encode, mux)
    dropped: int = field(default=0)
    scratch: Path | None = None  # MP4 with its index at the front: written here first
    audio_track: AudioTrack | None = None  # not MPEG-TS: its stream made with the video's
    pending_audio: list[_Audio] = field(default_factory=list)  # until then
    video_mode: VideoMode = VideoMode.ENCODE  # DROP also for an input without video
    copied_codec: str | None = None  # the source's, when copying


@dataclass(frozen=True, slots=True)
class SourceVideo:
    """The source's video as an output copying it sees it: a stream of a throwaway
    container holding a snapshot of the source stream's parameters (codec, size,
    extradata), which the copying encoder's thread alone reads."""

    codec_name: str
    template: av.stream.Stream

    @classmethod
    def of(cls, stream: av.video.stream.VideoStream) -> SourceVideo:
        snapshot = av.open(io.BytesIO(), mode="w", format="matroska")
        return cls(stream.codec_context.name, snapshot.add_stream_from_template(stream))


@dataclass(frozen=True, slots=True)
class _Begin:
    sink: BinaryIO
    time_base: Fraction
    framerate: Fraction | None
    audio: AudioTrack | None
    steer: bool
    video: bool  # the input has video
    source: SourceVideo | None  # what a copying output copies


@dataclass(frozen=True, slots=True)
class _Copied:
    """A source video packet for an output that copies it (timestamps in its time base)."""

    payload: bytes
    pts: int | None
    dts: int | None
    duration: int
    keyframe: bool


@dataclass(frozen=True, slots=True)
class _Audio:
    payload: bytes
    pts: int | None
    dts: int | None


@dataclass(frozen=True, slots=True)
class _End:
    result: Future[RenditionOutput]


_Message = _Begin | av.VideoFrame | _Copied | _Audio | _End | None  # None stops the thread


def add_audio_stream(
    container: av.container.OutputContainer, track: AudioTrack | None
) -> av.stream.Stream | None:
    """An audio stream for ``track`` in a container that carries its codec's
    configuration as extradata (MP4, Matroska): for AAC and Opus, a stream with an
    encoder of that codec's own, which writes that configuration as the header is
    (the payloads come encoded; LC AAC's and Opus's configuration are set by rate and
    channels alone); for other codecs, a stream for the packets as they are."""
    if track is None:
        return None
    encoder = {"aac": "aac", "opus": "libopus"}.get(track.codec_name)
    if encoder is None:
        stream = container.add_mux_stream(track.codec_name, rate=track.sample_rate)
        stream.time_base = track.time_base
        return stream
    audio = container.add_stream(encoder, rate=track.sample_rate)
    assert isinstance(audio, av.audio.stream.AudioStream)
    audio.codec_context.layout = "stereo" if track.channels > 1 else "mono"
    return audio


def _copy_stream(
    container: av.container.OutputContainer, begin: _Begin, mode: VideoMode
) -> av.stream.Stream | None:
    """The video stream of an output copying the source's (None for the others):
    the source's codec, size and extradata, in the source's time base."""
    if mode is not VideoMode.COPY or begin.source is None:
        return None
    stream = container.add_stream_from_template(begin.source.template)
    stream.time_base = begin.time_base
    if stream.codec_context is not None:
        stream.codec_context.time_base = begin.time_base  # what MP4's timescale is taken from
    return stream


def _copied_codec(begin: _Begin, mode: VideoMode) -> str | None:
    return begin.source.codec_name if mode is VideoMode.COPY and begin.source else None


def _nothing_written(profile: VideoProfile, output: _Output) -> TranscodeError | None:
    """Why an output that ends has nothing to show for it, else None."""
    mode = output.video_mode
    if mode is VideoMode.ENCODE and output.video is None:
        return TranscodeError(f"{profile.name}: no frame to encode")
    if mode is VideoMode.COPY and output.frames == 0:
        return TranscodeError(f"{profile.name}: no video packet to copy")
    if mode is VideoMode.DROP and output.audio is None:
        return TranscodeError(f"{profile.name}: no video and no audio to write")
    return None


def check_container(profile: VideoProfile, container: OutputContainer) -> None:
    """`TranscodeError` unless ``container`` can carry ``profile``'s codec."""
    if not container.carries(profile.codec):
        raise TranscodeError(
            f"{profile.name}: {profile.codec.value} cannot go into MPEG-TS; it needs "
            "MP4 or fMP4 (lpms transcode --format fmp4; lpms serve --hls-format fmp4, "
            "the default)"
        )


class RenditionEncoder:
    """Scales, encodes and muxes one profile on its own thread."""

    def __init__(
        self,
        profile: VideoProfile,
        accel: Accel = Accel.SOFTWARE,
        *,
        queue_frames: int = DEFAULT_QUEUE_FRAMES,
        threads: int = 0,
        nice: int = 0,
        container: OutputContainer = OutputContainer.MPEGTS,
        max_frames_per_decoded: int = DEFAULT_MAX_FRAMES_PER_DECODED,
    ) -> None:
        self.profile = profile
        self.max_frames_per_decoded = max_frames_per_decoded
        self.accel = accel
        self.threads = threads
        self.nice = nice
        self.container = container
        self._codec = encoder_name(profile.codec, accel)
        self._muxer = muxer_name(profile, container)
        self._ts = self._muxer == "mpegts"
        if profile.video is VideoMode.ENCODE:
            check_container(profile, container)
        self._queue: queue.Queue[_Message] = queue.Queue(maxsize=queue_frames)
        self._reformatter = VideoReformatter()
        self._encoder: av.VideoCodecContext | None = None
        self._encoder_key: tuple[int, int, Fraction, Fraction | None] | None = None
        self._output: _Output | None = None
        self._begin_error: BaseException | None = None
        # Bitrate asked of each fresh encoder, as a share of the profile's: x264's
        # rate control starts low on every new encoder, so 2 s segments come out
        # well under target (70-85 %); each output's result steers the next one's.
        self._rate_scale = 1.0
        self._thread = threading.Thread(
            target=self._run, name=f"lpms-encode-{profile.name}", daemon=True
        )
        self._thread.start()

    # -- called from the session's thread ----------------------------------------------

    def begin(
        self,
        sink: BinaryIO,
        time_base: Fraction,
        framerate: Fraction | None,
        audio: AudioTrack | None,
        *,
        steer: bool = True,
        video: bool = True,
        source: SourceVideo | None = None,
    ) -> None:
        """Start an output: MPEG-TS into ``sink``, timestamps in ``time_base``.
        ``steer``: one of a run of segments, whose bitrates steer each other (a whole
        file is encoded at the profile's bitrate as it is). ``video`` False: the
        input has none, so the output is its audio alone; ``source``: the video a
        profile with video ``copy`` copies (`packet`)."""
        self._queue.put(_Begin(sink, time_base, framerate, audio, steer, video, source))

    def packet(
        self, payload: bytes, pts: int | None, dts: int | None, duration: int, keyframe: bool
    ) -> None:
        """A source video packet, for a profile with video ``copy`` (in ``begin``'s
        time base)."""
        self._queue.put(_Copied(payload, pts, dts, duration, keyframe))

    def frame(self, frame: av.VideoFrame) -> None:
        """A decoded frame; ``pict_type`` I asks for a keyframe here (set by the session)."""
        self._queue.put(frame)

    def audio(self, payload: bytes, pts: int | None, dts: int | None) -> None:
        """An encoded audio packet for this output, in its audio track's time base."""
        self._queue.put(_Audio(payload, pts, dts))

    def end(self) -> Future[RenditionOutput]:
        """Finish the output; the future holds its result, or the error that spoilt it."""
        result: Future[RenditionOutput] = Future()
        self._queue.put(_End(result))
        return result

    def close(self, timeout: float = 10.0) -> None:
        """Stop the thread (after what is queued) and free the encoder."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(timeout)

    # -- the encoder's thread ----------------------------------------------------------

    def _run(self) -> None:
        lower_priority(self.nice)
        while (message := self._queue.get()) is not None:
            if isinstance(message, av.VideoFrame | _Copied | _Audio) and self._spoilt():
                continue  # this output failed: skip to its end, which reports why
            started = time.perf_counter()
            try:
                if isinstance(message, av.VideoFrame):
                    self._on_frame(message)
                    self._count_busy(started)
                elif isinstance(message, _Copied):
                    self._on_copied(message)
                    self._count_busy(started)
                elif isinstance(message, _Audio):
                    self._on_audio(message)
                    self._count_busy(started)
                elif isinstance(message, _Begin):
                    self._on_begin(message)
                else:
                    self._on_end(message.result)
            except Exception as exc:
                self._fail(exc)
        self._drop_output()
        self._encoder = None

    def _count_busy(self, started: float) -> None:
        if self._output is not None:
            self._output.busy_seconds += time.perf_counter() - started

    def _spoilt(self) -> bool:
        output = self._output
        return self._begin_error is not None or (output is not None and output.error is not None)

    def _fail(self, exc: BaseException) -> None:
        """Keep the first error of an output, to report at its end."""
        if self._output is not None:
            self._output.error = self._output.error or exc
        elif self._begin_error is None:
            self._begin_error = exc

    def _on_begin(self, begin: _Begin) -> None:
        sink, time_base, framerate, audio = (
            begin.sink,
            begin.time_base,
            begin.framerate,
            begin.audio,
        )
        self._drop_output()
        self._begin_error = None
        mode = self.profile.video if begin.video else VideoMode.DROP
        if not self._ts:
            self._output = output = self._begin_mp4(begin)
            output.video_mode = mode
            output.copied_codec = _copied_codec(begin, mode)
            self._set_frame_timing(output)
            if mode is not VideoMode.ENCODE:  # no encoder to wait for: the streams now
                output.video = _copy_stream(output.container, begin, mode)
                self._add_audio_stream(output)
            return
        container = open_output(sink, self.profile, self.container)
        video = _copy_stream(container, begin, mode)
        if mode is VideoMode.ENCODE:
            video = container.add_mux_stream(_MUX_NAMES[self.profile.codec], rate=framerate or 30)
            video.time_base = time_base
        audio_stream = None
        audio_time_base = time_base
        if audio is not None:
            audio_time_base = audio.time_base
            audio_stream = container.add_mux_stream(audio.codec_name, rate=audio.sample_rate)
            audio_stream.time_base = audio.time_base
        self._output = _Output(
            sink, container, video, audio_stream, time_base, audio_time_base, framerate, begin.steer
        )
        self._output.video_mode = mode
        self._output.copied_codec = _copied_codec(begin, mode)
        self._set_frame_timing(self._output)

    def _begin_mp4(self, begin: _Begin) -> _Output:
        """An MP4 (or another muxer's output) whose streams are added with the
        video's encoder, at the first frame: the audio's with it."""
        scratch = None
        if self.container is not OutputContainer.MP4 or self._muxer not in MP4_MUXERS:
            container = open_output(begin.sink, self.profile, self.container)
        else:
            # FFmpeg moves the index to the front by reading the file back by its
            # name, which a Python file object has not: a file of our own, copied.
            scratch = _scratch_file(begin.sink)
            try:
                container = open_output(str(scratch), self.profile, self.container)
            except BaseException:
                scratch.unlink(missing_ok=True)
                raise
        return _Output(
            begin.sink,
            container,
            None,
            None,
            begin.time_base,
            begin.time_base,
            begin.framerate,
            begin.steer,
            scratch=scratch,
            audio_track=begin.audio,
        )

    def _on_frame(self, frame: av.VideoFrame) -> None:
        output = self._require_output()
        if frame.pts is None or output.video_mode is not VideoMode.ENCODE:
            return
        output.received += 1
        forced = frame.pict_type == PictureType.I
        slots = self._slots(output, frame.pts, forced)
        if not slots:
            return
        for repeat in slots[:-1]:  # a gap in the source: the last picture again
            output.picture = self._encode(
                output, output.picture, repeat, PictureType.NONE, output.picture_shared
            )
            output.picture_shared = False
        width, height = output_size(self.profile, frame.width, frame.height)
        scaled = self._reformatter.reformat(
            frame, width, height, "yuv420p", interpolation=Interpolation.BICUBIC
        )
        output.size = (width, height)
        kind = PictureType.I if forced else PictureType.NONE
        # A frame the scaler had nothing to do for is the decoded frame itself.
        shared = scaled is frame
        output.picture = self._encode(output, scaled, slots[-1], kind, shared)
        output.picture_shared = output.picture is frame

    def _encode(
        self,
        output: _Output,
        picture: av.VideoFrame | None,
        pts: int,
        kind: PictureType,
        shared: bool,
    ) -> av.VideoFrame | None:
        """Encode ``picture`` at ``pts``; the picture, or the private copy of it that
        was encoded when it had to be retimed and every profile's thread reads it."""
        if picture is None:
            return None
        if picture.pts != pts or picture.pict_type != kind:
            if shared:
                picture = _private_copy(picture)
            picture.pts, picture.time_base, picture.pict_type = pts, output.time_base, kind
        width, height = output.size
        encoder = self._encoder_for(output, width, height)
        if output.first_pts is None:
            output.first_pts = pts
        output.end_pts = max(output.end_pts, pts + output.frame_duration)
        output.frames += 1
        self._mux_video(output, encoder.encode(picture))
        return picture

    def _slots(self, output: _Output, pts: int, forced: bool) -> list[int]:
        """The PTS a frame is encoded at: none (dropped), its own, and before it
        the slots of a gap. With a profile rate below the source's, the output has a
        grid of slots one output frame apart, as FFmpeg's ``fps`` filter gives LPMS:
        a frame that falls in a slot already filled is dropped, one after a gap fills
        the empty slots before it with the last picture at their grid PTS (a steady
        rate out of variable-rate input). A frame kept keeps its own PTS, within a
        quarter slot before to three quarters after its slot, so a file's chunks
        (in 90 kHz) and the file itself (maybe in ms) keep the same timestamps. A
        forced keyframe starts the grid again at its own PTS, so every profile has a
        keyframe where the source segment starts.

        LPMS's runaway guard (encoder.c, ``lpms_ERR_ENC_RUNAWAY``): more than
        `max_frames_per_decoded` output frames per decoded frame is an error, before
        they are made, not a wait while memory fills."""
        step = output.frame_step
        if step is None:
            return [pts]
        start = output.grid_start
        if forced or start is None:
            output.grid_start, output.next_slot = Fraction(pts), 1
            return [pts]
        # A quarter step of slack: a frame a little early for its slot still fills it.
        slot = math.floor((pts - start) / step + Fraction(1, 4))
        if slot < output.next_slot:
            output.dropped += 1
            return []
        count = slot + 1 - output.next_slot
        if output.frames + count > self.max_frames_per_decoded * output.received:
            raise TranscodeError(
                f"{self.profile.name}: encoded frames runaway: {output.frames + count} "
                f"frames for {output.received} decoded (more than "
                f"{self.max_frames_per_decoded} each); the source's timestamps jump"
            )
        first, output.next_slot = output.next_slot, slot + 1
        return [round(start + index * step) for index in range(first, slot)] + [pts]

    def _set_frame_timing(self, output: _Output) -> None:
        """Once per output, not per frame: the output's frame period, and the step
        between kept frames when the profile's rate is below the source's."""
        rate, source = self.profile.framerate, output.framerate
        if rate is not None and (source is None or rate < source):
            output.frame_step = 1 / (rate * output.time_base)
        if rate is None or (source is not None and rate > source):
            rate = source
        output.frame_duration = round(1 / (rate * output.time_base)) if rate else 0

    def _encoder_for(self, output: _Output, width: int, height: int) -> av.VideoCodecContext:
        """The open encoder for this size, time base and rate (a new size mid-stream
        drains the old one into the same output: TS takes new parameter sets in-band)."""
        rate = self.profile.framerate or output.framerate
        key = (width, height, output.time_base, rate)
        if self._encoder is not None and self._encoder_key == key:
            return self._encoder
        if self._encoder is not None:
            if not self._ts:
                raise TranscodeError(f"{self.profile.name}: the picture size changed mid-segment")
            self._drain_encoder(output)
        scale = self._rate_scale if output.steer else 1.0
        if not self._ts:
            stream = output.container.add_stream(self._codec, rate=rate or _ASSUMED_FRAMERATE)
            stream.time_base = output.time_base
            output.video = stream
            context: object = stream.codec_context
        else:
            context = av.CodecContext.create(self._codec, "w")
        assert isinstance(context, av.VideoCodecContext)
        self._encoder = open_encoder(
            context,
            self.profile,
            self.accel,
            (width, height),
            output.time_base,
            rate,
            scale=scale,
            threads=self.threads,
        )
        self._encoder_key = key
        if not self._ts:
            self._add_audio_stream(output)  # the video's encoder is open: its header may go
        return self._encoder

    def _drain_encoder(self, output: _Output) -> None:
        encoder = self._encoder
        if encoder is None:
            return
        self._mux_video(output, encoder.encode(None))
        if self.accel is Accel.NVIDIA and self._ts:
            try:
                encoder.flush_buffers()  # NVENC resumes after a drain: keep it warm
                return
            except av.FFmpegError:
                pass
        self._encoder = None
        self._encoder_key = None

    def _mux_video(self, output: _Output, packets: list[av.Packet[Any]]) -> None:
        container, stream = output.container, output.video
        assert stream is not None
        for packet in packets:
            if output.first_keyframe is None:
                output.first_keyframe = packet.is_keyframe
                if packet.is_keyframe and self._writes_h264(output):
                    output.decoder_config = avc_config_from_annex_b(bytes(packet))
            output.keyframes += packet.is_keyframe
            output.video_bytes += packet.size
            _lift_negative_dts(output, packet)
            packet.stream = stream
            container.mux(packet)

    def _on_copied(self, copied: _Copied) -> None:
        """A source packet into the output as it is: payload, timestamps, keyframe flag."""
        output = self._require_output()
        if output.video_mode is not VideoMode.COPY or output.video is None:
            return
        packet = av.Packet(copied.payload)
        packet.pts, packet.dts = copied.pts, copied.dts
        packet.duration = copied.duration
        packet.is_keyframe = copied.keyframe
        packet.time_base = output.time_base
        if copied.pts is not None:
            if output.first_pts is None:
                output.first_pts = copied.pts
            output.end_pts = max(output.end_pts, copied.pts + copied.duration)
        output.frames += 1
        context = output.video.codec_context
        if isinstance(context, av.VideoCodecContext):
            output.size = (context.width, context.height)
        self._mux_video(output, [packet])

    def _writes_h264(self, output: _Output) -> bool:
        if output.video_mode is VideoMode.COPY:
            return output.copied_codec == "h264"
        return self.profile.codec is VideoCodec.H264

    def _add_audio_stream(self, output: _Output) -> None:
        """The audio's stream beside the video's (the header is not yet written),
        then the audio that came before it."""
        output.audio = add_audio_stream(output.container, output.audio_track)
        if output.audio_track is not None:
            output.audio_time_base = output.audio_track.time_base
        pending, output.pending_audio = output.pending_audio, []
        for audio in pending:
            self._on_audio(audio)

    def _on_audio(self, audio: _Audio) -> None:
        output = self._require_output()
        if output.audio is None:
            if output.audio_track is not None and output.video is None:
                if len(output.pending_audio) >= MAX_PENDING_AUDIO:
                    raise TranscodeError(f"{self.profile.name}: audio with no video to go with")
                output.pending_audio.append(audio)
            return
        payload = audio.payload
        if not self._ts and is_adts(payload):
            _config, payload = adts_to_raw(payload)  # the config went in as extradata
        packet = av.Packet(payload)
        packet.pts, packet.dts = audio.pts, audio.dts
        packet.time_base = output.audio_time_base
        packet.stream = output.audio
        output.container.mux(packet)

    def _on_end(self, result: Future[RenditionOutput]) -> None:
        started = time.perf_counter()
        output = self._output
        if output is None:
            error, self._begin_error = self._begin_error, None
            result.set_exception(error or TranscodeError("no output was begun"))
            return
        try:
            if output.error is None:
                self._drain_encoder(output)
            else:
                self._encoder, self._encoder_key = None, None
            if output.error is None:
                output.error = _nothing_written(self.profile, output)
            output.container.close()
        except Exception as exc:
            output.error = output.error or exc
        if not self._ts:
            self._encoder, self._encoder_key = None, None  # it was the output's own
        self._output = None
        if output.scratch is not None and output.error is None:
            try:
                _copy_scratch(output.scratch, output.sink)
            except OSError as exc:
                output.error = TranscodeError(f"{self.profile.name}: writing the MP4: {exc}")
        _remove_scratch(output)
        if output.error is not None:
            result.set_exception(output.error)
            return
        output.busy_seconds += time.perf_counter() - started  # the drain
        made = self._result(output)
        if self._muxer in MP4_MUXERS and made.data and output.video is not None:
            # The record FFmpeg's muxer built, as CODECS strings and players read it.
            try:
                config, _timescale = read_video_config(made.data)
            except HLSError as exc:
                result.set_exception(TranscodeError(f"{self.profile.name}: {exc}"))
                return
            made = dataclasses.replace(made, decoder_config=config.extradata)
        if output.steer:
            self._steer_bitrate(made)
        result.set_result(made)

    def _steer_bitrate(self, made: RenditionOutput) -> None:
        """Scale the next encoder's bitrate by how far this output missed its target
        (bounded, and only on outputs long enough to say; with a quality the bitrate
        is only a ceiling, no target)."""
        if made.duration < MIN_STEERING_SECONDS or made.bitrate <= 0:
            return
        if self.profile.quality is not None:
            return
        scale = self._rate_scale * self.profile.bitrate / made.bitrate
        self._rate_scale = min(MAX_RATE_SCALE, max(MIN_RATE_SCALE, scale))

    def _result(self, output: _Output) -> RenditionOutput:
        sink = output.sink
        data = sink.getvalue() if isinstance(sink, io.BytesIO) else b""
        size = len(data) if data else _position(sink)
        first = output.first_pts or 0
        duration = float((output.end_pts - first) * output.time_base) if output.frames else 0.0
        width, height = output.size
        return RenditionOutput(
            profile=self.profile,
            data=data,
            size=size,
            frames=output.frames,
            keyframes=output.keyframes,
            width=width,
            height=height,
            duration=duration,
            video_bytes=output.video_bytes,
            first_keyframe=bool(output.first_keyframe),
            decoder_config=output.decoder_config,
            busy_seconds=output.busy_seconds,
        )

    def _require_output(self) -> _Output:
        if self._output is None:
            raise TranscodeError("media arrived before an output was begun")
        return self._output

    def _drop_output(self) -> None:
        output, self._output = self._output, None
        if output is not None:
            try:
                output.container.close()
            except Exception:  # already failing; its error was reported
                log.debug("closing an abandoned %s output failed", self.profile.name)
            _remove_scratch(output)


def open_encoder(
    encoder: av.VideoCodecContext,
    profile: VideoProfile,
    accel: Accel,
    size: tuple[int, int],
    time_base: Fraction,
    rate: Fraction | None,
    *,
    scale: float = 1.0,
    threads: int = 0,
) -> av.VideoCodecContext:
    """Set up and open ``encoder`` for ``profile`` at ``size``, its bitrate times
    ``scale``; `TranscodeError` if it will not open, or leaves one of the profile's
    encoder options unused (an option it does not have)."""
    codec = encoder_name(profile.codec, accel)
    width, height = size
    encoder.width, encoder.height, encoder.pix_fmt = width, height, "yuv420p"
    encoder.time_base = time_base
    if rate is not None:
        encoder.framerate = rate
    # PyAV asks for slice threads unless told otherwise; x264's frame threads
    # (what the ffmpeg CLI gets) cost less CPU per frame and compress better, and
    # their added delay is drained at every output's end anyway.
    encoder.thread_type = "AUTO"
    if threads:
        encoder.thread_count = threads
    options = _speed_options(codec, encoder_preset(accel, profile.preset))
    if profile.gop is not None:
        interval = profile.gop.keyframe_interval(rate or _ASSUMED_FRAMERATE)
        encoder.gop_size = interval or 1
        if codec in ("libx264", "libx265"):
            options["sc_threshold"] = "0"
    options.update(_codec_options(codec, profile))
    options.update(rate_control(codec, profile, round(profile.bitrate * scale)))
    if codec == "libx264":
        # Left to itself x264 derives the level from the bitrate, which steering
        # changes from segment to segment: a new level is a new decoder
        # configuration, and players are told of a discontinuity for it.
        top = round(profile.bitrate * MAX_RATE_SCALE)
        options["level"] = h264_level(width, height, rate or _ASSUMED_FRAMERATE, top)
    options.update(profile.encoder_options)
    encoder.options = options
    try:
        encoder.open()
    except av.FFmpegError as exc:
        raise TranscodeError(f"{codec} for {profile.name} would not open: {exc}") from None
    # What the encoder did not take is left in its options.
    unused = sorted(set(profile.encoder_options) & set(encoder.options or {}))
    if unused:
        raise TranscodeError(
            f"{profile.name}: {codec} has no option {unused[0]!r} (encoder_options)"
        )
    return encoder


def check_encoder(profile: VideoProfile, accel: Accel) -> None:
    """`TranscodeError` now, before any media, for what would fail every output: a
    quality the encoder cannot take, or encoder options it will not open with (tried
    on a throwaway encoder, only for a profile that has options)."""
    codec = encoder_name(profile.codec, accel)
    rate_control(codec, profile, profile.bitrate)
    if not profile.encoder_options:
        return
    context = av.CodecContext.create(codec, "w")
    assert isinstance(context, av.VideoCodecContext)
    size = output_size(profile, profile.width, profile.height)
    rate = profile.framerate or _ASSUMED_FRAMERATE
    open_encoder(context, profile, accel, size, 1 / rate, rate)


def _scratch_file(sink: BinaryIO) -> Path:
    """An empty file to write an MP4 in: beside ``sink`` when it is a named file (the
    same disk), else in the temporary directory."""
    name = getattr(sink, "name", None)
    directory = os.path.dirname(os.path.abspath(name)) if isinstance(name, str) else None
    handle, path = tempfile.mkstemp(prefix=".lpms-", suffix=".mp4", dir=directory)
    os.close(handle)
    return Path(path)


def _copy_scratch(scratch: Path, sink: BinaryIO) -> None:
    with scratch.open("rb") as source:
        shutil.copyfileobj(source, sink)


def _remove_scratch(output: _Output) -> None:
    if output.scratch is not None:
        output.scratch.unlink(missing_ok=True)
        output.scratch = None


def _private_copy(picture: av.VideoFrame) -> av.VideoFrame:
    """A copy of a picture's pixels in a frame of its own."""
    copy = av.VideoFrame(picture.width, picture.height, picture.format.name)
    for source, target in zip(picture.planes, copy.planes, strict=True):
        if source.line_size == target.line_size and source.buffer_size == target.buffer_size:
            target.update(bytes(source))
            continue
        source_view, target_view = memoryview(source), memoryview(target)
        row = min(source.line_size, target.line_size)
        for line in range(target.height):
            start, into = line * source.line_size, line * target.line_size
            target_view[into : into + row] = source_view[start : start + row]
    return copy


def _lift_negative_dts(output: _Output, packet: av.Packet[Any]) -> None:
    """Keep the source's PTS when it starts near 0.

    With B-frames an encoder's first DTS lie one or two frames before the first PTS,
    so below 0 for a source that starts at 0; FFmpeg's muxer would then shift the
    whole output forward by that delay, which differs per frame rate, and the
    renditions would no longer line up with the source or each other. Instead the
    first few DTS are raised to 0, 1, 2 ... ticks (still rising, still at or before
    their PTS): the decoder just gets those frames a little early.
    """
    dts, pts = packet.dts, packet.pts
    if dts is None:
        return
    floor = output.next_dts
    if dts < floor <= (pts if pts is not None else dts):
        packet.dts = dts = floor
    output.next_dts = max(floor, dts + 1)


_UNSPECIFIED = 2  # AVCOL_TRC_UNSPECIFIED and AVCOL_PRI_UNSPECIFIED
_BT470BG, _SMPTE170M = 5, 6  # AVColorSpace values: the same YUV matrix


def share_frame(frame: av.VideoFrame) -> av.VideoFrame:
    """Ready a decoded frame to be scaled by several encoder threads at once.

    PyAV's ``reformat`` (17 and later) overwrites the source frame's transfer,
    primaries and matrix fields for the length of the scale, with the GIL released,
    and then writes the old values back; threads sharing one frame could read each
    other's stand-ins and leave them behind. Setting the fields once, here, to the
    values it writes (the scale ignores transfer and primaries, and BT.470BG is the
    SMPTE 170M matrix) makes every one of those writes store what is already there.
    The encoders take no colour tags from frames, so the outputs are unchanged.
    """
    if hasattr(frame, "color_trc"):
        frame.color_trc = _UNSPECIFIED
        frame.color_primaries = _UNSPECIFIED
        if frame.colorspace == _BT470BG:
            frame.colorspace = _SMPTE170M
    return frame


# H.264 levels (ITU-T H.264 Table A-1): macroblocks per second, macroblocks per frame,
# bitrate in kb/s (the Baseline/Main figure: within every profile's).
_H264_LEVELS = (
    ("1.0", 1485, 99, 64),
    ("1.1", 3000, 396, 192),
    ("1.2", 6000, 396, 384),
    ("1.3", 11880, 396, 768),
    ("2.0", 11880, 396, 2000),
    ("2.1", 19800, 792, 4000),
    ("2.2", 20250, 1620, 4000),
    ("3.0", 40500, 1620, 10000),
    ("3.1", 108000, 3600, 14000),
    ("3.2", 216000, 5120, 20000),
    ("4.0", 245760, 8192, 20000),
    ("4.1", 245760, 8192, 50000),
    ("4.2", 522240, 8704, 50000),
    ("5.0", 589824, 22080, 135000),
    ("5.1", 983040, 36864, 240000),
    ("5.2", 2073600, 36864, 240000),
    ("6.0", 4177920, 139264, 240000),
    ("6.1", 8355840, 139264, 480000),
    ("6.2", 16711680, 139264, 800000),
)


def h264_level(width: int, height: int, rate: Fraction, bitrate: int) -> str:
    """The lowest H.264 level that holds this size, frame rate and bitrate (b/s)."""
    frame = ((width + 15) // 16) * ((height + 15) // 16)
    per_second = frame * float(rate)
    for name, max_rate, max_frame, max_kbps in _H264_LEVELS:
        if frame <= max_frame and per_second <= max_rate and bitrate <= max_kbps * 1000:
            return name
    return _H264_LEVELS[-1][0]


# x264's preset names as SVT-AV1 presets (13 fastest .. 0 slowest) and as libvpx's
# speed (cpu-used, 8 fastest .. 0), so a profile's one preset means the same speed.
_SVT_AV1_PRESETS = {
    "ultrafast": "12",
    "superfast": "11",
    "veryfast": "10",
    "faster": "9",
    "fast": "8",
    "medium": "7",
    "slow": "5",
    "slower": "4",
    "veryslow": "3",
    "placebo": "2",
}
_VPX_SPEEDS = {
    "ultrafast": "8",
    "superfast": "8",
    "veryfast": "7",
    "faster": "6",
    "fast": "5",
    "medium": "4",
    "slow": "3",
    "slower": "2",
    "veryslow": "1",
    "placebo": "0",
}


def _speed_options(codec: str, preset: str) -> dict[str, str]:
    """How fast ``codec`` is asked to encode, from a profile's x264-style preset."""
    if codec == "libsvtav1":
        return {"preset": _SVT_AV1_PRESETS.get(preset, "10")}
    if codec == "libvpx-vp9":
        # Realtime deadline: what a live ladder needs (good-quality takes seconds a frame).
        return {"deadline": "realtime", "cpu-used": _VPX_SPEEDS.get(preset, "7"), "row-mt": "1"}
    return {"preset": preset}


def _codec_options(codec: str, profile: VideoProfile) -> dict[str, str]:
    """Encoder options beyond preset and GOP: keyframes the session forces are IDR
    frames (a segment must start decodable), and the H.264 profile where one is set."""
    options: dict[str, str] = {}
    if codec in ("libx264", "libx265"):
        options["forced-idr"] = "1"
    if codec == "libx265":
        options["x265-params"] = "log-level=error"
    if codec.endswith("_nvenc"):
        options["forced-idr"] = "1"
    h264_profile = profile.h264_profile
    if h264_profile is not None and profile.codec is VideoCodec.H264:
        options["profile"] = h264_profile.encoder_profile
        if h264_profile.b_frames == 0:
            options["bf"] = "0"
        if h264_profile is H264Profile.CONSTRAINED_HIGH and codec == "libx264":
            options["x264-params"] = "cabac=1:b-pyramid=none"
    return options


def rate_control(codec: str, profile: VideoProfile, bitrate: int) -> dict[str, str]:
    """The encoder options for ``profile``'s rate control at ``bitrate`` (its own, or
    steered), as LPMS sets them.

    LPMS (``ffmpeg/encoder.c``) sets a bitrate as the encoder's average, minimum and
    maximum rate and its VBV buffer size alike: an average with a peak bounded over
    one second. Its quality (``ffmpeg/ffmpeg.go``) is the ``crf`` option, and NVENC's
    ``cq`` at quality + 7 (at most 51); a bitrate given with it is, as LPMS's
    VideoProfile says, only the maximum. We set NVENC's ``rc`` to VBR for the CQ
    (what NVENC picks for a CQ anyway), the average rate to 0 (FFmpeg's default is
    200 kb/s, which x265 and libvpx would take as a target) except for libvpx given
    a bitrate, as its constrained-quality mode takes its ceiling there; a quality outside NVENC's CQ
    range is a `TranscodeError`, where LPMS warns and drops it.

    SVT-AV1 takes a maximum rate only with a CRF (and forces keyframes only then):
    there a bitrate alone is the average and the buffer, with no maximum, and an
    intra-only profile needs a quality.
    """
    rate = str(bitrate)
    if profile.quality is None and codec == "libsvtav1":
        if profile.gop == INTRA_ONLY:
            raise TranscodeError(
                f"{profile.name}: SVT-AV1 makes every frame a keyframe only at a constant "
                "quality: give the profile a quality"
            )
        return {"b": rate, "bufsize": rate}  # its average rate takes no maximum
    if profile.quality is None:
        return {"b": rate, "minrate": rate, "maxrate": rate, "bufsize": rate}
    options = {"b": "0"}  # not FFmpeg's default of 200 kb/s, a target some encoders take
    if codec.endswith("_nvenc"):
        cq = profile.quality + 7
        if cq > 51:
            raise TranscodeError(
                f"{profile.name}: quality {profile.quality} is beyond NVENC's CQ "
                f"(quality + 7, at most 51): use a quality of at most 44"
            )
        options.update(rc="vbr", cq=str(cq))
    else:
        options["crf"] = str(profile.quality)
    if bitrate:
        options.update(maxrate=rate, bufsize=rate)
        if codec == "libvpx-vp9":
            options["b"] = rate
    return options


def _position(sink: BinaryIO) -> int:
    try:
        return sink.tell()
    except (OSError, ValueError):
        return 0


def lower_priority(nice: int) -> None:
    """Run the calling thread, and the threads it starts (x264's own, a decoder's),
    ``nice`` steps below the rest of the process: on Linux a thread's nice value is
    its own and is inherited. Elsewhere, or when not allowed, nothing changes."""
    if nice <= 0 or not hasattr(os, "setpriority"):
        return
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
    except OSError as exc:
        log.debug("could not lower a transcoding thread's priority: %s", exc)
