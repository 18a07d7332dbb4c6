"""HLS playlists (RFC 8216) as text, from plain descriptions of segments and variants.

Pure functions, no I/O: the store decides what a playlist lists and when; this module
only writes it, the same way every time, so Safari, hls.js, ExoPlayer and FFmpeg all
read the same thing. It refuses input that would make a playlist lie to a player (a
segment longer than the target duration promised, a gap in media sequence numbers, a
URI that is not a relative path inside the stream's folder) with `PlaylistError`,
because a player fed such a playlist stalls or skips instead of failing loudly.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Final, Literal

from lpms.errors import HLSError

# Version 3 is the first with decimal-floating-point EXTINF durations (RFC 8216 section
# 7); MPEG-TS playlists need nothing more, and older players accept it. EXT-X-MAP in a
# playlist of whole segments needs 6, EXT-X-SKIP (a delta update) 9 (RFC 8216bis 8); a
# playlist says no more than it needs (6.2.1).
PROTOCOL_VERSION: Final = 3
MAP_VERSION: Final = 6
SKIP_VERSION: Final = 9

PlaylistType = Literal["EVENT", "VOD"]

# RFC 3986 scheme: a URI that starts with one is absolute, not relative.
_SCHEME: Final = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")
# No control characters (a newline would end the URI line and start a forged tag),
# no whitespace (not allowed in a URI, and trimmed differently by each player).
_UNSAFE_CHARACTER: Final = re.compile(r"[\x00-\x20\x7f]")
_UNSAFE_CODECS_CHARACTER: Final = re.compile(r'[\x00-\x1f\x7f",]')
_CONTROL_CHARACTER: Final = re.compile(r"[\x00-\x1f\x7f]")


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
    map_uri: str | None = None  # its init segment (fMP4): EXT-X-MAP where it changes
    parts: tuple[PartEntry, ...] = ()  # listed with EXT-X-PART while near the live edge


@dataclass(frozen=True, slots=True)
class PartEntry:
    """One LL-HLS part (RFC 8216bis 4.4.4.9): a stretch of its segment, shorter than
    the part target, ``independent`` when it starts with a keyframe."""

    uri: str
    duration: float
    independent: bool = False
    gap: bool = False


@dataclass(frozen=True, slots=True)
class OpenSegment:
    """The segment still being cut: its parts so far, and the tags that must come
    before its first one (4.4.4.9: DISCONTINUITY, MAP and PROGRAM-DATE-TIME)."""

    parts: tuple[PartEntry, ...]
    program_date_time: datetime | None = None
    discontinuity: bool = False
    map_uri: str | None = None


@dataclass(frozen=True, slots=True)
class RenditionReport:
    """Another rendition's live edge (4.4.5.4), so a player can switch without a
    playlist request first: its last segment's number, or its last part's."""

    uri: str
    last_msn: int
    last_part: int | None = None


@dataclass(frozen=True, slots=True)
class LowLatency:
    """What makes a media playlist low-latency (RFC 8216bis): the part target, the
    segment in progress and the next part's hint, and the other renditions' edges.
    ``skipped``: segments left out of a delta update (``_HLS_skip=YES``)."""

    part_target: float
    open_segment: OpenSegment | None = None
    preload_hint: str | None = None
    reports: tuple[RenditionReport, ...] = ()
    skipped: int = 0

    @property
    def part_hold_back(self) -> float:
        """3 part targets: the spec's SHOULD (4.4.3.8), enough for a player to
        always have the next part hinted or listed."""
        return 3 * self.part_target


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
    audio_group: str | None = None  # AUDIO: the EXT-X-MEDIA group it plays with


@dataclass(frozen=True, slots=True)
class AudioGroup:
    """An audio rendition (RFC 8216 4.3.4.1 EXT-X-MEDIA, TYPE=AUDIO) that every video
    variant names in its AUDIO attribute: the stream's one audio track, served apart
    from the video (CMAF)."""

    group_id: str
    name: str
    uri: str


# -- media playlists ---------------------------------------------------------------


def render_media_playlist(
    segments: Sequence[SegmentEntry],
    *,
    target_duration: int,
    discontinuity_sequence: int = 0,
    ended: bool = False,
    playlist_type: PlaylistType | None = None,
    low_latency: LowLatency | None = None,
) -> str:
    """The text of a media playlist (RFC 8216 4.3.3) listing ``segments`` in order;
    with ``low_latency``, an LL-HLS one (RFC 8216bis): parts of the segments near the
    live edge (those given ``parts``), the segment in progress, and its next part's
    hint. An ended playlist lists whole segments only.

    ``target_duration`` is what the caller has promised so far: RFC 8216 6.2.1 forbids
    changing it during a stream, so it is not derived here from the segments listed
    (see `target_duration_for`). Segments must carry consecutive sequence numbers: a
    player numbers them from EXT-X-MEDIA-SEQUENCE (RFC 8216 6.3.2), so a gap would
    give later segments the wrong numbers on the next reload.
    """
    _check_media_header(target_duration, discontinuity_sequence, ended, playlist_type)
    skipped = low_latency.skipped if low_latency is not None else 0
    media_sequence = segments[0].sequence - skipped if segments else 0
    fmp4 = any(segment.map_uri for segment in segments)
    version = SKIP_VERSION if skipped else MAP_VERSION if fmp4 else PROTOCOL_VERSION
    lines = [
        "#EXTM3U",
        f"#EXT-X-VERSION:{version}",
        f"#EXT-X-TARGETDURATION:{target_duration}",
    ]
    if low_latency is not None and not ended:
        lines += _low_latency_header(low_latency, target_duration)
    lines.append(f"#EXT-X-MEDIA-SEQUENCE:{media_sequence}")
    if discontinuity_sequence:
        lines.append(f"#EXT-X-DISCONTINUITY-SEQUENCE:{discontinuity_sequence}")
    if playlist_type is not None:
        lines.append(f"#EXT-X-PLAYLIST-TYPE:{playlist_type}")
    # Every segment starts with a keyframe and its decoder configuration.
    lines.append("#EXT-X-INDEPENDENT-SEGMENTS")
    if skipped:
        lines.append(f"#EXT-X-SKIP:SKIPPED-SEGMENTS={skipped}")
    current_map: str | None = None
    for index, segment in enumerate(segments):
        _check_sequence(segment, media_sequence + skipped + index)
        if segment.map_uri is not None and segment.map_uri != current_map:
            current_map = segment.map_uri
            segment = dataclasses.replace(segment, map_uri=current_map)
        else:
            segment = dataclasses.replace(segment, map_uri=None)
        lines.extend(_segment_lines(segment, target_duration, with_parts=not ended))
    if low_latency is not None and not ended:
        lines += _live_edge_lines(low_latency, current_map)
    if ended:
        lines.append("#EXT-X-ENDLIST")
    return _text(lines)


def _low_latency_header(low_latency: LowLatency, target_duration: int) -> list[str]:
    """EXT-X-SERVER-CONTROL (4.4.3.8) and EXT-X-PART-INF (4.4.3.7). Every media
    playlist of a stream says the same here (6.2.4): the values depend only on the
    target durations, which are the same for all of a stream's renditions."""
    part_target = _decimal(low_latency.part_target, "part target")
    if low_latency.part_target <= 0 or low_latency.part_target > target_duration:
        raise PlaylistError(f"part target {part_target} must be in (0, {target_duration}] s")
    return [
        "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,"
        f"CAN-SKIP-UNTIL={_decimal(6.0 * target_duration, 'skip boundary')},"
        f"PART-HOLD-BACK={_decimal(low_latency.part_hold_back, 'part hold back')}",
        f"#EXT-X-PART-INF:PART-TARGET={part_target}",
    ]


def _live_edge_lines(low_latency: LowLatency, current_map: str | None) -> list[str]:
    """The segment in progress (its tags, then its parts), the next part's hint, and
    the other renditions' reports."""
    lines: list[str] = []
    open_segment = low_latency.open_segment
    if open_segment is not None and open_segment.parts:
        lines += _head_lines(
            open_segment.discontinuity,
            open_segment.map_uri if open_segment.map_uri != current_map else None,
            open_segment.program_date_time,
            open_segment.parts,
            "segment in progress",
        )
    if low_latency.preload_hint is not None:
        uri = _checked_uri(low_latency.preload_hint)
        lines.append(f'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="{uri}"')
    for report in low_latency.reports:
        attributes = f'URI="{_checked_uri(report.uri)}",LAST-MSN={report.last_msn}'
        if report.last_part is not None:
            attributes += f",LAST-PART={report.last_part}"
        lines.append(f"#EXT-X-RENDITION-REPORT:{attributes}")
    return lines


def _part_line(part: PartEntry) -> str:
    duration = _extinf_duration(part.duration, part.uri)
    attributes = f'DURATION={duration},URI="{_checked_uri(part.uri)}"'
    if part.independent:
        attributes += ",INDEPENDENT=YES"
    if part.gap:
        attributes += ",GAP=YES"
    return f"#EXT-X-PART:{attributes}"


def _decimal(seconds: float, what: str) -> str:
    if not math.isfinite(seconds) or seconds <= 0:
        raise PlaylistError(f"{what} must be a positive number of seconds, not {seconds}")
    return f"{seconds:.3f}".rstrip("0").rstrip(".")


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


def _segment_lines(
    segment: SegmentEntry, target_duration: int, with_parts: bool = True
) -> list[str]:
    duration = _extinf_duration(segment.duration, segment.uri)
    if _rounded_seconds(duration) > target_duration:
        raise PlaylistError(
            f"segment {segment.uri!r}: {duration} s is longer than the target duration "
            f"{target_duration} s allows (RFC 8216 4.3.3.1)"
        )
    lines = _head_lines(
        segment.discontinuity,
        segment.map_uri,
        segment.program_date_time,
        segment.parts if with_parts else (),
        segment.uri,
    )
    if segment.gap:
        lines.append("#EXT-X-GAP")
    lines.append(f"#EXTINF:{duration},")
    lines.append(_checked_uri(segment.uri))
    return lines


def _head_lines(
    discontinuity: bool,
    map_uri: str | None,
    program_date_time: datetime | None,
    parts: Sequence[PartEntry],
    where: str,
) -> list[str]:
    """The tags a segment opens with, then its parts (RFC 8216bis 4.4.4.9): a whole
    segment's, before its EXTINF, or the one in progress's, which has none yet."""
    lines = []
    if discontinuity:
        lines.append("#EXT-X-DISCONTINUITY")
    if map_uri is not None:
        lines.append(f'#EXT-X-MAP:URI="{_checked_uri(map_uri)}"')
    if program_date_time is not None:
        lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{_program_date_time(program_date_time, where)}")
    lines.extend(_part_line(part) for part in parts)
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


def render_master_playlist(variants: Sequence[Variant], audio: AudioGroup | None = None) -> str:
    """The text of a master playlist (RFC 8216 4.3.4) offering ``variants`` in order,
    with ``audio`` as their audio rendition.

    Players start with the first variant listed, so the caller's order is kept.
    """
    if not variants:
        raise PlaylistError("a master playlist needs at least one variant")
    lines = ["#EXTM3U", f"#EXT-X-VERSION:{PROTOCOL_VERSION}", "#EXT-X-INDEPENDENT-SEGMENTS"]
    if audio is not None:
        lines.append(
            f'#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="{_checked_name(audio.group_id)}",'
            f'NAME="{_checked_name(audio.name)}",DEFAULT=YES,AUTOSELECT=YES,'
            f'URI="{_checked_uri(audio.uri)}"'
        )
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
    if variant.audio_group is not None:
        attributes.append(f'AUDIO="{_checked_name(variant.audio_group)}"')
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
