"""`Transcoder`: a persistent per-stream session, segments in, one segment per profile out.

Each segment is demuxed and decoded once, by a decoder that lives as long as the
session (drained at each segment's end, then reset, as LPMS keeps its decoders);
every decoded frame goes to one `RenditionEncoder` per profile, each on its own
thread, and audio is copied into every output (or encoded once to AAC when the
source's audio is something else). The first frame of every segment is forced to a
keyframe in every profile, so all renditions cut where the source does and players
can switch between them at any segment.

A segment that cannot be read or decoded raises `TranscodeError` for that segment
only; the session goes on with the next one. ``transcode_file`` runs the same
pipeline over a whole file, writing one file per profile (MPEG-TS, or MP4 as its
format or the caller says), with keyframes where the source has them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, BinaryIO

import av
from av.audio.resampler import AudioResampler
from av.video.frame import PictureType

from lpms.errors import LPMSError, TranscodeError
from lpms.hls.segmenter import ContinuityCounters
from lpms.media.codecs.aac import adts_frame, is_adts
from lpms.transcode.accel import check_accel, decoder_hwaccel
from lpms.transcode.clip import AudioGate, Clip
from lpms.transcode.muxing import check_copy, check_muxer, muxer_extension, muxer_name
from lpms.transcode.orientation import Upright, display_rotation
from lpms.transcode.output_options import AudioMode, VideoMode
from lpms.transcode.profiles import TS_CODECS, VideoCodec, VideoProfile, parse_profiles
from lpms.transcode.rendition import (
    DEFAULT_QUEUE_FRAMES,
    AudioTrack,
    OutputContainer,
    RenditionEncoder,
    RenditionOutput,
    SourceVideo,
    check_container,
    check_encoder,
    share_frame,
)
from lpms.transcode.settings import (
    DEFAULT_MAX_FILE_SECONDS,
    DEFAULT_MAX_FRAMES_PER_DECODED,
    DEFAULT_MAX_OUTPUTS,
    DEFAULT_MAX_SEGMENT_SECONDS,
    Accel,
)

log = logging.getLogger(__name__)

MAX_SEGMENT_BYTES = 256 << 20
"""Largest segment `Transcoder.transcode` takes (a 2 s segment is a few MB)."""

AAC_BITRATE = 128_000
"""Bitrate of the AAC track made when the source's audio is not AAC (or MP3)."""

COPIED_AUDIO = {"aac": "aac", "mp3": "mp3", "mp3float": "mp3"}
"""Audio codecs (by decoder name) copied into every output, as what they are."""


@dataclass(frozen=True, slots=True)
class TranscodeResult:
    """One segment (or file) through the session: what was decoded, what each profile
    made, and how long it took."""

    index: int  # 0 for the session's first segment
    decoded_frames: int
    decoded_pixels: int
    duration: float  # seconds of source video, from its timestamps
    elapsed: float  # wall-clock seconds spent
    outputs: tuple[RenditionOutput, ...]
    skipped_packets: int = 0  # packets the decoder could not read (concealed)

    @property
    def speed(self) -> float:
        """Seconds of media per second of work: above 1.0 keeps up with live."""
        return self.duration / self.elapsed if self.elapsed > 0 else 0.0

    def output(self, name: str) -> RenditionOutput:
        for output in self.outputs:
            if output.profile.name == name:
                return output
        raise KeyError(name)


ProgressCallback = Callable[[float, float], None]
"""Called with (seconds done, seconds in all; 0 when unknown) as a file goes through."""


class Transcoder:
    """A transcoding session for one stream: keep it for the stream's life.

    Not thread-safe: one caller thread feeds segments in order (the profiles' encoders
    run on threads of their own). Close it, or use it as a context manager.

    Hard caps, each a `TranscodeError` when passed (`TranscodeSettings`' fields of
    the same names document them and give a live stream's): ``max_outputs``
    profiles; ``max_segment_seconds`` of video in a segment or chunk and
    ``max_file_seconds`` in a file, by the container's duration or, where it tells
    none, the frames' timestamps;
    ``max_frames_per_decoded`` output frames per decoded frame in any profile.
    """

    def __init__(
        self,
        profiles: Sequence[VideoProfile] | str,
        *,
        accel: Accel | str = Accel.SOFTWARE,
        queue_frames: int = DEFAULT_QUEUE_FRAMES,
        threads: int = 0,
        nice: int = 0,
        output: OutputContainer | None = None,
        max_outputs: int = DEFAULT_MAX_OUTPUTS,
        max_segment_seconds: float = DEFAULT_MAX_SEGMENT_SECONDS,
        max_file_seconds: float = DEFAULT_MAX_FILE_SECONDS,
        max_frames_per_decoded: int = DEFAULT_MAX_FRAMES_PER_DECODED,
    ) -> None:
        chosen = parse_profiles(profiles) if isinstance(profiles, str) else tuple(profiles)
        if not chosen:
            raise TranscodeError("a transcoder needs at least one profile")
        if len(chosen) > max_outputs:
            raise TranscodeError(
                f"too many outputs: {len(chosen)} profiles, at most {max_outputs} a session"
            )
        self.max_segment_seconds = max_segment_seconds
        self.max_file_seconds = max_file_seconds
        self.profiles = chosen
        self.accel = Accel.parse(accel)
        self.containers = tuple(output_container(p, output) for p in chosen)
        for profile, container in zip(chosen, self.containers, strict=True):
            check_output(profile, container, self.accel)  # before any encoder thread starts
        self._encoders = [
            RenditionEncoder(
                p,
                self.accel,
                queue_frames=queue_frames,
                threads=threads,
                nice=nice,
                container=container,
                max_frames_per_decoded=max_frames_per_decoded,
            )
            for p, container in zip(chosen, self.containers, strict=True)
        ]
        self._continuity = [ContinuityCounters() for _ in chosen]
        self._encoding = [e for e in self._encoders if e.profile.video is VideoMode.ENCODE]
        self._copying = [e for e in self._encoders if e.profile.video is VideoMode.COPY]
        self._decoder: av.VideoCodecContext | None = None
        self._decoder_key: tuple[str, bytes, int, int, str] | None = None
        self._segments = 0
        self._closed = False

    # -- public ------------------------------------------------------------------------

    def transcode(
        self, segment: bytes | bytearray | memoryview | str | os.PathLike[str]
    ) -> TranscodeResult:
        """Transcode one segment (MPEG-TS, or anything FFmpeg reads) into one segment
        per profile (in its container, `containers`), in `TranscodeResult.outputs` in
        the profiles' order."""
        index, container = self._open_in_memory(segment, "segment")
        sinks: list[BinaryIO] = [io.BytesIO() for _ in self._encoders]
        with container:
            result = self._run([container], sinks, index, force_keyframes="first")
        outputs = tuple(
            self._fix_continuity(output, counters) if muxer == "mpegts" else output
            for output, counters, muxer in zip(
                result.outputs,
                self._continuity,
                (muxer_name(p, c) for p, c in zip(self.profiles, self.containers, strict=True)),
                strict=True,
            )
        )
        return dataclasses.replace(result, outputs=outputs)

    def transcode_file(
        self,
        source: str | os.PathLike[str],
        outdir: str | os.PathLike[str],
        progress: ProgressCallback | None = None,
        *,
        start: float | None = None,
        end: float | None = None,
    ) -> TranscodeResult:
        """Transcode a whole file or URL into ``OUTDIR/PROFILE.ts`` (``.mp4`` for an
        MP4, see `containers`) for each profile, with a keyframe wherever the source
        has one (so the outputs line up). ``start``/``end``: LPMS's From/To, see
        `transcode_files`."""
        return self.transcode_files([source], outdir, progress, start=start, end=end)

    def transcode_files(
        self,
        sources: Sequence[str | os.PathLike[str]],
        outdir: str | os.PathLike[str],
        progress: ProgressCallback | None = None,
        *,
        start: float | None = None,
        end: float | None = None,
    ) -> TranscodeResult:
        """Transcode several files, joined one after the other, into one output per
        profile (as `transcode_file`): each input's timestamps go on from the end of
        the last one's video (LPMS's transmuxing of several inputs into one output).

        ``start``/``end`` (LPMS's ``From``/``To``, seconds from the first video
        frame of the joined inputs) clip the output: video from the first frame at or
        after ``start``, a keyframe, to the last before ``end``; audio from its first
        packet starting at or after ``start`` to its last starting before ``end``
        (copied AAC: 1024-sample frames). The clip starts where the input did.
        `TranscodeError` for a negative time, ``start`` at or after ``end`` or past
        the inputs' end."""
        self._check_open()
        clip = Clip.of(start, end)
        if not sources:
            raise TranscodeError("no input to transcode")
        directory = Path(outdir)
        directory.mkdir(parents=True, exist_ok=True)
        with contextlib.ExitStack() as stack:
            containers = [stack.enter_context(_open_input(source)) for source in sources]
            clip.check_within(sum(_container_seconds(c) for c in containers))
            index = self._segments
            self._segments += 1
            names = [output_name(p, c) for p, c in zip(self.profiles, self.containers, strict=True)]
            files = [stack.enter_context(open(directory / name, "wb")) for name in names]
            return self._run(
                containers,
                list(files),
                index,
                "source",
                progress,
                shift=clip.start or Fraction(0),
                window=clip.window(_first_seconds(containers[0])),
                limit=self.max_file_seconds,
            )

    def transcode_chunk(
        self,
        chunk: bytes | bytearray | memoryview,
        *,
        shift: Fraction = Fraction(0),
        framerate: Fraction | None = None,
        first: Fraction | None = None,
        end: Fraction | None = None,
    ) -> TranscodeResult:
        """Transcode one chunk of a file (`lpms.transcode.chunks`) into one MPEG-TS
        piece per profile, as `transcode_file` would have made that stretch of it:
        keyframes where the source has them, each profile at its bitrate as it is.

        ``shift``: seconds every timestamp is moved back by (the chunk was cut with
        its file's timestamps moved on, so that none is negative). ``framerate``:
        the file's, which a chunk of a few seconds may not tell as exactly. Only
        frames shown from ``first`` and before ``end`` (seconds, once shifted; None:
        no bound) are encoded and counted; the others are there to be decoded from.
        The pieces' continuity counters are left for whoever joins them."""
        index, container = self._open_in_memory(chunk, "chunk")
        sinks: list[BinaryIO] = [io.BytesIO() for _ in self._encoders]
        with container:
            return self._run(
                [container],
                sinks,
                index,
                "source",
                shift=shift,
                framerate=framerate,
                window=(first, end),
            )

    def _open_in_memory(
        self, source: bytes | bytearray | memoryview | str | os.PathLike[str], what: str
    ) -> tuple[int, av.container.InputContainer]:
        """Number the next input and open its bytes; `TranscodeError` naming it as
        ``what`` when FFmpeg cannot read them."""
        self._check_open()
        data = _segment_bytes(source)
        index = self._segments
        self._segments += 1
        try:
            return index, av.open(io.BytesIO(data), "r")
        except av.FFmpegError as exc:
            raise TranscodeError(f"{what} {index} is not readable media: {exc.strerror}") from None

    def close(self) -> None:
        """Stop the encoders' threads and free the decoder."""
        if self._closed:
            return
        self._closed = True
        for encoder in self._encoders:
            encoder.close()
        self._decoder = None

    def __enter__(self) -> Transcoder:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- the pipeline ------------------------------------------------------------------

    def _run(
        self,
        inputs: Sequence[av.container.InputContainer],
        sinks: list[BinaryIO],
        index: int,
        force_keyframes: str,
        progress: ProgressCallback | None = None,
        *,
        shift: Fraction = Fraction(0),
        framerate: Fraction | None = None,
        window: tuple[Fraction | None, Fraction | None] = (None, None),
        limit: float | None = None,
    ) -> TranscodeResult:
        """Every input through the profiles into one output each: the first moved
        back by ``shift`` seconds, each later one going on where the one before it
        ended; only frames and audio inside ``window`` (seconds, once moved)."""
        started = time.perf_counter()
        first = inputs[0]
        limit = self.max_segment_seconds if limit is None else limit
        total = sum(_container_seconds(c) for c in inputs)
        _check_duration(total, limit, index)
        video = first.streams.video[0] if first.streams.video else None
        audio_in = first.streams.audio[0] if first.streams.audio else None
        if video is None and audio_in is None:
            raise TranscodeError(f"segment {index} has neither video nor audio")
        audio = _AudioPaths.first(audio_in, self.profiles)
        source = self._source_video(video)
        time_base = (video.time_base if video is not None else None) or Fraction(1, 90000)
        framerate = framerate or (stream_framerate(video) if video is not None else None)
        segments = force_keyframes == "first"
        for encoder, sink in zip(self._encoders, sinks, strict=True):
            encoder.begin(
                sink,
                time_base,
                framerate,
                audio.track(encoder.profile),
                steer=segments,
                video=video is not None,
                source=source if encoder in self._copying else None,
            )
        run = _Pass(
            time_base=time_base,
            framerate=framerate,
            shows=_window(window, time_base),
            gate=AudioGate(window),
            counts=_Counts(limit=limit, index=index),
            force_keyframes=force_keyframes,
            progress=progress,
            total=total,
            audio=audio,
            copier=_Copier(self._copying, window, counts=not self._encoding),
        )
        error: BaseException | None = None
        try:
            ends = self._feed(first, _Shift(shift), run, audio)
            for number, container in enumerate(inputs[1:], 1):
                run.gate.join(ends)
                back = _Shift(_first_seconds(container) - ends)
                ends = self._feed(container, back, run, self._joined_audio(container, run, number))
        except (av.FFmpegError, LPMSError) as exc:
            error = exc
        finally:
            if self._decoder is not None:
                self._decoder.flush_buffers()
            futures = [encoder.end() for encoder in self._encoders]
        outputs = _results(futures, index)
        if error is not None:
            raise TranscodeError(f"segment {index} failed: {error}") from None
        counts = run.counts
        uses_video = video is not None and bool(self._encoding or self._copying)
        if uses_video and counts.frames == 0 and run.copier.packets == 0:
            if window[0] is not None:
                raise TranscodeError(
                    "no video frames between from and to: from is past the end of the input's video"
                )
            raise TranscodeError(f"segment {index} has no decodable video frames")
        return TranscodeResult(
            index=index,
            decoded_frames=counts.frames,
            decoded_pixels=counts.pixels,
            duration=counts.duration(time_base, framerate),
            elapsed=time.perf_counter() - started,
            outputs=outputs,
            skipped_packets=counts.skipped,
        )

    def _feed(
        self,
        container: av.container.InputContainer,
        back: _Shift,
        run: _Pass,
        audio: _AudioPaths | None,
    ) -> Fraction:
        """Demux one input into the outputs, its video decoded for the profiles that
        encode it and its packets given to those that copy it; the end of its video
        (of its audio, without video; seconds, once moved back): where a joined
        input after it starts."""
        video = container.streams.video[0] if container.streams.video else None
        decoder = self._decoder_for(video) if video is not None and self._encoding else None
        time_base = (video.time_base if video is not None else None) or Fraction(1, 90000)
        rate = (stream_framerate(video) if video is not None else None) or run.framerate
        timeline = _Timeline(time_base, rate)
        retime = _retimer(time_base, run.time_base)
        upright: Upright | None = None
        probe_rotation = decoder is not None and _carries_display_matrix(container)
        audio_in = container.streams.audio[0] if audio is not None and audio.used else None
        streams = [s for s in (video, audio_in) if s is not None]
        ends = Fraction(0)  # where the input's packets end (seconds)
        for packet in container.demux(streams):
            if packet.size == 0:
                continue  # the demuxer's end-of-stream marker: drained below
            back.apply(packet)
            if packet.stream is video:
                if probe_rotation and video is not None:
                    probe_rotation = False
                    upright = _upright_for(video, packet, time_base)
                run.copier.send(packet, run)
                if decoder is None:
                    continue
                for frame in self._decode(decoder, packet, run.counts):
                    timeline.fix(frame)
                    self._show(retime(frame), run, upright)
            else:
                start, length = _packet_seconds(packet)
                ends = max(ends, (start or Fraction(0)) + length)
                if audio is not None and run.gate.admits(start, length):
                    audio.send(packet, self._encoders)
        if decoder is not None:
            for frame in self._decode(decoder, None, run.counts):
                timeline.fix(frame)
                self._show(retime(frame), run, upright)
            decoder.flush_buffers()
        if audio is not None:
            audio.finish(self._encoders)
        if video is None:
            return ends
        return max(timeline.end * time_base, run.copier.end)

    def _show(self, frame: av.VideoFrame, run: _Pass, upright: Upright | None) -> None:
        """A decoded frame (in the output's time base) to every profile, if in the window."""
        if not run.shows(frame.pts):
            return
        self._dispatch(frame, run.counts, run.force_keyframes, run.time_base, upright)
        if run.progress is not None and frame.pts is not None:
            run.progress(float(frame.pts * run.time_base) - run.counts.start_seconds, run.total)

    @staticmethod
    def _joined_audio(
        container: av.container.InputContainer, run: _Pass, number: int
    ) -> _AudioPaths | None:
        """A joined input's audio paths, when the outputs have audio and it is the
        same kind (copied packets cannot change codec or rate mid-track)."""
        if not run.audio.used or not container.streams.audio:
            return None
        return run.audio.joined(container.streams.audio[0], number)

    def _source_video(self, video: av.video.stream.VideoStream | None) -> SourceVideo | None:
        """What the profiles that copy ``video`` copy (`TranscodeError` for a muxer
        that cannot carry it), and the decoder ready for those that encode it."""
        if video is None:
            return None
        if self._encoding:
            self._decoder_for(video)
        if not self._copying:
            return None
        codec_name = video.codec_context.name
        for encoder in self._copying:
            check_copy(encoder.profile, encoder.container, codec_name)
        return SourceVideo.of(video)

    def _decoder_for(self, stream: av.video.stream.VideoStream) -> av.VideoCodecContext:
        """The session's decoder, made anew only when the codec or its configuration
        changes (a new SPS in-band needs no new decoder). It gets the stream's picture
        size and pixel format: codecs such as FFV1 version 1 and raw video keep them
        in the container, not in the bitstream."""
        source = stream.codec_context
        picture = (source.width, source.height, source.format.name if source.format else "")
        key = (source.codec.name, bytes(source.extradata or b""), *picture)
        if self._decoder is not None and self._decoder_key == key:
            return self._decoder
        hwaccel = decoder_hwaccel(self.accel)
        try:
            decoder = av.CodecContext.create(source.codec.name, "r", hwaccel=hwaccel)
        except av.FFmpegError as exc:
            raise TranscodeError(f"no decoder for {source.codec.name}: {exc.strerror}") from None
        assert isinstance(decoder, av.VideoCodecContext)
        if source.extradata:
            decoder.extradata = source.extradata
        _set_picture(decoder, *picture)
        if hwaccel is None:
            decoder.thread_type = "AUTO"
        self._decoder, self._decoder_key = decoder, key
        return decoder

    @staticmethod
    def _decode(
        decoder: av.VideoCodecContext, packet: av.Packet[Any] | None, counts: _Counts
    ) -> list[av.VideoFrame]:
        try:
            frames = decoder.decode(packet)
        except av.InvalidDataError:
            counts.skipped += 1  # a damaged packet: the decoder conceals and goes on
            return []
        return [f for f in frames if isinstance(f, av.VideoFrame)]

    def _dispatch(
        self,
        frame: av.VideoFrame,
        counts: _Counts,
        force_keyframes: str,
        time_base: Fraction,
        upright: Upright | None,
    ) -> None:
        first = counts.frames == 0
        keyframe = first if force_keyframes == "first" else (first or frame.key_frame)
        if upright is not None:
            frame = upright(frame)
        counts.add(frame, time_base)
        frame.pict_type = PictureType.I if keyframe else PictureType.NONE
        share_frame(frame)
        for encoder in self._encoding:
            encoder.frame(frame)

    def _fix_continuity(
        self, output: RenditionOutput, counters: ContinuityCounters
    ) -> RenditionOutput:
        """Carry each TS PID's continuity counter on from the last segment, so the
        rendition reads as one stream (a fresh muxer starts every counter at 0)."""
        buffer = bytearray(output.data)
        try:
            counters.fix(memoryview(buffer))
        except LPMSError as exc:
            raise TranscodeError(f"{output.profile.name}: {exc}") from None
        return dataclasses.replace(output, data=bytes(buffer))

    def _check_open(self) -> None:
        if self._closed:
            raise TranscodeError("the transcoder is closed")


def _window(
    window: tuple[Fraction | None, Fraction | None], time_base: Fraction
) -> Callable[[int | None], bool]:
    """Whether a frame's PTS is in ``window`` (seconds, either bound None for none)."""
    first, end = window
    if first is None and end is None:
        return lambda pts: True
    low = None if first is None else math.ceil(first / time_base)
    high = None if end is None else math.ceil(end / time_base)

    def shows(pts: int | None) -> bool:
        if pts is None:
            return False
        return (low is None or pts >= low) and (high is None or pts < high)

    return shows


def _retimer(source: Fraction, output: Fraction) -> Callable[[av.VideoFrame], av.VideoFrame]:
    """A joined input's frames into the output's time base (the first input's)."""
    if source == output:
        return lambda frame: frame

    def retime(frame: av.VideoFrame) -> av.VideoFrame:
        if frame.pts is not None:
            frame.pts = round(frame.pts * source / output)
            frame.time_base = output
        return frame

    return retime


def _packet_seconds(packet: av.Packet[Any]) -> tuple[Fraction | None, Fraction]:
    """Where a packet starts and how long it lasts, in seconds (start None: unknown)."""
    time_base = Fraction(packet.time_base) if packet.time_base is not None else None
    if time_base is None or packet.pts is None:
        return None, Fraction(0)
    return packet.pts * time_base, (packet.duration or 0) * time_base


def _open_input(source: str | os.PathLike[str]) -> av.container.InputContainer:
    try:
        return av.open(str(source), "r")
    except av.FFmpegError as exc:
        raise TranscodeError(f"cannot read {source}: {exc.strerror}") from None


def _container_seconds(container: av.container.InputContainer) -> float:
    """An input's length as its container tells it (0: it does not)."""
    return float(container.duration / av.time_base) if container.duration else 0.0


def _first_seconds(container: av.container.InputContainer) -> Fraction:
    """Where an input's video starts, in seconds (its container's start where the
    video stream tells none; 0 where neither does)."""
    video = container.streams.video[0] if container.streams.video else None
    if video is not None and video.start_time is not None and video.time_base is not None:
        return video.start_time * Fraction(video.time_base)
    if container.start_time is not None:
        return Fraction(container.start_time, av.time_base)
    return Fraction(0)


@dataclass(slots=True)
class _Pass:
    """What the inputs of one output share as they go through."""

    time_base: Fraction  # the output's video time base: the first input's
    framerate: Fraction | None
    shows: Callable[[int | None], bool]
    gate: AudioGate
    counts: _Counts
    force_keyframes: str
    progress: ProgressCallback | None
    total: float  # seconds in all, for progress (0: unknown)
    audio: _AudioPaths  # the outputs' audio, the first input's
    copier: _Copier  # the source's video packets to the outputs that copy it


class _Copier:
    """The source's video packets to the outputs that copy them, in the output's time
    base: payloads and keyframe flags as they are. With a clip's window, LPMS's cut
    at keyframes: from the first keyframe at or after its start, the packets that
    start before its end."""

    __slots__ = ("_counts", "_first", "_last", "_outputs", "end", "packets")

    def __init__(
        self,
        outputs: Sequence[RenditionEncoder],
        window: tuple[Fraction | None, Fraction | None],
        *,
        counts: bool,
    ) -> None:
        self._outputs = outputs
        self._counts = counts  # nothing is decoded: the packets tell the duration
        self._first, self._last = window
        self.end = Fraction(0)  # where the packets seen end (seconds): a joined input goes on
        self.packets = 0  # copied into each output

    def send(self, packet: av.Packet[Any], run: _Pass) -> None:
        if not self._outputs:
            return
        start, length = _packet_seconds(packet)
        if start is None:
            start = self.end  # no timestamp: right after the last
        if not length and run.framerate:
            length = 1 / run.framerate  # MPEG-TS tells no packet durations
        self.end = max(self.end, start + length)
        if self._first is not None:
            if start < self._first or not packet.is_keyframe:
                return
            self._first = None  # the cut: everything from here on
        if self._last is not None and start >= self._last:
            return
        scale = Fraction(packet.time_base or run.time_base) / run.time_base
        pts = None if packet.pts is None else round(packet.pts * scale)
        dts = None if packet.dts is None else round(packet.dts * scale)
        duration = round((packet.duration or 0) * scale)
        if pts is not None and self._counts:
            run.counts.seen(pts, run.time_base)
        payload = bytes(packet)
        self.packets += 1
        for output in self._outputs:
            output.packet(payload, pts, dts, duration, packet.is_keyframe)


def _set_picture(decoder: av.VideoCodecContext, width: int, height: int, pix_fmt: str) -> None:
    """The container's picture size and pixel format on a fresh decoder (a decoder
    whose bitstream tells them sets them again itself)."""
    if width and height:
        decoder.width, decoder.height = width, height
    if pix_fmt:
        decoder.pix_fmt = pix_fmt


def check_output(profile: VideoProfile, container: OutputContainer, accel: Accel) -> None:
    """`TranscodeError` now, before any media, for an output that would fail every
    input: a codec its container cannot carry, a muxer, muxer option or encoder
    option FFmpeg will not take, an accelerator without the codec (`check_muxer`,
    `check_encoder`). Only a profile that encodes its video has an encoder to try."""
    if profile.video is VideoMode.ENCODE:
        check_accel(accel, profile.codec)
        check_container(profile, container)
    check_muxer(profile, container)
    if profile.video is VideoMode.ENCODE:
        check_encoder(profile, accel)


def _carries_display_matrix(container: av.container.InputContainer) -> bool:
    """Whether the container can hold a display matrix (MP4/MOV, Matroska): MPEG-TS,
    FLV and raw streams cannot, so live segments skip the look."""
    names = container.format.name.split(",")
    return "mov" in names or "matroska" in names


def _upright_for(
    stream: av.video.stream.VideoStream, packet: av.Packet[Any], time_base: Fraction
) -> Upright | None:
    clockwise = display_rotation(stream, packet)
    return Upright(clockwise, time_base) if clockwise else None


class _Timeline:
    """Every decoded frame gets a PTS, and each one later than the last: LPMS's
    ``fix_video_pts`` (ffmpeg/decoder.c). A frame without one (a raw H.264 stream,
    AV_NOPTS_VALUE) takes its packet's DTS, else the last PTS plus one frame period;
    one at or before the last (out-of-order input) is put one frame period after it.
    LPMS moves such a frame on by one tick; a whole period keeps a stretch of frames
    that went back in time at their rate, so a profile's frame-rate conversion keeps
    them instead of dropping all but one (quirks.md, "Handling out-of-order frames").
    Per segment, as LPMS resets ``last_video_pts`` in ``transcode_init``."""

    __slots__ = ("_last", "_period")

    def __init__(self, time_base: Fraction, framerate: Fraction | None) -> None:
        self._period = max(1, round(1 / (framerate * time_base))) if framerate else 1
        self._last: int | None = None

    @property
    def end(self) -> int:
        """Where a frame after the last would go: one period after it (0: no frame yet)."""
        return 0 if self._last is None else self._last + self._period

    def fix(self, frame: av.VideoFrame) -> None:
        pts = frame.pts if frame.pts is not None else frame.dts
        last = self._last
        if last is not None and (pts is None or pts <= last):
            pts = last + self._period
        frame.pts = self._last = pts if pts is not None else 0


class _Shift:
    """Moves packets' timestamps back by a number of seconds, in each one's time base."""

    __slots__ = ("_seconds", "_ticks")

    def __init__(self, seconds: Fraction) -> None:
        self._seconds = seconds
        self._ticks: dict[Fraction, int] = {}

    def apply(self, packet: av.Packet[Any]) -> None:
        if not self._seconds or packet.time_base is None:
            return
        time_base = Fraction(packet.time_base)
        ticks = self._ticks.get(time_base)
        if ticks is None:
            ticks = self._ticks[time_base] = round(self._seconds / time_base)
        if packet.pts is not None:
            packet.pts -= ticks
        if packet.dts is not None:
            packet.dts -= ticks


def _check_duration(seconds: float, limit: float, index: int) -> None:
    if seconds > limit:
        raise TranscodeError(
            f"input {index} is {seconds:.1f} s of video, over the limit of {limit:g} s"
        )


@dataclass(slots=True)
class _Counts:
    limit: float = math.inf  # seconds of video, from the first frame's PTS
    index: int = 0
    frames: int = 0
    pixels: int = 0
    skipped: int = 0
    first_pts: int | None = None
    last_pts: int = 0
    start_seconds: float = 0.0

    def add(self, frame: av.VideoFrame, time_base: Fraction) -> None:
        self.seen(frame.pts or 0, time_base)
        self.frames += 1
        self.pixels += frame.width * frame.height

    def seen(self, pts: int, time_base: Fraction) -> None:
        """A frame (decoded, or a packet copied) at ``pts``: within the limit?"""
        if self.first_pts is None:
            self.first_pts = pts
            self.start_seconds = float(pts * time_base)
        self.last_pts = max(self.last_pts, pts)
        _check_duration(float((self.last_pts - self.first_pts) * time_base), self.limit, self.index)

    def duration(self, time_base: Fraction, framerate: Fraction | None) -> float:
        """From the first frame to the end of the last (one frame period after it)."""
        if self.first_pts is None:
            return 0.0
        span = float((self.last_pts - self.first_pts) * time_base)
        period = float(1 / framerate) if framerate else 0.0
        return span + period


def _results(futures: list[Future[RenditionOutput]], index: int) -> tuple[RenditionOutput, ...]:
    outputs = []
    failure: BaseException | None = None
    for future in futures:
        try:
            outputs.append(future.result())
        except Exception as exc:  # every future is waited for before reporting
            failure = failure or exc
    if failure is not None:
        raise TranscodeError(f"segment {index}: encoding failed: {failure}") from None
    return tuple(outputs)


def container_for(codec: VideoCodec) -> OutputContainer:
    """MPEG-TS where it carries the codec (what every player reads), else CMAF."""
    return OutputContainer.MPEGTS if codec in TS_CODECS else OutputContainer.CMAF


def output_container(
    profile: VideoProfile, output: OutputContainer | None = None
) -> OutputContainer:
    """What ``profile``'s output is written as: ``output`` where given, else the
    profile's format, else MPEG-TS where it carries the codec (`container_for`)."""
    return output or profile.format or container_for(profile.codec)


def output_name(profile: VideoProfile, container: OutputContainer) -> str:
    """``PROFILE.ts``, or ``PROFILE.mp4`` for an MP4 (fragmented or not), or the
    extension of the profile's own muxer (``PROFILE.mkv`` for ``matroska``)."""
    return f"{profile.name}.{muxer_extension(profile, container)}"


def stream_framerate(stream: av.video.stream.VideoStream) -> Fraction | None:
    """A video stream's frame rate as its container tells it, or None for none usable."""
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate and 0 < rate <= 1000:
            return Fraction(rate)
    return None


def _segment_bytes(segment: bytes | bytearray | memoryview | str | os.PathLike[str]) -> bytes:
    if isinstance(segment, str | os.PathLike):
        path = Path(segment)
        try:
            size = path.stat().st_size
            if size > MAX_SEGMENT_BYTES:
                raise TranscodeError(f"segment {path} is {size} bytes, over {MAX_SEGMENT_BYTES}")
            data = path.read_bytes()
        except OSError as exc:
            raise TranscodeError(f"cannot read segment {path}: {exc.strerror}") from None
    else:
        data = bytes(segment)
    if not data:
        raise TranscodeError("empty segment")
    if len(data) > MAX_SEGMENT_BYTES:
        raise TranscodeError(f"segment of {len(data)} bytes is over {MAX_SEGMENT_BYTES}")
    return data


class _AudioPaths:
    """The source's audio to every output, by its profile's `AudioMode`: one
    `AudioPath` for each mode in use (copied once, encoded once per codec). Each
    mode's output track is the first input's; a joined input's paths are scaled
    from their own time base to it."""

    def __init__(
        self, paths: dict[AudioMode | None, AudioPath], tracks: dict[AudioMode | None, AudioTrack]
    ) -> None:
        self._paths = paths
        self._tracks = tracks

    @classmethod
    def first(
        cls, stream: av.audio.stream.AudioStream | None, profiles: Sequence[VideoProfile]
    ) -> _AudioPaths:
        paths: dict[AudioMode | None, AudioPath] = {}
        if stream is not None:
            for profile in profiles:
                mode = profile.audio
                if mode is not AudioMode.DROP and mode not in paths:
                    path = AudioPath.for_stream(stream, mode)
                    if path is not None:
                        paths[mode] = path
        return cls(paths, {mode: path.track for mode, path in paths.items()})

    @property
    def used(self) -> bool:
        return bool(self._paths)

    def joined(self, stream: av.audio.stream.AudioStream, number: int) -> _AudioPaths:
        """Paths for input ``number``'s audio into the same output tracks; refused when
        it differs in codec or rate from what the first input set up."""
        paths: dict[AudioMode | None, AudioPath] = {}
        for mode, ours in self._tracks.items():
            path = AudioPath.for_stream(stream, mode)
            if path is None:
                continue
            theirs = path.track
            if (theirs.codec_name, theirs.sample_rate) != (ours.codec_name, ours.sample_rate):
                raise TranscodeError(
                    f"input {number}'s audio ({theirs.codec_name}, {theirs.sample_rate} Hz) "
                    f"differs from the first input's ({ours.codec_name}, {ours.sample_rate} Hz); "
                    "joined inputs need the same audio"
                )
            paths[mode] = path
        return _AudioPaths(paths, self._tracks)

    def track(self, profile: VideoProfile) -> AudioTrack | None:
        return self._tracks.get(profile.audio)

    def send(self, packet: av.Packet[Any], outputs: Sequence[RenditionEncoder]) -> None:
        for mode, path in self._paths.items():
            self._send(mode, path, path.packets(packet), outputs)

    def finish(self, outputs: Sequence[RenditionEncoder]) -> None:
        for mode, path in self._paths.items():
            self._send(mode, path, path.finish(), outputs)

    def _send(
        self,
        mode: AudioMode | None,
        path: AudioPath,
        packets: Iterator[tuple[bytes, int | None, int | None]],
        outputs: Sequence[RenditionEncoder],
    ) -> None:
        """Packets (in ``path``'s time base) to the outputs of ``mode`` (in its track's)."""
        scale = self._tracks[mode].time_base / path.track.time_base
        targets = [o for o in outputs if o.profile.audio is mode]
        for payload, pts, dts in packets:
            if scale != 1:
                pts = None if pts is None else round(pts / scale)
                dts = None if dts is None else round(dts / scale)
            for output in targets:
                output.audio(payload, pts, dts)


class AudioPath:
    """How a source audio track reaches the outputs of one `AudioMode`: copied (the
    default copies AAC, as ADTS in TS, and MP3; ``copy`` any codec) or decoded and
    encoded once, to AAC (the default for other codecs; ``aac``) or Opus (``opus``)."""

    def __init__(self, stream: av.audio.stream.AudioStream, mode: AudioMode | None = None) -> None:
        context = stream.codec_context
        name = context.codec.name
        self.copy_as = COPIED_AUDIO.get(name) if mode is None else None
        if mode is AudioMode.COPY:
            self.copy_as = COPIED_AUDIO.get(name, name)
        self.extradata = bytes(context.extradata or b"")
        rate = context.sample_rate or 48000
        channels = context.layout.nb_channels or 2
        self._decoder: av.AudioCodecContext | None = None
        self._encoder: av.AudioCodecContext | None = None
        self._resampler: AudioResampler | None = None
        if self.copy_as is not None:
            time_base = stream.time_base or Fraction(1, rate)
            self.track = AudioTrack(self.copy_as, rate, time_base, channels)
            return
        # The demuxer's own context knows the sample rate, layout and format that
        # headerless codecs (PCM, G.711) cannot tell a fresh decoder.
        self._decoder = context
        self._codec = (mode.encoder if mode is not None else None) or "aac"
        if self._codec == "libopus":
            self._rate = 48000  # Opus's one rate (RFC 7845 5.1: any input is resampled)
        else:
            self._rate = rate if rate in _AAC_RATES else 48000
        codec_name = "opus" if self._codec == "libopus" else "aac"
        self.track = AudioTrack(codec_name, self._rate, Fraction(1, self._rate), channels)

    @classmethod
    def for_stream(
        cls, stream: av.audio.stream.AudioStream, mode: AudioMode | None = None
    ) -> AudioPath | None:
        try:
            return cls(stream, mode)
        except (av.FFmpegError, ValueError) as exc:
            log.warning("audio track left out: %s", exc)
            return None

    def packets(self, packet: av.Packet[Any]) -> Iterator[tuple[bytes, int | None, int | None]]:
        if packet.size == 0:
            return
        if self.copy_as is not None:
            payload = bytes(packet)
            if self.copy_as == "aac" and not is_adts(payload) and self.extradata:
                payload = adts_frame(self.extradata, payload)
            yield payload, packet.pts, packet.dts
            return
        assert self._decoder is not None
        for frame in self._decoder.decode(packet):
            yield from self._encode(frame)

    def finish(self) -> Iterator[tuple[bytes, int | None, int | None]]:
        """Drain the encoder at the end of a segment (a new one starts the next)."""
        if self._decoder is None:
            return
        for frame in self._decoder.decode(None):
            yield from self._encode(frame)
        self._decoder.flush_buffers()
        if self._encoder is not None:
            for packet in self._encoder.encode(None):
                yield self._framed(bytes(packet)), packet.pts, packet.dts
        self._encoder = None
        self._resampler = None

    def _framed(self, raw: bytes) -> bytes:
        """MPEG-TS carries AAC as ADTS frames (every one, the drained last ones too);
        an Opus packet goes as it is."""
        assert self._encoder is not None
        if self._codec != "aac":
            return raw
        return adts_frame(self._encoder.extradata or b"", raw)

    def _encode(self, frame: av.AudioFrame) -> Iterator[tuple[bytes, int | None, int | None]]:
        if self._encoder is None:
            encoder = av.AudioCodecContext.create(self._codec, "w")
            assert isinstance(encoder, av.AudioCodecContext)
            encoder.sample_rate = self._rate
            encoder.layout = "stereo" if frame.layout.nb_channels > 1 else "mono"
            formats = encoder.codec.audio_formats  # AAC's fltp; libopus's s16 or flt
            encoder.format = formats[0].name if formats else "fltp"
            encoder.bit_rate = AAC_BITRATE
            encoder.time_base = Fraction(1, self._rate)
            encoder.open()
            self._encoder = encoder
            self._resampler = AudioResampler(encoder.format.name, encoder.layout, self._rate)
        assert self._resampler is not None
        if frame.pts is not None and frame.time_base is not None:
            frame.pts = round(frame.pts * frame.time_base * self._rate)
            frame.time_base = Fraction(1, self._rate)
        for resampled in self._resampler.resample(frame):
            for packet in self._encoder.encode(resampled):
                yield self._framed(bytes(packet)), packet.pts, packet.dts


_AAC_RATES = frozenset(
    {96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000}
)
