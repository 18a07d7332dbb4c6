"""LL-HLS and DASH from a CMAF stream's renditions, fed parts and segments by hand:
what the playlists list (parts near the live edge, the segment in progress, the
next part's hint, the other renditions' edges, delta updates), what a blocking
reload waits for, and the MPD over the same segments. The `m3u8` package parses
every playlist; the rules are RFC 8216bis's."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from datetime import UTC, datetime

import m3u8
import pytest

from lpms.dash.mpd import DASHSource, render_mpd
from lpms.hls.cmaf import CMAFTiming, InitSection, MediaPart
from lpms.hls.playlist import PlaylistError
from lpms.hls.rendition import Rendition, nominal_frame_rate
from lpms.hls.segmenter import Segment
from lpms.hls.settings import HLSFormat, HLSSettings
from lpms.hls.store import AUDIO, SOURCE, HLSStream
from lpms.media.packet import Codec, CodecConfig

VIDEO = CodecConfig(Codec.H264, bytes.fromhex("0164001effe10000"), width=640, height=360)
AUDIO_CONFIG = CodecConfig(Codec.AAC, bytes.fromhex("1190"), sample_rate=48000, channels=2)
START = datetime(2026, 1, 1, tzinfo=UTC)
PARTS = 6  # a 2 s segment of 1/3 s parts
PART_SECONDS = 2 / PARTS


def init(config: CodecConfig = VIDEO, number: int = 0) -> InitSection:
    return InitSection(number, config, 90000, b"init-" + bytes([number]))


def part(sequence: int, index: int, section: InitSection | None = None) -> MediaPart:
    return MediaPart(
        sequence=sequence,
        index=index,
        data=f"{sequence}.{index};".encode(),
        duration=PART_SECONDS,
        independent=index == 0,
        init=section or init(),
        decode_time=sequence * 180000 + index * 30000,
        decode_duration=30000,
        samples=10,
        program_date_time=START if index == 0 else None,
        presentation_time=sequence * 180000 + index * 30000,
    )


def add_segment(rendition: Rendition, sequence: int, section: InitSection | None = None) -> None:
    """All of a segment's parts, then the segment (whose bytes are theirs)."""
    section = section or init()
    for index in range(PARTS):
        rendition.add_part(part(sequence, index, section))
    data = b"".join(part(sequence, i).data for i in range(PARTS))
    segment = Segment(sequence, data, 2.0, sequence * 2000, START, video=VIDEO, frames=60)
    rendition.add(segment, CMAFTiming(section.number, 90000, sequence * 180000, 180000))


def ll_rendition(window: int = 6) -> Rendition:
    return Rendition(SOURCE, HLSSettings(window=window), first_sequence=100, epoch="e0")


def parsed(text: str) -> m3u8.M3U8:
    playlist = m3u8.loads(text)
    assert playlist.is_endlist == ("#EXT-X-ENDLIST" in text)
    return playlist


def test_parts_of_the_segment_in_progress_are_listed_with_its_tags_and_a_hint() -> None:
    rendition = ll_rendition()
    add_segment(rendition, 100)
    for index in range(3):
        rendition.add_part(part(101, index))
    text = rendition.media_playlist("source/")
    playlist = parsed(text)
    assert playlist.version == 6
    assert playlist.server_control.can_block_reload == "YES"
    assert playlist.server_control.part_hold_back == pytest.approx(3 * 0.333)
    assert playlist.server_control.can_skip_until == 12
    assert playlist.part_inf.part_target == pytest.approx(0.333)
    # (The m3u8 package models the segment in progress as one without a URI.)
    assert [s.uri for s in playlist.segments if s.uri] == ["source/e0/100.m4s"]
    assert [p.uri for p in playlist.segments[0].parts] == [
        f"source/e0/100.{i}.m4s" for i in range(PARTS)
    ]
    assert [(p.uri, p.independent) for p in playlist.segments[1].parts] == [
        ("source/e0/101.0.m4s", "YES"),
        ("source/e0/101.1.m4s", None),
        ("source/e0/101.2.m4s", None),
    ]
    assert playlist.preload_hint.uri == "source/e0/101.3.m4s"
    assert playlist.segments[0].init_section.uri == "source/e0/init-0.mp4"
    # The open segment's date comes before its first part (4.4.4.9).
    lines = text.splitlines()
    first_part = next(i for i, line in enumerate(lines) if "101.0.m4s" in line)
    assert lines[first_part - 1].startswith("#EXT-X-PROGRAM-DATE-TIME:")


def test_parts_are_listed_only_near_the_live_edge() -> None:
    rendition = ll_rendition()
    for sequence in range(100, 106):
        add_segment(rendition, sequence)
    playlist = parsed(rendition.media_playlist())
    # Three target durations (6 s) from the end: the last three segments.
    assert [bool(s.parts) for s in playlist.segments] == [False] * 3 + [True] * 3


def test_parts_and_segments_are_fetchable_and_a_part_is_a_slice_of_its_segment() -> None:
    rendition = ll_rendition()
    add_segment(rendition, 100)
    rendition.add_part(part(101, 0))
    assert rendition.part(101, 0) == b"101.0;"  # the segment in progress
    assert rendition.part(100, 2) == b"100.2;"  # cut from the finished segment's bytes
    assert rendition.part(100, PARTS) is None
    assert rendition.part(99, 0) is None
    assert rendition.init(0) == b"init-\x00"


def test_what_a_blocking_reload_waits_for() -> None:
    rendition = ll_rendition()
    add_segment(rendition, 100)
    rendition.add_part(part(101, 0))
    assert rendition.has(100, None)
    assert rendition.has(100, 5)
    assert rendition.has(101, 0)
    assert not rendition.has(101, 1)
    assert not rendition.has(101, None)  # a segment is there once it is whole
    # A part past a segment's last is the first of the next (6.2.5.2).
    assert rendition.has(100, PARTS)
    assert not rendition.has(101, PARTS)


async def test_a_waiter_wakes_on_the_next_part() -> None:
    rendition = ll_rendition()
    add_segment(rendition, 100)
    waiting = asyncio.ensure_future(rendition.changed())
    await asyncio.sleep(0)
    assert not waiting.done()
    rendition.add_part(part(101, 0))
    await asyncio.wait_for(waiting, 1)


def test_rendition_reports_name_the_others_edges() -> None:
    hls = HLSStream("live/test", HLSSettings(), recorder=None)
    video, audio = hls.rendition(SOURCE), hls.rendition(AUDIO)
    add_segment(video, video.next_sequence)
    add_segment(audio, audio.next_sequence)
    audio.add_part(part(audio.next_sequence, 0))
    text = hls.media_playlist(SOURCE)
    assert text is not None
    report = parsed(text).rendition_reports[0]
    assert report.uri == "audio.m3u8"
    assert (report.last_msn, report.last_part) == (audio.next_sequence, 0)


def test_a_delta_update_skips_what_is_past_the_skip_boundary() -> None:
    rendition = ll_rendition(window=10)
    for sequence in range(100, 110):
        add_segment(rendition, sequence)
    full = parsed(rendition.media_playlist())
    delta_text = rendition.media_playlist(skip=True)
    delta = parsed(delta_text)
    # 10 segments of 2 s; the skip boundary is 12 s: the last 6 (whose ends are within
    # it) and the one that ends at it stay, 3 go.
    assert "#EXT-X-SKIP:SKIPPED-SEGMENTS=3" in delta_text
    assert delta.version == 9
    assert delta.media_sequence == full.media_sequence == 100
    assert [s.uri for s in delta.segments] == [s.uri for s in full.segments[3:]]


def test_an_ended_playlist_lists_whole_segments_and_no_hint() -> None:
    rendition = ll_rendition()
    add_segment(rendition, 100)
    rendition.add_part(part(101, 0))
    rendition.end()
    text = rendition.media_playlist()
    assert "EXT-X-PART" not in text
    assert "PRELOAD-HINT" not in text
    assert "SERVER-CONTROL" not in text
    assert parsed(text).is_endlist


def test_a_new_configuration_is_a_new_map() -> None:
    rendition = ll_rendition()
    add_segment(rendition, 100)
    add_segment(rendition, 101, init(VIDEO, 1))
    playlist = parsed(rendition.media_playlist())
    assert [s.init_section.uri for s in playlist.segments] == ["e0/init-0.mp4", "e0/init-1.mp4"]


def test_master_playlist_offers_the_audio_rendition_to_every_variant() -> None:
    hls = HLSStream("live/test", HLSSettings(), recorder=None)
    add_segment(hls.rendition(SOURCE), hls.rendition(SOURCE).next_sequence)
    audio = hls.rendition(AUDIO)
    segment = Segment(audio.next_sequence, b"a" * 24000, 2.0, 0, START, audio=AUDIO_CONFIG)
    audio.add(segment, CMAFTiming(0, 48000, 0, 96000))
    master = m3u8.loads(hls.master_playlist() or "")
    [variant] = master.playlists
    assert variant.uri == "test/source.m3u8"
    assert variant.stream_info.audio == "audio"
    assert variant.stream_info.codecs == "avc1.64001e,mp4a.40.2"
    assert variant.stream_info.frame_rate == 30.0
    [media] = master.media
    assert (media.type, media.group_id, media.uri) == ("AUDIO", "audio", "test/audio.m3u8")


@pytest.mark.parametrize(
    ("measured", "nominal"),
    [
        (29.412, 30.0),
        (30.5, 30.0),
        (29.97, 29.97),
        (25.2, 25.0),
        (59.94, 59.94),
        (17.3, 17.3),
    ],
)
def test_frame_rate_is_the_nominal_one(measured: float, nominal: float) -> None:
    assert nominal_frame_rate(measured) == nominal


def test_a_part_target_longer_than_the_target_duration_is_refused() -> None:
    rendition = ll_rendition()
    rendition.part_target = 5.0
    add_segment(rendition, 100)
    with pytest.raises(PlaylistError, match="part target"):
        rendition.media_playlist()


# -- DASH -----------------------------------------------------------------------------------


def test_the_mpd_lists_the_same_segments_with_their_clock() -> None:
    hls = HLSStream("live/test", HLSSettings(), recorder=None)
    video, audio = hls.rendition(SOURCE), hls.rendition(AUDIO)
    first = video.next_sequence
    hls.timelines[first] = 1_700_000_000.0
    for sequence in range(first, first + 3):
        add_segment(video, sequence)
        segment = Segment(sequence, b"a" * 24000, 2.0, 0, START, audio=AUDIO_CONFIG)
        audio.add(segment, CMAFTiming(0, 48000, (sequence - first) * 96000, 96000))
    source = DASHSource("test", [video], audio, hls.timelines, 2.0, ended=False)
    text = render_mpd(source, 1_700_000_010.0)
    assert text is not None
    namespace = {"d": "urn:mpeg:dash:schema:mpd:2011"}
    mpd = ET.fromstring(text)
    assert mpd.get("type") == "dynamic"
    assert mpd.get("availabilityStartTime") == "2023-11-14T22:13:20.000Z"
    [period] = mpd.findall("d:Period", namespace)
    assert period.get("start") == "PT0S"
    sets = period.findall("d:AdaptationSet", namespace)
    assert [s.get("contentType") for s in sets] == ["video", "audio"]
    template = sets[0].find("d:Representation/d:SegmentTemplate", namespace)
    assert template is not None
    assert template.get("startNumber") == str(first)
    assert template.get("media") == "test/source/e0/$Number$.m4s".replace("e0", video.epoch)
    assert template.get("initialization") == f"test/source/{video.epoch}/init-0.mp4"
    times = [
        (int(s.get("t", 0)), int(s.get("d", 0)))
        for s in template.findall("d:SegmentTimeline/d:S", namespace)
    ]
    assert times == [(s * 180000, 180000) for s in range(first, first + 3)]
    representation = sets[0].find("d:Representation", namespace)
    assert representation is not None
    assert representation.get("codecs") == "avc1.64001e"
    assert representation.get("frameRate") == "30"


def test_an_ended_stream_has_a_static_mpd_that_starts_at_its_first_segment() -> None:
    """A player that comes after the end plays what is listed from its start."""
    hls = HLSStream("live/test", HLSSettings(), recorder=None)
    video = hls.rendition(SOURCE)
    first = video.next_sequence
    hls.timelines[first] = 1_700_000_000.0
    for sequence in range(first, first + 2):
        add_segment(video, sequence)
    source = DASHSource("test", [video], None, hls.timelines, 2.0, ended=True)
    mpd = ET.fromstring(render_mpd(source, 1_700_000_010.0) or "")
    namespace = {"d": "urn:mpeg:dash:schema:mpd:2011"}
    assert mpd.get("type") == "static"
    assert mpd.get("mediaPresentationDuration") == "PT4S"
    assert "minimumUpdatePeriod" not in mpd.attrib
    period = mpd.find("d:Period", namespace)
    assert period is not None
    assert (period.get("start"), period.get("duration")) == ("PT0S", "PT4S")
    template = period.find("d:AdaptationSet/d:Representation/d:SegmentTemplate", namespace)
    assert template is not None
    assert template.get("presentationTimeOffset") == str(first * 180000)


# -- read pacing ---------------------------------------------------------------------------


def test_low_latency_hls_reads_publishers_three_times_a_part() -> None:
    """A part is listed when the frame after it is read: RTMP read pacing of 0.2 s
    would hold parts back by up to that long, so LL-HLS reads more often."""
    from lpms import LPMS, Settings
    from lpms.rtmp.settings import ListenerSettings

    assert HLSSettings().max_read_interval == pytest.approx(0.333 / 3)
    assert HLSSettings(part_duration=0.5).max_read_interval == pytest.approx(0.5 / 3)
    assert HLSSettings(format=HLSFormat.TS).max_read_interval is None
    assert HLSSettings(low_latency=False).max_read_interval is None
    assert HLSSettings(enabled=False).max_read_interval is None

    def read_interval(settings: Settings) -> float:
        server = LPMS(host="127.0.0.1", rtmp_port=0, http_port=0, settings=settings)
        return server._listener_settings().read_interval

    assert read_interval(Settings()) == pytest.approx(0.111)
    assert read_interval(Settings(hls=HLSSettings(format=HLSFormat.TS))) == 0.2
    # A shorter interval than LL-HLS needs is kept.
    assert read_interval(Settings(rtmp=ListenerSettings(read_interval=0.05))) == 0.05
