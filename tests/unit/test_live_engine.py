"""The live ladder through the engine seam: `LiveTranscoder` with a fake engine that
answers on cue (a result, a chosen decoder configuration, an `EngineFailure`), and
once with the real local engine and its observer. What is checked is what a player
reads: the renditions' playlists, with EXT-X-GAP and EXT-X-DISCONTINUITY."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from fractions import Fraction

import m3u8  # type: ignore[import-untyped]
import pytest

from lpms.hls.segmenter import Segment
from lpms.hls.settings import HLSFormat
from lpms.hls.store import SOURCE, HLSSettings, HLSStream, Rendition
from lpms.media.packet import Codec, CodecConfig
from lpms.metrics import Metrics
from lpms.transcode.engines import Engine, EngineFailure, FailureReason
from lpms.transcode.live import LiveTranscoder, local_engine
from lpms.transcode.profiles import PRESETS, VideoProfile
from lpms.transcode.rendition import RenditionOutput
from lpms.transcode.session import TranscodeResult
from lpms.transcode.settings import Accel, TranscodeSettings
from tests.media import Part, make_clip, split_at_keyframes

WAIT = 10.0
"""Most seconds a test waits for an event it is sure of (never slept through)."""

PROFILES = (PRESETS["P360p30fps16x9"], PRESETS["P240p30fps16x9"])
HIGH = bytes.fromhex("0164001effe100")  # avcC heads: High 3.0 and Baseline 3.0
BASELINE = bytes.fromhex("0142c01effe100")
SOURCE_VIDEO = CodecConfig(Codec.H264, bytes.fromhex("0164001fffe1"), width=1280, height=720)
START = datetime(2026, 1, 1, tzinfo=UTC)


def source_segment(sequence: int, data: bytes = b"\x47" + bytes(187)) -> Segment:
    return Segment(
        sequence=sequence,
        data=data,
        duration=2.0,
        start_ms=1000 + sequence * 2000,
        program_date_time=START + timedelta(seconds=2 * sequence),
        video=SOURCE_VIDEO,
        frames=60,
    )


def canned_result(
    segment: Segment, profiles: Sequence[VideoProfile], configs: Sequence[bytes | None]
) -> TranscodeResult:
    outputs = tuple(
        RenditionOutput(
            profile=profile,
            # Marked with the sequence, so a test sees whose bytes a rendition serves.
            data=b"\x47" + segment.sequence.to_bytes(8, "big") + bytes(179),
            size=188,
            frames=60,
            keyframes=1,
            width=profile.width,
            height=profile.height,
            duration=2.0,
            video_bytes=150,
            first_keyframe=True,
            decoder_config=config,
        )
        for profile, config in zip(profiles, configs, strict=True)
    )
    return TranscodeResult(segment.sequence, 60, 60 * 1280 * 720, 2.0, 0.5, outputs)


@dataclass
class Cue:
    """How the fake answers one segment: after ``release`` (if given), with an error,
    or with these decoder configurations (one per profile)."""

    configs: tuple[bytes | None, ...] | None = None
    error: BaseException | None = None
    release: asyncio.Event | None = None


class FakeEngine:
    """A `SegmentTranscoder` that answers as its cues say and writes down everything."""

    engine = Engine.RAY

    def __init__(
        self, stream_id: str, profiles: tuple[VideoProfile, ...], cues: dict[int, Cue]
    ) -> None:
        self.stream_id = stream_id
        self.profiles = profiles
        self.cues = cues
        self.log: list[tuple[str, int]] = []  # ("call" | "answer", sequence), ("close", 0)

    @property
    def calls(self) -> list[int]:
        return [sequence for what, sequence in self.log if what == "call"]

    @property
    def closes(self) -> int:
        return sum(1 for what, _ in self.log if what == "close")

    async def transcode(self, segment: Segment) -> TranscodeResult:
        assert self.closes == 0, "called after close"
        self.log.append(("call", segment.sequence))
        cue = self.cues.get(segment.sequence, Cue())
        if cue.release is not None:
            await asyncio.wait_for(cue.release.wait(), WAIT)
        self.log.append(("answer", segment.sequence))
        if cue.error is not None:
            raise cue.error
        configs = cue.configs or (HIGH,) * len(self.profiles)
        return canned_result(segment, self.profiles, configs)

    async def close(self) -> None:
        self.log.append(("close", 0))


@dataclass
class FakeFactory:
    """An `EngineFactory` that keeps every engine it makes, by stream ID."""

    cues: dict[int, Cue] = field(default_factory=dict)
    made: list[tuple[str, tuple[VideoProfile, ...], Accel]] = field(default_factory=list)
    engines: dict[str, FakeEngine] = field(default_factory=dict)

    def __call__(
        self, stream_id: str, profiles: tuple[VideoProfile, ...], accel: Accel
    ) -> FakeEngine:
        self.made.append((stream_id, profiles, accel))
        engine = self.engines[stream_id] = FakeEngine(stream_id, profiles, self.cues)
        return engine


TRANSCODED = "(transcoded)"
"""What `Listings` files the ladder's ``on_transcoded`` under, beside rendition names."""


class Listings:
    """The HLS stream's segment listener: which rendition listed which segment, and an
    event for each new listing (gaps are not told; they land before what follows).
    Also the ladder's ``on_transcoded``: told of each result before it lands, so a
    test woken by it sees the playlists as that result left them."""

    def __init__(self) -> None:
        self.listed: list[tuple[str, int]] = []
        self._changed = asyncio.Event()

    def __call__(self, stream_id: str, rendition: Rendition, segment: Segment) -> None:
        self.listed.append((rendition.name, segment.sequence))
        self._changed.set()

    def transcoded(self, result: TranscodeResult) -> None:
        self.listed.append((TRANSCODED, result.index))  # canned results: index = sequence
        self._changed.set()

    async def wait_for(self, rendition: str, sequence: int) -> None:
        while (rendition, sequence) not in self.listed:
            self._changed.clear()
            await asyncio.wait_for(self._changed.wait(), WAIT)


@dataclass
class Ladder:
    hls: HLSStream
    factory: FakeFactory
    transcoder: LiveTranscoder
    listings: Listings
    first: int  # the first sequence number (the wall clock's seconds)

    @property
    def engine(self) -> FakeEngine:
        return self.factory.engines[self.hls.id]

    def submit(self, *offsets: int) -> None:
        for offset in offsets:
            self.transcoder.submit(source_segment(self.first + offset))

    def playlist(self, name: str) -> list[tuple[str, frozenset[str]]]:
        return listing(self.hls.rendition(name).media_playlist())


def make_ladder(
    cues: dict[int, Cue] | None = None,
    *,
    stream_id: str = "live/test",
    factory: FakeFactory | None = None,
    max_backlog: int = 10,
    on_behind: list[tuple[int, int]] | None = None,
) -> Ladder:
    """A stream with its source rendition and a ladder of `PROFILES` on a fake
    engine; cue keys are offsets from the first sequence number."""
    listings = Listings()
    hls = HLSStream(
        stream_id, HLSSettings(format=HLSFormat.TS, window=10), None, on_segment=listings
    )
    first = hls.rendition(SOURCE).next_sequence
    factory = factory if factory is not None else FakeFactory()
    factory.cues.update({first + offset: cue for offset, cue in (cues or {}).items()})
    behind = on_behind if on_behind is not None else []
    transcoder = LiveTranscoder(
        hls,
        TranscodeSettings(profiles=PROFILES, max_backlog=max_backlog),
        engine=factory,
        on_behind=lambda segment, waiting: behind.append((segment.sequence - first, waiting)),
        on_transcoded=listings.transcoded,
    )
    return Ladder(hls, factory, transcoder, listings, first)


def listing(text: str) -> list[tuple[str, frozenset[str]]]:
    """A media playlist as a player walks it: each URI with the tags that mark it
    (``GAP``, ``DISCONTINUITY``)."""
    entries: list[tuple[str, frozenset[str]]] = []
    tags: set[str] = set()
    for line in text.splitlines():
        if line in ("#EXT-X-GAP", "#EXT-X-DISCONTINUITY"):
            tags.add(line.removeprefix("#EXT-X-"))
        elif line and not line.startswith("#"):
            entries.append((line, frozenset(tags)))
            tags = set()
    return entries


def entry(ladder: Ladder, offset: int, *tags: str) -> tuple[str, frozenset[str]]:
    return (f"{ladder.first + offset}.ts", frozenset(tags))


# --- one engine per stream, segments in order ------------------------------------------


async def test_one_engine_per_stream_gets_its_segments_in_order_and_is_closed() -> None:
    factory = FakeFactory()
    one = make_ladder(stream_id="live/one", factory=factory)
    two = make_ladder(stream_id="live/two", factory=factory)
    assert [made[0] for made in factory.made] == ["live/one", "live/two"]
    assert all(made[1:] == (PROFILES, Accel.SOFTWARE) for made in factory.made)
    assert one.transcoder.engine is Engine.RAY  # the engine's, not a default
    one.submit(0, 1, 2, 3)
    two.submit(0, 1)
    one.submit(4)
    await one.listings.wait_for(PROFILES[-1].name, one.first + 4)
    await two.listings.wait_for(PROFILES[-1].name, two.first + 1)
    assert one.engine.calls == [one.first + n for n in range(5)]
    assert two.engine.calls == [two.first + n for n in range(2)]
    assert one.engine.closes == two.engine.closes == 0  # kept warm while live

    await one.transcoder.finish()
    assert one.engine.closes == 1
    assert two.engine.closes == 0  # another stream's session is its own
    await one.transcoder.finish()  # a second end changes nothing
    one.submit(5)  # nor does a late segment
    assert one.engine.closes == 1
    assert one.engine.calls == [one.first + n for n in range(5)]
    await two.transcoder.finish()
    assert len(factory.made) == 2  # made once each, never again
    for profile in PROFILES:
        assert one.playlist(profile.name) == [entry(one, n) for n in range(5)]
        assert two.playlist(profile.name) == [entry(two, n) for n in range(2)]


async def test_finish_waits_for_calls_in_flight_before_closing() -> None:
    release = asyncio.Event()
    ladder = make_ladder({0: Cue(release=release), 1: Cue(release=release)})
    ladder.submit(0, 1)
    finishing = asyncio.create_task(ladder.transcoder.finish())
    await asyncio.sleep(0)  # let it start waiting
    assert ladder.engine.closes == 0
    release.set()
    await asyncio.wait_for(finishing, WAIT)
    assert ladder.engine.log[-1] == ("close", 0)
    assert ladder.engine.log.count(("close", 0)) == 1
    assert {e for e in ladder.engine.log if e[0] == "answer"} == {
        ("answer", ladder.first),
        ("answer", ladder.first + 1),
    }
    for profile in PROFILES:
        assert ladder.playlist(profile.name) == [entry(ladder, 0), entry(ladder, 1)]


async def test_answers_out_of_order_are_listed_in_sequence_order() -> None:
    first, second = asyncio.Event(), asyncio.Event()
    ladder = make_ladder({0: Cue(release=first), 1: Cue(release=second)})
    ladder.submit(0, 1, 2)  # 2 answers at once
    second.set()
    await ladder.listings.wait_for(TRANSCODED, ladder.first + 2)
    await ladder.listings.wait_for(TRANSCODED, ladder.first + 1)
    # 1 and 2 are done, but 0 is still out: nothing may be listed before it.
    for profile in PROFILES:
        assert ladder.playlist(profile.name) == []
    first.set()
    await ladder.listings.wait_for(PROFILES[-1].name, ladder.first + 2)
    for profile in PROFILES:
        assert ladder.playlist(profile.name) == [entry(ladder, n) for n in range(3)]
    await ladder.transcoder.finish()


# --- failures: gaps in every rendition, in their turn ----------------------------------


@pytest.mark.parametrize(
    "error",
    [
        EngineFailure(FailureReason.LATE, "no answer within 4s"),
        EngineFailure(FailureReason.WORKER_LOST, "node died"),
        EngineFailure(FailureReason.UNREACHABLE, "Ray is gone"),
        EngineFailure(FailureReason.ERROR, "segment 1 is not readable media"),
    ],
    ids=lambda e: e.reason.value,
)
async def test_failed_call_is_a_gap_in_every_rendition_and_the_next_are_listed(
    error: EngineFailure, caplog: pytest.LogCaptureFixture
) -> None:
    ladder = make_ladder({1: Cue(error=error)})
    with caplog.at_level(logging.WARNING, logger="lpms.transcode.live"):
        ladder.submit(0, 1, 2, 3)
        await ladder.listings.wait_for(PROFILES[-1].name, ladder.first + 3)
    assert ladder.engine.calls == [ladder.first + n for n in range(4)]
    for profile in PROFILES:
        rendition = ladder.hls.rendition(profile.name)
        text = rendition.media_playlist()
        assert listing(text) == [
            entry(ladder, 0),
            entry(ladder, 1, "GAP"),
            entry(ladder, 2),
            entry(ladder, 3),
        ]
        assert text.count("#EXT-X-GAP") == 1
        # The gap keeps the source's place: its duration and its wall-clock time.
        parsed = m3u8.loads(text)
        assert parsed.media_sequence == ladder.first
        assert [s.duration for s in parsed.segments] == [2.0] * 4
        assert parsed.segments[1].program_date_time == START + timedelta(
            seconds=2 * ladder.first + 2
        )
        assert rendition.segment(ladder.first + 1) is None  # nothing to fetch there
        assert rendition.segment(ladder.first + 2) == (
            b"\x47" + (ladder.first + 2).to_bytes(8, "big") + bytes(179)
        )
        assert "#EXT-X-DISCONTINUITY" not in text  # same session, same parameters
    assert ladder.transcoder.stats.failed == 1
    assert ladder.transcoder.stats.transcoded == 3
    # Logged once, as a warning naming the stream, the segment and why.
    failures = [r for r in caplog.records if "failed" in r.getMessage()]
    assert len(failures) == 1
    assert failures[0].levelno == logging.WARNING
    message = failures[0].getMessage()
    assert f"live/test segment {ladder.first + 1} failed ({error.reason.value})" in message
    await ladder.transcoder.finish()


async def test_failures_at_the_ends_and_in_a_row_keep_every_rendition_in_step() -> None:
    failure = EngineFailure(FailureReason.WORKER_LOST, "node died")
    ladder = make_ladder({n: Cue(error=failure) for n in (0, 2, 3, 5)})
    ladder.submit(0, 1, 2, 3, 4, 5)
    await ladder.transcoder.finish()  # the last is a gap: nothing to wait for but the end
    expected = [
        entry(ladder, 0, "GAP"),
        entry(ladder, 1),
        entry(ladder, 2, "GAP"),
        entry(ladder, 3, "GAP"),
        entry(ladder, 4),
        entry(ladder, 5, "GAP"),
    ]
    for profile in PROFILES:
        assert ladder.playlist(profile.name) == expected
        assert ladder.hls.rendition(profile.name).next_sequence == ladder.first + 6
    assert ladder.transcoder.stats.failed == 4
    # The live playlist keeps its renditions in step to the end, gaps and all.
    for profile in PROFILES:
        ladder.hls.rendition(profile.name).end()
        assert ladder.playlist(profile.name) == expected


async def test_an_engine_bug_is_a_gap_too_and_logged_as_an_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ladder = make_ladder({0: Cue(error=RuntimeError("engine bug"))})
    with caplog.at_level(logging.WARNING, logger="lpms.transcode.live"):
        ladder.submit(0, 1)
        await ladder.listings.wait_for(PROFILES[-1].name, ladder.first + 1)
    for profile in PROFILES:
        assert ladder.playlist(profile.name) == [entry(ladder, 0, "GAP"), entry(ladder, 1)]
    (record,) = [r for r in caplog.records if "failed" in r.getMessage()]
    assert record.levelno == logging.ERROR
    assert record.exc_info is not None  # a bug keeps its traceback
    await ladder.transcoder.finish()


async def test_a_segment_left_out_behind_real_time_is_a_gap_in_its_turn() -> None:
    release = asyncio.Event()
    behind: list[tuple[int, int]] = []
    ladder = make_ladder({0: Cue(release=release)}, max_backlog=0, on_behind=behind)
    ladder.submit(0, 1)  # 0 in flight, no backlog allowed: 1 is left out
    assert behind == [(1, 1)]
    assert ladder.playlist(PROFILES[0].name) == []  # and not listed before 0
    release.set()
    await ladder.listings.wait_for(PROFILES[-1].name, ladder.first)
    assert ladder.engine.calls == [ladder.first]  # 1 was never sent
    ladder.submit(2)
    await ladder.listings.wait_for(PROFILES[-1].name, ladder.first + 2)
    for profile in PROFILES:
        assert ladder.playlist(profile.name) == [
            entry(ladder, 0),
            entry(ladder, 1, "GAP"),
            entry(ladder, 2),
        ]
    assert ladder.transcoder.stats.dropped == 1
    assert ladder.engine.calls == [ladder.first, ladder.first + 2]
    await ladder.transcoder.finish()


# --- decoder configuration changes: a discontinuity ------------------------------------


async def test_new_decoder_config_marks_a_discontinuity_in_that_rendition_only() -> None:
    # Profile 0 changes parameters at 2 (a new session); profile 1 keeps its own.
    ladder = make_ladder({2: Cue(configs=(BASELINE, HIGH)), 3: Cue(configs=(BASELINE, HIGH))})
    ladder.submit(0, 1, 2, 3)
    await ladder.listings.wait_for(PROFILES[-1].name, ladder.first + 3)
    changed = ladder.hls.rendition(PROFILES[0].name).media_playlist()
    assert listing(changed) == [
        entry(ladder, 0),
        entry(ladder, 1),
        entry(ladder, 2, "DISCONTINUITY"),
        entry(ladder, 3),
    ]
    lines = changed.splitlines()
    tag = lines.index("#EXT-X-DISCONTINUITY")
    assert lines[tag + 1].startswith("#EXT-X-PROGRAM-DATE-TIME:")
    assert lines[tag + 2].startswith("#EXTINF:2.000")
    assert lines[tag + 3] == f"{ladder.first + 2}.ts"
    parsed = m3u8.loads(changed)
    assert [s.discontinuity for s in parsed.segments] == [False, False, True, False]
    assert ladder.playlist(PROFILES[1].name) == [entry(ladder, n) for n in range(4)]
    # The master playlist describes what plays now: the new parameters' CODECS.
    master = m3u8.loads(ladder.hls.master_playlist() or "")
    codecs = {p.uri: p.stream_info.codecs for p in master.playlists}
    assert codecs[f"test/{PROFILES[0].name}.m3u8"] == "avc1.42c01e"
    assert codecs[f"test/{PROFILES[1].name}.m3u8"] == "avc1.64001e"
    await ladder.transcoder.finish()


@pytest.mark.parametrize(
    ("after_gap", "tags"),
    [(BASELINE, ("DISCONTINUITY",)), (HIGH, ())],
    ids=["new-session-after-gap", "same-session-after-gap"],
)
async def test_discontinuity_across_a_gap_follows_the_config(
    after_gap: bytes, tags: tuple[str, ...]
) -> None:
    """A lost worker: a gap, then a new session. Its segment after the gap is marked
    only if its parameters differ from the last ones listed, not from the gap."""
    lost = EngineFailure(FailureReason.WORKER_LOST, "node died")
    ladder = make_ladder({1: Cue(error=lost), 2: Cue(configs=(after_gap, after_gap))})
    ladder.submit(0, 1, 2)
    await ladder.listings.wait_for(PROFILES[-1].name, ladder.first + 2)
    for profile in PROFILES:
        assert ladder.playlist(profile.name) == [
            entry(ladder, 0),
            entry(ladder, 1, "GAP"),
            entry(ladder, 2, *tags),
        ]
    await ladder.transcoder.finish()


# --- the real local engine and its observer --------------------------------------------

TINY = (VideoProfile("tiny", 96, 64, 200_000, Fraction(24)),)


@dataclass
class RecordingObserver:
    calls: list[tuple[Engine, float]] = field(default_factory=list)
    failures: list[tuple[Engine, FailureReason]] = field(default_factory=list)
    recreated: list[Engine] = field(default_factory=list)

    def engine_call(self, engine: Engine, overhead: float) -> None:
        self.calls.append((engine, overhead))

    def engine_failure(self, engine: Engine, reason: FailureReason) -> None:
        self.failures.append((engine, reason))

    def engine_recreated(self, engine: Engine) -> None:
        self.recreated.append(engine)


@pytest.fixture(scope="module")
def tiny_segments() -> list[bytes]:
    """Two half-second MPEG-TS segments, 160x96 (transcoded in milliseconds)."""
    clip = make_clip(Part(160, 96, 1.0), fps=24, gop_frames=12, start=1.0)
    segments = split_at_keyframes(clip)
    assert len(segments) == 2
    return segments


def local_ladder(
    observer: RecordingObserver | Metrics | None, profiles: tuple[VideoProfile, ...] = TINY
) -> Ladder:
    listings = Listings()
    hls = HLSStream(
        "live/local", HLSSettings(format=HLSFormat.TS, window=10), None, on_segment=listings
    )
    first = hls.rendition(SOURCE).next_sequence
    transcoder = LiveTranscoder(
        hls,
        TranscodeSettings(profiles=profiles, max_backlog=10),
        engine=local_engine(observer=observer),
    )
    return Ladder(hls, FakeFactory(), transcoder, listings, first)


async def run_local(ladder: Ladder, segments: Sequence[bytes]) -> None:
    """Every segment through the real local engine, then the stream's end."""
    for offset, data in enumerate(segments):
        ladder.transcoder.submit(source_segment(ladder.first + offset, data))
    await ladder.transcoder.finish()  # waits (bounded) for every call in flight


def gaps(ladder: Ladder, name: str) -> list[tuple[str, bool]]:
    """Each URI a rendition lists, and whether it is a gap."""
    return [(uri, "GAP" in tags) for uri, tags in ladder.playlist(name)]


def uri(ladder: Ladder, offset: int) -> str:
    return f"{ladder.first + offset}.ts"


GARBAGE = b"\x47\x1f\xff\x10" + bytes(184)  # one TS packet of nothing: no video at all


async def test_local_engine_tells_its_observer_of_every_call(tiny_segments: list[bytes]) -> None:
    recorder, metrics = RecordingObserver(), Metrics()
    for observer in (recorder, metrics):
        ladder = local_ladder(observer)
        assert ladder.transcoder.engine is Engine.LOCAL
        await run_local(ladder, tiny_segments)
        assert gaps(ladder, "tiny") == [(uri(ladder, 0), False), (uri(ladder, 1), False)]
        assert ladder.transcoder.stats.transcoded == 2
    assert [engine for engine, _ in recorder.calls] == [Engine.LOCAL, Engine.LOCAL]
    assert all(overhead >= 0 for _, overhead in recorder.calls)
    assert recorder.failures == []
    assert recorder.recreated == []
    assert metrics.value("lpms_transcode_engine_calls_total", engine="local") == 2
    assert metrics.value("lpms_transcode_engine_overhead_seconds_count", engine="local") == 2


async def test_local_engine_segment_it_cannot_read_is_a_gap(tiny_segments: list[bytes]) -> None:
    ladder = local_ladder(None)
    await run_local(ladder, [tiny_segments[0], GARBAGE, tiny_segments[1]])
    assert gaps(ladder, "tiny") == [
        (uri(ladder, 0), False),
        (uri(ladder, 1), True),
        (uri(ladder, 2), False),  # the session goes on after a bad segment
    ]
    assert ladder.transcoder.stats.failed == 1
    assert ladder.transcoder.stats.transcoded == 2


async def test_local_engine_tells_its_observer_of_a_failure(tiny_segments: list[bytes]) -> None:
    recorder, metrics = RecordingObserver(), Metrics()
    for observer in (recorder, metrics):
        ladder = local_ladder(observer)
        await run_local(ladder, [tiny_segments[0], GARBAGE])
        assert ladder.transcoder.stats.failed == 1  # the failure itself did happen
    assert len(recorder.calls) == 1
    assert recorder.failures == [(Engine.LOCAL, FailureReason.ERROR)]
    assert (
        metrics.value("lpms_transcode_engine_failures_total", engine="local", reason="error") == 1
    )


async def test_the_ladder_makes_its_sessions_within_the_settings_caps(
    tiny_segments: list[bytes],
) -> None:
    """``max_segment_seconds`` under the half-second segments: the default (local)
    engine's session refuses each, so each is a gap and the stream goes on."""
    hls = HLSStream("live/capped", HLSSettings(format=HLSFormat.TS, window=10), None)
    settings = TranscodeSettings(profiles=TINY, max_backlog=10, max_segment_seconds=0.25)
    ladder = Ladder(hls, FakeFactory(), LiveTranscoder(hls, settings), Listings(), 0)
    ladder.first = hls.rendition(SOURCE).next_sequence
    await run_local(ladder, tiny_segments)
    assert gaps(ladder, "tiny") == [(uri(ladder, 0), True), (uri(ladder, 1), True)]
    assert ladder.transcoder.stats.failed == 2


def test_a_ray_actor_makes_its_session_within_the_caps_it_is_sent(
    tiny_segments: list[bytes],
) -> None:
    """The caps cross the wire as `asdict(TranscodeCaps)`; none is the defaults."""
    from lpms.transcode.engines.ray_bridge import SegmentActor
    from lpms.transcode.wire import ladder_to_wire

    caps = asdict(TranscodeSettings(max_segment_seconds=0.25).caps)
    refused = SegmentActor(ladder_to_wire(TINY), "software", "mpegts", caps)
    plain = SegmentActor(ladder_to_wire(TINY), "software")
    try:
        assert "0.25" in refused.transcode(tiny_segments[0])["error"]
        assert "error" not in plain.transcode(tiny_segments[0])
    finally:
        refused.close()
        plain.close()


async def test_local_session_of_a_steady_source_has_no_discontinuity() -> None:
    clip = make_clip(Part(320, 180, 4.0), fps=30, gop_frames=60, start=1.0)
    segments = split_at_keyframes(clip)
    assert len(segments) == 2
    ladder = local_ladder(None, (PRESETS["P144p30fps16x9"],))
    await run_local(ladder, segments)
    assert ladder.playlist("P144p30fps16x9") == [entry(ladder, 0), entry(ladder, 1)]
