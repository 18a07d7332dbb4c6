"""Video profiles: what one rendition of a live stream looks like.

A `VideoProfile` says how to encode one output: size, rate control (a bitrate, a
constant quality, or both), frame rate, keyframe spacing (GOP), codec, H.264 profile,
encoder preset, options passed to the encoder as they are, and the container a file
output is written as. `PRESETS` holds LPMS's
built-in profiles under LPMS's names and numbers (livepeer/lpms,
``ffmpeg/videoprofile.go``). Profiles come from preset names (``"P720p30fps16x9,..."``),
from LPMS's JSON transcoding options, or from a TOML file; `output_size` fits a source
of any shape into a profile's box.
"""

from __future__ import annotations

import difflib
import enum
import json
import math
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from types import MappingProxyType
from typing import TypeAlias, TypeVar

from lpms.errors import LPMSError
from lpms.hls.settings import HLSFormat
from lpms.transcode.output_options import (
    MAX_METADATA_TAGS,
    MAX_MUXER_OPTIONS,
    AudioMode,
    OutputOptionError,
    VideoMode,
    checked_muxer,
    checked_strings,
)

DEFAULT_PRESET = "veryfast"
"""The encoder preset for live work: fast enough for real time on a few cores."""

MAX_DIMENSION = 16384
MAX_BITRATE = 1_000_000_000
MAX_FRAMERATE = 1000
MAX_GOP_FRAMES = 100_000
MAX_GOP_SECONDS = 3600
MAX_NAME_LENGTH = 100
MAX_ENCODER_OPTIONS = 64
MAX_ENCODER_OPTION_LENGTH = 1000

_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_ASPECT_PATTERN = re.compile(r"([1-9][0-9]*):([1-9][0-9]*)")
_PRESET_PATTERN = re.compile(r"[A-Za-z0-9_.-]+")
_BITRATE_PATTERN = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*([kKmM]?)")
_GOP_PATTERN = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*(s|f|frames)?")
_OPTION_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")


class ProfileError(LPMSError, ValueError):
    """A video profile, or its description in a name, JSON or TOML, is not valid."""


class VideoCodec(enum.Enum):
    """Output video codec; the values are LPMS's names (its JSON ``encoder`` field)."""

    H264 = "H.264"
    HEVC = "HEVC"
    VP9 = "VP9"
    AV1 = "AV1"

    @classmethod
    def parse(cls, text: str) -> VideoCodec:
        """LPMS's name (``"H.264"``, ``"HEVC"``, ``"VP9"``) or a common alias, any case;
        empty means H.264, as in LPMS."""
        key = text.strip().lower()
        if not key:
            return cls.H264
        codec = _CODEC_ALIASES.get(key)
        if codec is None:
            known = ", ".join(c.value for c in cls)
            raise ProfileError(f"unknown codec {text!r}; choose one of {known}")
        return codec


TS_CODECS = frozenset({VideoCodec.H264, VideoCodec.HEVC})
"""The codecs MPEG-TS carries; VP9 and AV1 go into MP4 (fragmented or not) only."""

MAX_QUALITY: Mapping[VideoCodec, int] = MappingProxyType(
    {VideoCodec.H264: 51, VideoCodec.HEVC: 51, VideoCodec.VP9: 63, VideoCodec.AV1: 63}
)
"""Highest `VideoProfile.quality` per codec: the top of x264's and x265's CRF scale,
of libvpx's and SVT-AV1's (the lowest is 1: LPMS reads 0 as no quality)."""


class OutputFormat(enum.Enum):
    """What a file output is written as; LPMS's ``format`` names (``mpegts``, ``mp4``)
    and ours (``fmp4``)."""

    MPEGTS = "mpegts"
    MP4 = "mp4"  # one index (moov) at the front, as LPMS writes it (movflags faststart)
    FMP4 = "fmp4"  # fragmented MP4 (CMAF), a fragment from each keyframe
    CMAF = "fmp4"  # the same, by its HLS name

    @property
    def extension(self) -> str:
        """The output file's extension: ``ts``, or ``mp4`` for either MP4."""
        return "ts" if self is OutputFormat.MPEGTS else "mp4"

    def carries(self, codec: VideoCodec) -> bool:
        """Whether this container can carry ``codec`` (MPEG-TS: H.264 and HEVC only)."""
        return self is not OutputFormat.MPEGTS or codec in TS_CODECS

    @classmethod
    def of_renditions(cls, hls_format: HLSFormat) -> OutputFormat:
        """A live ladder's renditions, as the HLS format wants them: CMAF, or MPEG-TS."""
        return cls.FMP4 if hls_format is HLSFormat.FMP4 else cls.MPEGTS

    @classmethod
    def parse(cls, text: str) -> OutputFormat:
        """``mpegts``, ``mp4`` or ``fmp4`` (also ``ts`` and ``cmaf``), any case."""
        key = text.strip().lower()
        found = {"ts": cls.MPEGTS, "cmaf": cls.FMP4}.get(key)
        if found is None:
            try:
                found = cls(key)
            except ValueError:
                known = ", ".join(f.value for f in cls)
                raise ProfileError(f"unknown format {text!r}; choose one of {known}") from None
        return found


_CODEC_ALIASES: Mapping[str, VideoCodec] = {
    "h.264": VideoCodec.H264,
    "h264": VideoCodec.H264,
    "avc": VideoCodec.H264,
    "hevc": VideoCodec.HEVC,
    "h.265": VideoCodec.HEVC,
    "h265": VideoCodec.HEVC,
    "vp9": VideoCodec.VP9,
    "av1": VideoCodec.AV1,
}


class H264Profile(enum.Enum):
    """H.264 profile. Constrained high is the high profile without B-frames."""

    BASELINE = "baseline"
    MAIN = "main"
    HIGH = "high"
    CONSTRAINED_HIGH = "constrained_high"

    @property
    def encoder_profile(self) -> str:
        """The encoder's ``profile`` option (LPMS passes ``high`` for constrained high)."""
        return "high" if self is H264Profile.CONSTRAINED_HIGH else self.value

    @property
    def b_frames(self) -> int:
        """Most consecutive B-frames: none for baseline and constrained high (as LPMS)."""
        return 0 if self in (H264Profile.BASELINE, H264Profile.CONSTRAINED_HIGH) else 3

    @classmethod
    def parse(cls, text: str) -> H264Profile | None:
        """LPMS's names (``"H264Baseline"``, ``"h264constrainedhigh"``, ``"none"``) or
        ours (``"baseline"``, ``"constrained_high"``), any case; empty or ``none`` is None
        (the encoder's default)."""
        key = re.sub(r"[\s_-]", "", text.lower()).removeprefix("h264")
        if key in ("", "none"):
            return None
        for profile in cls:
            if profile.value.replace("_", "") == key:
                return profile
        known = ", ".join(p.value for p in cls)
        raise ProfileError(f"unknown H.264 profile {text!r}; choose one of {known}")


@dataclass(frozen=True, slots=True)
class GOPSeconds:
    """A keyframe every `seconds` of output (LPMS's ``gop``, in seconds)."""

    seconds: Fraction

    def __post_init__(self) -> None:
        if isinstance(self.seconds, int) and not isinstance(self.seconds, bool):
            object.__setattr__(self, "seconds", Fraction(self.seconds))
        seconds = self.seconds
        if not isinstance(seconds, Fraction) or not 0 < seconds <= MAX_GOP_SECONDS:
            raise ProfileError(f"GOP must be above 0, at most {MAX_GOP_SECONDS} s: {seconds!r}")

    def keyframe_interval(self, framerate: Fraction | None) -> int | None:
        """Frames from one keyframe to the next at `framerate`; None when the frame rate
        is passed through, and the keyframes are then placed by time."""
        if framerate is None:
            return None
        return max(1, round(self.seconds * framerate))


@dataclass(frozen=True, slots=True)
class GOPFrames:
    """A keyframe every `frames` output frames; ``GOPFrames(1)`` is intra-only."""

    frames: int

    def __post_init__(self) -> None:
        frames = self.frames
        if isinstance(frames, bool) or not isinstance(frames, int):
            raise ProfileError(f"GOP frames must be an integer, got {frames!r}")
        if not 1 <= frames <= MAX_GOP_FRAMES:
            raise ProfileError(f"GOP must be 1 to {MAX_GOP_FRAMES} frames, got {frames}")

    def keyframe_interval(self, framerate: Fraction | None) -> int:
        """Frames from one keyframe to the next (the frame rate does not matter)."""
        return self.frames


GOP: TypeAlias = GOPSeconds | GOPFrames
"""Keyframe spacing inside a segment. A profile's ``gop=None`` means a keyframe only
at each source segment boundary, which every profile gets anyway so that renditions'
segments line up."""

INTRA_ONLY = GOPFrames(1)


def parse_gop(value: str | int | float) -> GOP | None:
    """A GOP as LPMS's JSON writes it: seconds as a number or a string (``"2"``,
    ``"0.5"``), or ``"intra"``; we also read ``"2s"`` and frames as ``"60f"`` or
    ``"60 frames"``. Empty means None (a keyframe at each segment boundary only)."""
    if isinstance(value, bool):
        raise ProfileError(f"GOP must be seconds, frames or 'intra', got {value!r}")
    if isinstance(value, int | float):
        return GOPSeconds(_exact_fraction(value, "GOP"))
    text = value.strip().lower()
    if not text:
        return None
    if text == "intra":
        return INTRA_ONLY
    match = _GOP_PATTERN.fullmatch(text)
    if match is None:
        raise ProfileError(
            f"GOP must be seconds ('2', '2s'), frames ('60f') or 'intra', got {value!r}"
        )
    number, unit = match.groups()
    if unit in ("f", "frames"):
        if "." in number:
            raise ProfileError(f"GOP frames must be a whole number, got {value!r}")
        return GOPFrames(int(number))
    return GOPSeconds(Fraction(number))


def parse_bitrate(value: str | int) -> int:
    """Bits per second from an integer or LPMS's ``"4000k"`` form (``k`` and ``M``)."""
    if isinstance(value, bool):
        raise ProfileError(f"bitrate must be bits per second, got {value!r}")
    if isinstance(value, int):
        return value
    match = _BITRATE_PATTERN.fullmatch(value.strip())
    if match is None:
        raise ProfileError(f"bitrate must look like 4000000, '4000k' or '4M', got {value!r}")
    number, suffix = match.groups()
    scale = {"": 1, "k": 1000, "m": 1_000_000}[suffix.lower()]
    bitrate = Fraction(number) * scale
    if bitrate.denominator != 1:
        raise ProfileError(f"bitrate must be a whole number of bits per second, got {value!r}")
    return int(bitrate)


@dataclass(frozen=True, slots=True)
class VideoProfile:
    """How to encode one rendition.

    Rate control, as LPMS sets it: `bitrate` (bits per second) alone is the average,
    with the peak bounded by a VBV of one second at that rate (maximum rate and
    buffer both the bitrate). `quality` is a constant quality instead: x264's, x265's,
    libvpx's and SVT-AV1's ``crf``, NVENC's ``cq`` at quality + 7 (LPMS's mapping); a
    `bitrate` given with it is only the peak (the same one-second VBV), and 0 means
    none. `framerate` None passes the source's frame rate through. `aspect_ratio` is
    a label such as ``"16:9"`` (empty: width:height reduced); like LPMS, scaling keeps
    the source's shape whatever it says (see `output_size`). `gop` None means a
    keyframe only at each source segment boundary; `INTRA_ONLY` makes every frame
    one. `h264_profile` None leaves the encoder's default; it is for H.264 only.
    `preset` is the encoder's speed preset. `encoder_options` go to the encoder as
    they are, over lpms's own (an option the encoder does not have is an error when
    the transcoder starts). `format` is the container of a file output (None: MPEG-TS
    where it carries the codec, else fragmented MP4); live HLS renditions are in the
    HLS format's container whatever it says.

    Per-output options, LPMS's ``TranscodeOptions``, for file and segment transcodes
    (live HLS renditions take none of them): `video` encode, ``copy`` (the source's
    packets) or ``drop`` (LPMS's ``VideoEncoder``); `audio` ``copy``, ``aac``,
    ``opus`` or ``drop`` (its ``AudioEncoder``; None: AAC and MP3 copied, other
    audio encoded to AAC); `muxer` an FFmpeg muxer's name over `format`'s, with
    `muxer_options` (its ``Muxer``); `metadata` tags written into the container.
    """

    name: str
    width: int
    height: int
    bitrate: int
    framerate: Fraction | None = None
    aspect_ratio: str = ""
    gop: GOP | None = None
    codec: VideoCodec = VideoCodec.H264
    h264_profile: H264Profile | None = None
    preset: str = DEFAULT_PRESET
    quality: int | None = None
    # Out of the hash (a mapping has none); equal profiles still hash alike.
    encoder_options: Mapping[str, str] = field(
        default_factory=lambda: MappingProxyType({}), hash=False
    )
    format: OutputFormat | None = None
    # Per-output options (LPMS's TranscodeOptions; see lpms.transcode.output_options).
    video: VideoMode = VideoMode.ENCODE
    audio: AudioMode | None = None
    muxer: str | None = None
    muxer_options: Mapping[str, str] = field(
        default_factory=lambda: MappingProxyType({}), hash=False
    )
    metadata: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}), hash=False)

    def __post_init__(self) -> None:
        _check_name(self.name)
        _check_int("width", self.width, 2, MAX_DIMENSION)
        _check_int("height", self.height, 2, MAX_DIMENSION)
        object.__setattr__(self, "framerate", _checked_framerate(self.framerate))
        object.__setattr__(self, "aspect_ratio", _checked_aspect_ratio(self))
        if self.gop is not None and not isinstance(self.gop, GOPSeconds | GOPFrames):
            raise ProfileError(f"gop must be GOPSeconds, GOPFrames or None, got {self.gop!r}")
        _check_encoder(self)
        _check_rate_control(self)
        object.__setattr__(self, "encoder_options", _checked_options(self.encoder_options))
        _check_format(self)
        _check_output_options(self)

    @property
    def resolution(self) -> str:
        """``"1280x720"``, as LPMS writes it."""
        return f"{self.width}x{self.height}"


def _check_name(name: object) -> None:
    if not isinstance(name, str) or not _NAME_PATTERN.fullmatch(name):
        raise ProfileError(
            f"profile name must be letters, digits, '_', '.' or '-' (it names output files), "
            f"got {name!r}"
        )
    if len(name) > MAX_NAME_LENGTH:
        raise ProfileError(f"profile name longer than {MAX_NAME_LENGTH} characters: {name[:20]}...")


def _check_int(field: str, value: object, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ProfileError(f"{field} must be an integer, got {value!r}")
    if not low <= value <= high:
        raise ProfileError(f"{field} must be {low} to {high}, got {value}")


def _checked_aspect_ratio(profile: VideoProfile) -> str:
    if not profile.aspect_ratio:
        divisor = math.gcd(profile.width, profile.height)
        return f"{profile.width // divisor}:{profile.height // divisor}"
    ratio = profile.aspect_ratio
    if not isinstance(ratio, str) or not _ASPECT_PATTERN.fullmatch(ratio):
        raise ProfileError(f"aspect ratio must look like '16:9', got {ratio!r}")
    return ratio


def _check_encoder(profile: VideoProfile) -> None:
    if not isinstance(profile.codec, VideoCodec):
        raise ProfileError(f"codec must be a VideoCodec, got {profile.codec!r}")
    h264_profile = profile.h264_profile
    if h264_profile is not None and not isinstance(h264_profile, H264Profile):
        raise ProfileError(f"h264_profile must be an H264Profile, got {h264_profile!r}")
    if h264_profile is not None and profile.codec is not VideoCodec.H264:
        raise ProfileError(f"an H.264 profile needs codec H.264, not {profile.codec.value}")
    preset = profile.preset
    if not isinstance(preset, str) or not _PRESET_PATTERN.fullmatch(preset):
        raise ProfileError(f"encoder preset must be one word like 'veryfast', got {preset!r}")


def _check_rate_control(profile: VideoProfile) -> None:
    """A bitrate, a quality, or both; bitrate 0 is none (LPMS's zero), with a quality."""
    quality = profile.quality
    if quality is not None:
        _check_int("quality", quality, 1, MAX_QUALITY[profile.codec])
    _check_int("bitrate", profile.bitrate, 0, MAX_BITRATE)
    if profile.bitrate == 0 and quality is None:
        raise ProfileError("bitrate must be above 0, or 0 with a quality (constant quality)")


def _checked_options(options: object) -> Mapping[str, str]:
    """A read-only copy of encoder options: names as FFmpeg spells them, string values."""
    if not isinstance(options, Mapping):
        raise ProfileError(f"encoder options must be a mapping of strings, got {options!r}")
    if len(options) > MAX_ENCODER_OPTIONS:
        raise ProfileError(f"more than {MAX_ENCODER_OPTIONS} encoder options")
    for name, value in options.items():
        if not isinstance(name, str) or not _OPTION_NAME_PATTERN.fullmatch(name):
            raise ProfileError(
                f"encoder option name must look like 'tune' or 'x264-params', got {name!r}"
            )
        if not isinstance(value, str):
            raise ProfileError(f"encoder option {name!r} must be a string, got {value!r}")
        if len(value) > MAX_ENCODER_OPTION_LENGTH or not value.isprintable():
            raise ProfileError(
                f"encoder option {name!r} must be printable text of at most "
                f"{MAX_ENCODER_OPTION_LENGTH} characters"
            )
    return MappingProxyType(dict(options))


def _check_format(profile: VideoProfile) -> None:
    container = profile.format
    if container is None:
        return
    if not isinstance(container, OutputFormat):
        raise ProfileError(f"format must be an OutputFormat or None, got {container!r}")
    if not container.carries(profile.codec):
        raise ProfileError(f"{profile.codec.value} cannot go into MPEG-TS; use format mp4 or fmp4")


def _check_output_options(profile: VideoProfile) -> None:
    try:
        if not isinstance(profile.video, VideoMode):
            raise OutputOptionError(f"video must be a VideoMode, got {profile.video!r}")
        if profile.audio is not None and not isinstance(profile.audio, AudioMode):
            raise OutputOptionError(f"audio must be an AudioMode or None, got {profile.audio!r}")
        if profile.video is VideoMode.DROP and profile.audio is AudioMode.DROP:
            raise OutputOptionError("video and audio both dropped: nothing left to write")
        object.__setattr__(profile, "muxer", checked_muxer(profile.muxer))
        options = checked_strings(profile.muxer_options, "muxer options", MAX_MUXER_OPTIONS)
        object.__setattr__(profile, "muxer_options", options)
        tags = checked_strings(profile.metadata, "metadata tags", MAX_METADATA_TAGS)
        object.__setattr__(profile, "metadata", tags)
    except OutputOptionError as exc:
        raise ProfileError(f"profile {profile.name}: {exc}") from None


def _checked_framerate(framerate: object) -> Fraction | None:
    if framerate is None:
        return None
    if isinstance(framerate, int) and not isinstance(framerate, bool):
        framerate = Fraction(framerate)
    if not isinstance(framerate, Fraction):
        raise ProfileError(f"frame rate must be a Fraction or None, got {framerate!r}")
    if not 0 < framerate <= MAX_FRAMERATE:
        raise ProfileError(f"frame rate must be above 0, at most {MAX_FRAMERATE}, got {framerate}")
    return framerate


def _exact_fraction(value: int | float, field: str) -> Fraction:
    if isinstance(value, float) and not math.isfinite(value):
        raise ProfileError(f"{field} must be a finite number, got {value!r}")
    # Through repr so that 0.1 means one tenth, not the nearest binary double.
    return Fraction(repr(value)) if isinstance(value, float) else Fraction(value)


def format_framerate(framerate: Fraction | None) -> str:
    """``"30"``, ``"30000/1001"``, or ``"source"`` for passthrough."""
    if framerate is None:
        return "source"
    return str(framerate)


def format_bitrate(bitrate: int) -> str:
    """``"4000k"`` for whole kilobits, as LPMS writes its presets; else bits."""
    return f"{bitrate // 1000}k" if bitrate % 1000 == 0 else str(bitrate)


# LPMS's presets, in the order ffmpeg/videoprofile.go declares them:
# name, width, height, bitrate (kbit/s), frame rate, aspect ratio.
_LPMS_PRESETS: tuple[tuple[str, int, int, int, int, str], ...] = (
    ("P720p60fps16x9", 1280, 720, 6000, 60, "16:9"),
    ("P720p30fps16x9", 1280, 720, 4000, 30, "16:9"),
    ("P720p25fps16x9", 1280, 720, 3500, 25, "16:9"),
    ("P720p30fps4x3", 960, 720, 3500, 30, "4:3"),
    ("P576p30fps16x9", 1024, 576, 1500, 30, "16:9"),
    ("P576p25fps16x9", 1024, 576, 1500, 25, "16:9"),
    ("P360p30fps16x9", 640, 360, 1200, 30, "16:9"),
    ("P360p25fps16x9", 640, 360, 1000, 25, "16:9"),
    ("P360p30fps4x3", 480, 360, 1000, 30, "4:3"),
    ("P240p30fps16x9", 426, 240, 600, 30, "16:9"),
    ("P240p25fps16x9", 426, 240, 600, 25, "16:9"),
    ("P240p30fps4x3", 320, 240, 600, 30, "4:3"),
    ("P144p30fps16x9", 256, 144, 400, 30, "16:9"),
    ("P144p25fps16x9", 256, 144, 400, 25, "16:9"),
)

PRESETS: Mapping[str, VideoProfile] = MappingProxyType(
    {
        name: VideoProfile(name, width, height, kbps * 1000, Fraction(fps), aspect)
        for name, width, height, kbps, fps, aspect in _LPMS_PRESETS
    }
)
"""LPMS's built-in profiles by name: H.264, encoder's default profile, no GOP."""

_PRESETS_BY_LOWER_NAME: Mapping[str, VideoProfile] = {
    name.lower(): profile for name, profile in PRESETS.items()
}


def profile_by_name(name: str) -> VideoProfile:
    """The preset called `name` (exact, or ignoring case)."""
    profile = PRESETS.get(name) or _PRESETS_BY_LOWER_NAME.get(name.strip().lower())
    if profile is not None:
        return profile
    close = difflib.get_close_matches(name.strip(), list(PRESETS), n=3, cutoff=0.6)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    raise ProfileError(
        f"unknown profile {name!r}; {hint}`lpms profiles` lists them all: {', '.join(PRESETS)}"
    )


def parse_profiles(names: str) -> tuple[VideoProfile, ...]:
    """Presets from a comma-separated list of names (``"P720p30fps16x9,P360p30fps16x9"``);
    empty text gives no profiles."""
    wanted = [part.strip() for part in names.split(",")]
    if wanted == [""]:
        return ()
    if "" in wanted:
        raise ProfileError(f"empty name in profile list {names!r}")
    return _unique(tuple(profile_by_name(name) for name in wanted))


def _unique(profiles: tuple[VideoProfile, ...]) -> tuple[VideoProfile, ...]:
    seen: set[str] = set()
    for profile in profiles:
        if profile.name in seen:
            raise ProfileError(f"profile {profile.name} is given twice; outputs are named after it")
        seen.add(profile.name)
    return profiles


# The fields of LPMS's JSON profile (ffmpeg.JsonProfile), plus our "preset",
# "aspectRatio", "encoder_options" and "format" (LPMS's VideoProfile has a Format, its
# JSON none). LPMS's colorDepth and chromaFormat are read only at their 8-bit 4:2:0
# values; anything else is refused rather than silently encoded as 8-bit 4:2:0.
_FIELDS = frozenset(
    {
        "name",
        "width",
        "height",
        "bitrate",
        "fps",
        "fpsDen",
        "gop",
        "profile",
        "encoder",
        "quality",
        "preset",
        "aspectRatio",
        "colorDepth",
        "chromaFormat",
        "encoder_options",
        "format",
        "video",
        "audio",
        "muxer",
        "muxer_options",
        "metadata",
    }
)


def profile_from_mapping(entry: Mapping[str, object], where: str = "profile") -> VideoProfile:
    """One profile from LPMS's JSON profile fields (see `profiles_from_json`).
    `where` begins error messages (``"profiles[2]"``)."""
    unknown = sorted(set(entry) - _FIELDS)
    if unknown:
        close = difflib.get_close_matches(str(unknown[0]), sorted(_FIELDS), n=1, cutoff=0.6)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ProfileError(
            f"{where}: unknown field {unknown[0]!r}; {hint}"
            f"known fields: {', '.join(sorted(_FIELDS))}"
        )
    try:
        return _profile_from_fields(entry)
    except ProfileError as exc:
        raise ProfileError(f"{where}: {exc}") from None


def profile_to_mapping(profile: VideoProfile) -> dict[str, object]:
    """``profile`` as LPMS's JSON profile fields, which `profile_from_mapping` reads
    back to an equal profile: how profiles are written to TOML and sent to remote
    transcoders (plain values, never a pickled object)."""
    fields: dict[str, object] = {
        "name": profile.name,
        "width": profile.width,
        "height": profile.height,
        "bitrate": profile.bitrate,
    }
    if profile.framerate is not None:
        fields["fps"] = profile.framerate.numerator
        fields["fpsDen"] = profile.framerate.denominator
    fields["aspectRatio"] = profile.aspect_ratio
    if isinstance(profile.gop, GOPFrames):
        fields["gop"] = f"{profile.gop.frames}f"
    elif isinstance(profile.gop, GOPSeconds):
        fields["gop"] = _decimal(profile.gop.seconds, f"GOP of profile {profile.name}")
    fields["encoder"] = profile.codec.value
    if profile.h264_profile is not None:
        fields["profile"] = profile.h264_profile.value
    if profile.quality is not None:
        fields["quality"] = profile.quality
    fields["preset"] = profile.preset
    if profile.encoder_options:
        fields["encoder_options"] = dict(profile.encoder_options)
    if profile.format is not None:
        fields["format"] = profile.format.value
    if profile.video is not VideoMode.ENCODE:
        fields["video"] = profile.video.value
    if profile.audio is not None:
        fields["audio"] = profile.audio.value
    if profile.muxer is not None:
        fields["muxer"] = profile.muxer
    if profile.muxer_options:
        fields["muxer_options"] = dict(profile.muxer_options)
    if profile.metadata:
        fields["metadata"] = dict(profile.metadata)
    return fields


def _decimal(number: Fraction, what: str) -> str:
    """`number` written exactly in decimal (``"0.5"``), as profile files write GOPs."""
    digits = 0
    while (number * 10**digits).denominator != 1:
        digits += 1
        if digits > 30:
            raise ProfileError(f"{what} ({number} s) cannot be written as a decimal number")
    scaled = number * 10**digits
    text = str(scaled.numerator).rjust(digits + 1, "0")
    return f"{text[:-digits]}.{text[-digits:]}" if digits else text


def _profile_from_fields(entry: Mapping[str, object]) -> VideoProfile:
    width = _required_int(entry, "width")
    height = _required_int(entry, "height")
    quality = _quality_field(entry)
    bitrate = _bitrate_field(entry, required=quality is None)
    name = _field(entry, "name", str, "") or f"custom_{width}x{height}_{bitrate}"
    _check_pixel_format(entry)
    return VideoProfile(
        name=name,
        width=width,
        height=height,
        bitrate=bitrate,
        framerate=_framerate_fields(entry),
        aspect_ratio=_field(entry, "aspectRatio", str, ""),
        gop=_gop_field(entry),
        codec=VideoCodec.parse(_field(entry, "encoder", str, "")),
        h264_profile=H264Profile.parse(_field(entry, "profile", str, "")),
        preset=_field(entry, "preset", str, DEFAULT_PRESET),
        quality=quality,
        encoder_options=_options_field(entry),
        format=_format_field(entry),
        video=_video_mode_field(entry),
        audio=_audio_mode_field(entry),
        muxer=_field(entry, "muxer", str, "") or None,
        muxer_options=_strings_field(entry, "muxer_options"),
        metadata=_strings_field(entry, "metadata"),
    )


def _field(entry: Mapping[str, object], key: str, kind: type[_T], default: _T) -> _T:
    value = entry.get(key, default)
    if isinstance(value, bool) or not isinstance(value, kind):  # JSON true is no number
        raise ProfileError(f"field {key!r} must be {_KIND_NAMES[kind]}, got {value!r}")
    return value


_T = TypeVar("_T", str, int)
_KIND_NAMES: Mapping[type, str] = {str: "a string", int: "an integer"}


def _required_int(entry: Mapping[str, object], key: str) -> int:
    if key not in entry:
        raise ProfileError(f"field {key!r} is missing")
    value = _field(entry, key, int, 0)
    if value <= 0:
        raise ProfileError(f"field {key!r} must be positive, got {value}")
    return value


def _bitrate_field(entry: Mapping[str, object], *, required: bool) -> int:
    if "bitrate" not in entry:
        if required:
            raise ProfileError("field 'bitrate' is missing (or give a 'quality')")
        return 0
    value = entry["bitrate"]
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ProfileError(f"field 'bitrate' must be bits per second or '4000k', got {value!r}")
    try:
        bitrate = parse_bitrate(value)
    except ProfileError as exc:
        raise ProfileError(f"field 'bitrate': {exc}") from None
    if bitrate < 0 or (bitrate == 0 and required):
        raise ProfileError(f"field 'bitrate' must be positive, got {value!r}")
    return bitrate


def _quality_field(entry: Mapping[str, object]) -> int | None:
    # LPMS's quality is unsigned and 0 when not given: 0 means none.
    quality = _field(entry, "quality", int, 0)
    if quality < 0:
        raise ProfileError(f"field 'quality' must not be negative, got {quality}")
    return quality or None


def _options_field(entry: Mapping[str, object]) -> Mapping[str, str]:
    options = entry.get("encoder_options", {})
    if not isinstance(options, Mapping):
        raise ProfileError(f"field 'encoder_options' must be an object of strings, got {options!r}")
    return _checked_options(options)


def _video_mode_field(entry: Mapping[str, object]) -> VideoMode:
    try:
        return VideoMode.parse(_field(entry, "video", str, ""))
    except OutputOptionError as exc:
        raise ProfileError(str(exc)) from None


def _audio_mode_field(entry: Mapping[str, object]) -> AudioMode | None:
    try:
        return AudioMode.parse(_field(entry, "audio", str, ""))
    except OutputOptionError as exc:
        raise ProfileError(str(exc)) from None


def _strings_field(entry: Mapping[str, object], key: str) -> Mapping[str, str]:
    """An object of strings (checked by `VideoProfile`); missing is empty."""
    values = entry.get(key, {})
    if not isinstance(values, Mapping):
        raise ProfileError(f"field {key!r} must be an object of strings, got {values!r}")
    return values


def _format_field(entry: Mapping[str, object]) -> OutputFormat | None:
    text = _field(entry, "format", str, "")
    return OutputFormat.parse(text) if text else None


def _framerate_fields(entry: Mapping[str, object]) -> Fraction | None:
    fps = _field(entry, "fps", int, 0)
    den = _field(entry, "fpsDen", int, 0)
    if fps < 0 or den < 0:
        raise ProfileError(f"fields 'fps' and 'fpsDen' must not be negative, got {fps}/{den}")
    # LPMS: fps 0 passes the source's rate through; fpsDen 0 means 1.
    return Fraction(fps, den or 1) if fps else None


def _gop_field(entry: Mapping[str, object]) -> GOP | None:
    value = entry.get("gop", "")
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ProfileError(f"field 'gop' must be seconds, frames or 'intra', got {value!r}")
    try:
        return parse_gop(value)
    except ProfileError as exc:
        raise ProfileError(f"field 'gop': {exc}") from None


def _check_pixel_format(entry: Mapping[str, object]) -> None:
    # LPMS stores colorDepth as bits above 8 but defaults a missing one to 8; read both
    # 0 and 8 as 8-bit. chromaFormat 0 is 4:2:0.
    if entry.get("colorDepth", 0) not in (0, 8) or entry.get("chromaFormat", 0) != 0:
        raise ProfileError("only 8-bit 4:2:0 output is supported (colorDepth, chromaFormat)")


def _profiles_from_entries(entries: object, source: str) -> tuple[VideoProfile, ...]:
    if isinstance(entries, Mapping):
        if "profiles" not in entries:
            raise ProfileError(f"{source}: expected a list of profiles or a 'profiles' list")
        entries = entries["profiles"]
    if not isinstance(entries, Sequence) or isinstance(entries, str | bytes):
        raise ProfileError(f"{source}: 'profiles' must be a list, got {type(entries).__name__}")
    profiles = []
    for index, entry in enumerate(entries):
        where = f"{source} profiles[{index}]"
        if isinstance(entry, str):
            try:
                profiles.append(profile_by_name(entry))
            except ProfileError as exc:
                raise ProfileError(f"{where}: {exc}") from None
        elif isinstance(entry, Mapping):
            profiles.append(profile_from_mapping(entry, where))
        else:
            raise ProfileError(f"{where}: expected an object or a preset name, got {entry!r}")
    return _unique(tuple(profiles))


def profiles_from_json(text: str | bytes) -> tuple[VideoProfile, ...]:
    """Profiles from LPMS's JSON transcoding options: a list of objects, or an object
    whose ``"profiles"`` is that list. Each object has LPMS's fields::

        {"name": "720p", "width": 1280, "height": 720, "bitrate": 4000000,
         "fps": 30, "fpsDen": 1, "gop": "2", "profile": "H264High", "encoder": "H.264"}

    ``width``, ``height`` and ``bitrate`` (bits per second, or ``"4000k"``) are needed;
    ``quality`` (LPMS's constant quality: CRF, or NVENC's CQ at quality + 7) may stand
    in for ``bitrate``, which is then only the peak. A missing ``name`` becomes LPMS's
    ``custom_WxH_BITRATE``; ``fps`` 0 or missing passes the source's rate through;
    ``gop`` is seconds, ``"intra"``, or (ours) ``"60f"``; ``profile`` is
    ``H264Baseline``/``Main``/``High``/``ConstrainedHigh`` or ``none``; ``encoder`` is
    ``H.264`` (default), ``HEVC``, ``VP9`` or ``AV1``; ``quality`` 0 is none, as in
    LPMS. Ours too: ``preset`` (encoder preset), ``aspectRatio``, ``encoder_options``
    (an object of strings for the encoder, such as ``{"tune": "zerolatency"}``) and
    ``format`` (``mpegts``, ``mp4`` or ``fmp4``: a file output's container). A string
    in the list names a preset.
    """
    try:
        decoded = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ProfileError(f"profiles JSON is not valid JSON: {exc}") from None
    return _profiles_from_entries(decoded, "JSON")


def profiles_from_toml(text: str) -> tuple[VideoProfile, ...]:
    """Profiles from TOML: an array of tables named ``profiles``, with the JSON fields
    (see `profiles_from_json`); a string in the array names a preset::

        profiles = ["P360p30fps16x9"]

        [[profiles]]
        name = "720p"
        width = 1280
        height = 720
        bitrate = "4000k"
        fps = 30
        gop = 2.0
        profile = "high"
        preset = "veryfast"
        quality = 23
        format = "mp4"
        encoder_options = { tune = "zerolatency" }

    (TOML cannot mix the inline array and ``[[profiles]]`` in one file; use one form.)
    """
    try:
        decoded = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"profiles TOML is not valid TOML: {exc}") from None
    return _profiles_from_entries(decoded, "TOML")


def output_size(profile: VideoProfile, source_width: int, source_height: int) -> tuple[int, int]:
    """The output size for a source of another shape: the source's aspect ratio kept,
    inside the profile's box, both sides even (yuv420p halves chroma both ways).

    A portrait source turns the box (a 640x360 profile is a 360x640 box for it), as
    LPMS does ("comparing landscape to portrait, apply rotate on chosen resolution",
    ffmpeg.go; since #417 its scale expression fits the larger side to the larger of
    the profile's): a phone's portrait video gets as many pixels as a landscape one.
    In that box LPMS pins the side of the source's longer dimension and FFmpeg's ``-2``
    computes the other, rounded to the nearest even number. That can overflow the box
    (a 4:3 source through a 16:9 profile comes out 1280x960 from a 1280x720 profile),
    so we pin whichever side binds instead: the result equals LPMS's whenever LPMS's
    stays in the box (16:9 and wider sources) and is the largest even size in the box
    otherwise.
    """
    _check_int("source width", source_width, 1, 1 << 20)
    _check_int("source height", source_height, 1, 1 << 20)
    box_width = profile.width - profile.width % 2
    box_height = profile.height - profile.height % 2
    if (source_width > source_height) != (box_width > box_height):
        box_width, box_height = box_height, box_width
    if source_width * box_height >= source_height * box_width:  # as wide as the box, or wider
        height = _even_side(box_width, source_height, source_width)
        return box_width, min(height, box_height)
    width = _even_side(box_height, source_width, source_height)
    return min(width, box_width), box_height


def _even_side(pinned: int, numerator: int, denominator: int) -> int:
    """``pinned * numerator / denominator`` to the nearest even number, halves away from
    zero, at least 2: what FFmpeg's scale filter does for ``-2`` (av_rescale)."""
    halves = (pinned * numerator + denominator) // (2 * denominator)
    return max(2, 2 * halves)


def load_profiles(text: str, base_dir: Path | None = None) -> tuple[VideoProfile, ...]:
    """Preset names, comma-separated (``"P360p30fps16x9,P240p30fps16x9"``), or the name
    of a JSON or TOML file of profiles (see `profiles_from_json`), relative to
    `base_dir` if given. Empty text: no profiles."""
    path = Path(text.strip())
    suffix = path.suffix.lower()
    if suffix not in (".json", ".toml"):
        return parse_profiles(text)
    if base_dir is not None:
        path = base_dir / path
    try:
        content = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ProfileError(f"cannot read profiles file {path}: {reason}") from None
    return profiles_from_json(content) if suffix == ".json" else profiles_from_toml(content)
