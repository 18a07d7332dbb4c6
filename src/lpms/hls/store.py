"""Where segments live between the segmenter and HTTP: playlists by stream ID.

A `Rendition` is one media playlist: a sliding window of recent segments, its media
sequence, discontinuities and target duration. Its segments are files (see
`lpms.hls.disk`), served with sendfile; a segment's bytes stay in memory only while
its file is being written (or when writing failed: a full disk degrades to serving
from memory, bounded by the same window, instead of failing players). Files that
slide out of the window and its extra segments are deleted, unless recorded. An
`HLSStream` groups a stream's renditions (the source, and the transcoded ladder
when there is one) and renders the master playlist. `HLSStore` owns them by stream
ID: a publisher that returns to an ID within the grace period continues the same
playlists after an ``EXT-X-DISCONTINUITY``; otherwise a finished stream is freed
when its grace period ends.

With recording, segments are written once, where the recording keeps them, laid
out like the URLs (``DIR/APP/NAME.m3u8``, ``DIR/APP/NAME/source.m3u8``,
``DIR/APP/NAME/source/N.ts``), so the recording plays after a restart from lpms or
from any static web server; the live playlist serves the same files. Otherwise they
go to the store's private directory, removed when the store closes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import re
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lpms.hls.disk import SegmentDisk
from lpms.hls.playlist import (
    PlaylistType,
    SegmentEntry,
    Variant,
    codecs_string,
    render_master_playlist,
    render_media_playlist,
    target_duration_for,
)
from lpms.hls.segmenter import Segment
from lpms.memory import MemoryReleaser
from lpms.validate import at_least

log = logging.getLogger(__name__)

SOURCE = "source"
# What a path component of a stream ID must look like to be written to disk.
_SAFE_COMPONENT = re.compile(r"[A-Za-z0-9_~-][A-Za-z0-9._~-]{0,127}")


@dataclass(frozen=True, slots=True)
class HLSSettings:
    """HLS output: segment length, live window, memory and lifetime bounds.

    ``window`` segments are listed in a live playlist; ``extra_segments`` more stay
    fetchable (on disk) for players that fetched the playlist just before it slid.
    ``grace_period`` is how long a finished stream stays served (and how long a
    returning publisher continues it). With ``record`` (and a ``workdir``) every
    segment is kept on disk and the playlist becomes a growing event playlist,
    then VOD.
    """

    enabled: bool = True
    segment_duration: float = 2.0
    window: int = 6
    extra_segments: int = 3
    grace_period: float = 60.0
    record: bool = False
    max_segment_bytes: int = 64 << 20

    def __post_init__(self) -> None:
        if not 0.5 <= self.segment_duration <= 60:
            raise ValueError(
                f"segment_duration must be 0.5 to 60 seconds, got {self.segment_duration}"
            )
        at_least(1, window=self.window, max_segment_bytes=self.max_segment_bytes)
        at_least(0, extra_segments=self.extra_segments, grace_period=self.grace_period)


def safe_relative_path(stream_id: str) -> Path | None:
    """``stream_id`` as a relative path, or None if any part of it is unsafe on disk."""
    parts = stream_id.split("/")
    if not all(_SAFE_COMPONENT.fullmatch(part) for part in parts):
        return None
    return Path(*parts)


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


class Rendition:
    """One media playlist and the segments it lists."""

    def __init__(
        self,
        name: str,
        settings: HLSSettings,
        first_sequence: int,
        recorder: Recorder | None = None,
        on_segment: Callable[[Rendition, Segment], None] | None = None,
        place: SegmentPlace | None = None,
    ) -> None:
        self.name = name
        self._on_segment = on_segment
        self.settings = settings
        self.next_sequence = first_sequence
        self.entries: deque[SegmentEntry] = deque()
        self.recorded: list[SegmentEntry] = []
        self.discontinuity_sequence = 0
        self.ended = False
        self.last_segment: Segment | None = None
        self.peak_bitrate = 0
        self._bytes = 0
        self._seconds = 0.0
        # Fetchable segments: as bytes until their file is written (always, without
        # a place on disk), then as files.
        self._in_memory: dict[int, bytes] = {}
        self._files: dict[int, Path] = {}
        self._place = place
        self._target = _whole_seconds(settings.segment_duration)
        self._discontinuity_next = False
        self._recorder = recorder
        # Rendered text by URI prefix: players poll playlists far more often than
        # segments arrive, so each is rendered once per change.
        self._rendered: dict[str, str] = {}

    @property
    def target_duration(self) -> int:
        return self._target

    @property
    def average_bitrate(self) -> int:
        return int(self._bytes * 8 / self._seconds) if self._seconds > 0 else 0

    def add(self, segment: Segment) -> None:
        """Append a finished segment; slide the window; record it if asked to."""
        entry = self._append_entry(segment, gap=False)
        self._store(segment.sequence, segment.data)
        # What the master playlist and the API read of it; its bytes are on disk.
        self.last_segment = dataclasses.replace(segment, data=b"")
        self._bytes += len(segment.data)
        self._seconds += segment.duration
        self.peak_bitrate = max(self.peak_bitrate, segment.bitrate)
        self._slide()
        if self._recorder is not None:
            self.recorded.append(entry)
            self._recorder.write_playlists(self)  # queued after the segment: in order
        if self._on_segment is not None:
            self._on_segment(self, segment)

    @property
    def bytes_in_memory(self) -> int:
        """Segment bytes held in memory: files still being written (or that could
        not be written); 0 on a quiet, healthy disk."""
        return sum(len(data) for data in self._in_memory.values())

    def _store(self, sequence: int, data: bytes) -> None:
        """Keep ``data`` in memory and start writing its file, if there is a place."""
        self._in_memory[sequence] = data
        place = self._place
        if place is None:
            return
        try:
            path = place.directory() / f"{sequence}.ts"
        except OSError as exc:
            place.errors.failed(place.disk.workdir or Path("private directory"), exc)
            return
        place.disk.write(path, data, lambda error: self._written(sequence, path, error))

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

    def add_gap(self, segment: Segment) -> None:
        """List ``segment``'s place (sequence, duration, time) with EXT-X-GAP: this
        rendition has no such segment, but its numbering stays in step with the
        others so players can switch at any segment."""
        entry = self._append_entry(segment, gap=True)
        self._slide()
        if self._recorder is not None:
            self.recorded.append(entry)

    def _append_entry(self, segment: Segment, gap: bool) -> SegmentEntry:
        entry = SegmentEntry(
            uri=f"{segment.sequence}.ts",
            duration=segment.duration,
            sequence=segment.sequence,
            program_date_time=segment.program_date_time,
            discontinuity=self._discontinuity_next,
            gap=gap,
        )
        self._discontinuity_next = False
        self._rendered.clear()
        self.next_sequence = segment.sequence + 1
        self._target = target_duration_for([segment.duration], minimum=self._target)
        self.entries.append(entry)
        return entry

    def _slide(self) -> None:
        while len(self.entries) > self.settings.window:
            gone = self.entries.popleft()
            if gone.discontinuity:
                self.discontinuity_sequence += 1
        oldest = self._oldest_fetchable()
        for old in [s for s in self._in_memory if s < oldest]:
            del self._in_memory[old]
        place = self._place
        for old in [s for s in self._files if s < oldest]:
            path = self._files.pop(old)
            if place is not None and not place.recorded:
                place.disk.remove(path)

    def resume(self) -> None:
        """A publisher returned: what follows is a discontinuity, and live again."""
        self.ended = False
        self._rendered.clear()
        if self.entries or self.recorded:
            self._discontinuity_next = True

    def discontinuity(self) -> None:
        """The next segment does not continue the last one (new encoder parameters,
        a new timeline): EXT-X-DISCONTINUITY before it."""
        if self.entries or self.recorded:
            self._discontinuity_next = True

    def end(self) -> None:
        self.ended = True
        self._rendered.clear()
        if self._recorder is not None:
            self._recorder.write_playlists(self)

    def segment(self, sequence: int) -> bytes | Path | None:
        """A fetchable segment: its bytes while its file is being written, then the
        file (None once it slid out of the window and its extra segments)."""
        data = self._in_memory.get(sequence)
        return data if data is not None else self._files.get(sequence)

    def recorded_segment(self, sequence: int) -> Path | None:
        """Where a recorded segment is on disk (it may still be being written)."""
        if self._recorder is None:
            return None
        return self._recorder.segment_path(self.name, sequence)

    def media_playlist(self, uri_prefix: str = "") -> str:
        """The live window (or the whole recording), URIs prefixed to be relative
        to wherever the playlist is served."""
        text = self._rendered.get(uri_prefix)
        if text is None:
            text = self._rendered[uri_prefix] = self._render(uri_prefix)
        return text

    def _render(self, uri_prefix: str) -> str:
        recording = self._recorder is not None
        entries = self.recorded if recording else list(self.entries)
        discontinuity_sequence = 0 if recording else self.discontinuity_sequence
        if uri_prefix:
            entries = [_prefixed(entry, uri_prefix) for entry in entries]
        playlist_type: PlaylistType | None = None
        if recording:
            playlist_type = "VOD" if self.ended else "EVENT"
        return render_media_playlist(
            entries,
            target_duration=self._target,
            discontinuity_sequence=discontinuity_sequence,
            ended=self.ended,
            playlist_type=playlist_type,
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
        if video is not None and segment.duration > 0 and segment.frames > 1:
            frame_rate = round(segment.frames / segment.duration, 3)
        return Variant(
            uri=uri,
            bandwidth=max(self.peak_bitrate, 1),
            average_bandwidth=self.average_bitrate or None,
            resolution=(video.width, video.height) if video and video.width else None,
            codecs=",".join(c for c in codecs if c) or None,
            frame_rate=frame_rate,
            name=self.name,
        )


SegmentListener = Callable[[str, Rendition, Segment], None]
"""Told of every segment a rendition lists (for metrics and webhooks)."""


class HLSStream:
    """A stream's renditions, by name; the source comes first."""

    def __init__(
        self,
        stream_id: str,
        settings: HLSSettings,
        recorder: Recorder | None,
        on_segment: SegmentListener | None = None,
        disk: SegmentDisk | None = None,
        key: str = "",
        errors: WriteErrors | None = None,
    ) -> None:
        self.id = stream_id
        self._on_segment = on_segment
        self.settings = settings
        self.recorder = recorder
        self.disk = disk
        self.key = key  # its directory's name in the private directory: IDs need not be paths
        self.errors = errors or WriteErrors(stream_id)
        self.renditions: dict[str, Rendition] = {}
        self.live = True
        self.ended_at: float | None = None
        # Sequence numbers start at the wall clock's seconds, so a stream ID that is
        # published again after its grace period never reuses a segment URL that a
        # CDN or browser may still hold (segments are cached for long).
        self._first_sequence = int(time.time())

    @property
    def name(self) -> str:
        """The last part of the ID: playlists at ``APP/NAME.m3u8`` point into ``NAME/``."""
        return self.id.rsplit("/", 1)[-1]

    def rendition(self, name: str) -> Rendition:
        """The rendition called ``name``, made on first use."""
        rendition = self.renditions.get(name)
        if rendition is None:
            listener, stream_id = self._on_segment, self.id
            rendition = Rendition(
                name,
                self.settings,
                self._first_sequence,
                self.recorder,
                # The ID, not self: a cycle would hold the segments past the grace period.
                None if listener is None else lambda r, s: listener(stream_id, r, s),
                self._place(name),
            )
            self.renditions[name] = rendition
        return rendition

    def _place(self, rendition: str) -> SegmentPlace | None:
        disk, recorder, key = self.disk, self.recorder, self.key
        if disk is None:
            return None
        if recorder is not None:  # one write serves the live playlist and the recording
            base = recorder.base
            return SegmentPlace(disk, lambda: base / rendition, True, self.errors)
        return SegmentPlace(disk, lambda: disk.private_root() / key / rendition, False, self.errors)

    def private_dir(self) -> Path | None:
        """Where this stream's unrecorded segments are, if anywhere yet."""
        root = self.disk.private_dir if self.disk is not None else None
        if root is None or self.recorder is not None:
            return None
        return root / self.key

    def top_playlist(self) -> str | None:
        """What ``APP/NAME.m3u8`` serves: the master playlist with renditions, else
        the source's media playlist (None until there is a segment)."""
        if len(self.renditions) > 1:
            return self.master_playlist()
        source = self.renditions.get(SOURCE)
        if source is None or (source.last_segment is None and not source.ended):
            return None
        return source.media_playlist(f"{self.name}/{SOURCE}/")

    def master_playlist(self) -> str | None:
        variants = [
            variant
            for name, rendition in self.renditions.items()
            if (variant := rendition.variant(f"{self.name}/{name}.m3u8")) is not None
        ]
        return render_master_playlist(variants) if variants else None

    def resume(self) -> None:
        self.live = True
        self.ended_at = None
        for rendition in self.renditions.values():
            rendition.resume()

    def end(self) -> None:
        self.live = False
        self.ended_at = time.monotonic()
        for rendition in self.renditions.values():
            rendition.end()


class HLSStore:
    """Every stream's HLS output, by stream ID."""

    def __init__(
        self, settings: HLSSettings, workdir: str | None = None, max_streams: int = 1000
    ) -> None:
        self.settings = settings
        self.workdir = Path(workdir) if workdir else None
        self.max_streams = max_streams
        self._streams: dict[str, HLSStream] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self.on_segment: SegmentListener | None = None
        self.on_write_error: Callable[[], None] | None = None
        """Told of every segment or playlist write that failed (for metrics)."""
        self._memory = MemoryReleaser()
        self._release_timer: asyncio.TimerHandle | None = None
        self.disk = SegmentDisk(self.workdir)
        self._keys = itertools.count()

    def __contains__(self, stream_id: object) -> bool:
        return stream_id in self._streams

    def __len__(self) -> int:
        """Streams held: live ones and ended ones within their grace period."""
        return len(self._streams)

    def get(self, stream_id: str) -> HLSStream | None:
        return self._streams.get(stream_id)

    def open(self, stream_id: str) -> HLSStream:
        """The HLS output for a publish starting now: continued within the grace
        period (after a discontinuity), else new."""
        timer = self._timers.pop(stream_id, None)
        if timer is not None:
            timer.cancel()
        hls = self._streams.get(stream_id)
        if hls is not None:
            hls.resume()
            return hls
        self._evict_for_room()
        errors = WriteErrors(stream_id, self.on_write_error)
        hls = HLSStream(
            stream_id,
            self.settings,
            self._recorder_for(stream_id, errors),
            self.on_segment,
            self.disk,
            str(next(self._keys)),
            errors,
        )
        self._streams[stream_id] = hls
        return hls

    def close(self, hls: HLSStream) -> None:
        """The publisher left: end the playlists, free them after the grace period."""
        if self._streams.get(hls.id) is not hls or not hls.live:
            return
        hls.end()
        loop = asyncio.get_running_loop()
        self._timers[hls.id] = loop.call_later(self.settings.grace_period, self._free, hls)

    def _free(self, hls: HLSStream) -> None:
        self._timers.pop(hls.id, None)
        if self._streams.get(hls.id) is hls and not hls.live:
            del self._streams[hls.id]
            self._remove_files(hls)
            self._release_memory_soon()  # its segments: megabytes the allocator would keep

    def _remove_files(self, hls: HLSStream) -> None:
        """A freed stream's segments leave the disk too (unless recorded)."""
        directory = hls.private_dir()
        if directory is not None:
            self.disk.remove_tree(directory)

    def _release_memory_soon(self) -> None:
        if self._release_timer is not None or not self._memory.available:
            return
        self._release_timer = asyncio.get_running_loop().call_later(
            self._memory.due_in(), self._release_memory
        )

    def _release_memory(self) -> None:
        self._release_timer = None
        self._memory.release()

    def _evict_for_room(self) -> None:
        while len(self._streams) >= self.max_streams:
            ended = [s for s in self._streams.values() if not s.live]
            if not ended:
                return  # the registry refuses publishers before this grows further
            oldest = min(ended, key=lambda s: s.ended_at or 0.0)
            timer = self._timers.pop(oldest.id, None)
            if timer is not None:
                timer.cancel()
            del self._streams[oldest.id]
            self._remove_files(oldest)

    def _recorder_for(self, stream_id: str, errors: WriteErrors) -> Recorder | None:
        if not self.settings.record or self.workdir is None:
            return None
        relative = safe_relative_path(stream_id)
        if relative is None:
            log.warning("not recording %s: its ID is not a safe path on disk", stream_id)
            return None
        return Recorder(self.workdir, relative, self.disk, errors)

    def close_all(self) -> None:
        """Server shutdown: end every live playlist (`flush` then waits for the disk)."""
        for hls in list(self._streams.values()):
            if hls.live:
                hls.end()
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        if self._release_timer is not None:
            self._release_timer.cancel()
            self._release_timer = None

    def flush(self) -> None:
        """Block until every queued write is on disk, then remove the private
        directory of live segments (run it off the loop)."""
        self.disk.close()


class Recorder:
    """Writes one stream's playlists under the recording directory (its segments
    are written there by their renditions, once for live and recording)."""

    def __init__(self, root: Path, relative: Path, disk: SegmentDisk, errors: WriteErrors) -> None:
        self.base = root / relative  # DIR/APP/NAME; playlists beside it, segments in it
        self.name = relative.name
        self._disk = disk
        self._errors = errors

    def write_playlists(self, rendition: Rendition) -> None:
        """The rendition's playlist, and for the source also ``APP/NAME.m3u8``."""
        name = rendition.name
        self._write(self.base / f"{name}.m3u8", rendition.media_playlist(f"{name}/"))
        if name == SOURCE:
            top = rendition.media_playlist(f"{self.name}/{name}/")
            self._write(self.base.with_name(f"{self.name}.m3u8"), top)

    def _write(self, path: Path, text: str) -> None:
        errors = self._errors

        def done(error: OSError | None) -> None:
            if error is None:
                errors.succeeded()
            else:
                errors.failed(path, error)

        self._disk.write(path, text.encode(), done)

    def segment_path(self, rendition: str, sequence: int) -> Path:
        return self.base / rendition / f"{sequence}.ts"


def _prefixed(entry: SegmentEntry, prefix: str) -> SegmentEntry:
    return dataclasses.replace(entry, uri=prefix + entry.uri)


def _whole_seconds(seconds: float) -> int:
    return max(1, round(seconds))
