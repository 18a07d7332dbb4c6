"""The asyncio side of HLS: a stream subscription feeding a `Segmenter`.

Packets are drained in batches from the subscription's ``on_ready`` push (as RTMP
players are), so segmenting costs no task switch per packet. A segmenting error
ends this stream's HLS output with one log line; the stream itself, its RTMP
players and every other stream go on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from lpms.errors import LPMSError
from lpms.hls.segmenter import Segment, Segmenter, SegmenterOptions
from lpms.hls.store import Rendition
from lpms.media.stream import Stream

log = logging.getLogger(__name__)


class LiveSegmenter:
    """Segments one live stream into one rendition until the stream ends."""

    def __init__(
        self,
        stream: Stream,
        rendition: Rendition,
        options: SegmenterOptions,
        on_end: Callable[[LiveSegmenter], None] | None = None,
        on_segment: Callable[[Segment], None] | None = None,
    ) -> None:
        self.stream = stream
        self.rendition = rendition
        self._segmenter = Segmenter(options, first_sequence=rendition.next_sequence)
        self._on_end = on_end
        self._on_segment = on_segment
        self._loop = asyncio.get_running_loop()
        self._scheduled = False
        self.finished = False
        self._subscription = stream.subscribe(f"hls:{rendition.name}", on_ready=self._schedule)
        self._schedule()

    def _schedule(self) -> None:
        if not self._scheduled and not self.finished:
            self._scheduled = True
            self._loop.call_soon(self.drain)

    def drain(self) -> None:
        """Segment what has arrived; after the stream's end, flush and stop."""
        self._scheduled = False
        if self.finished:
            return
        subscription = self._subscription
        segmenter = self._segmenter
        try:
            while (packet := subscription.pop()) is not None:
                for segment in segmenter.push(packet):
                    self._add(segment)
            if subscription.ended:
                for segment in segmenter.finish():
                    self._add(segment)
                self.stop()
        except LPMSError as exc:
            log.error("HLS for %s stopped: %s", self.stream.id, exc)
            self.stop()

    def _add(self, segment: Segment) -> None:
        self.rendition.add(segment)
        if self._on_segment is not None:
            self._on_segment(segment)

    def stop(self) -> None:
        """Stop segmenting (the stream ended, failed, or the server is closing)."""
        if self.finished:
            return
        self.finished = True
        self._subscription.close()
        if self._subscription.dropped:
            log.warning(
                "HLS for %s fell behind and lost %d packets",
                self.stream.id,
                self._subscription.dropped,
            )
        if self._on_end is not None:
            self._on_end(self)
