"""Playlists are checked by reading them back with independent parsers: the ``m3u8``
package for every field, FFmpeg (through PyAV) for playback, and real encoders for the
codec strings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from fractions import Fraction
from pathlib import Path

import av
import m3u8
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lpms.errors import HLSError, LPMSError
from lpms.hls.playlist import (
    PlaylistError,
    SegmentEntry,
    Variant,
    render_master_playlist,
    render_media_playlist,
    target_duration_for,
)

# EXTINF is written with three decimals; the float subtraction adds a few ulps.
_EXTINF_TOLERANCE = 0.0005 + 1e-9
_START = datetime(2024, 5, 1, 12, 0, 0, 123000, tzinfo=UTC)


def _segments(durations: list[float], first_sequence: int = 0) -> list[SegmentEntry]:
    return [
        SegmentEntry(uri=f"{first_sequence + i}.ts", duration=d, sequence=first_sequence + i)
        for i, d in enumerate(durations)
    ]


# -- media playlists ------------------------------------------------------------------


def test_media_playlist_text_is_exact() -> None:
    segments = [
        SegmentEntry("7.ts", 2.0, 7, program_date_time=_START),
        SegmentEntry("8.ts", 1.9996, 8, discontinuity=True),
    ]
    text = render_media_playlist(segments, target_duration=2, discontinuity_sequence=1)
    assert text == (
        "#EXTM3U\n"
        "#EXT-X-VERSION:3\n"
        "#EXT-X-TARGETDURATION:2\n"
        "#EXT-X-MEDIA-SEQUENCE:7\n"
        "#EXT-X-DISCONTINUITY-SEQUENCE:1\n"
        "#EXT-X-INDEPENDENT-SEGMENTS\n"
        "#EXT-X-PROGRAM-DATE-TIME:2024-05-01T12:00:00.123Z\n"
        "#EXTINF:2.000,\n"
        "7.ts\n"
        "#EXT-X-DISCONTINUITY\n"
        "#EXTINF:2.000,\n"
        "8.ts\n"
    )


def test_media_playlist_parses_back_with_every_field() -> None:
    segments = [
        SegmentEntry("a/40.ts", 4.0, 40, program_date_time=_START),
        SegmentEntry("a/41.ts", 3.52, 41, program_date_time=_START + timedelta(seconds=4)),
        SegmentEntry(
            "a/42.ts",
            0.04,
            42,
            program_date_time=_START + timedelta(seconds=60),
            discontinuity=True,
        ),
    ]
    text = render_media_playlist(
        segments,
        target_duration=4,
        discontinuity_sequence=3,
        ended=True,
        playlist_type="VOD",
    )
    playlist = m3u8.loads(text)
    assert playlist.version == 3
    assert playlist.target_duration == 4
    assert playlist.media_sequence == 40
    assert playlist.discontinuity_sequence == 3
    assert playlist.playlist_type == "vod"
    assert playlist.is_endlist
    assert playlist.is_independent_segments
    assert [s.uri for s in playlist.segments] == ["a/40.ts", "a/41.ts", "a/42.ts"]
    assert [s.duration for s in playlist.segments] == [4.0, 3.52, 0.04]
    assert [s.discontinuity for s in playlist.segments] == [False, False, True]
    assert [s.program_date_time for s in playlist.segments] == [
        s.program_date_time for s in segments
    ]


def test_live_playlist_has_only_the_tags_it_needs() -> None:
    text = render_media_playlist(_segments([2.0, 2.0], 5), target_duration=2)
    playlist = m3u8.loads(text)
    assert not playlist.is_endlist
    assert playlist.playlist_type is None
    assert playlist.discontinuity_sequence is None
    assert "#EXT-X-DISCONTINUITY" not in text
    assert "#EXT-X-PROGRAM-DATE-TIME" not in text
    assert text.endswith("5.ts\n#EXTINF:2.000,\n6.ts\n")


def test_event_playlist() -> None:
    text = render_media_playlist(_segments([1.0]), target_duration=1, playlist_type="EVENT")
    playlist = m3u8.loads(text)
    assert playlist.playlist_type == "event"
    assert not playlist.is_endlist


def test_empty_playlist_starts_at_sequence_zero() -> None:
    playlist = m3u8.loads(render_media_playlist([], target_duration=6, ended=True))
    assert playlist.media_sequence == 0
    assert playlist.target_duration == 6
    assert playlist.segments == []
    assert playlist.is_endlist


def test_program_date_time_is_written_in_utc_with_milliseconds() -> None:
    eastern = timezone(timedelta(hours=-5))
    when = datetime(2024, 5, 1, 7, 0, 0, 123456, tzinfo=eastern)
    text = render_media_playlist(
        [SegmentEntry("0.ts", 1.0, 0, program_date_time=when)], target_duration=1
    )
    assert "#EXT-X-PROGRAM-DATE-TIME:2024-05-01T12:00:00.123Z\n" in text
    assert m3u8.loads(text).segments[0].program_date_time == _START


# -- target durations -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("durations", "target"),
    [
        ([0.5], 1),
        ([1.5], 2),
        ([2.5], 3),  # round half up, not Python's round-half-to-even (2)
        ([3.5], 4),
        ([2.499], 2),
        ([2.4994], 2),  # written "2.499"
        ([2.4996], 3),  # written "2.500", which is what players round
        ([2.5004], 3),
        ([1.0, 2.49, 1.7], 2),
        ([6.0], 6),
    ],
)
def test_target_duration_rounds_halves_up(durations: list[float], target: int) -> None:
    assert target_duration_for(durations, minimum=1) == target
    # The target chosen is one the renderer accepts, and one less is refused.
    render_media_playlist(_segments(durations), target_duration=target)
    if target > 1:
        with pytest.raises(PlaylistError, match="longer than the target duration"):
            render_media_playlist(_segments(durations), target_duration=target - 1)


def test_target_duration_never_below_minimum() -> None:
    assert target_duration_for([], minimum=4) == 4
    assert target_duration_for([1.2, 3.49], minimum=4) == 4
    assert target_duration_for([4.51], minimum=4) == 5
    assert target_duration_for(iter([0.2, 0.3]), 1) == 1


def test_target_duration_refuses_negative_durations() -> None:
    with pytest.raises(PlaylistError):
        target_duration_for([-1.0], minimum=1)


# -- errors ---------------------------------------------------------------------------


def test_playlist_error_is_a_value_error_of_the_hls_layer() -> None:
    assert issubclass(PlaylistError, ValueError)
    assert issubclass(PlaylistError, HLSError)
    assert issubclass(PlaylistError, LPMSError)


def test_segment_longer_than_target_is_refused() -> None:
    with pytest.raises(PlaylistError, match=r"'0\.ts'"):
        render_media_playlist(_segments([2.5]), target_duration=2)


@pytest.mark.parametrize("sequences", [[3, 5], [3, 3], [4, 3], [-1, 0]])
def test_non_consecutive_sequences_are_refused(sequences: list[int]) -> None:
    segments = [SegmentEntry(f"{s}.ts", 1.0, s) for s in sequences]
    with pytest.raises(PlaylistError, match="sequence"):
        render_media_playlist(segments, target_duration=1)


@pytest.mark.parametrize("duration", [-0.001, -1.0, float("nan"), float("inf")])
def test_bad_durations_are_refused(duration: float) -> None:
    with pytest.raises(PlaylistError, match="duration"):
        render_media_playlist(_segments([duration]), target_duration=10)


@pytest.mark.parametrize(
    "uri",
    [
        "",
        "1.ts\n#EXT-X-ENDLIST",
        "1.ts\r",
        "a b.ts",
        "/live/1.ts",
        "\\live\\1.ts",
        "//cdn.example/1.ts",
        "http://example.com/1.ts",
        "file:1.ts",
        "C:1.ts",
        "../1.ts",
        "a/../../1.ts",
        "..",
        "#1.ts",
    ],
)
def test_unsafe_uris_are_refused(uri: str) -> None:
    with pytest.raises(PlaylistError, match="URI"):
        render_media_playlist([SegmentEntry(uri, 1.0, 0)], target_duration=1)
    with pytest.raises(PlaylistError, match="URI"):
        render_master_playlist([Variant(uri, 1000)])


@pytest.mark.parametrize("uri", ["1.ts", "live/cam/1.ts", "1.ts?token=a:b", "a..b/1.ts", "./1.ts"])
def test_relative_uris_are_accepted(uri: str) -> None:
    text = render_media_playlist([SegmentEntry(uri, 1.0, 0)], target_duration=1)
    assert m3u8.loads(text).segments[0].uri == uri


def test_naive_program_date_time_is_refused() -> None:
    segment = SegmentEntry("0.ts", 1.0, 0, program_date_time=datetime(2024, 5, 1))
    with pytest.raises(PlaylistError, match="time zone"):
        render_media_playlist([segment], target_duration=1)


@pytest.mark.parametrize(
    "options",
    [
        {"target_duration": 0},
        {"target_duration": 2, "discontinuity_sequence": -1},
        {"target_duration": 2, "playlist_type": "LIVE"},
        {"target_duration": 2, "playlist_type": "VOD", "ended": False},
    ],
)
def test_bad_playlist_options_are_refused(options: dict[str, object]) -> None:
    with pytest.raises(PlaylistError):
        render_media_playlist(_segments([1.0]), **options)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "variant",
    [
        Variant("v.m3u8", 0),
        Variant("v.m3u8", 1000, average_bandwidth=0),
        Variant("v.m3u8", 1000, resolution=(0, 720)),
        Variant("v.m3u8", 1000, codecs='avc1.64001f"'),
        Variant("v.m3u8", 1000, codecs="avc1.64001f,"),
        Variant("v.m3u8", 1000, codecs=""),
        Variant("v.m3u8", 1000, frame_rate=0.0),
        Variant("v.m3u8", 1000, frame_rate=float("nan")),
        Variant("v.m3u8", 1000, name="a\n#EXT-X-ENDLIST"),
    ],
)
def test_bad_variants_are_refused(variant: Variant) -> None:
    with pytest.raises(PlaylistError):
        render_master_playlist([variant])


def test_master_playlist_needs_a_variant() -> None:
    with pytest.raises(PlaylistError):
        render_master_playlist([])


# -- master playlists -----------------------------------------------------------------


def test_master_playlist_text_is_exact() -> None:
    variants = [
        Variant(
            "live/source.m3u8",
            bandwidth=2_500_000,
            average_bandwidth=2_000_000,
            resolution=(1280, 720),
            codecs="avc1.64001f,mp4a.40.2",
            frame_rate=30000 / 1001,
            name="source",
        ),
        Variant("live/audio.m3u8", bandwidth=128_000),
    ]
    assert render_master_playlist(variants) == (
        "#EXTM3U\n"
        "#EXT-X-VERSION:3\n"
        "#EXT-X-INDEPENDENT-SEGMENTS\n"
        "# source\n"
        "#EXT-X-STREAM-INF:BANDWIDTH=2500000,AVERAGE-BANDWIDTH=2000000,"
        'RESOLUTION=1280x720,CODECS="avc1.64001f,mp4a.40.2",FRAME-RATE=29.970\n'
        "live/source.m3u8\n"
        "#EXT-X-STREAM-INF:BANDWIDTH=128000\n"
        "live/audio.m3u8\n"
    )


def test_master_playlist_parses_back_in_order() -> None:
    variants = [
        Variant("s/source.m3u8", 6_000_000, 5_000_000, (1920, 1080), "hvc1.1.6.L93.90", 50.0),
        Variant("s/720p.m3u8", 3_000_000, None, (1280, 720), "avc1.64001f,mp4a.40.2", 25.0),
        Variant("s/240p.m3u8", 400_000, 350_000, (426, 240), None, None, name="240p"),
    ]
    playlist = m3u8.loads(render_master_playlist(variants))
    assert playlist.is_variant
    assert playlist.is_independent_segments
    assert [p.uri for p in playlist.playlists] == [v.uri for v in variants]
    infos = [p.stream_info for p in playlist.playlists]
    assert [i.bandwidth for i in infos] == [v.bandwidth for v in variants]
    assert [i.average_bandwidth for i in infos] == [v.average_bandwidth for v in variants]
    assert [i.resolution for i in infos] == [v.resolution for v in variants]
    assert [i.codecs for i in infos] == [v.codecs for v in variants]
    assert [i.frame_rate for i in infos] == [v.frame_rate for v in variants]


# -- properties -----------------------------------------------------------------------

_path_parts = st.from_regex(r"[A-Za-z0-9_~-][A-Za-z0-9._~-]{0,11}", fullmatch=True).filter(
    lambda part: part != ".."
)
_uris = st.lists(_path_parts, min_size=1, max_size=3).map("/".join)
_durations = st.floats(min_value=0.0, max_value=120.0, allow_nan=False)
_dates = st.none() | st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)
_entries = st.lists(st.tuples(_uris, _durations, _dates, st.booleans()), max_size=30)


@given(
    entries=_entries,
    first_sequence=st.integers(min_value=0, max_value=2**40),
    minimum=st.integers(min_value=1, max_value=10),
    ended=st.booleans(),
)
def test_rendered_playlists_parse_back(
    entries: list[tuple[str, float, datetime | None, bool]],
    first_sequence: int,
    minimum: int,
    ended: bool,
) -> None:
    segments = [
        SegmentEntry(uri, duration, first_sequence + i, when, discontinuity)
        for i, (uri, duration, when, discontinuity) in enumerate(entries)
    ]
    target = target_duration_for([s.duration for s in segments], minimum)
    text = render_media_playlist(segments, target_duration=target, ended=ended)

    playlist = m3u8.loads(text)
    assert playlist.target_duration == target
    assert playlist.media_sequence == (first_sequence if segments else 0)
    assert playlist.is_endlist == ended
    assert [s.uri for s in playlist.segments] == [s.uri for s in segments]
    for parsed, segment in zip(playlist.segments, segments, strict=True):
        assert parsed.duration == pytest.approx(segment.duration, abs=_EXTINF_TOLERANCE)
        assert parsed.discontinuity == segment.discontinuity
        expected_when = segment.program_date_time
        if expected_when is not None:
            expected_when = expected_when.replace(
                microsecond=expected_when.microsecond // 1000 * 1000
            )
        assert parsed.program_date_time == expected_when


# -- FFmpeg reads what is written -----------------------------------------------------

_FRAMES_PER_SEGMENT = 10
_FRAME_RATE = 25


def _write_ts_segment(path: Path, first_frame: int) -> None:
    """A tiny MPEG-TS segment that starts with a keyframe, timestamps continuing
    from the previous segment as the segmenter's do."""
    with av.open(str(path), "w", format="mpegts") as container:
        stream = container.add_stream("libx264", rate=_FRAME_RATE)
        stream.width = 64
        stream.height = 48
        stream.pix_fmt = "yuv420p"
        stream.codec_context.time_base = Fraction(1, _FRAME_RATE)
        for index in range(_FRAMES_PER_SEGMENT):
            frame = av.VideoFrame(64, 48, "yuv420p")
            frame.pts = first_frame + index
            frame.time_base = Fraction(1, _FRAME_RATE)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def test_ffmpeg_plays_a_rendered_playlist(tmp_path: Path) -> None:
    segment_duration = _FRAMES_PER_SEGMENT / _FRAME_RATE
    segments = []
    for sequence in range(2):
        uri = f"{sequence}.ts"
        _write_ts_segment(tmp_path / uri, sequence * _FRAMES_PER_SEGMENT)
        segments.append(
            SegmentEntry(
                uri,
                segment_duration,
                sequence,
                program_date_time=_START + timedelta(seconds=sequence * segment_duration),
            )
        )
    text = render_media_playlist(
        segments,
        target_duration=target_duration_for([segment_duration], minimum=1),
        ended=True,
        playlist_type="VOD",
    )
    playlist_path = tmp_path / "index.m3u8"
    playlist_path.write_text(text)

    with av.open(str(playlist_path)) as container:
        assert container.format.name == "hls"
        frames = sum(1 for _ in container.decode(video=0))
    assert frames == 2 * _FRAMES_PER_SEGMENT
