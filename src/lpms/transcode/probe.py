"""`probe`: what a media file or URL holds, as `lpms probe` prints it."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from fractions import Fraction
from typing import Any

import av

from lpms.errors import TranscodeError


@dataclass(frozen=True, slots=True)
class TrackInfo:
    """One track: codec, and for video its size and rate, for audio its sampling."""

    index: int
    kind: str  # "video", "audio", or another FFmpeg media type
    codec: str
    profile: str | None = None
    width: int = 0
    height: int = 0
    framerate: float | None = None
    sample_rate: int = 0
    channels: int = 0
    bitrate: int | None = None  # bits/s where the container says


@dataclass(frozen=True, slots=True)
class MediaInfo:
    source: str
    format: str
    duration: float | None  # seconds
    bitrate: int | None  # bits/s over the whole file
    size: int | None  # bytes, for files
    tracks: tuple[TrackInfo, ...]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def probe(source: str | os.PathLike[str], timeout: float = 10.0) -> MediaInfo:
    """Open ``source`` (a file or URL FFmpeg reads) and describe it."""
    name = os.fspath(source)
    try:
        container = av.open(name, "r", timeout=timeout)
    except av.FFmpegError as exc:
        raise TranscodeError(f"cannot read {name}: {exc.strerror}") from None
    with container:
        duration = container.duration / av.time_base if container.duration else None
        size = os.path.getsize(name) if os.path.isfile(name) else None
        bitrate = container.bit_rate or None
        if bitrate is None and size and duration:
            bitrate = int(size * 8 / duration)
        tracks = tuple(_track(stream) for stream in container.streams)
        return MediaInfo(
            source=name,
            format=container.format.name,
            duration=duration,
            bitrate=bitrate,
            size=size,
            tracks=tracks,
        )


def _track(stream: av.stream.Stream) -> TrackInfo:
    context = stream.codec_context
    codec = context.name if context is not None else "unknown"
    profile = getattr(context, "profile", None) if context is not None else None
    bitrate = (context.bit_rate if context is not None else None) or None
    if isinstance(stream, av.video.stream.VideoStream):
        rate = stream.average_rate or stream.guessed_rate
        return TrackInfo(
            index=stream.index,
            kind="video",
            codec=codec,
            profile=profile,
            width=stream.width,
            height=stream.height,
            framerate=round(float(Fraction(rate)), 3) if rate else None,
            bitrate=bitrate,
        )
    if isinstance(stream, av.audio.stream.AudioStream):
        return TrackInfo(
            index=stream.index,
            kind="audio",
            codec=codec,
            profile=profile,
            sample_rate=stream.sample_rate,
            channels=stream.channels,
            bitrate=bitrate,
        )
    return TrackInfo(index=stream.index, kind=stream.type, codec=codec)
