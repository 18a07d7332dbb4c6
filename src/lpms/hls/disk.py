"""Segment and playlist files on disk, written in order by one worker thread.

Why segments go to disk at all: a live segment held as ``bytes`` costs its size in
the server's heap for as long as it stays fetchable (window plus extra segments,
about 6 MiB per 2.5 Mbit/s stream), and glibc keeps much of that after it is freed.
A file costs page cache instead, which the kernel reclaims under pressure, and
aiohttp sends it with ``sendfile`` without it passing through Python, as nginx-rtmp
serves its fragments.

Writes run in one worker thread so the event loop never waits for the disk, and in
the order they were asked for, so a playlist is never on disk before the segments
it lists, and a deletion never runs before the write it undoes. Each file is
written to ``NAME.part`` and renamed, so nobody ever reads half of one. Whoever asks
for a write is told how it went (``done``, with None or the `OSError`) on the event
loop's thread: until then it keeps the bytes itself.

Segments of streams that are not recorded live in a private directory, made on
first use: under the workdir when there is one (``.lpms-live-*``: the leading dot
keeps it out of reach of the recordings route, which refuses such names), else
under tempfile's default location. It is removed by `close`, and at interpreter
exit or when this object is collected if `close` never ran.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
import weakref
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import suppress
from pathlib import Path

log = logging.getLogger(__name__)

PRIVATE_PREFIX = "lpms-live-"
WorkDone = Callable[[OSError | None], None]
"""Told, on the event loop's thread, whether a write reached the disk."""


def write_whole(path: Path, data: bytes) -> None:
    """Write whole or not at all (``.part``, then rename): a reader never sees half
    a file. Raises `OSError` (a full disk: ``ENOSPC``) for the caller to count."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".part")
    try:
        with partial.open("wb") as file:
            file.write(data)
        partial.replace(path)
    except OSError:
        partial.unlink(missing_ok=True)  # a full disk must not also keep the half
        raise


def _remove_file(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:
        log.warning("HLS: cannot remove %s: %s", path, exc)


def _remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


class SegmentDisk:
    """The store's one writer thread and its private directory of live segments."""

    def __init__(self, workdir: Path | None = None) -> None:
        self.workdir = workdir
        self._private: Path | None = None
        self._cleanup: weakref.finalize[[Path], SegmentDisk] | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lpms-disk")
        self._closed = False
        # Tests swap this for one that fails, as a full disk would.
        self.write_file: Callable[[Path, bytes], None] = write_whole

    @property
    def closed(self) -> bool:
        return self._closed

    def private_root(self) -> Path:
        """The directory for segments nobody records, made now if it is not yet
        (raises `OSError` when it cannot be: the caller keeps the segment in memory)."""
        if self._private is None:
            if self.workdir is not None:
                self.workdir.mkdir(parents=True, exist_ok=True)
                root = tempfile.mkdtemp(prefix="." + PRIVATE_PREFIX, dir=self.workdir)
            else:
                root = tempfile.mkdtemp(prefix=PRIVATE_PREFIX)
            self._private = Path(root)
            # Removed at exit even when close() never runs (an error, a forgotten close).
            self._cleanup = weakref.finalize(self, _remove_tree, self._private)
        return self._private

    @property
    def private_dir(self) -> Path | None:
        """The private directory, if one was made."""
        return self._private

    def write(self, path: Path, data: bytes, done: WorkDone) -> None:
        """Write ``data`` at ``path`` in the worker; ``done`` says how it went."""
        self._run(self.write_file, (path, data), done)

    def remove(self, path: Path) -> None:
        """Delete a file, after every write asked for before."""
        self._run(_remove_file, (path,), None)

    def remove_tree(self, path: Path) -> None:
        self._run(_remove_tree, (path,), None)

    async def written(self) -> None:
        """Wait until every write asked for so far has finished and its ``done`` has
        run (the worker and the loop's callbacks both keep order)."""
        finished = asyncio.get_running_loop().create_future()

        def done(_: OSError | None) -> None:
            if not finished.done():
                finished.set_result(None)

        self._run(_nothing, (), done)
        if not self._closed:
            await finished

    def _run(
        self, work: Callable[..., None], args: tuple[object, ...], done: WorkDone | None
    ) -> None:
        if self._closed:
            return  # shutting down: the private directory goes as a whole
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no event loop (a script, a test): do it here and now
            error = _attempt(work, args)
            if done is not None:
                done(error)
            return
        future = self._executor.submit(_attempt, work, args)
        if done is not None:
            future.add_done_callback(lambda f: _tell(loop, done, f))

    def close(self) -> None:
        """Wait for every queued write, then remove the private directory (blocks:
        run it off the event loop)."""
        self._closed = True
        self._executor.shutdown(wait=True)
        if self._cleanup is not None:
            self._cleanup()  # runs _remove_tree once, now


def _nothing() -> None:
    pass


def _attempt(work: Callable[..., None], args: tuple[object, ...]) -> OSError | None:
    try:
        work(*args)
    except OSError as exc:
        return exc
    return None


def _tell(loop: asyncio.AbstractEventLoop, done: WorkDone, future: Future[OSError | None]) -> None:
    if future.cancelled():
        return
    failure = future.exception()
    if failure is not None:  # not an OSError: a bug, not the disk
        log.error("HLS: disk work failed: %r", failure)
        return
    error = future.result()
    with suppress(RuntimeError):  # the loop has closed: nobody is left to tell
        loop.call_soon_threadsafe(done, error)
