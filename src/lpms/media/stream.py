"""A live stream: one publisher's packets fanned out to any number of subscribers.

The publisher never waits for a subscriber. Each subscriber has a bounded queue;
one that falls behind loses whole GOPs (it resumes at the next keyframe, with its
drop counted and logged) so it can catch up instead of stalling everyone. A new
subscriber is primed with the metadata, the codec configurations and the GOP
cache (everything since the last video keyframe), so playback starts at once on
a frame that decodes.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import deque
from collections.abc import Callable

from lpms.media.meter import TrackMeter
from lpms.media.packet import MediaPacket, TrackKind
from lpms.media.settings import StreamLimits
from lpms.media.timestamps import TimestampRepair

log = logging.getLogger(__name__)

_VIDEO, _AUDIO = TrackKind.VIDEO, TrackKind.AUDIO  # module constants: enum lookups cost
_subscription_ids = itertools.count(1)


class PlayerClock:
    """A player's timeline: its first media packet at 0, wherever it joined, so a
    player that joins an hour in does not start at an hour (RTMP, HTTP-FLV and
    WebSocket-FLV players all get their packets this way)."""

    __slots__ = ("base",)

    def __init__(self) -> None:
        self.base: int | None = None

    def rebase(self, packet: MediaPacket) -> int:
        """The player's decode timestamp for ``packet``; configs before the first
        media packet are at 0, and nothing goes below it."""
        base = self.base
        if base is None:
            if packet.is_config:
                return 0
            base = self.base = packet.dts
        dts = packet.dts - base
        return dts if dts > 0 else 0


class StreamEnded(Exception):
    """Raised to an async subscriber once the stream is over and its queue drained."""


class Subscription:
    """One subscriber's view of a stream.

    Push consumers (RTMP players) pass ``on_ready`` and drain with `pop` when it
    fires, so no task switch is spent per packet; pull consumers (segmenters,
    transcoders) ``await get()`` or iterate with ``async for``.
    """

    __slots__ = (
        "_awaiting_keyframe",
        "_on_kick",
        "_on_ready",
        "_queue",
        "_waiter",
        "created_at",
        "dropped",
        "ended",
        "id",
        "max_packets",
        "name",
        "peer",
        "protocol",
        "stream",
    )

    def __init__(
        self,
        stream: Stream,
        name: str,
        max_packets: int,
        on_ready: Callable[[], None] | None,
        on_kick: Callable[[], None] | None = None,
        protocol: str = "",
        peer: str = "",
    ) -> None:
        self.stream = stream
        self.name = name
        self.protocol = protocol  # a player's protocol; empty for lpms's own consumers
        self.peer = peer
        self.id = next(_subscription_ids)
        self.created_at = time.monotonic()
        self._on_kick = on_kick
        self.max_packets = max_packets
        self._queue: deque[MediaPacket] = deque()
        self._on_ready = on_ready
        self._waiter: asyncio.Future[None] | None = None
        self._awaiting_keyframe = False
        self.dropped = 0
        self.ended = False

    def __len__(self) -> int:
        return len(self._queue)

    def _offer(self, packet: MediaPacket) -> None:
        if self._awaiting_keyframe:
            if packet.kind is TrackKind.VIDEO and packet.keyframe and not packet.is_config:
                self._awaiting_keyframe = False
            elif not packet.is_config:
                self._count_dropped(1)
                return
        if len(self._queue) >= self.max_packets:
            self._drop_backlog()
            if self._awaiting_keyframe and not packet.is_config:
                self._count_dropped(1)
                return
        self._queue.append(packet)
        self._wake()

    def _count_dropped(self, packets: int) -> None:
        """This subscriber's losses, and its stream's (for the dropped-packets metric)."""
        self.dropped += packets
        self.stream.dropped_packets += packets

    def _drop_backlog(self) -> None:
        """Drop whole GOPs of queued media, keeping configs.

        If the queue holds a later keyframe, the subscriber resumes there, with the
        newest GOP intact; otherwise everything goes and it waits for the next one.
        """
        queue = self._queue
        resume_at = _last_keyframe_index(queue) if self.stream.has_video else len(queue) - 1
        first_media = next((i for i, p in enumerate(queue) if not p.is_config), len(queue))
        if resume_at > first_media:
            kept = [p for i, p in enumerate(queue) if i >= resume_at or p.is_config]
        else:
            kept = [p for p in queue if p.is_config]
            # Audio-only streams have no keyframes to wait for; they resume at once.
            self._awaiting_keyframe = self.stream.has_video
        dropped = len(queue) - len(kept)
        self._queue = deque(kept)
        self._count_dropped(dropped)
        log.warning(
            "subscriber %s of %s fell behind: dropped %d packets, resuming at a keyframe",
            self.name,
            self.stream.id,
            dropped,
        )

    def _end(self) -> None:
        self.ended = True
        self._wake()

    def _wake(self) -> None:
        if self._on_ready is not None:
            self._on_ready()
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def pop(self) -> MediaPacket | None:
        """The next queued packet, or None when the queue is empty."""
        return self._queue.popleft() if self._queue else None

    async def get(self) -> MediaPacket:
        """Wait for the next packet; `StreamEnded` once the stream is over and drained."""
        while not self._queue:
            if self.ended:
                raise StreamEnded(self.stream.id)
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._queue.popleft()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> MediaPacket:
        try:
            return await self.get()
        except StreamEnded:
            raise StopAsyncIteration from None

    @property
    def kickable(self) -> bool:
        return self._on_kick is not None

    def kick(self) -> bool:
        """Disconnect this subscriber (the API's kick); False if it cannot be."""
        if self._on_kick is None:
            return False
        self._on_kick()
        return True

    def close(self) -> None:
        """Stop receiving; safe to call more than once. The callbacks are let go:
        they are the subscriber's bound methods, and a cycle through them would keep
        a connection or a segmenter (and its buffers) alive until a full GC pass."""
        self.stream.unsubscribe(self)
        self._queue.clear()
        self._on_ready = self._on_kick = None
        self._waiter = None


class Stream:
    """A live stream by ID, fed by one publisher."""

    def __init__(self, stream_id: str, limits: StreamLimits | None = None) -> None:
        self.id = stream_id
        self.limits = limits or StreamLimits()
        self.started_at = time.monotonic()
        self.metadata: MediaPacket | None = None
        self.video_config: MediaPacket | None = None
        self.audio_config: MediaPacket | None = None
        self.has_video = False
        self.has_audio = False
        self.ended = False
        self.timestamp_repairs = TimestampRepair(stream_id, self.limits.max_timestamp_jump)
        self.packets_in = 0
        self.bytes_in = 0
        self.bytes_out = 0  # sent to players, counted by their protocol's layer
        self.dropped_packets = 0  # lost by subscribers that fell behind
        self.video_meter = TrackMeter()
        self.audio_meter = TrackMeter()
        self.publisher_protocol = ""
        self.publisher_address = ""
        self._disconnect_publisher: Callable[[], None] | None = None
        self._gop: list[MediaPacket] = []
        self._gop_bytes = 0
        self._gop_overflowed = False
        self._max_gop_packets = self.limits.max_gop_packets
        self._max_gop_bytes = self.limits.max_gop_bytes
        self._subscribers: list[Subscription] = []
        self._end_callbacks: list[Callable[[Stream], None]] = []

    def __repr__(self) -> str:
        return f"Stream({self.id!r}, subscribers={len(self._subscribers)}, ended={self.ended})"

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    def attach_publisher(
        self, protocol: str, address: str, disconnect: Callable[[], None] | None = None
    ) -> None:
        """Who feeds the stream, and how to cut them off (the API's kick)."""
        self.publisher_protocol = protocol
        self.publisher_address = address
        self._disconnect_publisher = disconnect

    def kick(self) -> bool:
        """Disconnect the publisher; False if nothing can (a stream fed in Python)."""
        if self._disconnect_publisher is None:
            return False
        self._disconnect_publisher()
        return True

    @property
    def subscribers(self) -> list[Subscription]:
        return list(self._subscribers)

    @property
    def players(self) -> list[Subscription]:
        """Subscribers that are players (RTMP, HTTP-FLV, WebSocket-FLV: they carry a
        protocol), not lpms's own consumers (HLS segmenters) or an application's."""
        return [s for s in self._subscribers if s.protocol]

    def on_end(self, callback: Callable[[Stream], None]) -> None:
        """Run ``callback`` once when the publisher leaves (or at once if it has)."""
        if self.ended:
            callback(self)
        else:
            self._end_callbacks.append(callback)

    # -- publisher side ----------------------------------------------------

    def write(self, packet: MediaPacket) -> None:
        """Take one packet from the publisher and hand it to every subscriber.

        Every published packet passes here, so the common cases (video and audio
        frames) are handled inline rather than through a helper each."""
        if self.ended:
            return
        packet = self.timestamp_repairs.repair(packet)
        self.packets_in += 1
        size = len(packet.payload)
        self.bytes_in += size
        kind = packet.kind
        if packet.is_config:
            self._remember_config(packet)
        elif kind is _VIDEO:
            self.video_meter.add(packet.dts, size)
            self.has_video = True
            if packet.keyframe:
                self._gop.clear()
                self._gop_bytes = 0
                self._gop_overflowed = False
                self._append_gop(packet, size)
            elif self._gop:
                self._append_gop(packet, size)
            # else: no keyframe seen yet, nothing a new player could decode
        elif kind is _AUDIO:
            self.audio_meter.add(packet.dts, size)
            self.has_audio = True
            if self._gop:  # audio-only streams have no GOP: their players start live
                self._append_gop(packet, size)
        # other data messages are live-only
        for subscriber in self._subscribers:
            subscriber._offer(packet)

    def _remember_config(self, packet: MediaPacket) -> None:
        kind = packet.kind
        if kind is _VIDEO:
            self.video_config = packet
            self.has_video = True
        elif kind is _AUDIO:
            self.audio_config = packet
            self.has_audio = True
        else:
            self.metadata = packet

    def _append_gop(self, packet: MediaPacket, size: int) -> None:
        if self._gop_overflowed:
            return
        gop = self._gop
        if len(gop) >= self._max_gop_packets or self._gop_bytes + size > self._max_gop_bytes:
            # A GOP this long cannot be replayed whole; new players wait for the
            # next keyframe instead of starting mid-GOP.
            gop.clear()
            self._gop_bytes = 0
            self._gop_overflowed = True
            return
        gop.append(packet)
        self._gop_bytes += size

    def end(self) -> None:
        """The publisher left: every subscriber drains its queue, then ends."""
        if self.ended:
            return
        self.ended = True
        self._disconnect_publisher = None  # the connection's method: no cycle to it
        for subscriber in list(self._subscribers):
            subscriber._end()
        self._gop.clear()
        callbacks, self._end_callbacks = self._end_callbacks, []
        for callback in callbacks:
            callback(self)

    # -- subscriber side ---------------------------------------------------

    def subscribe(
        self,
        name: str,
        *,
        on_ready: Callable[[], None] | None = None,
        max_packets: int | None = None,
        on_kick: Callable[[], None] | None = None,
        protocol: str = "",
        peer: str = "",
    ) -> Subscription:
        """Join the stream: the queue starts with metadata, configs and the GOP cache.
        ``on_kick`` disconnects the subscriber when the API asks to; a player names
        its ``protocol`` and ``peer``."""
        subscription = Subscription(
            self,
            name,
            max_packets or self.limits.max_queue_packets,
            on_ready,
            on_kick,
            protocol,
            peer,
        )
        for packet in self.start_packets():
            subscription._queue.append(packet)
        if self.ended:
            subscription.ended = True
        else:
            self._subscribers.append(subscription)
            if self.has_video and not self._gop:
                # Mid-GOP join with no cache: wait for a keyframe rather than
                # handing the player frames it cannot decode.
                subscription._awaiting_keyframe = True
        return subscription

    def start_packets(self) -> list[MediaPacket]:
        """What a subscriber needs first: metadata, configs, then the GOP cache."""
        head = [p for p in (self.metadata, self.video_config, self.audio_config) if p is not None]
        return head + self._gop

    def unsubscribe(self, subscription: Subscription) -> None:
        if subscription in self._subscribers:
            self._subscribers.remove(subscription)


def _last_keyframe_index(queue: deque[MediaPacket]) -> int:
    """Index of the newest video keyframe in ``queue``, or -1 if there is none."""
    for index in range(len(queue) - 1, -1, -1):
        packet = queue[index]
        if packet.kind is TrackKind.VIDEO and packet.keyframe and not packet.is_config:
            return index
    return -1
