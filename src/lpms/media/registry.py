"""Live streams by ID: the one place that decides whether an ID is taken."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from lpms.errors import StreamError
from lpms.media.settings import StreamLimits
from lpms.media.stream import Stream

DEFAULT_MAX_STREAMS = 1000


class StreamLimitReached(StreamError):
    """The server holds ``max_streams`` live streams: no ID may start another."""


class StreamRegistry:
    """Owns stream lifetimes: an ID has at most one live publisher at a time."""

    def __init__(
        self, *, max_streams: int = DEFAULT_MAX_STREAMS, limits: StreamLimits | None = None
    ) -> None:
        self.max_streams = max_streams
        self.limits = limits or StreamLimits()
        self._streams: dict[str, Stream] = {}
        self.on_remove: Callable[[Stream], None] | None = None  # e.g. to keep totals

    def __len__(self) -> int:
        return len(self._streams)

    def __iter__(self) -> Iterator[Stream]:
        return iter(list(self._streams.values()))

    def __contains__(self, stream_id: object) -> bool:
        return stream_id in self._streams

    def create(self, stream_id: str) -> Stream:
        """A new live stream; `StreamError` if the ID is live or the server is full."""
        if stream_id in self._streams:
            raise StreamError(f"stream {stream_id} is already being published")
        if len(self._streams) >= self.max_streams:
            raise StreamLimitReached(f"server is at its limit of {self.max_streams} live streams")
        stream = Stream(stream_id, self.limits)
        self._streams[stream_id] = stream
        return stream

    def add(self, stream: Stream) -> None:
        """Register a stream the application built itself."""
        if stream.id in self._streams:
            raise StreamError(f"stream {stream.id} is already being published")
        self._streams[stream.id] = stream

    def get(self, stream_id: str) -> Stream | None:
        return self._streams.get(stream_id)

    def remove(self, stream: Stream) -> None:
        """Forget ``stream`` if it is still the one registered under its ID."""
        if self._streams.get(stream.id) is stream:
            del self._streams[stream.id]
            if self.on_remove is not None:
                self.on_remove(stream)
