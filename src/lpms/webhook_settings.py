"""Webhook settings, apart from `lpms.webhooks` so `lpms.config` can read and check
them without importing asyncio."""

from __future__ import annotations

import math
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass(frozen=True, slots=True)
class WebhookSettings:
    """Where events go and how hard lpms tries. No ``url``: no webhooks.

    ``url``: an ``http://`` or ``https://`` URL each event is POSTed to.
    ``queue_size``: events waiting at most; beyond it the oldest waiting is dropped
    (counted and logged). ``timeout``: seconds for one POST, from connecting to the
    answer's status. ``retries``: further tries of a failed POST, the first after
    ``retry_delay`` seconds, each next delay doubled (at most `MAX_RETRY_DELAY`).
    """

    url: str | None = None
    queue_size: int = 1000
    timeout: float = 5.0
    retries: int = 3
    retry_delay: float = 0.5

    def __post_init__(self) -> None:
        if self.url is not None:
            parts = urlsplit(self.url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(
                    f"webhook url must be an http:// or https:// URL with a host, got {self.url!r}"
                )
        if self.queue_size < 1:
            raise ValueError(f"webhook queue_size must be >= 1, got {self.queue_size}")
        if not (math.isfinite(self.timeout) and self.timeout > 0):
            raise ValueError(f"webhook timeout must be a number of seconds > 0, got {self.timeout}")
        if self.retries < 0:
            raise ValueError(f"webhook retries must be >= 0, got {self.retries}")
        if not (math.isfinite(self.retry_delay) and self.retry_delay >= 0):
            raise ValueError(
                f"webhook retry_delay must be a number of seconds >= 0, got {self.retry_delay}"
            )
