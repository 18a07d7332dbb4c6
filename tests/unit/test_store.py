"""Playlists by stream ID: sliding window, discontinuities, grace period, recording."""

from __future__ import annotations

import asyncio
import errno
import gc
import logging
import tempfile
import threading
from datetime import UTC, datetime
from pathlib import Path

import m3u8
import pytest

from lpms.hls.segmenter import Segment
from lpms.hls.settings import HLSFormat
from lpms.hls.store import (
    SOURCE,
    HLSSettings,
    HLSStore,
    HLSStream,
    Rendition,
    safe_relative_path,
)
from lpms.http.hls import parse_range
from lpms.media.packet import Codec, CodecConfig

VIDEO = CodecConfig(Codec.H264, bytes.fromhex("0164001fffe1"), width=1280, height=720)


def segment(sequence: int, duration: float = 2.0, size: int = 188 * 100) -> Segment:
    return Segment(
        sequence=sequence,
        data=b"\x47" + bytes(size - 1),
        duration=duration,
        start_ms=int(sequence * duration * 1000),
        program_date_time=datetime(2026, 1, 1, tzinfo=UTC),
        video=VIDEO,
        frames=int(duration * 30),
    )


def test_window_slides_and_memory_stays_bounded() -> None:
    rendition = Rendition(
        SOURCE, HLSSettings(format=HLSFormat.TS, window=3, extra_segments=2), first_sequence=10
    )
    for sequence in range(10, 20):
        rendition.add(segment(sequence))
    playlist = m3u8.loads(rendition.media_playlist())
    assert playlist.media_sequence == 17
    assert [s.uri for s in playlist.segments] == ["17.ts", "18.ts", "19.ts"]
    assert rendition.segment(15) is not None  # just slid out: still fetchable
    assert rendition.segment(14) is None
    assert rendition.next_sequence == 20


def test_gap_keeps_numbering_in_step_and_serves_nothing() -> None:
    """A rendition that skipped a segment lists its place with EXT-X-GAP, so its
    segment numbers and times stay those of the other renditions."""
    rendition = Rendition(
        "P360p30fps16x9", HLSSettings(format=HLSFormat.TS, window=4), first_sequence=5
    )
    rendition.add(segment(5))
    rendition.add_gap(segment(6))
    rendition.add(segment(7))
    text = rendition.media_playlist("P360p30fps16x9/")
    playlist = m3u8.loads(text)
    assert [s.uri for s in playlist.segments] == [
        "P360p30fps16x9/5.ts",
        "P360p30fps16x9/6.ts",
        "P360p30fps16x9/7.ts",
    ]
    lines = text.splitlines()
    gap = lines.index("#EXT-X-GAP")
    assert lines[gap + 1].startswith("#EXTINF:2.000")
    assert lines[gap + 2] == "P360p30fps16x9/6.ts"
    assert text.count("#EXT-X-GAP") == 1
    assert rendition.segment(6) is None
    assert rendition.segment(7) is not None
    assert rendition.last_segment is not None
    assert rendition.last_segment.sequence == 7
    assert rendition.next_sequence == 8


def test_discontinuity_and_its_sequence() -> None:
    rendition = Rendition(SOURCE, HLSSettings(format=HLSFormat.TS, window=2), first_sequence=0)
    rendition.add(segment(0))
    rendition.end()
    assert m3u8.loads(rendition.media_playlist()).is_endlist
    rendition.resume()
    rendition.add(segment(1))
    playlist = m3u8.loads(rendition.media_playlist())
    assert not playlist.is_endlist
    assert [s.discontinuity for s in playlist.segments] == [False, True]
    rendition.add(segment(2))
    rendition.add(segment(3))  # the flagged segment slides out
    text = rendition.media_playlist()
    assert "#EXT-X-DISCONTINUITY-SEQUENCE:1" in text
    assert "#EXT-X-DISCONTINUITY\n" not in text


def test_target_duration_grows_but_never_lies() -> None:
    rendition = Rendition(
        SOURCE, HLSSettings(format=HLSFormat.TS, segment_duration=2.0), first_sequence=0
    )
    rendition.add(segment(0, 2.0))
    assert rendition.target_duration == 2
    rendition.add(segment(1, 4.6))
    assert rendition.target_duration == 5
    rendition.add(segment(2, 2.0))
    assert rendition.target_duration == 5


def test_master_playlist_describes_the_source() -> None:
    settings = HLSSettings(format=HLSFormat.TS)
    store = HLSStore(settings)
    hls = store.open("stream/test")
    assert hls.top_playlist() is None  # nothing to play yet
    hls.rendition(SOURCE).add(segment(hls.rendition(SOURCE).next_sequence))
    top = m3u8.loads(hls.top_playlist() or "")
    assert top.segments[0].uri.startswith("test/source/")
    hls.rendition("P360p30fps16x9").add(segment(0, size=188 * 10))
    master = m3u8.loads(hls.master_playlist() or "")
    assert master.is_variant
    first = master.playlists[0]
    assert first.uri == "test/source.m3u8"
    assert first.stream_info.resolution == (1280, 720)
    assert first.stream_info.bandwidth == 188 * 100 * 8 // 2
    assert first.stream_info.frame_rate == pytest.approx(30.0)


async def test_grace_period_then_freed() -> None:
    store = HLSStore(HLSSettings(format=HLSFormat.TS, grace_period=0.05))
    hls = store.open("stream/a")
    hls.rendition(SOURCE).add(segment(hls.rendition(SOURCE).next_sequence))
    store.close(hls)
    assert "stream/a" in store
    assert hls.renditions[SOURCE].ended
    again = store.open("stream/a")  # back within the grace period: same playlists
    assert again is hls
    assert not hls.renditions[SOURCE].ended
    store.close(hls)
    await asyncio.sleep(0.1)
    assert "stream/a" not in store


def test_ended_streams_make_room_for_new_ones() -> None:
    store = HLSStore(HLSSettings(format=HLSFormat.TS), max_streams=2)
    first = store.open("a/1")
    store.open("a/2")
    first.end()
    store.open("a/3")
    assert "a/1" not in store
    assert "a/3" in store


def test_recording_lays_files_out_like_the_urls(tmp_path: Path) -> None:
    store = HLSStore(HLSSettings(format=HLSFormat.TS, record=True, window=2), workdir=str(tmp_path))
    hls = store.open("stream/rec")
    rendition = hls.rendition(SOURCE)
    for _ in range(4):
        rendition.add(segment(rendition.next_sequence))
    store.close_all()
    store.flush()
    top = m3u8.loads((tmp_path / "stream" / "rec.m3u8").read_text())
    assert top.is_endlist
    assert top.playlist_type == "vod"
    assert len(top.segments) == 4  # the whole recording, not the live window
    for entry in top.segments:
        assert (tmp_path / "stream" / entry.uri).is_file()
    assert (tmp_path / "stream" / "rec" / "source.m3u8").is_file()


def test_a_recording_ends_without_the_gaps_at_its_end(tmp_path: Path) -> None:
    """A rendition with nothing for the stream's last segments (an audio rendition
    when the last segment is one video frame) lists them as gaps while live; the
    recording, which any player may read later (FFmpeg fetches EXT-X-GAP segments and
    reports them missing), ends at its last real segment. Gaps between segments stay:
    they keep the numbering in step."""
    store = HLSStore(HLSSettings(format=HLSFormat.TS, record=True), workdir=str(tmp_path))
    hls = store.open("stream/rec")
    rendition = hls.rendition(SOURCE)
    rendition.add(segment(rendition.next_sequence))
    rendition.add_gap(segment(rendition.next_sequence))
    rendition.add(segment(rendition.next_sequence))
    rendition.add_gap(segment(rendition.next_sequence))
    rendition.add_gap(segment(rendition.next_sequence))
    live = m3u8.loads(rendition.media_playlist())
    assert [s.gap_tag for s in live.segments] == [None, True, None, True, True]
    store.close_all()
    store.flush()
    recorded = m3u8.loads((tmp_path / "stream" / "rec" / "source.m3u8").read_text())
    assert recorded.is_endlist
    assert [bool(s.gap_tag) for s in recorded.segments] == [False, True, False]
    assert recorded.media_sequence == live.media_sequence


@pytest.mark.parametrize(
    "stream_id", ["../x", "a/../b", "a//b", "/abs", ".hidden/x", "a/b\x00", "a b/c", ""]
)
def test_unsafe_ids_are_not_paths(stream_id: str) -> None:
    assert safe_relative_path(stream_id) is None


def test_safe_ids_are_paths() -> None:
    assert safe_relative_path("stream/test-1_x.y") == Path("stream/test-1_x.y")


@pytest.mark.parametrize(
    ("header", "size", "span"),
    [
        ("bytes=0-99", 1000, (0, 100)),
        ("bytes=900-", 1000, (900, 1000)),
        ("bytes=-100", 1000, (900, 1000)),
        ("bytes=-5000", 1000, (0, 1000)),
        ("bytes=500-5000", 1000, (500, 1000)),
        ("bytes=1000-", 1000, None),
        ("bytes=5-4", 1000, None),
        ("bytes=-0", 1000, None),
        ("bytes=0-1,5-6", 1000, None),
        ("items=0-1", 1000, None),
    ],
)
def test_parse_range(header: str, size: int, span: tuple[int, int] | None) -> None:
    assert parse_range(header, size) == span


# -- segments on disk ------------------------------------------------------------------


def _files(root: Path) -> list[str]:
    return sorted(p.name for p in root.rglob("*.ts"))


async def test_segments_leave_memory_once_written(tmp_path: Path) -> None:
    store = HLSStore(HLSSettings(format=HLSFormat.TS), workdir=str(tmp_path))
    rendition = store.open("stream/disk").rendition(SOURCE)
    first = rendition.next_sequence
    written = segment(first)
    rendition.add(written)
    # Listed before its file is written: served whole, from memory.
    assert rendition.segment(first) == written.data
    assert rendition.bytes_in_memory == len(written.data)
    await store.disk.written()
    path = rendition.segment(first)
    assert isinstance(path, Path)
    assert path.read_bytes() == written.data
    assert rendition.bytes_in_memory == 0
    assert rendition.last_segment is not None
    assert rendition.last_segment.data == b""  # what the master playlist reads, no bytes
    # The private directory cannot be reached through the recordings route.
    root = store.disk.private_dir
    assert root is not None
    assert root.parent == tmp_path
    assert safe_relative_path(str(path.relative_to(tmp_path))) is None
    store.close_all()
    store.flush()


async def test_files_that_slide_out_are_deleted(tmp_path: Path) -> None:
    store = HLSStore(
        HLSSettings(format=HLSFormat.TS, window=2, extra_segments=1), workdir=str(tmp_path)
    )
    rendition = store.open("stream/slide").rendition(SOURCE)
    first = rendition.next_sequence
    for sequence in range(first, first + 6):
        rendition.add(segment(sequence))
    await store.disk.written()
    await store.disk.written()  # the deletions that the first writes' ends asked for
    assert _files(tmp_path) == [f"{s}.ts" for s in range(first + 3, first + 6)]
    assert rendition.segment(first + 2) is None
    assert isinstance(rendition.segment(first + 3), Path)
    assert rendition.bytes_in_memory == 0
    store.close_all()
    store.flush()


async def test_a_segment_is_never_served_half_written(tmp_path: Path) -> None:
    """While its write is under way a segment is served whole from memory; the
    final file name appears only when the file is complete."""
    store = HLSStore(HLSSettings(format=HLSFormat.TS), workdir=str(tmp_path))
    started, release = threading.Event(), threading.Event()
    real_write = store.disk.write_file

    def slow_write(path: Path, data: bytes) -> None:
        started.set()
        release.wait(10)
        real_write(path, data)

    store.disk.write_file = slow_write
    rendition = store.open("stream/slow").rendition(SOURCE)
    first = rendition.next_sequence
    rendition.add(segment(first))
    await asyncio.to_thread(started.wait, 10)
    assert rendition.segment(first) == segment(first).data
    assert _files(tmp_path) == []
    release.set()
    await store.disk.written()
    assert isinstance(rendition.segment(first), Path)
    store.close_all()
    store.flush()


async def test_a_full_disk_is_counted_logged_once_and_served_from_memory(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = HLSSettings(format=HLSFormat.TS, window=2, extra_segments=1)
    store = HLSStore(settings, workdir=str(tmp_path))
    errors: list[None] = []
    store.on_write_error = lambda: errors.append(None)
    real_write = store.disk.write_file

    def full_disk(path: Path, data: bytes) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    store.disk.write_file = full_disk
    rendition = store.open("stream/full").rendition(SOURCE)
    first = rendition.next_sequence
    with caplog.at_level(logging.WARNING, logger="lpms.hls.store"):
        for sequence in range(first, first + 6):
            rendition.add(segment(sequence))
        await store.disk.written()
        assert len(errors) == 6
        assert [r.levelno for r in caplog.records] == [logging.ERROR]  # once for the run
        assert "stream/full" in caplog.records[0].getMessage()
        # Still served, from memory, bounded by the same window.
        assert rendition.segment(first + 5) == segment(first + 5).data
        assert rendition.segment(first + 2) is None
        assert rendition.bytes_in_memory == 3 * len(segment(first).data)
        store.disk.write_file = real_write  # space came back
        rendition.add(segment(first + 6))
        await store.disk.written()
        assert isinstance(rendition.segment(first + 6), Path)
        assert "writing to disk again" in caplog.records[-1].getMessage()
        assert len(caplog.records) == 2
    assert len(errors) == 6
    store.close_all()
    store.flush()


async def test_an_unwritable_workdir_keeps_segments_in_memory(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    store = HLSStore(HLSSettings(format=HLSFormat.TS), workdir=str(blocker / "work"))
    errors: list[None] = []
    store.on_write_error = lambda: errors.append(None)
    rendition = store.open("stream/nowhere").rendition(SOURCE)
    first = rendition.next_sequence
    rendition.add(segment(first))
    await store.disk.written()
    assert rendition.segment(first) == segment(first).data
    assert errors == [None]
    store.close_all()
    store.flush()


async def test_private_temp_dir_is_removed_at_close() -> None:
    store = HLSStore(HLSSettings(format=HLSFormat.TS))
    assert store.disk.private_dir is None  # made on first use
    rendition = store.open("stream/tmp").rendition(SOURCE)
    rendition.add(segment(rendition.next_sequence))
    await store.disk.written()
    root = store.disk.private_dir
    assert root is not None
    assert root.parent == Path(tempfile.gettempdir())
    assert _files(root)
    store.close_all()
    await asyncio.to_thread(store.flush)
    assert not root.exists()


async def test_private_temp_dir_is_removed_without_close() -> None:
    """An application that never closes the store (an error on its way out) still
    leaves no directory behind once the store is gone."""
    store = HLSStore(HLSSettings(format=HLSFormat.TS))
    rendition = store.open("stream/lost").rendition(SOURCE)
    rendition.add(segment(rendition.next_sequence))
    await store.disk.written()
    root = store.disk.private_dir
    assert root is not None
    assert root.exists()
    del store, rendition
    gc.collect()
    assert not root.exists()


async def test_freed_stream_leaves_the_disk(tmp_path: Path) -> None:
    store = HLSStore(HLSSettings(format=HLSFormat.TS, grace_period=0), workdir=str(tmp_path))
    hls = store.open("stream/gone")
    rendition = hls.rendition(SOURCE)
    rendition.add(segment(rendition.next_sequence))
    await store.disk.written()
    directory = hls.private_dir()
    assert directory is not None
    assert _files(directory)
    freed = asyncio.Event()
    free = store._free

    def free_and_tell(stream: HLSStream) -> None:
        free(stream)
        freed.set()

    store._free = free_and_tell  # type: ignore[method-assign]
    store.close(hls)
    await freed.wait()
    assert "stream/gone" not in store
    await store.disk.written()
    assert not directory.exists()
    store.flush()


async def test_recording_writes_each_segment_once_and_serves_it(tmp_path: Path) -> None:
    store = HLSStore(
        HLSSettings(format=HLSFormat.TS, record=True, window=2, extra_segments=0),
        workdir=str(tmp_path),
    )
    writes: list[Path] = []
    real_write = store.disk.write_file

    def counted(path: Path, data: bytes) -> None:
        writes.append(path)
        real_write(path, data)

    store.disk.write_file = counted
    rendition = store.open("stream/once").rendition(SOURCE)
    first = rendition.next_sequence
    for sequence in range(first, first + 4):
        rendition.add(segment(sequence))
    await store.disk.written()
    segment_writes = [p for p in writes if p.suffix == ".ts"]
    assert segment_writes == [
        tmp_path / f"stream/once/source/{s}.ts" for s in range(first, first + 4)
    ]
    assert rendition.segment(first + 3) == tmp_path / f"stream/once/source/{first + 3}.ts"
    assert store.disk.private_dir is None  # nothing written twice, nowhere else
    assert _files(tmp_path) == sorted(f"{s}.ts" for s in range(first, first + 4))  # kept
    store.close_all()
    store.flush()
