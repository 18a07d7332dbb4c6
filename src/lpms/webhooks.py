"""Webhooks: the server's events POSTed as JSON to ``--webhook-url``.

(Being built: the delivery queue comes with issue 6.)
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class WebhookSettings:
    """Where events go and how hard lpms tries. No ``url``: no webhooks.

    ``queue_size`` events wait at most (the oldest undelivered are dropped, counted
    and logged, beyond it); each POST has ``timeout`` seconds; a failed one is tried
    ``retries`` more times, ``retry_delay`` seconds apart, doubling each time.
    """

    url: str | None = None
    queue_size: int = 1000
    timeout: float = 5.0
    retries: int = 3
    retry_delay: float = 0.5
