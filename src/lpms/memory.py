"""Giving freed memory back to the operating system.

A stream's buffers (its GOP cache, the segment being cut, and any segments kept in
memory because the disk refused them: hundreds of KiB each) are freed together when
its HLS grace period ends. glibc's allocator keeps such memory for reuse
rather than returning it, so after a busy hour a quiet server would still show its
peak RSS. `release` asks glibc to return what is free (``malloc_trim``), at most once
per ``interval`` seconds: it walks the heap, a millisecond or two. Elsewhere (musl,
macOS) it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

MIN_INTERVAL_S = 5.0


def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        function = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_size_t]
    function.restype = ctypes.c_int
    return function


class MemoryReleaser:
    """Calls ``malloc_trim(0)`` when asked, no more often than ``interval``."""

    def __init__(self, interval: float = MIN_INTERVAL_S) -> None:
        self.interval = interval
        self._trim = _malloc_trim()
        self._last = float("-inf")
        self.releases = 0

    @property
    def available(self) -> bool:
        return self._trim is not None

    def due_in(self) -> float:
        """Seconds until `release` may run again (0: now)."""
        return max(0.0, self._last + self.interval - time.monotonic())

    def release(self) -> bool:
        """True if memory was handed back now (False: too soon, or not glibc)."""
        if self._trim is None or self.due_in() > 0:
            return False
        self._last = time.monotonic()
        self._trim(0)
        self.releases += 1
        return True
