"""Which muxer writes an output, and with what: a profile's ``muxer`` (else its
container's), ``muxer_options`` and ``metadata`` tags, checked once before any media
(LPMS's ``Muxer`` ``ComponentOptions`` and ``Metadata``, ``ffmpeg/ffmpeg.go``)."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
import threading
from collections.abc import Sequence
from typing import Any

import av

from lpms.errors import TranscodeError
from lpms.transcode.output_options import AudioMode, VideoMode
from lpms.transcode.profiles import OutputFormat, VideoCodec, VideoProfile

MP4_MUXERS = frozenset({"mp4", "mov"})
"""Muxers that take lpms's movflags (an index at the front, or CMAF fragments)."""

_EXTENSIONS = {"mpegts": "ts", "mp4": "mp4", "matroska": "mkv", "mov": "mov", "adts": "aac"}
_MUX_NAMES = {
    VideoCodec.H264: "h264",
    VideoCodec.HEVC: "hevc",
    VideoCodec.VP9: "vp9",
    VideoCodec.AV1: "av1",
}
_TS_VIDEO = frozenset({"h264", "hevc"})  # what MPEG-TS carries of the source's video
_PROBE_AUDIO = ("aac", "opus", "mp3", "pcm_s16le")  # a stream for the option check


def muxer_name(profile: VideoProfile, container: OutputFormat) -> str:
    """The FFmpeg muxer writing ``profile``'s output: its own, else the container's."""
    if profile.muxer is not None:
        return profile.muxer
    return "mpegts" if container is OutputFormat.MPEGTS else "mp4"


def muxer_extension(profile: VideoProfile, container: OutputFormat) -> str:
    """The output file's extension: the container's, or the profile muxer's own."""
    if profile.muxer is None:
        return container.extension
    name = profile.muxer
    known = _EXTENSIONS.get(name)
    if known is not None:
        return known
    extensions = sorted(_container_format(profile).extensions)
    return name if name in extensions or not extensions else extensions[0]


def muxer_flags(profile: VideoProfile, container: OutputFormat) -> dict[str, str]:
    """lpms's own muxer options (MP4's movflags), under the profile's."""
    options: dict[str, str] = {}
    if muxer_name(profile, container) in MP4_MUXERS:
        if container is OutputFormat.FMP4:
            options["movflags"] = "empty_moov+default_base_moof+frag_keyframe"
        elif container is OutputFormat.MP4:
            options["movflags"] = "+faststart"
    options.update(profile.muxer_options)
    return options


def open_output(
    target: Any, profile: VideoProfile, container: OutputFormat
) -> av.container.OutputContainer:
    """The output container for ``profile``, its options and metadata set."""
    output = av.open(
        target,
        mode="w",
        format=muxer_name(profile, container),
        options=muxer_flags(profile, container),
    )
    output.metadata.update(profile.metadata)
    return output


def check_muxer(profile: VideoProfile, container: OutputFormat) -> None:
    """`TranscodeError` now, before any media, for a muxer FFmpeg has not, one that
    cannot carry the profile's video or audio codec, or a muxer option it does not
    take (FFmpeg leaves those unused; tried on a throwaway header). A copied video's
    codec is known only with the input: `check_copy`. (A profile with video and audio
    ``drop`` is refused as it is made.)"""
    if profile.muxer is None and not profile.muxer_options:
        return
    name = muxer_name(profile, container)
    if profile.muxer is not None:
        _container_format(profile)
    probe = av.open(io.BytesIO(), mode="w", format=name)
    with probe:
        try:
            if profile.video is VideoMode.ENCODE:
                probe.add_mux_stream(_MUX_NAMES[profile.codec], rate=30)
            encoder = profile.audio.encoder if profile.audio is not None else None
            if encoder is not None:
                probe.add_mux_stream("opus" if encoder == "libopus" else encoder, rate=48000)
        except ValueError as exc:
            raise TranscodeError(f"{profile.name}: muxer {name}: {exc}") from None
    if profile.muxer_options:
        unused = _unused_options(name, dict(profile.muxer_options))
        if unused:
            raise TranscodeError(
                f"{profile.name}: muxer {name} has no option {unused[0]!r} (muxer_options)"
            )


def check_copy(profile: VideoProfile, container: OutputFormat, codec_name: str) -> None:
    """`TranscodeError` when ``profile`` copies the source's video, in ``codec_name``,
    into MPEG-TS, which carries only H.264 and HEVC video (FFmpeg's mpegts muxer
    would write any other codec as private data no player reads). Other muxers
    refuse a codec they cannot carry as the output's header is written."""
    if profile.video is not VideoMode.COPY or muxer_name(profile, container) != "mpegts":
        return
    if codec_name not in _TS_VIDEO:
        raise TranscodeError(
            f"{profile.name}: video copy: MPEG-TS cannot carry the source's {codec_name} "
            "video; copy it into MP4 (format mp4 or fmp4) or Matroska (muxer matroska)"
        )


def _container_format(profile: VideoProfile) -> av.format.ContainerFormat:
    try:
        found = av.format.ContainerFormat(profile.muxer or "")
    except ValueError:
        found = None
    if found is None or not found.is_output:
        raise TranscodeError(f"{profile.name}: FFmpeg has no muxer {profile.muxer!r}")
    return found


def _unused_options(name: str, options: dict[str, str]) -> list[str]:
    """The options a header of muxer ``name`` left unused (PyAV logs them: caught)."""
    caught = _UnusedOptions()
    logger = logging.getLogger("av.container.output")
    logger.addFilter(caught)
    try:
        for codec in _PROBE_AUDIO:
            if _header_written(name, options, codec):
                return sorted(k for k in options if any(repr(k) in m for m in caught.messages))
    finally:
        logger.removeFilter(caught)
    return []


def _header_written(name: str, options: dict[str, str], codec: str) -> bool:
    """Whether muxer ``name`` wrote a header for one ``codec`` stream (into memory:
    its trailer, which may want a named file, is not asked for)."""
    probe = av.open(io.BytesIO(), mode="w", format=name, options=options)
    try:
        probe.add_mux_stream(codec, rate=48000)
        probe.start_encoding()
        return True
    except (ValueError, av.FFmpegError):
        return False
    finally:
        # A trailer that wants a named file (faststart) fails: the header was read.
        with contextlib.suppress(OSError, av.FFmpegError):
            probe.close()


class _UnusedOptions(logging.Filter):
    """Takes PyAV's "Some options were not used: {...}" from this thread (reported
    as a `TranscodeError` instead of a warning)."""

    def __init__(self) -> None:
        super().__init__()
        self.thread = threading.get_ident()
        self.messages: list[str] = []

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.thread == self.thread and "options were not used" in message:
            self.messages.append(message)
            return False
        return True


def hls_renditions(
    profiles: Sequence[VideoProfile], container: OutputFormat
) -> tuple[VideoProfile, ...]:
    """A live ladder's profiles as its HLS renditions want them: in fMP4 the video
    alone (the audio is a rendition of its own), in MPEG-TS as they are."""
    if container is OutputFormat.MPEGTS:
        return tuple(profiles)
    return tuple(dataclasses.replace(p, audio=AudioMode.DROP) for p in profiles)
