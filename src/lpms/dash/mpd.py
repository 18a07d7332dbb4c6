"""DASH (ISO/IEC 23009-1) over a stream's CMAF segments: a dynamic MPD.

The MPD describes the very files HLS lists: every video rendition is a
`Representation` of one video `AdaptationSet`, the audio rendition one of an audio
set, each with a `SegmentTemplate` whose ``$Number$`` is the HLS media sequence
number and whose `SegmentTimeline` holds each segment's decode time and duration
from its ``tfdt`` (segments are cut at keyframes, so their durations vary).

Time: ``availabilityStartTime`` is the wall-clock time of media time 0 of the
stream's first publisher (the cutter's clock; `HLSStream.timelines`), fixed for the
stream's life. Each publisher's timeline is a `Period` that starts at its media time
0 (``Period@start`` its wall-clock time less ``availabilityStartTime``,
``presentationTimeOffset`` 0), so nothing in a Period ever moves as the window
slides, and a segment is available (DASH-IF timing model) exactly when its
wall-clock end has passed, as its HLS ``EXT-X-PROGRAM-DATE-TIME`` says. A returning
publisher (new timestamps) starts a new Period.

Once the stream has ended the MPD is static: its Periods follow one another from 0,
each with the duration of its segments, so a player (or FFmpeg) that comes after the
end plays what is listed from its start.

Pure function, no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from xml.sax.saxutils import quoteattr

from lpms.hls.cmaf import CMAFTiming
from lpms.hls.rendition import Rendition
from lpms.media.codecs import codecs_string
from lpms.media.packet import CodecConfig

PROFILES = "urn:mpeg:dash:profile:isoff-live:2011,urn:mpeg:dash:profile:cmaf:2019"
PRESENTATION_DELAY_SEGMENTS = 3
"""How far behind the live edge players are asked to play, in segment durations."""


@dataclass(frozen=True, slots=True)
class DASHSource:
    """What the MPD is made from: a stream's CMAF renditions and its clocks."""

    name: str  # the stream's NAME: segment URLs are relative to APP/
    videos: Sequence[Rendition]
    audio: Rendition | None
    timelines: dict[int, float]  # first segment number -> wall clock of media time 0
    segment_duration: float
    ended: bool


@dataclass(frozen=True, slots=True)
class _Period:
    first: int  # the first segment of its timeline (listed or not)
    wallclock: float  # of media time 0 of its timeline


@dataclass(frozen=True, slots=True)
class _Placed:
    """Where a Period is: its start and length in the presentation, and the media
    time (seconds) its start is (presentationTimeOffset)."""

    start: float
    offset: float
    duration: float | None


def render_mpd(source: DASHSource, now: float) -> str | None:
    """The MPD as of ``now`` (Unix time); None before the first segment."""
    anchor = source.videos[0] if source.videos else source.audio
    if anchor is None or not source.timelines:
        return None
    sequences = [entry.sequence for entry in anchor.entries if entry.sequence in anchor.timing]
    if not sequences:
        return None
    periods = _periods(source, anchor, sequences)
    groups = [_numbers(period, periods, sequences) for period in periods]
    availability_start = source.timelines[min(source.timelines)]
    placed = _placed(source, anchor, periods, groups, availability_start)
    target = max(anchor.target_duration, 1)
    attributes = [
        'xmlns="urn:mpeg:dash:schema:mpd:2011"',
        f'profiles="{PROFILES}"',
        f'type="{"static" if source.ended else "dynamic"}"',
        f'minBufferTime="{_duration(source.segment_duration)}"',
        f'maxSegmentDuration="{_duration(target)}"',
    ]
    if source.ended:
        total = sum(p.duration or 0.0 for p in placed)
        attributes.append(f'mediaPresentationDuration="{_duration(total)}"')
    else:
        window = len(anchor.entries) * source.segment_duration
        delay = PRESENTATION_DELAY_SEGMENTS * source.segment_duration
        attributes += [
            f'availabilityStartTime="{_date(availability_start)}"',
            f'publishTime="{_date(now)}"',
            f'timeShiftBufferDepth="{_duration(window)}"',
            f'suggestedPresentationDelay="{_duration(delay)}"',
            f'minimumUpdatePeriod="{_duration(source.segment_duration)}"',
        ]
    lines = ['<?xml version="1.0" encoding="UTF-8"?>', f"<MPD {' '.join(attributes)}>"]
    for period, numbers, place in zip(periods, groups, placed, strict=True):
        lines += _period(source, anchor, period, numbers, place)
    lines.append(f'  <UTCTiming schemeIdUri="urn:mpeg:dash:utc:direct:2014" value="{_date(now)}"/>')
    lines.append("</MPD>")
    return "\n".join(lines) + "\n"


def _periods(source: DASHSource, anchor: Rendition, sequences: list[int]) -> list[_Period]:
    """A Period per publisher timeline that has a segment listed."""
    starts = sorted(source.timelines)
    listed = {
        max((s for s in starts if s <= sequence), default=starts[0]) for sequence in sequences
    }
    return [_Period(start, source.timelines[start]) for start in starts if start in listed]


def _numbers(period: _Period, periods: list[_Period], sequences: list[int]) -> list[int]:
    following = [p.first for p in periods if p.first > period.first]
    end = min(following) if following else None
    return [s for s in sequences if s >= period.first and (end is None or s < end)]


def _placed(
    source: DASHSource,
    anchor: Rendition,
    periods: list[_Period],
    groups: list[list[int]],
    availability_start: float,
) -> list[_Placed]:
    """Live: each Period at its timeline's wall-clock start, media time 0 there. Ended:
    one after another from 0, each starting at its first segment listed."""
    placed = []
    cursor = 0.0
    for number, (period, numbers) in enumerate(zip(periods, groups, strict=True)):
        first, last = anchor.timing[numbers[0]], anchor.timing[numbers[-1]]
        media_start = first.decode_time / first.timescale
        media_end = (last.decode_time + last.decode_duration) / last.timescale
        if source.ended:
            length = media_end - media_start
            placed.append(_Placed(cursor, media_start, length))
            cursor += length
        else:
            closed = number + 1 < len(periods)
            start = max(0.0, period.wallclock - availability_start)
            placed.append(_Placed(start, 0.0, media_end if closed else None))
    return placed


def _period(
    source: DASHSource,
    anchor: Rendition,
    period: _Period,
    numbers: list[int],
    place: _Placed,
) -> list[str]:
    attributes = f'id="p{period.first}" start="{_duration(place.start)}"'
    if place.duration is not None:
        attributes += f' duration="{_duration(place.duration)}"'
    lines = [f"  <Period {attributes}>"]
    if source.videos:
        lines += _adaptation_set(0, "video", source, source.videos, anchor, place, numbers)
    if source.audio is not None and any(s in source.audio.timing for s in numbers):
        lines += _adaptation_set(1, "audio", source, [source.audio], source.audio, place, numbers)
    lines.append("  </Period>")
    return lines


def _adaptation_set(
    index: int,
    kind: str,
    source: DASHSource,
    renditions: Sequence[Rendition],
    timeline_of: Rendition,
    place: _Placed,
    numbers: list[int],
) -> list[str]:
    listed = [s for s in numbers if s in timeline_of.timing]
    if not listed:
        return []
    lines = [
        f'    <AdaptationSet id="{index}" contentType="{kind}" mimeType="{kind}/mp4" '
        'segmentAlignment="true" startWithSAP="1">'
    ]
    timings = [timeline_of.timing[s] for s in listed]
    for rendition in renditions:
        config = _config(rendition, kind)
        if config is None:
            continue
        init = next(
            (rendition.timing[s].init for s in listed if s in rendition.timing), timings[0].init
        )
        lines.append(f"      <Representation {_representation(rendition, config, kind)}>")
        lines += _template(source, rendition, init, timings, listed[0], place)
        lines.append("      </Representation>")
    lines.append("    </AdaptationSet>")
    return lines if len(lines) > 2 else []


def _config(rendition: Rendition, kind: str) -> CodecConfig | None:
    segment = rendition.last_segment
    if segment is None:
        return None
    return segment.video if kind == "video" else segment.audio


def _representation(rendition: Rendition, config: CodecConfig, kind: str) -> str:
    attributes = [
        f"id={quoteattr(rendition.name)}",
        f'bandwidth="{max(rendition.peak_bitrate, 1)}"',
    ]
    codecs = codecs_string(config.codec, config.extradata)
    if codecs:
        attributes.append(f"codecs={quoteattr(codecs)}")
    if kind == "video":
        attributes += [f'width="{config.width}"', f'height="{config.height}"']
        variant = rendition.variant("")
        if variant is not None and variant.frame_rate is not None:
            attributes.append(f'frameRate="{_frame_rate(variant.frame_rate)}"')
    elif config.sample_rate:
        attributes.append(f'audioSamplingRate="{config.sample_rate}"')
    return " ".join(attributes)


def _template(
    source: DASHSource,
    rendition: Rendition,
    init: int,
    timings: list[CMAFTiming],
    first: int,
    place: _Placed,
) -> list[str]:
    timescale = timings[0].timescale
    offset = round(place.offset * timescale)
    base = f"{source.name}/{rendition.name}/"
    initialization = base + rendition.init_uri(init)
    media = f"{base}{rendition.epoch}/$Number$.m4s"  # as `Rendition.segment_uri` names them
    lines = [
        f'        <SegmentTemplate timescale="{timescale}" presentationTimeOffset="{offset}" '
        f'startNumber="{first}" initialization={quoteattr(initialization)} '
        f"media={quoteattr(media)}>",
        "          <SegmentTimeline>",
    ]
    # Every S says where it starts: continuous, or a jump where the track's clock was
    # set anew (audio after a gap in the publisher's).
    lines += [f'            <S t="{t.decode_time}" d="{t.decode_duration}"/>' for t in timings]
    lines += ["          </SegmentTimeline>", "        </SegmentTemplate>"]
    return lines


def _duration(seconds: float) -> str:
    """xs:duration in seconds (ISO 8601 ``PT1.5S``), to the millisecond."""
    if not math.isfinite(seconds) or seconds < 0:
        seconds = 0.0
    return f"PT{seconds:.3f}".rstrip("0").rstrip(".") + "S"


def _date(unix: float) -> str:
    when = datetime.fromtimestamp(unix, UTC).replace(tzinfo=None)
    return when.isoformat(timespec="milliseconds") + "Z"


def _frame_rate(rate: float) -> str:
    """A frame rate as DASH writes it: whole (``30``) or NTSC's (``30000/1001``)."""
    if abs(rate - round(rate)) < 0.001:
        return str(round(rate))
    ntsc = round(rate * 1.001)
    if abs(rate - ntsc / 1.001) < 0.001:
        return f"{ntsc * 1000}/1001"
    return f"{rate:.3f}"
