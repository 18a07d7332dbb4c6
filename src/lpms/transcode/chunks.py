"""A file cut at keyframes into chunks that transcode apart, and joined back whole.

``lpms transcode --engine ray`` spreads one file over a cluster this way: the file
is cut into chunks of about ``--chunk-seconds``, each chunk is transcoded on its own
(`Transcoder.transcode_chunk`, anywhere: `run_chunk` takes and gives plain values),
and each profile's pieces are joined, in order, into ``OUTDIR/PROFILE.ts``. The
outputs are frame for frame what `Transcoder.transcode_file` makes of the file:
the same frames with the same timestamps, keyframes where the source has them.

Four rules make that hold:

- A chunk is a stretch of presentation time, from one keyframe to the next cut
  keyframe, and shows exactly the frames in it. It starts at a keyframe shown after
  every picture before it in decode order. An open GOP's keyframe is followed in
  decode order by *leading pictures*, shown before it and referencing the GOP
  before: those are decoded and shown by the chunk before (which is sent the
  keyframe and its leading pictures for it, and does not show the keyframe), and
  left out of the chunk that starts there (`cut_points`).
- Every timestamp of the file is moved on by one offset before the chunks are
  muxed (MPEG-TS, 90 kHz), so that no chunk has a negative one: a muxer would
  shift a chunk that had, and that chunk alone. The worker moves them back to
  where the whole-file transcode has them (`Chunk.shift`).
- Video goes into chunks as Annex B with the parameter sets before every
  keyframe: an MP4's are in its header, which a chunk lacks.
- Audio goes with the chunk its time falls in, the way `Transcoder` takes it
  (`AudioPath`: AAC and MP3 copied, anything else encoded once, while cutting, to
  AAC), so the pieces join into the very track a whole-file transcode makes.
  Frame-rate reduction restarts at every source keyframe (`RenditionEncoder`), so
  each chunk keeps the frames the whole file would.
"""

from __future__ import annotations

import bisect
import io
import math
import os
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import av
import av.bitstream

from lpms.errors import HLSError, LPMSError, TranscodeError
from lpms.hls.segmenter import ContinuityCounters
from lpms.transcode.profiles import OutputFormat, VideoProfile
from lpms.transcode.rendition import AudioTrack, RenditionOutput
from lpms.transcode.session import (
    COPIED_AUDIO,
    MAX_SEGMENT_BYTES,
    AudioPath,
    ProgressCallback,
    Transcoder,
    TranscodeResult,
    stream_framerate,
)
from lpms.transcode.settings import Accel
from lpms.transcode.wire import chunk_from_wire, chunk_to_wire, result_from_wire, result_to_wire

DEFAULT_CHUNK_SECONDS = 10.0
"""Long enough that a chunk's fresh encoders and its trip to a worker cost little,
short enough that a few minutes of video keep a handful of machines busy."""

DEFAULT_CHUNK_TIMEOUT = 600.0
"""Seconds a chunk may take once the chunks before it are done: a hung worker fails
the run with the chunk's name instead of holding it for ever."""

MAX_CHUNK_BYTES = MAX_SEGMENT_BYTES
"""Largest chunk cut (what `Transcoder.transcode_chunk` takes)."""

CHUNK_TIME_BASE = Fraction(1, 90000)
"""MPEG-TS's clock: every chunk's timestamps are in it."""

PRIMING_MARGIN = Fraction(1)
"""Seconds more every timestamp is moved on by when audio is encoded while cutting:
an AAC encoder's first packet comes up to a frame (1024 samples) before its input."""


@dataclass(frozen=True, slots=True)
class VideoPacket:
    """What the cut plan needs of a video packet, in decode order."""

    pts: int | None  # in the stream's time base
    keyframe: bool


def cut_points(packets: Sequence[VideoPacket]) -> list[int | None]:
    """For each packet: None, or, for a keyframe a chunk may start at, how many
    leading pictures follow it (see the module's rules)."""
    points: list[int | None] = [None] * len(packets)
    keyframes = [i for i, packet in enumerate(packets) if packet.keyframe]
    greatest_before: int | None = None  # of every packet before the keyframe at hand
    known_before = True
    scanned = 0
    for number, index in enumerate(keyframes):
        for packet in packets[scanned:index]:
            if packet.pts is None:
                known_before = False
            elif greatest_before is None or packet.pts > greatest_before:
                greatest_before = packet.pts
        scanned = index
        end = keyframes[number + 1] if number + 1 < len(keyframes) else len(packets)
        points[index] = _leading(packets, index, end, greatest_before) if known_before else None
    return points


def _leading(
    packets: Sequence[VideoPacket], index: int, end: int, greatest_before: int | None
) -> int | None:
    """Leading pictures of the keyframe at ``index`` (its GOP runs to ``end``): a run
    right after it, shown after everything before it; None where the GOP is no such
    shape, or has a packet without a timestamp."""
    pts = packets[index].pts
    if pts is None or (greatest_before is not None and greatest_before >= pts):
        return None
    leading = 0
    trailing = False
    for packet in packets[index + 1 : end]:
        if packet.pts is None or packet.pts == pts:
            return None
        if packet.pts > pts:
            trailing = True
        elif trailing or (greatest_before is not None and packet.pts <= greatest_before):
            return None  # a leading picture after a trailing one, or shown too early
        else:
            leading += 1
    return leading


def plan_cuts(packets: Sequence[VideoPacket], time_base: Fraction, seconds: float) -> list[int]:
    """Where chunks start: indices into ``packets`` (decode order), the first 0; a
    chunk runs until the first cut point ``seconds`` or more after its start."""
    if not packets:
        return []
    if seconds <= 0:
        raise ValueError("chunks must be longer than 0 s")
    points = cut_points(packets)
    step = Fraction(seconds) / time_base
    cuts = [0]
    start: int | None = None
    for index, packet in enumerate(packets):
        if packet.pts is None:
            continue
        if start is None:
            start = packet.pts
            continue
        if points[index] is not None and packet.pts - start >= step:
            cuts.append(index)
            start = packet.pts
    return cuts


@dataclass(frozen=True, slots=True)
class Chunk:
    """One stretch of a file, muxed as MPEG-TS with its timestamps moved on."""

    index: int
    start: float  # seconds, source time, of its first keyframe (0 for the first chunk)
    seconds: float  # source seconds until the next chunk starts (or the file ends)
    data: bytes
    shift: Fraction  # seconds the worker moves every timestamp back by
    framerate: Fraction | None  # the file's, for every chunk alike
    # The frames it shows, in seconds of its timeline once shifted: from ``first``
    # (None: all before), until ``end`` (None: all after). Others only decode.
    first: Fraction | None = None
    end: Fraction | None = None


@dataclass(frozen=True, slots=True)
class _Span:
    """A chunk's video in decode order: packets ``start`` to ``stop``, less its
    keyframe's leading pictures (``start + 1`` to ``start + leading``)."""

    start: int
    stop: int
    leading: int
    shown_from: int | None  # PTS of its keyframe (None: the first chunk)
    shown_until: int | None  # PTS of the next chunk's keyframe (None: the last)


class ChunkedFile:
    """A file scanned once (packets' timestamps and keyframes, no decoding) and cut
    into `Chunk` objects on demand, a few at a time."""

    def __init__(
        self,
        source: str | os.PathLike[str],
        seconds: float = DEFAULT_CHUNK_SECONDS,
        *,
        max_chunk_bytes: int = MAX_CHUNK_BYTES,
    ) -> None:
        if not seconds > 0 or not math.isfinite(seconds):
            raise TranscodeError(f"chunks must last a positive number of seconds, not {seconds}")
        self.source = str(source)
        self.max_chunk_bytes = max_chunk_bytes
        packets: list[VideoPacket] = []
        least = Fraction(0)  # the most negative timestamp, in seconds
        with _open(self.source) as container:
            video, audio = _streams(container, self.source)
            _video_filter(video, self.source)  # refuses what MPEG-TS cannot carry, up front
            self.time_base = Fraction(video.time_base or CHUNK_TIME_BASE)
            self.framerate = stream_framerate(video)
            # Audio encoded while cutting (not copied) starts up to a frame early.
            reencoded = audio is not None and audio.codec_context.name not in COPIED_AUDIO
            for packet in container.demux([s for s in (video, audio) if s is not None]):
                if packet.size == 0:
                    continue
                if packet.stream is video:
                    packets.append(VideoPacket(packet.pts, packet.is_keyframe))
                least = min(least, _least_time(packet))
        if not any(p.pts is not None for p in packets):
            raise TranscodeError(f"{self.source} has no video frames with timestamps")
        self.spans = _spans(packets, self.time_base, seconds)
        shown = [p.pts for p in packets if p.pts is not None]
        self._first = min(shown) * self.time_base
        period = 1 / self.framerate if self.framerate else Fraction(0)
        self._end = max(shown) * self.time_base + period
        margin = PRIMING_MARGIN if reencoded else Fraction(0)
        self.offset = _ticks_up(margin - least)  # in CHUNK_TIME_BASE: no timestamp < 0

    @property
    def count(self) -> int:
        return len(self.spans)

    @property
    def seconds(self) -> float:
        """Source seconds of video, first frame to the end of the last."""
        return float(self._end - self._first)

    def chunk_start(self, index: int) -> float:
        """Source seconds where chunk ``index`` starts (0 for the first)."""
        pts = self.spans[index].shown_from
        return 0.0 if pts is None else float(pts * self.time_base)

    def chunk_seconds(self, index: int) -> float:
        span = self.spans[index]
        start = self._first if span.shown_from is None else span.shown_from * self.time_base
        end = self._end if span.shown_until is None else span.shown_until * self.time_base
        return float(max(Fraction(0), end - start))

    def chunks(self) -> Iterator[Chunk]:
        """The chunks in order, each cut once the file has been read past it."""
        with _open(self.source) as container:
            video, audio = _streams(container, self.source)
            cutter = _Cutter(self, video, audio)
            for packet in container.demux([s for s in (video, audio) if s is not None]):
                if packet.size == 0:
                    continue
                yield from cutter.packet(packet)
            yield from cutter.finish()


def _spans(packets: Sequence[VideoPacket], time_base: Fraction, seconds: float) -> list[_Span]:
    points = cut_points(packets)
    cuts = plan_cuts(packets, time_base, seconds)
    spans = []
    for number, start in enumerate(cuts):
        following = cuts[number + 1] if number + 1 < len(cuts) else None
        leading = (points[start] or 0) if number > 0 else 0
        stop = len(packets) if following is None else following + 1 + (points[following] or 0)
        spans.append(
            _Span(
                start,
                stop,
                leading,
                None if number == 0 else packets[start].pts,
                None if following is None else packets[following].pts,
            )
        )
    return spans


class _Cutter:
    """Routes packets into the chunks they belong to. Audio and video interleave in
    a file only so far, so only the chunks both tracks have not yet passed are open."""

    def __init__(self, chunked: ChunkedFile, video: Any, audio: Any) -> None:
        self._file = chunked
        self._spans = chunked.spans
        self._starts = [span.start for span in self._spans]
        self._times = [(span.shown_from or 0) * chunked.time_base for span in self._spans]
        self._video = video
        self._filter = av.bitstream.BitStreamFilterContext(
            _video_filter(video, chunked.source), video
        )
        self._audio = AudioPath.for_stream(audio) if audio is not None else None
        self._open: dict[int, _ChunkWriter] = {}
        self._next = 0  # the next chunk to hand out
        self._video_index = 0  # decode order of the next video packet
        self._video_passed = 0  # chunks whose video is all muxed
        self._audio_chunk = 0
        # The least presentation time muxed, in chunk ticks: the whole-file
        # transcode's muxer lifts what starts below zero to zero, and so does the shift.
        self._least_shown = chunked.offset
        self._shift: Fraction | None = None

    def packet(self, packet: av.Packet[Any]) -> Iterator[Chunk]:
        if packet.stream is self._video:
            self._route_video(packet)
        elif self._audio is not None:
            for payload, pts, dts in self._audio.packets(packet):
                self._route_audio(payload, pts, dts)
        yield from self._hand_out(self._passed())

    def finish(self) -> Iterator[Chunk]:
        for filtered in self._filter.filter(None):
            self._mux_video(filtered, self._video_index - 1)
        if self._audio is not None:
            for payload, pts, dts in self._audio.finish():
                self._route_audio(payload, pts, dts)
        yield from self._hand_out(self._file.count)

    def _route_video(self, packet: av.Packet[Any]) -> None:
        pts, dts, time_base = packet.pts, packet.dts, packet.time_base
        for filtered in self._filter.filter(packet):
            filtered.pts, filtered.dts, filtered.time_base = pts, dts, time_base
            self._mux_video(filtered, self._video_index)
        self._video_index += 1
        spans = self._spans
        while self._video_passed < len(spans):
            if spans[self._video_passed].stop > self._video_index:
                break
            self._video_passed += 1

    def _video_chunks(self, index: int) -> list[int]:
        """The chunks the video packet ``index`` (decode order) goes to: its own, and
        the one before for a keyframe and its leading pictures."""
        chunk = max(0, bisect.bisect_right(self._starts, index) - 1)
        span = self._spans[chunk]
        if span.start < index <= span.start + span.leading:
            return [chunk - 1]  # a leading picture: shown by the chunk before
        if index == span.start and chunk > 0:
            return [chunk - 1, chunk]  # a reference for the leading pictures before
        return [chunk]

    def _mux_video(self, packet: av.Packet[Any], index: int) -> None:
        self._note_shown(packet.pts, packet.time_base)
        chunks = self._video_chunks(index)
        for number, chunk in enumerate(chunks):
            writer = self._writer(chunk)
            # A muxer takes the packet's data: a second chunk gets a copy.
            copy = packet if number == len(chunks) - 1 else _copy(packet)
            writer.mux(copy, writer.video, self._file.offset)

    def _route_audio(self, payload: bytes, pts: int | None, dts: int | None) -> None:
        assert self._audio is not None
        time_base = self._audio.track.time_base
        if pts is None:
            chunk = max(0, self._video_passed)
        else:
            chunk = max(0, bisect.bisect_right(self._times, pts * time_base) - 1)
            self._audio_chunk = max(self._audio_chunk, chunk)
        packet = av.Packet(payload)
        packet.pts, packet.dts, packet.time_base = pts, dts, time_base
        writer = self._writer(chunk)
        self._note_shown(pts, time_base)
        assert writer.audio is not None
        writer.mux(packet, writer.audio, self._file.offset)

    def _note_shown(self, pts: int | None, time_base: Any) -> None:
        moved = _moved(pts, time_base, self._file.offset)
        if moved is not None:
            self._least_shown = min(self._least_shown, moved)

    def _writer(self, chunk: int) -> _ChunkWriter:
        chunk = max(chunk, self._next)  # a straggler of a chunk handed out already
        writer = self._open.get(chunk)
        if writer is None:
            track = self._audio.track if self._audio is not None else None
            writer = _ChunkWriter(self._video, track, chunk, self._file.max_chunk_bytes)
            self._open[chunk] = writer
        return writer

    def _passed(self) -> int:
        """Chunks before this one will get no more packets."""
        if self._audio is None:
            return self._video_passed
        return min(self._video_passed, self._audio_chunk)

    def _hand_out(self, before: int) -> Iterator[Chunk]:
        while self._next < before:
            yield self._made(self._next)

    def _made(self, index: int) -> Chunk:
        self._next = index + 1
        writer = self._open.pop(index, None)
        data = writer.close() if writer is not None else b""
        if not data:
            raise TranscodeError(f"chunk {index} of {self._file.source} came out empty")
        offset = self._file.offset
        if self._shift is None:  # the file's start is behind: every chunk alike from here
            lifted = max(0, offset - self._least_shown)  # what the whole file's muxer adds
            self._shift = (offset - lifted) * CHUNK_TIME_BASE
        span = self._spans[index]
        return Chunk(
            index=index,
            start=self._file.chunk_start(index),
            seconds=self._file.chunk_seconds(index),
            data=data,
            shift=self._shift,
            framerate=self._file.framerate,
            first=self._shown_at(span.shown_from),
            end=self._shown_at(span.shown_until),
        )

    def _shown_at(self, pts: int | None) -> Fraction | None:
        """A source PTS on a chunk's timeline once shifted, rounded as its frames are."""
        moved = _moved(pts, self._file.time_base, self._file.offset)
        if moved is None:
            return None
        assert self._shift is not None
        return moved * CHUNK_TIME_BASE - self._shift


def _copy(packet: av.Packet[Any]) -> av.Packet[Any]:
    copy = av.Packet(bytes(packet))
    copy.pts, copy.dts, copy.time_base = packet.pts, packet.dts, packet.time_base
    copy.is_keyframe = packet.is_keyframe
    return copy


class _ChunkWriter:
    """One chunk's MPEG-TS muxer, writing into memory."""

    def __init__(self, video: Any, audio: AudioTrack | None, index: int, max_bytes: int) -> None:
        self.index = index
        self._buffer = io.BytesIO()
        self._max_bytes = max_bytes
        self._container = av.open(self._buffer, "w", format="mpegts")
        self.video = self._container.add_stream_from_template(video)
        self.audio = None
        if audio is not None:
            self.audio = self._container.add_mux_stream(audio.codec_name, rate=audio.sample_rate)
            self.audio.time_base = audio.time_base

    def mux(self, packet: av.Packet[Any], stream: Any, offset: int) -> None:
        time_base = packet.time_base
        if time_base is not None:
            packet.pts = _moved(packet.pts, time_base, offset)
            packet.dts = _moved(packet.dts, time_base, offset)
            packet.time_base = CHUNK_TIME_BASE
        packet.stream = stream
        try:
            self._container.mux(packet)
        except av.FFmpegError as exc:
            raise TranscodeError(f"chunk {self.index}: cannot mux a packet: {exc}") from None
        if self._buffer.tell() > self._max_bytes:
            raise TranscodeError(
                f"chunk {self.index} is over {self._max_bytes} bytes: use shorter chunks "
                "(--chunk-seconds), or a file whose audio and video are interleaved"
            )

    def close(self) -> bytes:
        try:
            self._container.close()
        except av.FFmpegError as exc:
            raise TranscodeError(f"chunk {self.index} could not be finished: {exc}") from None
        return self._buffer.getvalue()


# Annex B with the parameter sets before every keyframe, for each video codec a chunk
# (MPEG-TS) can carry.
_VIDEO_FILTERS = {
    "h264": "h264_mp4toannexb,dump_extra=freq=keyframe",
    "hevc": "hevc_mp4toannexb,dump_extra=freq=keyframe",
    "mpeg2video": "dump_extra=freq=keyframe",
}


def _video_filter(video: Any, source: str) -> str:
    name = video.codec_context.name
    try:
        return _VIDEO_FILTERS[name]
    except KeyError:
        raise TranscodeError(
            f"{source}: {name} video cannot be cut into chunks (MPEG-TS carries "
            f"{', '.join(sorted(_VIDEO_FILTERS))}): transcode it with --engine local"
        ) from None


def _least_time(packet: av.Packet[Any]) -> Fraction:
    """The earlier of a packet's timestamps, in seconds (0 when it has none)."""
    if packet.time_base is None:
        return Fraction(0)
    values = [v for v in (packet.pts, packet.dts) if v is not None]
    return min(values) * Fraction(packet.time_base) if values else Fraction(0)


def _open(source: str) -> Any:
    try:
        return av.open(source, "r")
    except av.FFmpegError as exc:
        raise TranscodeError(f"cannot read {source}: {exc.strerror}") from None


def _streams(container: Any, source: str) -> tuple[Any, Any]:
    if not container.streams.video:
        raise TranscodeError(f"{source} has no video track")
    video = container.streams.video[0]
    audio = container.streams.audio[0] if container.streams.audio else None
    return video, audio


def _ticks_up(seconds: Fraction) -> int:
    """``seconds`` (at least 0) in whole 90 kHz ticks, rounded up."""
    return max(0, math.ceil(seconds / CHUNK_TIME_BASE))


def _moved(value: int | None, time_base: Any, offset: int) -> int | None:
    """``value`` in 90 kHz ticks, rounded as FFmpeg rescales (half away from zero),
    plus ``offset`` ticks."""
    if value is None:
        return None
    exact = value * Fraction(time_base) / CHUNK_TIME_BASE
    whole = math.floor(abs(exact) + Fraction(1, 2))
    return (whole if exact >= 0 else -whole) + offset


# --- running the chunks --------------------------------------------------------------


class ChunkRunner(Protocol):
    """Where chunks are transcoded: many at once, each answered on its own future."""

    slots: int  # chunks worth having in flight at once

    def submit(self, chunk: Chunk) -> Future[TranscodeResult]: ...


def run_chunk(request: dict[str, Any]) -> dict[str, Any]:
    """A chunk request on the wire in, its result on the wire out, or ``{"error":
    why}`` for a chunk that cannot be transcoded: what a remote worker runs."""
    try:
        chunk = chunk_from_wire(request)
        joined_as = OutputFormat.MPEGTS  # whatever format the profiles name
        with Transcoder(chunk.profiles, accel=chunk.accel, output=joined_as) as transcoder:
            result = transcoder.transcode_chunk(
                chunk.data,
                shift=chunk.shift,
                framerate=chunk.framerate,
                first=chunk.first,
                end=chunk.end,
            )
        return result_to_wire(result)
    except LPMSError as exc:
        return {"error": str(exc)}


class InProcessChunkRunner:
    """Chunks transcoded on threads of this process, through the same wire a remote
    worker answers on: the cut and join without a cluster (tests, a quick check)."""

    def __init__(
        self, profiles: Sequence[VideoProfile], accel: Accel | str, slots: int = 1
    ) -> None:
        self.profiles = tuple(profiles)
        self.accel = Accel.parse(accel)
        self.slots = slots
        self._executor = ThreadPoolExecutor(slots, thread_name_prefix="lpms-chunk")

    def submit(self, chunk: Chunk) -> Future[TranscodeResult]:
        request = chunk_to_wire(self.profiles, self.accel.value, chunk)
        return self._executor.submit(self._run, request)

    def _run(self, request: dict[str, Any]) -> TranscodeResult:
        answer = run_chunk(request)
        if "error" in answer:
            raise TranscodeError(str(answer["error"]))
        return result_from_wire(answer, self.profiles)

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)


class ChunkJoiner:
    """Writes each profile's pieces, in chunk order, into ``OUTDIR/NAME.ts``, with
    the TS continuity counters running on across pieces, and sums up what was made."""

    def __init__(self, outdir: Path, names: Sequence[str]) -> None:
        outdir.mkdir(parents=True, exist_ok=True)
        self.names = tuple(names)
        self._files: list[BinaryIO] = []
        self._counters = [ContinuityCounters() for _ in self.names]
        self._results: list[TranscodeResult] = []
        try:
            for name in self.names:
                self._files.append((outdir / f"{name}.ts").open("wb"))
        except OSError:
            self.close()
            raise

    def add(self, result: TranscodeResult) -> None:
        for output, file, counters in zip(result.outputs, self._files, self._counters, strict=True):
            piece = bytearray(output.data)
            try:
                counters.fix(memoryview(piece))
            except HLSError as exc:
                raise TranscodeError(f"{output.profile.name}: {exc}") from None
            file.write(piece)
        self._results.append(result)

    def close(self) -> None:
        for file in self._files:
            file.close()

    def result(self, elapsed: float) -> TranscodeResult:
        """The whole file's result, as `Transcoder.transcode_file` reports one."""
        results = self._results
        if not results:
            raise TranscodeError("no chunk was transcoded")
        outputs = tuple(_joined([r.outputs[i] for r in results]) for i in range(len(self.names)))
        return TranscodeResult(
            index=0,
            decoded_frames=sum(r.decoded_frames for r in results),
            decoded_pixels=sum(r.decoded_pixels for r in results),
            duration=sum(r.duration for r in results),
            elapsed=elapsed,
            outputs=outputs,
            skipped_packets=sum(r.skipped_packets for r in results),
        )


def _joined(pieces: list[RenditionOutput]) -> RenditionOutput:
    first = pieces[0]
    sized = [p for p in pieces if p.width and p.height]
    last = sized[-1] if sized else first
    return RenditionOutput(
        profile=first.profile,
        data=b"",
        size=sum(p.size for p in pieces),
        frames=sum(p.frames for p in pieces),
        keyframes=sum(p.keyframes for p in pieces),
        width=last.width,
        height=last.height,
        duration=sum(p.duration for p in pieces),
        video_bytes=sum(p.video_bytes for p in pieces),
        first_keyframe=first.first_keyframe,
        decoder_config=first.decoder_config,
        busy_seconds=sum(p.busy_seconds for p in pieces),
    )


def transcode_in_chunks(
    source: str | os.PathLike[str],
    outdir: str | os.PathLike[str],
    names: Sequence[str],
    runner: ChunkRunner,
    *,
    seconds: float = DEFAULT_CHUNK_SECONDS,
    progress: ProgressCallback | None = None,
    on_plan: Callable[[ChunkedFile], None] | None = None,
    chunk_timeout: float = DEFAULT_CHUNK_TIMEOUT,
) -> TranscodeResult:
    """``source`` cut into chunks, run on ``runner`` (``runner.slots`` at a time), and
    joined into ``OUTDIR/NAME.ts`` for each profile name (the runner's ladder, in
    its order). The first chunk that fails, or is not done ``chunk_timeout`` seconds
    after the chunks before it, fails the whole, naming the chunk."""
    started = time.perf_counter()
    chunked = ChunkedFile(source, seconds)
    if on_plan is not None:
        on_plan(chunked)
    joiner = ChunkJoiner(Path(outdir), names)
    pending: deque[tuple[Chunk, Future[TranscodeResult]]] = deque()
    done_seconds = 0.0
    try:
        for chunk in chunked.chunks():
            pending.append((chunk, runner.submit(chunk)))
            while len(pending) >= max(1, runner.slots):
                done_seconds += _join_first(pending, joiner, chunk_timeout)
                if progress is not None:
                    progress(done_seconds, chunked.seconds)
        while pending:
            done_seconds += _join_first(pending, joiner, chunk_timeout)
            if progress is not None:
                progress(done_seconds, chunked.seconds)
    finally:
        for _, future in pending:
            future.cancel()
        joiner.close()
    return joiner.result(time.perf_counter() - started)


def _join_first(
    pending: deque[tuple[Chunk, Future[TranscodeResult]]], joiner: ChunkJoiner, timeout: float
) -> float:
    chunk, future = pending.popleft()
    where = f"chunk {chunk.index} (from {chunk.start:.2f} s)"
    try:
        result = future.result(timeout)
    except FutureTimeout:
        raise TranscodeError(f"{where}: not transcoded within {timeout:g} s") from None
    except LPMSError as exc:
        raise TranscodeError(f"{where}: {exc}") from None
    joiner.add(result)
    return chunk.seconds
