"""What every protocol asks the session core, and how the core says no.

A publish or play arrives over RTMP, RTMPS, HLS, HTTP-FLV or WebSocket-FLV; each
adapter turns it into one `PublishRequest` or `PlayRequest` (MediaMTX's single
access request: path, query, peer, protocol) and hands it to
`lpms.sessions.SessionCore`. A refusal comes back as one `Refusal` carrying a
`RefusalReason`; each adapter maps the reason to its own wire form (NetStream
status codes for RTMP, HTTP status codes for HTTP). Light on purpose: no PyAV, no
asyncio, so settings and auth can import it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from lpms.errors import LPMSError


class Protocol(enum.StrEnum):
    """How a client reached lpms; the values are the ``protocol`` label of metrics,
    webhooks, the API and the auth hook."""

    RTMP = "rtmp"
    RTMPS = "rtmps"
    HLS = "hls"
    HTTP_FLV = "http-flv"
    WS_FLV = "ws-flv"


class Action(enum.StrEnum):
    PUBLISH = "publish"
    PLAY = "play"


@dataclass(frozen=True, slots=True)
class StreamRequest:
    """A client asking to publish or play ``APP/NAME``, as the application's
    callbacks see it. The field order is LPMS's RTMP request's, so code written
    against `lpms.RTMPRequest` (this class) keeps working."""

    app: str
    name: str
    query: dict[str, str] = field(default_factory=dict)
    client_ip: str = ""
    client_port: int = 0
    tc_url: str = ""  # RTMP's connect URL; empty for other protocols
    protocol: Protocol = Protocol.RTMP

    @property
    def path(self) -> str:
        """``APP/NAME``: the default stream ID (``stream/test``)."""
        return f"{self.app}/{self.name}"

    @property
    def peer(self) -> str:
        return f"{self.client_ip}:{self.client_port}"


@dataclass(frozen=True, slots=True)
class PublishRequest(StreamRequest):
    """A publisher's request."""


@dataclass(frozen=True, slots=True)
class PlayRequest(StreamRequest):
    """A player's request (RTMP, HTTP-FLV, WebSocket-FLV, or one HLS fetch)."""


class RefusalReason(enum.Enum):
    """Why the core refused; adapters map each to their wire form."""

    UNAUTHORIZED = "unauthorized"
    """The publish key, the auth hook or the auth callback said no."""
    NOT_ALLOWED = "not_allowed"
    """The application's publish or play callbacks said no, or failed."""
    BAD_NAME = "bad_name"
    """The stream ID is taken by a live publisher."""
    NOT_FOUND = "not_found"
    """No live stream by that ID."""
    LIMIT = "limit"
    """A limit of the server's (streams, players per stream) is reached."""


class Refusal(LPMSError):
    """The core refused a publish or play. ``reason`` picks the wire form, ``label``
    is the metrics label (the check or limit that refused), ``path`` what the log
    names (a publish key taken off it)."""

    def __init__(
        self, reason: RefusalReason, message: str, label: str | None = None, path: str = ""
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.label = label or reason.value
        self.path = path


RTMPRequest = StreamRequest
"""LPMS's name for a request (its HandleRTMPPublish / HandleRTMPPlay callbacks take
one); every `PublishRequest` and `PlayRequest` is one."""
