"""Server settings: every one has a safe default and a name users can look up.

Defaults live here, in one place; the CLI (and later TOML files and ``LPMS_*``
variables) only override them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lpms.auth import AuthSettings
from lpms.hls.store import HLSSettings
from lpms.media.stream import StreamLimits
from lpms.rtmp.listener import ListenerSettings
from lpms.transcode.live import TranscodeSettings
from lpms.webhooks import WebhookSettings

DEFAULT_HOST = "0.0.0.0"
DEFAULT_RTMP_PORT = 1935
DEFAULT_HTTP_PORT = 8000


@dataclass(frozen=True, slots=True)
class HTTPSettings:
    """Bounds on HTTP requests (bytes): a request line or header field over its limit,
    more header fields than ``max_headers``, or a body over ``max_body_bytes`` gets
    a 4xx and the connection is closed. ``keepalive_timeout``: seconds an idle
    keep-alive connection stays open."""

    max_request_line: int = 8190
    max_header_bytes: int = 8190
    max_headers: int = 64
    max_body_bytes: int = 64 << 10
    keepalive_timeout: float = 75.0


@dataclass(frozen=True, slots=True)
class LogSettings:
    """``level``: debug, info, warning or error. ``format``: ``text`` (one line per
    event with ``key=value`` fields) or ``json`` (one object per line, for shippers)."""

    level: str = "info"
    format: str = "text"


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything `lpms.LPMS` needs to run."""

    host: str = DEFAULT_HOST
    rtmp_port: int = DEFAULT_RTMP_PORT
    http_port: int = DEFAULT_HTTP_PORT
    workdir: str | None = None
    max_streams: int = 1000
    max_players_per_stream: int = 1000
    shutdown_timeout: float = 5.0
    rtmp: ListenerSettings = field(default_factory=ListenerSettings)
    stream: StreamLimits = field(default_factory=StreamLimits)
    hls: HLSSettings = field(default_factory=HLSSettings)
    transcode: TranscodeSettings = field(default_factory=TranscodeSettings)
    auth: AuthSettings = field(default_factory=AuthSettings)
    http: HTTPSettings = field(default_factory=HTTPSettings)
    webhook: WebhookSettings = field(default_factory=WebhookSettings)
    log: LogSettings = field(default_factory=LogSettings)
