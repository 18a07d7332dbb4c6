"""One rendition of a stream: a media playlist, the segments (and LL-HLS parts and
init segments) it lists, and who waits for the next of them.

Segments are files (see `lpms.hls.disk`), served with sendfile; a segment's bytes
stay in memory only while its file is being written (or when writing failed: a full
disk degrades to serving from memory, bounded by the same window, instead of failing
players). Files that slide out of the window and its extra segments are deleted,
unless recorded.

A CMAF (fMP4) rendition also has init segments, one per track configuration, and,
for LL-HLS, parts: a part is published the moment its fragment is cut, while its
segment is still being made, and is a slice of that segment once it is complete
(so a part costs memory only until its segment is written). URIs carry the stream's
epoch (``EPOCH/N.m4s``, ``EPOCH/N.P.m4s``, ``EPOCH/init-K.mp4``), so a URL never
names other content, even after a restart that reuses a stream ID and its numbers.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from lpms.hls.cmaf import CMAFTiming, InitSection, MediaPart
from lpms.hls.disk import SegmentDisk
from lpms.hls.playlist import (
    LowLatency,
    OpenSegment,
    PartEntry,
    PlaylistType,
    RenditionReport,
    SegmentEntry,
    Variant,
    render_media_playlist,
    target_duration_for,
)
from lpms.hls.segmenter import Segment
from lpms.hls.settings import HLSFormat, HLSSettings
from lpms.media.codecs import codecs_string

if TYPE_CHECKING:
    from lpms.hls.store import Recorder

log = logging.getLogger(__name__)

PART_LISTING_TARGETS = 3
"""Parts are listed for the segments within this many target durations of the live
edge (RFC 8216bis 6.2.2: removed once older than three target durations)."""


class WriteErrors:
    """One stream's failed disk writes: each counted, one log line per run of them
    (a full disk fails every write until space comes back; that is one event)."""

    def __init__(self, stream_id: str, on_error: Callable[[], None] | None = None) -> None:
        self.stream_id = stream_id
        self._on_error = on_error
        self.total = 0
        self.failing = 0  # failures since the last write that worked

    def failed(self, path: Path, error: OSError) -> None:
        self.total += 1
        self.failing += 1
        if self._on_error is not None:
            self._on_error()
        if self.failing == 1:
            log.error(
                "HLS for %s: cannot write %s: %s; its segments are served from memory "
                "until writing works again",
                self.stream_id,
                path,
                error,
            )

    def succeeded(self) -> None:
        if self.failing:
            log.warning(
                "HLS for %s: writing to disk again, after %d failed writes",
                self.stream_id,
                self.failing,
            )
            self.failing = 0


@dataclass(frozen=True, slots=True)
class SegmentPlace:
    """Where one rendition's segment files go, and who hears when writing fails.

    ``directory`` may raise `OSError` (the private directory cannot be made);
    ``recorded`` files are never deleted.
    """

    disk: SegmentDisk
    directory: Callable[[], Path]
    recorded: bool
    errors: WriteErrors


@dataclass(frozen=True, slots=True)
class _Part:
    index: int
    duration: float
    independent: bool
    offset: int  # within its segment's bytes
    size: int


@dataclass(slots=True)
class _Building:
    """The segment being cut, as its parts come."""

    sequence: int
    init: int
    program_date_time: datetime | None
    discontinuity: bool
    parts: list[_Part] = dataclasses.field(default_factory=list)
    data: list[bytes] = dataclasses.field(default_factory=list)
    size: int = 0


FilePart = tuple[Path, int, int]
"""A part of a segment on disk: (file, offset, size)."""


class Rendition:
    """One media playlist and the segments (and parts) it lists."""

    def __init__(
        self,
        name: str,
        settings: HLSSettings,
        first_sequence: int,
        recorder: Recorder | None = None,
        on_segment: Callable[[Rendition, Segment], None] | None = None,
        place: SegmentPlace | None = None,
        *,
        epoch: str = "",
    ) -> None:
        self.name = name
        self._on_segment = on_segment
        self.settings = settings
        self.container = settings.format  # what its segments are
        self.epoch = epoch
        self.part_target = settings.part_target  # None: no LL-HLS parts
        self.next_sequence = first_sequence
        self.entries: deque[SegmentEntry] = deque()
        self.recorded: list[SegmentEntry] = []
        self.discontinuity_sequence = 0
        self.ended = False
        self.last_segment: Segment | None = None
        self.peak_bitrate = 0
        self._bytes = 0
        self._seconds = 0.0
        self._frames = 0
        # Fetchable segments: as bytes until their file is written (always, without
        # a place on disk), then as files.
        self._in_memory: dict[int, bytes] = {}
        self._files: dict[int, Path] = {}
        self._place = place
        self._target = _whole_seconds(settings.segment_duration)
        self._discontinuity_next = False
        self._recorder = recorder
        # CMAF: init segments by number, each segment's parts and clock, the open one.
        self._inits: dict[int, bytes] = {}
        self._parts: dict[int, list[_Part]] = {}
        self.timing: dict[int, CMAFTiming] = {}
        self._building: _Building | None = None
        self._waiters: list[asyncio.Future[None]] = []
        # Rendered text by URI prefix: players poll playlists far more often than
        # segments arrive, so each is rendered once per change.
        self._rendered: dict[str, str] = {}
        self.version = 0  # counts changes
        self.modified = time.time()  # of the last change: Last-Modified

    # -- what is there --------------------------------------------------------------

    @property
    def target_duration(self) -> int:
        return self._target

    @property
    def has_parts(self) -> bool:
        """Whether a part of the segment being cut is out (before the first segment)."""
        return self._building is not None and bool(self._building.parts)

    @property
    def average_bitrate(self) -> int:
        return int(self._bytes * 8 / self._seconds) if self._seconds > 0 else 0

    @property
    def bytes_in_memory(self) -> int:
        """Segment bytes held in memory: files still being written (or that could
        not be written), and the parts of the segment being cut."""
        building = self._building.size if self._building is not None else 0
        return building + sum(len(data) for data in self._in_memory.values())

    def segment_uri(self, sequence: int) -> str:
        if self.container is HLSFormat.TS:
            return f"{sequence}.ts"
        return f"{self.epoch}/{sequence}.m4s"

    def part_uri(self, sequence: int, index: int) -> str:
        return f"{self.epoch}/{sequence}.{index}.m4s"

    def init_uri(self, number: int) -> str:
        return f"{self.epoch}/init-{number}.mp4"

    # -- adding --------------------------------------------------------------------------

    def add_init(self, init: InitSection) -> None:
        """An init segment (fMP4): kept in memory (a few hundred bytes) and on disk
        beside the segments that need it."""
        if init.number in self._inits:
            return
        self._inits[init.number] = init.data
        self._write(self.init_uri(init.number), init.data, self._init_written)

    def _init_written(self, path: Path, error: OSError | None) -> None:
        if self._place is not None:
            if error is None:
                self._place.errors.succeeded()
            else:
                self._place.errors.failed(path, error)

    def add_part(self, part: MediaPart) -> None:
        """An LL-HLS part of the segment being cut: listed and fetchable at once."""
        self.add_init(part.init)
        building = self._building
        if building is None or building.sequence != part.sequence:
            building = self._building = _Building(
                part.sequence,
                part.init.number,
                part.program_date_time,
                self._discontinuity_next,
            )
        if part.index != len(building.parts):
            return  # a part out of its turn: its segment is not being built here
        building.parts.append(
            _Part(part.index, part.duration, part.independent, building.size, len(part.data))
        )
        building.data.append(part.data)
        building.size += len(part.data)
        self._changed()

    def add(self, segment: Segment, timing: CMAFTiming | None = None) -> None:
        """Append a finished segment; slide the window; record it if asked to. For
        fMP4, ``timing`` says where it is on its track's clock, and its parts are
        those published with `add_part` (whose bytes its own are)."""
        building, self._building = self._building, None
        parts: list[_Part] = []
        if building is not None and building.sequence == segment.sequence:
            parts = building.parts
        if timing is not None:
            self.timing[segment.sequence] = timing
            self._parts[segment.sequence] = parts
        entry = self._append_entry(segment, gap=False, timing=timing, parts=parts)
        self._store(segment.sequence, segment.data)
        # What the master playlist and the API read of it; its bytes are on disk.
        self.last_segment = dataclasses.replace(segment, data=b"")
        self._bytes += len(segment.data)
        self._seconds += segment.duration
        self._frames += segment.frames
        self.peak_bitrate = max(self.peak_bitrate, segment.bitrate)
        self._slide()
        if self._recorder is not None:
            self.recorded.append(dataclasses.replace(entry, parts=()))
            self._recorder.write_playlists(self)  # queued after the segment: in order
        self._changed()
        if self._on_segment is not None:
            self._on_segment(self, segment)

    def add_gap(self, segment: Segment) -> None:
        """List ``segment``'s place (sequence, duration, time) with EXT-X-GAP: this
        rendition has no such segment, but its numbering stays in step with the
        others so players can switch at any segment."""
        self._building = None
        entry = self._append_entry(segment, gap=True)
        self._slide()
        if self._recorder is not None:
            self.recorded.append(entry)
        self._changed()

    def _append_entry(
        self,
        segment: Segment,
        gap: bool,
        timing: CMAFTiming | None = None,
        parts: Sequence[_Part] = (),
    ) -> SegmentEntry:
        sequence = segment.sequence
        entry = SegmentEntry(
            uri=self.segment_uri(sequence),
            duration=segment.duration,
            sequence=sequence,
            program_date_time=segment.program_date_time,
            discontinuity=self._discontinuity_next,
            gap=gap,
            map_uri=None if timing is None else self.init_uri(timing.init),
            parts=self._part_entries(sequence, parts),
        )
        self._discontinuity_next = False
        self.next_sequence = sequence + 1
        self._target = target_duration_for([segment.duration], minimum=self._target)
        self.entries.append(entry)
        return entry

    def _store(self, sequence: int, data: bytes) -> None:
        """Keep ``data`` in memory and start writing its file, if there is a place."""
        self._in_memory[sequence] = data
        self._write(
            self.segment_uri(sequence),
            data,
            lambda path, error: self._written(sequence, path, error),
        )

    def _write(self, uri: str, data: bytes, done: Callable[[Path, OSError | None], None]) -> None:
        """Start writing ``data`` at ``uri`` under the rendition's place, if it has one;
        ``done`` hears how it went."""
        place = self._place
        if place is None:
            return
        try:
            path = place.directory() / uri
        except OSError as exc:
            place.errors.failed(place.disk.workdir or Path("private directory"), exc)
            return
        place.disk.write(path, data, lambda error: done(path, error))

    def _written(self, sequence: int, path: Path, error: OSError | None) -> None:
        """A file write finished: serve the file and drop the bytes, or, when it
        failed, keep serving the bytes while the segment is fetchable."""
        place = self._place
        assert place is not None
        if error is not None:
            place.errors.failed(path, error)
            return
        place.errors.succeeded()
        self._in_memory.pop(sequence, None)
        if sequence >= self._oldest_fetchable():
            self._files[sequence] = path
        elif not place.recorded:
            place.disk.remove(path)  # slid out while it was being written

    def _oldest_fetchable(self) -> int:
        return self.next_sequence - self.settings.window - self.settings.extra_segments

    def _slide(self) -> None:
        while len(self.entries) > self.settings.window:
            gone = self.entries.popleft()
            if gone.discontinuity:
                self.discontinuity_sequence += 1
        oldest = self._oldest_fetchable()
        for table in (self._in_memory, self._parts, self.timing):
            for old in [s for s in table if s < oldest]:
                del table[old]
        place = self._place
        for old in [s for s in self._files if s < oldest]:
            path = self._files.pop(old)
            if place is not None and not place.recorded:
                place.disk.remove(path)
        used = {timing.init for timing in self.timing.values()}
        if self._building is not None:
            used.add(self._building.init)
        for number in [n for n in self._inits if n not in used and used and n < max(used)]:
            del self._inits[number]  # an old configuration's, nothing fetchable needs it

    def resume(self) -> None:
        """A publisher returned: what follows is a discontinuity, and live again."""
        self.ended = False
        self._building = None
        if self.entries or self.recorded:
            self._discontinuity_next = True
        self._changed()

    def discontinuity(self) -> None:
        """The next segment does not continue the last one (new encoder parameters,
        a new timeline): EXT-X-DISCONTINUITY before it."""
        if self.entries or self.recorded:
            self._discontinuity_next = True

    def end(self) -> None:
        self.ended = True
        self._building = None
        self._changed()
        if self._recorder is not None:
            self._recorder.write_playlists(self)

    def _changed(self) -> None:
        self.version += 1
        self.modified = time.time()
        self._rendered.clear()
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    # -- serving -------------------------------------------------------------------------

    def segment(self, sequence: int) -> bytes | Path | None:
        """A fetchable segment: its bytes while its file is being written, then the
        file (None once it slid out of the window and its extra segments)."""
        data = self._in_memory.get(sequence)
        return data if data is not None else self._files.get(sequence)

    def part(self, sequence: int, index: int) -> bytes | FilePart | None:
        """A fetchable part: its bytes while its segment is being cut or written,
        then its place in the segment's file."""
        building = self._building
        if building is not None and building.sequence == sequence:
            return building.data[index] if index < len(building.data) else None
        parts = self._parts.get(sequence)
        if parts is None or index >= len(parts):
            return None
        part = parts[index]
        whole = self.segment(sequence)
        if isinstance(whole, bytes):
            return whole[part.offset : part.offset + part.size]
        if whole is None:
            return None
        return whole, part.offset, part.size

    def init(self, number: int) -> bytes | None:
        return self._inits.get(number)

    def next_part(self) -> tuple[int, int]:
        """(segment, part) of the part to come next: the one a preload hint names."""
        building = self._building
        if building is not None:
            return building.sequence, len(building.parts)
        return self.next_sequence, 0

    def last_part(self) -> tuple[int, int | None]:
        """(segment, part) of the newest part, or (newest segment, None) without
        parts: a rendition report's LAST-MSN and LAST-PART."""
        building = self._building
        if building is not None and building.parts:
            return building.sequence, len(building.parts) - 1
        last = self.next_sequence - 1
        parts = self._parts.get(last)
        return last, (len(parts) - 1 if parts else None)

    def has(self, sequence: int, part: int | None) -> bool:
        """Whether the playlist holds segment ``sequence`` whole (``part`` None), or its
        part ``part``, or anything later (RFC 8216bis 6.2.5.2)."""
        if sequence < self.next_sequence:
            if part is None:
                return True
            parts = self._parts.get(sequence)
            # A part past the segment's last is the first of the next (6.2.5.2).
            return parts is None or part < len(parts) or self.has(sequence + 1, 0)
        if part is None:
            return False
        building = self._building
        return building is not None and building.sequence == sequence and part < len(building.parts)

    async def changed(self) -> None:
        """Wait for the next change: a part, a segment, the end."""
        future = asyncio.get_running_loop().create_future()
        self._waiters.append(future)
        try:
            await future
        finally:
            if not future.done():
                future.cancel()
                with contextlib.suppress(ValueError):  # the list was handed out already
                    self._waiters.remove(future)

    def recorded_segment(self, sequence: int) -> Path | None:
        """Where a recorded segment is on disk (it may still be being written)."""
        if self._recorder is None:
            return None
        return self._recorder.segment_path(self.name, self.segment_uri(sequence))

    # -- playlists ---------------------------------------------------------------------

    def media_playlist(
        self,
        uri_prefix: str = "",
        *,
        reports: Sequence[RenditionReport] = (),
        skip: bool = False,
        recording: bool = False,
    ) -> str:
        """The live window (or the whole recording), URIs prefixed to be relative to
        wherever the playlist is served; LL-HLS where the rendition has parts, unless
        it is ``recording`` (a file on disk) or ended. ``skip``: a delta update."""
        low_latency = self.part_target is not None and not self.ended and not recording
        key = f"{uri_prefix}|{skip}|{recording}|{reports}" if low_latency else uri_prefix
        text = self._rendered.get(key)
        if text is None:
            text = self._rendered[key] = self._render(
                uri_prefix, reports if low_latency else (), skip and low_latency, recording
            )
        return text

    def _render(
        self,
        uri_prefix: str,
        reports: Sequence[RenditionReport],
        skip: bool,
        recording: bool,
    ) -> str:
        entries = self.recorded if self._recorder is not None else list(self.entries)
        if self.ended and self._recorder is not None:
            entries = _without_trailing_gaps(entries)
        discontinuity_sequence = 0 if self._recorder is not None else self.discontinuity_sequence
        low_latency = None
        if self.part_target is not None and not self.ended and not recording:
            entries = self._with_recent_parts(entries)
            skipped = self._skippable(entries) if skip else 0
            entries = entries[skipped:]
            low_latency = LowLatency(
                part_target=self.part_target,
                open_segment=self._open_segment(),
                preload_hint=self.part_uri(*self.next_part()),
                reports=tuple(reports),
                skipped=skipped,
            )
        if uri_prefix:
            entries = [_prefixed(entry, uri_prefix) for entry in entries]
            if low_latency is not None:
                low_latency = _prefixed_live_edge(low_latency, uri_prefix)
        playlist_type: PlaylistType | None = None
        if self._recorder is not None:
            playlist_type = "VOD" if self.ended else "EVENT"
        return render_media_playlist(
            entries,
            target_duration=self._target,
            discontinuity_sequence=discontinuity_sequence,
            ended=self.ended,
            playlist_type=playlist_type,
            low_latency=low_latency,
        )

    def _with_recent_parts(self, entries: list[SegmentEntry]) -> list[SegmentEntry]:
        """Parts are listed for the segments near the live edge only."""
        listed = list(entries)
        horizon = PART_LISTING_TARGETS * self._target
        behind = sum(p.duration for p in self._building.parts) if self._building else 0.0
        for index in range(len(listed) - 1, -1, -1):
            if behind >= horizon:
                listed[index] = dataclasses.replace(listed[index], parts=())
            behind += listed[index].duration
        return listed

    def _skippable(self, entries: list[SegmentEntry]) -> int:
        """Segments a delta update leaves out: those more than the skip boundary (six
        target durations, CAN-SKIP-UNTIL) from the end (RFC 8216bis 6.2.5.1)."""
        boundary = 6 * self._target
        after = 0.0  # from the end of the segment at hand to the playlist's
        for index in range(len(entries) - 1, -1, -1):
            if after > boundary:
                return index + 1  # this one and all before it are past the boundary
            after += entries[index].duration
        return 0

    def _open_segment(self) -> OpenSegment | None:
        building = self._building
        if building is None or not building.parts:
            return None
        return OpenSegment(
            parts=self._part_entries(building.sequence, building.parts),
            program_date_time=building.program_date_time,
            discontinuity=building.discontinuity,
            map_uri=self.init_uri(building.init),
        )

    def _part_entries(self, sequence: int, parts: Sequence[_Part]) -> tuple[PartEntry, ...]:
        return tuple(
            PartEntry(self.part_uri(sequence, p.index), p.duration, p.independent) for p in parts
        )

    def variant(self, uri: str) -> Variant | None:
        """How the master playlist describes this rendition (None before a segment)."""
        segment = self.last_segment
        if segment is None:
            return None
        codecs = [
            codecs_string(config.codec, config.extradata)
            for config in (segment.video, segment.audio)
            if config is not None
        ]
        video = segment.video
        frame_rate = None
        if video is not None and self._seconds > 0 and self._frames > 1:
            frame_rate = nominal_frame_rate(self._frames / self._seconds)
        return Variant(
            uri=uri,
            bandwidth=max(self.peak_bitrate, 1),
            average_bandwidth=self.average_bitrate or None,
            resolution=(video.width, video.height) if video and video.width else None,
            codecs=",".join(c for c in codecs if c) or None,
            frame_rate=frame_rate,
            name=self.name,
        )


# The rates cameras, encoders and OBS send. Millisecond timestamps measure a rate only
# so well (60 frames over a segment measured 2.04 s long make 29.412 for 30 fps), so a
# measured rate within 3 % of one of them is that rate; NTSC's (x/1.001) only when it
# is nearer than the whole rate and within 0.05 %, which a long run can show.
_WHOLE_RATES = (24.0, 25.0, 30.0, 48.0, 50.0, 60.0, 120.0)
_NTSC_RATES = (24000 / 1001, 30000 / 1001, 60000 / 1001)


def nominal_frame_rate(measured: float) -> float:
    """FRAME-RATE as RFC 8216 4.3.4.2 wants it: the stream's nominal rate, to three
    decimals (29.970 for NTSC), never the rate one segment happens to measure."""
    whole = min(_WHOLE_RATES, key=lambda rate: abs(rate - measured))
    ntsc = min(_NTSC_RATES, key=lambda rate: abs(rate - measured))
    if abs(ntsc - measured) < abs(whole - measured) and abs(ntsc - measured) <= 0.0005 * ntsc:
        return round(ntsc, 3)
    if abs(whole - measured) <= 0.03 * whole:
        return whole
    return round(measured, 3)


def _prefixed(entry: SegmentEntry, prefix: str) -> SegmentEntry:
    return dataclasses.replace(
        entry,
        uri=prefix + entry.uri,
        map_uri=_prefixed_uri(entry.map_uri, prefix),
        parts=_prefixed_parts(entry.parts, prefix),
    )


def _prefixed_live_edge(low_latency: LowLatency, prefix: str) -> LowLatency:
    open_segment = low_latency.open_segment
    if open_segment is not None:
        open_segment = dataclasses.replace(
            open_segment,
            parts=_prefixed_parts(open_segment.parts, prefix),
            map_uri=_prefixed_uri(open_segment.map_uri, prefix),
        )
    return dataclasses.replace(
        low_latency,
        open_segment=open_segment,
        preload_hint=_prefixed_uri(low_latency.preload_hint, prefix),
    )


def _prefixed_uri(uri: str | None, prefix: str) -> str | None:
    return None if uri is None else prefix + uri


def _prefixed_parts(parts: tuple[PartEntry, ...], prefix: str) -> tuple[PartEntry, ...]:
    return tuple(dataclasses.replace(p, uri=prefix + p.uri) for p in parts)


def _whole_seconds(seconds: float) -> int:
    return max(1, round(seconds))


def _without_trailing_gaps(entries: list[SegmentEntry]) -> list[SegmentEntry]:
    """An ended recording without the gaps at its end (such as an audio rendition's,
    when the stream's last segment is one video frame): they kept the numbering in
    step for segments to come, and none will (a resumed stream lists them again, as
    ``ended`` is then false). A recording is played later by any player, and those
    that do not know EXT-X-GAP, FFmpeg's among them, would try to fetch them and
    report a missing segment. The live playlist keeps them: its renditions stay in
    step to the end."""
    end = len(entries)
    while end and entries[end - 1].gap:
        end -= 1
    return entries[:end]
