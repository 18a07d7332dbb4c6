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
import secrets
import time
from collections.abc import Callable
from pathlib import Path

from lpms.hls.disk import SegmentDisk
from lpms.hls.playlist import AudioGroup, RenditionReport, render_master_playlist
from lpms.hls.rendition import Rendition, SegmentPlace, WriteErrors
from lpms.hls.segmenter import Segment
from lpms.hls.settings import HLSFormat, HLSSettings
from lpms.memory import MemoryReleaser

__all__ = [
    "AUDIO",
    "SOURCE",
    "HLSSettings",
    "HLSStore",
    "HLSStream",
    "Recorder",
    "Rendition",
    "WriteErrors",
    "safe_relative_path",
]

log = logging.getLogger(__name__)

SOURCE = "source"
AUDIO = "audio"  # a CMAF stream's audio rendition
AUDIO_GROUP = "audio"
# What a path component of a stream ID must look like to be written to disk.
_SAFE_COMPONENT = re.compile(r"[A-Za-z0-9_~-][A-Za-z0-9._~-]{0,127}")


def safe_relative_path(stream_id: str) -> Path | None:
    """``stream_id`` as a relative path, or None if any part of it is unsafe on disk."""
    parts = stream_id.split("/")
    if not all(_SAFE_COMPONENT.fullmatch(part) for part in parts):
        return None
    return Path(*parts)


SegmentListener = Callable[[str, Rendition, Segment], None]
"""Told of every segment a rendition lists (for metrics and webhooks)."""


class HLSStream:
    """A stream's renditions, by name; the source comes first.

    MPEG-TS: ``source`` carries video and audio, each ladder rendition its own copy.
    CMAF: ``source`` and each ladder rendition carry video only, ``audio`` the
    stream's audio once for all of them (an audio rendition, EXT-X-MEDIA), so the
    same segments serve DASH's adaptation sets.
    """

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
        # Sequence numbers start at the wall clock's seconds, and CMAF URIs carry an
        # epoch of this publish's own, so a stream ID published again never reuses a
        # URL that a CDN or browser may still hold (segments are cached for a year).
        self._first_sequence = int(time.time())
        self.epoch = secrets.token_hex(4)
        # DASH: the wall-clock time of media time 0 of each publisher's timeline, by
        # the segment number it starts at (a returning publisher starts a new one).
        self.timelines: dict[int, float] = {}
        self.timeline_end_ms = 0  # where CMAF's media timeline is up to, across publishers

    @property
    def container(self) -> HLSFormat:
        """What its segments are (CMAF or MPEG-TS)."""
        return self.settings.format

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
                epoch=self.epoch,
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
        """What ``APP/NAME.m3u8`` serves: the master playlist with renditions (always,
        for CMAF: its audio is a rendition of its own), else the source's media
        playlist (None until there is a segment)."""
        if len(self.renditions) > 1 or self.container is HLSFormat.FMP4:
            return self.master_playlist()
        source = self.renditions.get(SOURCE)
        if source is None or (source.last_segment is None and not source.ended):
            return None
        return source.media_playlist(f"{self.name}/{SOURCE}/")

    def master_playlist(self) -> str | None:
        audio = self.renditions.get(AUDIO) if self.container is HLSFormat.FMP4 else None
        audio_variant = audio.variant(f"{self.name}/{AUDIO}.m3u8") if audio else None
        variants = [
            variant
            for name, rendition in self.renditions.items()
            if name != AUDIO or self.container is HLSFormat.TS
            if (variant := rendition.variant(f"{self.name}/{name}.m3u8")) is not None
        ]
        if audio_variant is None:
            return render_master_playlist(variants) if variants else None
        if not variants:  # audio only: the audio playlist is the one variant
            return render_master_playlist([audio_variant])
        group = AudioGroup(AUDIO_GROUP, AUDIO, audio_variant.uri)
        with_audio = [
            dataclasses.replace(
                variant,
                bandwidth=variant.bandwidth + audio_variant.bandwidth,
                average_bandwidth=_sum(variant.average_bandwidth, audio_variant.average_bandwidth),
                codecs=_joined(variant.codecs, audio_variant.codecs),
                audio_group=AUDIO_GROUP,
            )
            for variant in variants
        ]
        return render_master_playlist(with_audio, audio=group)

    def media_playlist(self, name: str, *, skip: bool = False) -> str | None:
        """Rendition ``name``'s playlist as served at ``APP/NAME/RENDITION.m3u8``, with
        LL-HLS reports of every other rendition's live edge."""
        rendition = self.renditions.get(name)
        if rendition is None or (rendition.last_segment is None and not rendition.has_parts):
            return None
        reports: tuple[RenditionReport, ...] = ()
        if rendition.part_target is not None:
            reports = tuple(
                RenditionReport(f"{other}.m3u8", *self.renditions[other].last_part())
                for other in self.renditions
                if other != name and self.renditions[other].next_sequence > 0
            )
        return rendition.media_playlist(f"{name}/", reports=reports, skip=skip)

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
        if self.recorder is not None and self.container is HLSFormat.FMP4:
            self.recorder.write_master(self)


def _sum(one: int | None, other: int | None) -> int | None:
    return None if one is None or other is None else one + other


def _joined(one: str | None, other: str | None) -> str | None:
    return ",".join(c for c in (one, other) if c) or None


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
        """The rendition's playlist, and for an MPEG-TS source also ``APP/NAME.m3u8``
        (a CMAF stream's is its master playlist, written at the end)."""
        name = rendition.name
        text = rendition.media_playlist(f"{name}/", recording=True)
        self._write(self.base / f"{name}.m3u8", text)
        if name == SOURCE and rendition.container is HLSFormat.TS:
            top = rendition.media_playlist(f"{self.name}/{name}/", recording=True)
            self._write(self.base.with_name(f"{self.name}.m3u8"), top)

    def write_master(self, hls: HLSStream) -> None:
        master = hls.master_playlist()
        if master is not None:
            self._write(self.base.with_name(f"{self.name}.m3u8"), master)

    def _write(self, path: Path, text: str) -> None:
        errors = self._errors

        def done(error: OSError | None) -> None:
            if error is None:
                errors.succeeded()
            else:
                errors.failed(path, error)

        self._disk.write(path, text.encode(), done)

    def segment_path(self, rendition: str, uri: str) -> Path:
        return self.base / rendition / uri
