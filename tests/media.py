"""Real media for transcoding tests, made in-process with PyAV (no FFmpeg CLI).

`make_clip` encodes FFmpeg's ``testsrc2`` pattern (H.264) and a sine tone into any
container; `split_at_keyframes` cuts an MPEG-TS clip into segments as FFmpeg's
segment muxer does with ``-reset_timestamps 0``; `probe` decodes media and reports
what a player would see, FFmpeg's warnings included.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import av
from av.video.frame import PictureType

VIDEO_TIME_BASE = Fraction(1, 90000)


@dataclass(frozen=True)
class Part:
    """A stretch of a clip at one picture size."""

    width: int
    height: int
    seconds: float


def make_clip(
    parts: list[Part] | Part,
    *,
    fps: int,
    gop_frames: int,
    audio: str | None = "aac",
    sample_rate: int = 48000,
    container: str = "mpegts",
    video_bitrate: int = 2_000_000,
    start: float = 0.0,
    b_frames: int = 0,
    open_gop: bool = False,
    rotation: int = 0,
) -> bytes:
    """Encode test pattern (H.264, ultrafast, a keyframe every ``gop_frames``, none
    elsewhere; ``b_frames`` B-frames in a row; with ``open_gop`` x264's open GOPs,
    keyframes that are recovery points rather than IDR) and, unless ``audio`` is
    None, a tone in that codec; each part is encoded at its size, timestamps running
    on, into one video track. Timestamps begin at ``start`` seconds (lpms's
    segmenter begins at 1 s). ``rotation``: a display matrix on the video track that
    turns it that many degrees counter-clockwise (as ffprobe reports it), as a phone
    records portrait; MP4 and MOV carry it."""
    parts = [parts] if isinstance(parts, Part) else parts
    buffer = io.BytesIO()
    out = av.open(buffer, "w", format=container)
    if len(parts) > 1 and container != "mpegts":
        raise ValueError("a size change mid-clip needs MPEG-TS (SPS/PPS in-band)")
    video = out.add_stream("libx264", rate=fps)
    if rotation:
        video.set_display_rotation(rotation)
    packets: list[tuple[float, int, av.Packet]] = []
    offset = round(start * 90000)
    for index, part in enumerate(parts):
        # The stream's own encoder for the first part; later parts' packets (new
        # SPS/PPS in-band) go into the same track.
        encoder = video.codec_context if index == 0 else av.CodecContext.create("libx264", "w")
        _setup_encoder(encoder, part, fps, gop_frames, video_bitrate, b_frames, open_gop)
        source = av.open(
            f"testsrc2=size={part.width}x{part.height}:rate={fps}:duration={part.seconds}",
            format="lavfi",
        )
        count = 0
        for count, frame in enumerate(source.decode(video=0), 1):
            frame.pts = offset + round((count - 1) * Fraction(90000, fps))
            frame.time_base = VIDEO_TIME_BASE
            frame.pict_type = PictureType.NONE  # lavfi marks every frame I
            packets += [(_at(p), 0, p) for p in encoder.encode(frame)]
        packets += [(_at(p), 0, p) for p in encoder.encode(None)]
        source.close()
        offset += round(count * Fraction(90000, fps))
    for _, _, packet in packets:
        packet.stream = video
    if audio is not None:
        total = sum(part.seconds for part in parts)
        stream = out.add_stream(audio, rate=sample_rate)
        if audio.startswith("pcm_"):
            stream.codec_context.format = "s16"
        else:
            stream.bit_rate = 96_000
        tone = av.open(
            f"sine=frequency=440:sample_rate={sample_rate}:duration={total}", format="lavfi"
        )
        for frame in tone.decode(audio=0):
            frame.pts = (frame.pts or 0) + round(start * sample_rate)
            packets += [(_at(p), 1, p) for p in stream.encode(frame)]
        packets += [(_at(p), 1, p) for p in stream.encode(None)]
        tone.close()
    # Interleaved in decode order, video first at a tie, as a live encoder sends them.
    packets.sort(key=lambda entry: entry[:2])
    for _, _, packet in packets:
        out.mux(packet)
    out.close()
    return buffer.getvalue()


def _setup_encoder(
    encoder: Any,
    part: Part,
    fps: int,
    gop_frames: int,
    bitrate: int,
    b_frames: int,
    open_gop: bool,
) -> None:
    encoder.width, encoder.height, encoder.pix_fmt = part.width, part.height, "yuv420p"
    encoder.time_base = VIDEO_TIME_BASE
    encoder.framerate = Fraction(fps)
    encoder.bit_rate = bitrate
    encoder.options = {
        "preset": "ultrafast",
        "g": str(gop_frames),
        "keyint_min": str(gop_frames),
        "sc_threshold": "0",
        "bf": str(b_frames),
    }
    if open_gop:
        encoder.options = {**encoder.options, "x264-params": "open-gop=1"}


def _at(packet: av.Packet) -> float:
    dts = packet.dts if packet.dts is not None else packet.pts
    return float(dts * packet.time_base) if dts is not None and packet.time_base else 0.0


def split_at_keyframes(data: bytes) -> list[bytes]:
    """Cut MPEG-TS ``data`` into one TS segment per video keyframe, timestamps kept
    (FFmpeg's ``-f segment -reset_timestamps 0``): audio goes with the segment it
    arrives in, audio ahead of the first keyframe with the first."""
    segments: list[bytes] = []
    source = av.open(io.BytesIO(data), "r", format="mpegts")
    out: Any = None
    buffer: io.BytesIO | None = None
    mapping: dict[int, Any] = {}
    has_video = False

    def finish() -> None:
        if out is not None and buffer is not None:
            out.close()
            segments.append(buffer.getvalue())

    with source:
        for packet in source.demux():
            if packet.size == 0 or packet.stream.type not in ("video", "audio"):
                continue
            keyframe = packet.stream.type == "video" and packet.is_keyframe
            if out is None or (keyframe and has_video):
                finish()
                has_video = False
                buffer = io.BytesIO()
                out = av.open(buffer, "w", format="mpegts")
                mapping = {
                    s.index: out.add_stream_from_template(s)
                    for s in source.streams
                    if s.type in ("video", "audio")
                }
            has_video = has_video or packet.stream.type == "video"
            packet.stream = mapping[packet.stream.index]
            out.mux(packet)
        finish()
    return segments


@dataclass
class Probed:
    """What FFmpeg made of some media: decoded frames and everything it complained of."""

    video_pts: list[int] = field(default_factory=list)  # in video_time_base, decode order
    video_keyframes: list[bool] = field(default_factory=list)
    video_sizes: list[tuple[int, int]] = field(default_factory=list)
    video_time_base: Fraction | None = None
    video_packet_bytes: int = 0
    first_packet_keyframe: bool | None = None
    audio_codec: str | None = None
    audio_packets: int = 0
    audio_samples: int = 0
    warnings: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # packets the decoders refused

    @property
    def frames(self) -> int:
        return len(self.video_pts)

    @property
    def keyframe_pts(self) -> list[int]:
        return [pts for pts, key in zip(self.video_pts, self.video_keyframes, strict=True) if key]

    def video_seconds(self, framerate: Fraction) -> float:
        """From the first frame's start to the last's end, at ``framerate``."""
        assert self.video_time_base is not None
        span = (max(self.video_pts) - min(self.video_pts)) * self.video_time_base
        return float(span + 1 / framerate)


def probe(media: bytes | str, *, format: str | None = None) -> Probed:
    """Demux and decode every video and audio packet of ``media`` (bytes or a path)."""
    probed = Probed()
    av.logging.set_level(av.logging.WARNING)  # PyAV passes FFmpeg's log on only so
    source = io.BytesIO(media) if isinstance(media, bytes) else media
    with av.logging.Capture() as logs, av.open(source, "r", format=format) as container:
        streams = [s for s in container.streams if s.type in ("video", "audio")]
        if container.streams.video:
            probed.video_time_base = container.streams.video[0].time_base
        if container.streams.audio:
            probed.audio_codec = container.streams.audio[0].codec_context.name
        for packet in container.demux(*streams):
            is_video = packet.stream.type == "video"
            if packet.size and is_video:
                probed.video_packet_bytes += packet.size
                if probed.first_packet_keyframe is None:
                    probed.first_packet_keyframe = packet.is_keyframe
            elif packet.size:
                probed.audio_packets += 1
            try:
                frames = packet.decode()
            except av.FFmpegError as exc:
                probed.errors.append(f"{packet.stream.type} at {packet.pts}: {exc}")
                continue
            for frame in frames:
                if isinstance(frame, av.VideoFrame):
                    probed.video_pts.append(frame.pts)
                    probed.video_keyframes.append(frame.key_frame)
                    probed.video_sizes.append((frame.width, frame.height))
                elif isinstance(frame, av.AudioFrame):
                    probed.audio_samples += frame.samples
    probed.warnings = [
        f"{name}: {message.strip()}" for level, name, message in logs if level <= av.logging.WARNING
    ]
    return probed


def audio_packets(media: bytes | str) -> list[tuple[int | None, str]]:
    """Each audio packet of ``media`` as (pts, digest of its payload), in file order:
    two files carry the same audio exactly when these are equal."""
    source = io.BytesIO(media) if isinstance(media, bytes) else media
    with av.open(source, "r") as container:
        if not container.streams.audio:
            return []
        stream = container.streams.audio[0]
        return [
            (packet.pts, hashlib.sha1(bytes(packet)).hexdigest())
            for packet in container.demux(stream)
            if packet.size
        ]


def thumbnails(media: bytes | str, size: tuple[int, int] = (32, 18)) -> dict[int, bytes]:
    """Each decoded video frame of ``media`` by PTS, shrunk to ``size`` in grey: two
    encodes of the same frames look alike at that size, a damaged frame does not."""
    source = io.BytesIO(media) if isinstance(media, bytes) else media
    with av.open(source, "r") as container:
        return {
            frame.pts: bytes(frame.reformat(width=size[0], height=size[1], format="gray").planes[0])
            for frame in container.decode(video=0)
            if frame.pts is not None
        }


def thumbnail_difference(one: bytes, other: bytes) -> float:
    """Mean absolute difference of two thumbnails' grey levels (0 to 255)."""
    return sum(abs(a - b) for a, b in zip(one, other, strict=True)) / len(one)
