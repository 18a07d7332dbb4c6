"""The local engine: a `Transcoder` per stream on a thread of this process.

The thread runs at a lower CPU priority than the event loop (`nice`), so the source
(RTMP players and its HLS rendition) keeps flowing whatever transcoding costs. One
thread per stream keeps the segments in order and the session's encoders warm.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict

from lpms.errors import LPMSError
from lpms.hls.segmenter import Segment
from lpms.transcode.engines import Engine, EngineObserver, FailureReason
from lpms.transcode.muxing import hls_renditions
from lpms.transcode.profiles import VideoProfile
from lpms.transcode.rendition import OutputContainer, lower_priority
from lpms.transcode.session import Transcoder, TranscodeResult
from lpms.transcode.settings import Accel, TranscodeCaps


class LocalEngine:
    """A `SegmentTranscoder` on this machine; failures are the segment's own."""

    engine = Engine.LOCAL

    def __init__(
        self,
        profiles: tuple[VideoProfile, ...],
        accel: Accel,
        *,
        nice: int = 0,
        observer: EngineObserver | None = None,
        output: OutputContainer | None = None,
        caps: TranscodeCaps | None = None,
    ) -> None:
        container = output or OutputContainer.MPEGTS
        self._transcoder = Transcoder(
            hls_renditions(profiles, container),
            accel=accel,
            nice=nice,
            output=container,
            **asdict(caps or TranscodeCaps()),
        )
        self._observer = observer
        self._executor = ThreadPoolExecutor(
            1, thread_name_prefix="lpms-ladder", initializer=lower_priority, initargs=(nice,)
        )

    async def transcode(self, segment: Segment) -> TranscodeResult:
        loop = asyncio.get_running_loop()
        try:
            result, started = await loop.run_in_executor(self._executor, self._run, segment.data)
        except LPMSError:
            if self._observer is not None:
                self._observer.engine_failure(self.engine, FailureReason.ERROR)
            raise
        if self._observer is not None:  # from the thread's start: waiting is not overhead
            spent = time.perf_counter() - started
            self._observer.engine_call(self.engine, max(0.0, spent - result.elapsed))
        return result

    def _run(self, data: bytes) -> tuple[TranscodeResult, float]:
        started = time.perf_counter()
        return self._transcoder.transcode(data), started

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._transcoder.close)
        self._executor.shutdown(wait=False)
