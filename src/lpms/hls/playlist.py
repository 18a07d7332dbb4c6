"""HLS playlists (RFC 8216) as text, from plain descriptions of segments and variants.

Pure functions, no I/O: the store decides what a playlist lists and when; this module
only writes it, the same way every time, so Safari, hls.js, ExoPlayer and FFmpeg all
read the same thing. It refuses input that would make a playlist lie to a player (a
segment longer than the target duration promised, a gap in media sequence numbers, a
URI that is not a relative path inside the stream's folder) with `PlaylistError`,
because a player fed such a playlist stalls or skips instead of failing loudly.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Final, Literal

from lpms.errors import HLSError, MediaError
from lpms.media.bitreader import BitReader
from lpms.media.flv import parse_aac_config
from lpms.media.packet import Codec

# Version 3 is the first with decimal-floating-point EXTINF durations (RFC 8216 section
# 7); nothing written here needs more, and older players accept it.
PROTOCOL_VERSION: Final = 3

PlaylistType = Literal["EVENT", "VOD"]

# RFC 3986 scheme: a URI that starts with one is absolute, not relative.
_SCHEME: Final = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")
# No control characters (a newline would end the URI line and start a forged tag),
# no whitespace (not allowed in a URI, and trimmed differently by each player).
_UNSAFE_CHARACTER: Final = re.compile(r"[\x00-\x20\x7f]")
_UNSAFE_CODECS_CHARACTER: Final = re.compile(r'[\x00-\x1f\x7f",]')
_CONTROL_CHARACTER: Final = re.compile(r"[\x00-\x1f\x7f]")

_AVCC_HEAD_SIZE: Final = 7  # ISO/IEC 14496-15 5.3.3.1: up to numOfPictureParameterSets
_HVCC_HEAD_SIZE: Final = 23  # ISO/IEC 14496-15 8.3.3.1: up to numOfArrays
_HEVC_PROFILE_SPACES: Final = ("", "A", "B", "C")
_AAC_ESCAPE_OBJECT_TYPE: Final = 31
# ISO/IEC 14496-3 1.5.1.1: object type 34 is MPEG-1/2 Layer 3, what Apple's HLS
# authoring spec writes for MP3 in CODECS.
_MP3_CODECS: Final = "mp4a.40.34"


class PlaylistError(HLSError, ValueError):
    """A playlist cannot be written from what was given (a bug in the caller, not a
    player's fault); the message says which segment or variant and why."""


@dataclass(frozen=True, slots=True)
class SegmentEntry:
    """One media segment as a media playlist lists it.

    ``uri`` is relative to the playlist (e.g. ``"12.ts"``); ``duration`` in seconds is
    measured from the segment's timestamps; ``program_date_time`` is the wall-clock time
    of its first sample (tz-aware); ``discontinuity`` marks a break before it (the
    publisher reconnected, so timestamps and codec parameters may change). ``gap``
    marks a segment that does not exist (RFC 8216bis 4.4.4.7 EXT-X-GAP: a rendition
    that skipped it, so players fetch it from another rendition or skip it) while
    keeping the numbering of every rendition in step.
    """

    uri: str
    duration: float
    sequence: int
    program_date_time: datetime | None = None
    discontinuity: bool = False
    gap: bool = False


@dataclass(frozen=True, slots=True)
class Variant:
    """One rendition as a master playlist offers it.

    ``bandwidth`` is the peak bits/s (RFC 8216 4.3.4.2 BANDWIDTH), ``average_bandwidth``
    the mean; ``resolution`` is (width, height); ``codecs`` is an RFC 6381 list such as
    ``"avc1.64001f,mp4a.40.2"``. ``name`` only labels the entry with a comment for the
    people who read playlists: EXT-X-STREAM-INF has no NAME attribute.
    """

    uri: str
    bandwidth: int
    average_bandwidth: int | None = None
    resolution: tuple[int, int] | None = None
    codecs: str | None = None
    frame_rate: float | None = None
    name: str | None = None


# -- media playlists ---------------------------------------------------------------


def render_media_playlist(
    segments: Sequence[SegmentEntry],
    *,
    target_duration: int,
    discontinuity_sequence: int = 0,
    ended: bool = False,
    playlist_type: PlaylistType | None = None,
) -> str:
    """The text of a media playlist (RFC 8216 4.3.3) listing ``segments`` in order.

    ``target_duration`` is what the caller has promised so far: RFC 8216 6.2.1 forbids
    changing it during a stream, so it is not derived here from the segments listed
    (see `target_duration_for`). Segments must carry consecutive sequence numbers: a
    player numbers them from EXT-X-MEDIA-SEQUENCE (RFC 8216 6.3.2), so a gap would
    give later segments the wrong numbers on the next reload.
    """
    _check_media_header(target_duration, discontinuity_sequence, ended, playlist_type)
    media_sequence = segments[0].sequence if segments else 0
    lines = [
        "#EXTM3U",
        f"#EXT-X-VERSION:{PROTOCOL_VERSION}",
        f"#EXT-X-TARGETDURATION:{target_duration}",
        f"#EXT-X-MEDIA-SEQUENCE:{media_sequence}",
    ]
    if discontinuity_sequence:
        lines.append(f"#EXT-X-DISCONTINUITY-SEQUENCE:{discontinuity_sequence}")
    if playlist_type is not None:
        lines.append(f"#EXT-X-PLAYLIST-TYPE:{playlist_type}")
    # Every segment starts with a keyframe and its decoder configuration.
    lines.append("#EXT-X-INDEPENDENT-SEGMENTS")
    for index, segment in enumerate(segments):
        _check_sequence(segment, media_sequence + index)
        lines.extend(_segment_lines(segment, target_duration))
    if ended:
        lines.append("#EXT-X-ENDLIST")
    return _text(lines)


def target_duration_for(durations: Iterable[float], minimum: int) -> int:
    """The smallest EXT-X-TARGETDURATION that every one of ``durations`` fits, and at
    least ``minimum``.

    RFC 8216 4.3.3.1: each EXTINF duration, rounded to the nearest integer, must not
    exceed the target. The rule is applied to the duration as written (three
    decimals), and halves round up, so a 2.5 s segment (or a 2.4996 s one, written
    "2.500") needs a target of 3: players that validate round that way.
    """
    target = minimum
    for duration in durations:
        target = max(target, _rounded_seconds(_extinf_duration(duration)))
    return target


def _check_media_header(
    target_duration: int,
    discontinuity_sequence: int,
    ended: bool,
    playlist_type: str | None,
) -> None:
    if target_duration < 1:
        # Players reload a live playlist every target duration; 0 would mean never wait.
        raise PlaylistError(f"target duration must be at least 1 s, not {target_duration}")
    if discontinuity_sequence < 0:
        raise PlaylistError(
            f"discontinuity sequence must not be negative, not {discontinuity_sequence}"
        )
    if playlist_type not in (None, "EVENT", "VOD"):
        raise PlaylistError(f"playlist type must be EVENT or VOD, not {playlist_type!r}")
    if playlist_type == "VOD" and not ended:
        # RFC 8216 4.3.3.5: a VOD playlist never changes, so it must already be complete.
        raise PlaylistError("a VOD playlist must be ended (EXT-X-ENDLIST)")


def _check_sequence(segment: SegmentEntry, expected: int) -> None:
    if segment.sequence < 0:
        raise PlaylistError(f"segment {segment.uri!r}: negative sequence {segment.sequence}")
    if segment.sequence != expected:
        raise PlaylistError(
            f"segment {segment.uri!r}: sequence {segment.sequence} where {expected} "
            "follows; media sequence numbers must be consecutive"
        )


def _segment_lines(segment: SegmentEntry, target_duration: int) -> list[str]:
    duration = _extinf_duration(segment.duration, segment.uri)
    if _rounded_seconds(duration) > target_duration:
        raise PlaylistError(
            f"segment {segment.uri!r}: {duration} s is longer than the target duration "
            f"{target_duration} s allows (RFC 8216 4.3.3.1)"
        )
    lines = []
    if segment.discontinuity:
        lines.append("#EXT-X-DISCONTINUITY")
    if segment.program_date_time is not None:
        when = _program_date_time(segment.program_date_time, segment.uri)
        lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{when}")
    if segment.gap:
        lines.append("#EXT-X-GAP")
    lines.append(f"#EXTINF:{duration},")
    lines.append(_checked_uri(segment.uri))
    return lines


def _extinf_duration(seconds: float, uri: str | None = None) -> str:
    """A duration as EXTINF writes it: milliseconds are finer than any frame."""
    if not math.isfinite(seconds) or seconds < 0:
        where = f"segment {uri!r}: " if uri is not None else ""
        raise PlaylistError(f"{where}duration must be a finite number >= 0, not {seconds}")
    return f"{seconds:.3f}"


def _rounded_seconds(duration: str) -> int:
    return int(Decimal(duration).to_integral_value(rounding=ROUND_HALF_UP))


def _program_date_time(when: datetime, uri: str) -> str:
    """ISO 8601 in UTC with milliseconds (RFC 8216 4.3.2.6), e.g.
    ``2024-05-01T12:00:00.123Z``; a naive time has no defined instant, so is refused."""
    if when.tzinfo is None or when.utcoffset() is None:
        raise PlaylistError(f"segment {uri!r}: program date time {when} has no time zone")
    utc = when.astimezone(UTC).replace(tzinfo=None)
    return utc.isoformat(timespec="milliseconds") + "Z"


def _checked_uri(uri: str) -> str:
    """``uri`` if it is a relative path that stays below the playlist's folder.

    Absolute URIs and ``..`` would let a stream's playlist point players anywhere;
    a leading ``#`` would turn the URI line into a tag or a comment.
    """
    if not uri or _UNSAFE_CHARACTER.search(uri):
        raise PlaylistError(f"URI {uri!r} is empty or holds whitespace or control characters")
    if uri.startswith(("/", "\\", "#")) or _SCHEME.match(uri):
        raise PlaylistError(f"URI {uri!r} must be a relative path")
    path = uri.split("?", 1)[0].split("#", 1)[0]
    if ".." in re.split(r"[/\\]", path):
        raise PlaylistError(f"URI {uri!r} must not climb out of its folder with '..'")
    return uri


# -- master playlists --------------------------------------------------------------


def render_master_playlist(variants: Sequence[Variant]) -> str:
    """The text of a master playlist (RFC 8216 4.3.4) offering ``variants`` in order.

    Players start with the first variant listed, so the caller's order is kept.
    """
    if not variants:
        raise PlaylistError("a master playlist needs at least one variant")
    lines = ["#EXTM3U", f"#EXT-X-VERSION:{PROTOCOL_VERSION}", "#EXT-X-INDEPENDENT-SEGMENTS"]
    for variant in variants:
        if variant.name is not None:
            lines.append(f"# {_checked_name(variant.name)}")
        lines.append("#EXT-X-STREAM-INF:" + ",".join(_stream_inf_attributes(variant)))
        lines.append(_checked_uri(variant.uri))
    return _text(lines)


def _stream_inf_attributes(variant: Variant) -> list[str]:
    """EXT-X-STREAM-INF attributes (RFC 8216 4.3.4.2), only those that are known."""
    where = f"variant {variant.uri!r}"
    attributes = [f"BANDWIDTH={_positive(variant.bandwidth, where, 'bandwidth')}"]
    if variant.average_bandwidth is not None:
        average = _positive(variant.average_bandwidth, where, "average bandwidth")
        attributes.append(f"AVERAGE-BANDWIDTH={average}")
    if variant.resolution is not None:
        width, height = variant.resolution
        attributes.append(
            f"RESOLUTION={_positive(width, where, 'width')}x{_positive(height, where, 'height')}"
        )
    if variant.codecs is not None:
        attributes.append(f'CODECS="{_checked_codecs(variant.codecs, where)}"')
    if variant.frame_rate is not None:
        if not math.isfinite(variant.frame_rate) or variant.frame_rate <= 0:
            raise PlaylistError(f"{where}: frame rate must be positive, not {variant.frame_rate}")
        attributes.append(f"FRAME-RATE={variant.frame_rate:.3f}")
    return attributes


def _positive(value: int, where: str, what: str) -> int:
    if value < 1:
        raise PlaylistError(f"{where}: {what} must be positive, not {value}")
    return value


def _checked_codecs(codecs: str, where: str) -> str:
    """A quoted-string holds no quote or line break (RFC 8216 4.2); each entry of the
    comma-separated list must be non-empty."""
    entries = codecs.split(",")
    if not all(entries) or any(_UNSAFE_CODECS_CHARACTER.search(entry) for entry in entries):
        raise PlaylistError(f"{where}: {codecs!r} is not a list of RFC 6381 codecs")
    return codecs


def _checked_name(name: str) -> str:
    if _CONTROL_CHARACTER.search(name):
        raise PlaylistError(f"variant name {name!r} holds control characters")
    return name


def _text(lines: list[str]) -> str:
    return "\n".join(lines) + "\n"


# -- CODECS attribute values ---------------------------------------------------------


def codecs_string(codec: Codec, extradata: bytes) -> str | None:
    """The RFC 6381 codec string for a track, read from its decoder configuration
    record (the ``extradata`` of `lpms.media.packet.CodecConfig`).

    None when the codec has no string here or the record cannot be read: a variant
    without CODECS is still playable, while a wrong one makes players skip it.
    """
    match codec:
        case Codec.H264:
            return _avc_codecs(extradata)
        case Codec.HEVC:
            return _hevc_codecs(extradata)
        case Codec.AAC:
            return _aac_codecs(extradata)
        case Codec.MP3:
            return _MP3_CODECS
        case _:
            return None


def _avc_codecs(record: bytes) -> str | None:
    """``avc1.PPCCLL`` (RFC 6381 3.3): profile_idc, the constraint flags byte and
    level_idc, which avcC (ISO/IEC 14496-15 5.3.3.1) copies from the SPS at bytes 1-3."""
    if len(record) < _AVCC_HEAD_SIZE or record[0] != 1:
        return None  # not an avcC: too short, or Annex B start codes
    return f"avc1.{record[1]:02x}{record[2]:02x}{record[3]:02x}"


def _hevc_codecs(record: bytes) -> str | None:
    """``hvc1.<space><profile>.<compat>.<tier><level>[.<constraints>]`` as ISO/IEC
    14496-15 Annex E.3 builds it from hvcC (8.3.3.1):

    the profile space as '', 'A', 'B', 'C' before general_profile_idc in decimal; the
    32 compatibility flags bit-reversed, in hex without leading zeros; 'L' (Main) or
    'H' (High tier) before general_level_idc in decimal; then the six constraint
    indicator bytes in hex, dot-separated, trailing zero bytes left out.
    """
    if len(record) < _HVCC_HEAD_SIZE or record[0] != 1:
        return None
    space = _HEVC_PROFILE_SPACES[record[1] >> 6]
    tier = "H" if record[1] & 0x20 else "L"
    profile_idc = record[1] & 0x1F
    compatibility = int(f"{int.from_bytes(record[2:6], 'big'):032b}"[::-1], 2)
    level_idc = record[12]
    constraints = record[6:12].rstrip(b"\x00")
    fields = [f"hvc1.{space}{profile_idc}", f"{compatibility:X}", f"{tier}{level_idc}"]
    fields.extend(f"{byte:X}" for byte in constraints)
    return ".".join(fields)


def _aac_codecs(record: bytes) -> str | None:
    """``mp4a.40.<audio object type>`` (RFC 6381 3.3) from an AudioSpecificConfig.

    The first object type in the record is the one named, so explicitly signalled
    HE-AAC is ``mp4a.40.5`` and HE-AAC v2 ``mp4a.40.29``. Backward-compatible
    (implicit) SBR stays ``mp4a.40.2``: that signalling exists so AAC-LC decoders
    can play the stream, which is what the LC string promises.
    """
    try:
        parse_aac_config(record)  # refuses truncated records and reserved rates
        bits = BitReader(record)
        object_type = bits.read_bits(5)
        if object_type == _AAC_ESCAPE_OBJECT_TYPE:
            object_type = 32 + bits.read_bits(6)
    except MediaError:
        return None
    return f"mp4a.40.{object_type}" if object_type else None
