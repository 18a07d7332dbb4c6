"""Who is watching over HLS: a viewer is a client IP fetching a stream's playlists or
segments, and has left when it has asked for nothing for ``timeout`` seconds.

HLS has no session to open or close, so this is the only honest count there is:
players behind one NAT count once, and a player that stops fetching is gone only
after the timeout (a few segment durations). Sans-IO: callers pass the time.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_TIMEOUT = 30.0
DEFAULT_MAX_VIEWERS = 100_000


@dataclass(slots=True)
class Viewer:
    stream_id: str
    client_ip: str
    since: float
    last_seen: float


class HLSViewers:
    """Viewers by (stream ID, client IP), bounded: past ``max_viewers`` new ones are
    not tracked (counted as ``untracked``) rather than growing the table."""

    def __init__(
        self, timeout: float = DEFAULT_TIMEOUT, max_viewers: int = DEFAULT_MAX_VIEWERS
    ) -> None:
        self.timeout = timeout
        self.max_viewers = max_viewers
        self.untracked = 0
        self._viewers: dict[tuple[str, str], Viewer] = {}
        self._per_stream: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._viewers)

    def seen(self, stream_id: str, client_ip: str, now: float) -> Viewer | None:
        """Note a request; the viewer if it is new (its play starts), else None."""
        key = (stream_id, client_ip)
        viewer = self._viewers.get(key)
        if viewer is not None:
            viewer.last_seen = now
            return None
        if len(self._viewers) >= self.max_viewers:
            self.untracked += 1
            return None
        viewer = self._viewers[key] = Viewer(stream_id, client_ip, now, now)
        self._per_stream[stream_id] = self._per_stream.get(stream_id, 0) + 1
        return viewer

    def count(self, stream_id: str) -> int:
        return self._per_stream.get(stream_id, 0)

    def expire(self, now: float) -> list[Viewer]:
        """Forget viewers silent for the timeout; the ones that left (their play ends)."""
        gone = [v for v in self._viewers.values() if now - v.last_seen > self.timeout]
        for viewer in gone:
            del self._viewers[(viewer.stream_id, viewer.client_ip)]
            left = self._per_stream[viewer.stream_id] - 1
            if left:
                self._per_stream[viewer.stream_id] = left
            else:
                del self._per_stream[viewer.stream_id]
        return gone
