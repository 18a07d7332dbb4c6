"""The asyncio side of HLS: a stream subscription feeding a segmenter.

Packets are drained in batches from the subscription's ``on_ready`` push (as RTMP
players are), so segmenting costs no task switch per packet. A segmenting error
ends this stream's HLS output with one log line; the stream itself, its RTMP
players and every other stream go on.

MPEG-TS goes to the ``source`` rendition whole. CMAF goes track by track: video to
``source``, audio to ``audio``, part by part as they are cut (LL-HLS), then segment
by segment; the transcoder is handed each video segment with its init segment in
front, which makes it a file FFmpeg reads on its own.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable

from lpms.errors import LPMSError
from lpms.hls.cmaf import CMAFEvent, CMAFSegmenter, PartReady, SegmentReady
from lpms.hls.cutter import START_OFFSET_MS, CutterOptions
from lpms.hls.rendition import Rendition
from lpms.hls.segmenter import Segment, Segmenter, SegmenterOptions
from lpms.hls.settings import HLSFormat
from lpms.hls.store import AUDIO, SOURCE, HLSStream
from lpms.media.stream import Stream

log = logging.getLogger(__name__)

RESUME_GAP_MS = 1000


class LiveSegmenter:
    """Segments one live stream into its HLS renditions until the stream ends."""

    def __init__(
        self,
        stream: Stream,
        hls: HLSStream,
        options: SegmenterOptions,
        on_end: Callable[[LiveSegmenter], None] | None = None,
        on_segment: Callable[[Segment], None] | None = None,
    ) -> None:
        self.stream = stream
        self.hls = hls
        self.rendition = hls.rendition(SOURCE)  # first in the master playlist
        self._on_end = on_end
        self._on_segment = on_segment
        self._loop = asyncio.get_running_loop()
        self._scheduled = False
        self.finished = False
        settings = hls.settings
        self._timeline_started = False
        self._cmaf: CMAFSegmenter | None = None
        self._ts: Segmenter | None = None
        if settings.format is HLSFormat.FMP4:
            # A returning publisher carries on the stream's timeline (a second on, for
            # its audio): players' decode times never go back.
            resumed = hls.timeline_end_ms + RESUME_GAP_MS if hls.timeline_end_ms else 0
            self._cmaf = CMAFSegmenter(
                CutterOptions(
                    segment_duration=options.segment_duration,
                    part_duration=settings.part_target,
                    max_segment_bytes=options.max_segment_bytes,
                ),
                first_sequence=self.rendition.next_sequence,
                start_ms=resumed or START_OFFSET_MS,
            )
        else:
            self._ts = Segmenter(options, first_sequence=self.rendition.next_sequence)
        self._subscription = stream.subscribe(f"hls:{SOURCE}", on_ready=self._schedule)
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
        try:
            if self._ts is not None:
                self._drain_ts(self._ts)
            else:
                assert self._cmaf is not None
                self._drain_cmaf(self._cmaf)
            if subscription.ended:
                self.stop()
        except LPMSError as exc:
            log.error("HLS for %s stopped: %s", self.stream.id, exc)
            self.stop()

    def _drain_ts(self, segmenter: Segmenter) -> None:
        subscription = self._subscription
        while (packet := subscription.pop()) is not None:
            for segment in segmenter.push(packet):
                self._add(segment)
        if subscription.ended:
            for segment in segmenter.finish():
                self._add(segment)

    def _add(self, segment: Segment) -> None:
        self.rendition.add(segment)
        if self._on_segment is not None:
            self._on_segment(segment)

    def _drain_cmaf(self, segmenter: CMAFSegmenter) -> None:
        subscription = self._subscription
        while (packet := subscription.pop()) is not None:
            self._take(segmenter.push(packet), segmenter)
        if subscription.ended:
            self._take(segmenter.finish(), segmenter)

    def _take(self, events: list[CMAFEvent], segmenter: CMAFSegmenter) -> None:
        for event in events:
            name = SOURCE if event.video else AUDIO
            rendition = self.hls.rendition(name)
            if isinstance(event, PartReady):
                rendition.add_part(event.part)
            else:
                self._segment_ready(event, rendition, segmenter)

    def _segment_ready(
        self, event: SegmentReady, target: Rendition, segmenter: CMAFSegmenter
    ) -> None:
        if event.segment is None or event.init is None:
            # The track had nothing in this segment (audio that stopped): a gap keeps
            # its numbering in step.
            if target.last_segment is not None or target.has_parts:
                target.add_gap(_placeholder(event))
            return
        if not self._timeline_started:  # this publisher's timeline, for DASH's periods
            self._timeline_started = True
            self.hls.timelines[event.sequence] = segmenter.wallclock_base
        end = (event.decode_time + event.decode_duration) * 1000 // event.init.timescale
        self.hls.timeline_end_ms = max(self.hls.timeline_end_ms, end)
        target.add(event.segment, event.timing)
        if self._on_segment is None:
            return
        if event.video:
            whole = event.init.data + event.segment.data
            self._on_segment(dataclasses.replace(event.segment, data=whole))
        elif self.rendition.last_segment is None and not self.rendition.has_parts:
            self._on_segment(event.segment)  # an audio-only stream: the ladder says so

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


def _placeholder(event: SegmentReady) -> Segment:
    return Segment(
        sequence=event.sequence,
        data=b"",
        duration=event.duration,
        start_ms=0,
        program_date_time=event.program_date_time,
    )
