"""Events an `RTMPConnection` hands to its owner.

The connection answers the protocol's own chatter (handshake, control messages,
``connect``, ``createStream``) by itself; these events are the decisions and data
only the application can handle.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lpms.media.packet import MediaPacket
from lpms.records import record


@dataclass(frozen=True, slots=True)
class Connected:
    """The client sent ``connect`` for ``app``; lpms has already accepted it."""

    app: str
    tc_url: str
    flash_version: str


@dataclass(frozen=True, slots=True)
class PublishRequested:
    """The client wants to publish ``name`` on ``message_stream_id``.

    Answer with `RTMPConnection.accept_publish` or `reject_publish`. ``query`` holds
    the parameters after ``?`` in the stream name or the connect URL's app.
    """

    message_stream_id: int
    app: str
    name: str
    query: dict[str, str] = field(default_factory=dict)
    publish_type: str = "live"


@dataclass(frozen=True, slots=True)
class PlayRequested:
    """The client wants to play ``name``; answer with ``accept_play``/``reject_play``."""

    message_stream_id: int
    app: str
    name: str
    query: dict[str, str] = field(default_factory=dict)


@record
class MediaReceived:
    """An audio, video or data packet from an accepted publisher."""

    message_stream_id: int
    packet: MediaPacket


@dataclass(frozen=True, slots=True)
class PublishEnded:
    """The publisher said it is done (FCUnpublish, closeStream or deleteStream)."""

    message_stream_id: int


@dataclass(frozen=True, slots=True)
class PlayEnded:
    """A player stopped playing (closeStream or deleteStream)."""

    message_stream_id: int


Event = Connected | PublishRequested | PlayRequested | MediaReceived | PublishEnded | PlayEnded
