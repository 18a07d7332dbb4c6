"""Turning decoded pictures upright: the display matrix a phone records portrait with.

A phone films portrait as landscape pictures plus a display matrix on the track
(MP4/MOV ``tkhd``) that tells players to turn them. MPEG-TS, which every output
segment is, has nowhere to carry that matrix, so an output that kept the pictures as
coded would play sideways. As the ffmpeg CLI does by default (``-autorotate``), and
as go-livepeer#2726 proposes for LPMS ("rotate decoded image before passing to
outputs"), each decoded frame is turned upright once, before any profile scales it,
and the outputs carry no matrix: they fit the profile's box to the turned shape
(`lpms.transcode.profiles.output_size`). Mirrored matrices are turned, not mirrored.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import av
import av.filter

# ffmpeg's autorotate (fftools/ffmpeg_filter.c): the transpose for each clockwise angle.
_FILTERS: dict[int, tuple[tuple[str, str], ...]] = {
    90: (("transpose", "clock"),),
    180: (("hflip", ""), ("vflip", "")),
    270: (("transpose", "cclock"),),
}


def display_rotation(stream: av.video.stream.VideoStream, packet: av.Packet[Any]) -> int:
    """The clockwise turn (0, 90, 180 or 270 degrees) that shows ``stream`` upright.

    PyAV reads a display matrix only off decoded frames, and only those of the
    stream's own decoder (which FFmpeg gives the track's side data), so the first
    picture, ``packet``, is decoded once more by it."""
    try:
        frames = [*stream.codec_context.decode(packet), *stream.codec_context.decode(None)]
    except (av.FFmpegError, ValueError):
        return 0
    for frame in frames:
        if isinstance(frame, av.VideoFrame):
            return round(-frame.rotation / 90) * 90 % 360  # PyAV's is counter-clockwise
    return 0


class Upright:
    """Turns frames by a fixed clockwise angle through a small FFmpeg filter graph,
    made anew when the pictures' size or format changes. Frames come out in
    ``time_base``, the stream's, whatever their own says (the decoder leaves some
    without one, and PyAV's encoder rescales any frame that has one)."""

    def __init__(self, clockwise: int, time_base: Fraction) -> None:
        if clockwise not in _FILTERS:
            raise ValueError(f"cannot turn pictures by {clockwise} degrees")
        self.clockwise = clockwise
        self.time_base = time_base
        self._graph: av.filter.Graph | None = None
        self._key: tuple[int, int, str] | None = None

    def __call__(self, frame: av.VideoFrame) -> av.VideoFrame:
        graph = self._graph_for(frame)
        frame.time_base = self.time_base
        graph.push(frame)
        turned = graph.vpull()
        turned.pts, turned.time_base = frame.pts, self.time_base
        return turned

    def _graph_for(self, frame: av.VideoFrame) -> av.filter.Graph:
        key = (frame.width, frame.height, frame.format.name)
        if self._graph is not None and self._key == key:
            return self._graph
        graph = av.filter.Graph()
        last = graph.add_buffer(
            width=frame.width, height=frame.height, format=frame.format, time_base=self.time_base
        )
        for name, argument in _FILTERS[self.clockwise]:
            step = graph.add(name, argument or None)
            last.link_to(step)
            last = step
        last.link_to(graph.add("buffersink"))
        graph.configure()
        self._graph, self._key = graph, key
        return graph
