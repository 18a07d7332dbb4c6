"""Webhooks: the server's events POSTed as JSON to ``--webhook-url``.

Each event is one POST with ``Content-Type: application/json`` and a body like::

    {"event": "publish_start", "seq": 17, "time": "2025-05-09T07:35:25.123Z",
     "stream": "stream/test", "app": "stream", "name": "test",
     "client_ip": "203.0.113.7", "protocol": "rtmp"}

- ``seq`` rises by one with every event the server emits, from 1, whether it is
  delivered or not: a gap tells the receiver that events were lost. Delivered
  events arrive in ``seq`` order. A retry after a timeout can repeat an event the
  receiver did get (it answered too late), so receivers that must not double-count
  drop a ``seq`` they have seen. ``seq`` starts again at 1 when lpms restarts.
- ``time``: when the event happened (not when it was sent), RFC 3339, UTC, ms.

Events and their fields
-----------------------
Every event carries ``stream``, the stream's ID ``APP/NAME``. Durations are
seconds (floats); ``client_ip`` is the peer's address; ``protocol`` is ``"rtmp"``
or ``"hls"``.

``publish_start``: a publisher was accepted.
    ``stream``, ``app``, ``name``, ``client_ip``, ``protocol``
``publish_end``: the publisher left (or was closed, or lpms shut down).
    ``stream``, ``client_ip``, ``protocol``, ``duration_s`` (since publish_start),
    ``bytes_in`` (bytes received on the connection), ``packets`` (media packets)
``play_start``: a player was accepted.
    ``stream``, ``client_ip``, ``protocol``
``play_end``: the player left.
    ``stream``, ``client_ip``, ``protocol``, ``duration_s`` (since play_start),
    ``dropped_packets`` (packets it lost by falling behind)
``segment_ready``: an HLS segment was added to a media playlist.
    ``stream``, ``rendition`` (``"source"`` or a profile name such as
    ``"P240p30fps16x9"``), ``sequence`` (its media sequence number),
    ``duration_s``, ``uri`` (its path on lpms's HTTP port:
    ``"/stream/test/source/7.ts"``)
``transcode_behind``: transcoding fell behind real time, so a source segment was
left out of the renditions (they show a gap there).
    ``stream``, ``segment`` (the left-out segment's sequence number), ``waiting``
    (segments being transcoded at that moment)

Delivery
--------
`Webhooks.emit` never waits and never raises: it stamps the event, turns it into
JSON and puts it on a queue of ``queue_size`` events. One task sends them, one
POST at a time, oldest first. The policies, and why:

- **Queue full: the oldest waiting event is dropped** to make room, counted
  (``lpms_webhook_events_total{result="dropped"}``) and logged at most once every
  `DROP_LOG_INTERVAL` seconds with the number dropped. The newest events describe
  the current state: after an outage a receiver gets the last ``queue_size``
  events, so it learns that a stream ended even if it missed when it started;
  dropping the newest instead would leave it believing that stream still live.
- **Retries.** A POST succeeds with a 2xx answer. A refused or broken connection,
  no complete answer within ``timeout`` (an endpoint that accepts and never
  answers), or any other status (a 3xx too: redirects are not followed, a webhook
  URL is meant exactly) is tried ``retries`` more times, after ``retry_delay``
  seconds, doubling each time up to `MAX_RETRY_DELAY`. After the last try the
  event is dropped with one warning naming it and the reason (``failed``).
- **Head of line.** Events are sent strictly in order, so the event being retried
  holds back the ones behind it, for at most ``(retries + 1) * timeout`` plus the
  delays (23.5 s with the defaults): an endpoint that refuses connections or
  answers 500 fails fast, so an event costs it only the delays (3.5 s); one that
  accepts and never answers costs every try its full ``timeout``. Meanwhile new
  events keep queueing up to the bound; nothing else waits. So a dead endpoint
  costs a bounded queue (``queue_size`` events plus the one in flight) and one
  POST at a time, never a delay anywhere else; when it comes back, the queue
  drains at its pace. Sending later events past a failing one would reorder
  them, which receivers of start/end pairs cannot be expected to undo.
- **Shutdown.** `Webhooks.close` sends what is queued for at most its ``timeout``
  seconds, then drops the rest with one log line. If an event fails all its tries
  while closing, the endpoint is down, so the rest are dropped at once rather
  than holding up the shutdown.

``emit`` must be called on the event loop's thread. Without a URL, `Webhooks` is
inert: ``emit`` returns at once and ``start``/``close`` do nothing.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import aiohttp

    from lpms.metrics import Metrics

from lpms.webhook_settings import WebhookSettings

log = logging.getLogger("lpms.webhooks")

PUBLISH_START = "publish_start"
PUBLISH_END = "publish_end"
PLAY_START = "play_start"
PLAY_END = "play_end"
SEGMENT_READY = "segment_ready"
TRANSCODE_BEHIND = "transcode_behind"
EVENTS = (PUBLISH_START, PUBLISH_END, PLAY_START, PLAY_END, SEGMENT_READY, TRANSCODE_BEHIND)

MAX_RETRY_DELAY = 30.0  # seconds: the doubling stops here
DROP_LOG_INTERVAL = 10.0  # seconds: at most one "queue full" log line per interval
_RESERVED = 3  # "event", "seq" and "time" come before an event's own fields
_HEADERS = {"Content-Type": "application/json"}


@dataclass(frozen=True, slots=True)
class WebhookEvent:
    """One queued event: its name and ``seq`` (for logs) and the JSON body to POST."""

    name: str
    seq: int
    body: bytes


def retry_delay(first: float, retry: int) -> float:
    """Seconds to wait before retry number ``retry`` (1, 2, ...): ``first``,
    doubling each time, at most `MAX_RETRY_DELAY`."""
    return min(first * 2.0 ** min(retry - 1, 64), MAX_RETRY_DELAY)


def rfc3339_now() -> str:
    """The current UTC time as RFC 3339 with milliseconds: ``2025-05-09T07:35:25.123Z``."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Webhooks:
    """The server's events, queued and POSTed in order to ``settings.url``."""

    def __init__(self, settings: WebhookSettings, metrics: Metrics | None = None) -> None:
        self.settings = settings
        self._url = settings.url
        self._queue: deque[WebhookEvent] = deque()
        self._in_flight: WebhookEvent | None = None
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._seq = 0
        self._closing = False
        self._closed = False
        self._unlogged_drops = 0
        self._next_drop_log = 0.0
        self._metrics = metrics
        if metrics is not None and self._url is not None:
            metrics.webhook_queue.set_function(lambda: len(self._queue))

    @property
    def queued(self) -> int:
        """Events waiting to be sent (not counting the one being sent)."""
        return len(self._queue)

    def emit(self, event: str, **fields: Any) -> None:
        """Queue ``event`` with ``fields`` (see the module's event reference); returns
        at once, whatever the endpoint is doing."""
        if self._url is None:
            return
        self._seq += 1
        body = {"event": event, "seq": self._seq, "time": rfc3339_now(), **fields}
        if len(body) != len(fields) + _RESERVED:
            log.error("webhook %s not sent: its fields may not be named event, seq or time", event)
            self._count("dropped")
            return
        try:
            data = json.dumps(body, separators=(",", ":"), allow_nan=False).encode()
        except (TypeError, ValueError) as exc:
            log.error(
                "webhook %s (seq %d) not sent: its fields are not JSON: %s", event, self._seq, exc
            )
            self._count("dropped")
            return
        if self._closed:
            log.debug("webhook %s (seq %d) dropped: webhooks are closed", event, self._seq)
            self._count("dropped")
            return
        if len(self._queue) >= self.settings.queue_size:
            self._queue.popleft()
            self._drop()
        self._queue.append(WebhookEvent(event, self._seq, data))
        self._wake.set()

    def start(self) -> None:
        """Start sending (call in the running loop); events emitted before wait until now."""
        if self._url is None or self._task is not None or self._closed:
            return
        self._task = asyncio.get_running_loop().create_task(
            self._send_all(self._url), name="lpms webhooks"
        )
        self._task.add_done_callback(_log_crash)

    # A deadline of our own, not the caller's asyncio.timeout: when it passes, what is
    # left must still be counted and logged, which a cancelled close() could not do.
    async def close(self, timeout: float) -> None:  # noqa: ASYNC109
        """Send what is queued for at most ``timeout`` seconds, then stop; what is
        left is dropped, with one log line."""
        if self._url is None or self._closed:
            return
        self._closing = True
        self._wake.set()
        task = self._task
        if task is not None:
            _, pending = await asyncio.wait({task}, timeout=max(timeout, 0.0))
            if pending:
                task.cancel()
                await asyncio.wait({task})
        self._closed = True
        left = len(self._queue) + (self._in_flight is not None)
        self._queue.clear()
        self._in_flight = None
        if left:
            self._count("dropped", left)
            log.warning("webhooks: %d events not delivered by shutdown, dropped", left)
        self._log_drops()

    # -- the delivery task -------------------------------------------------------------

    async def _send_all(self, url: str) -> None:
        import aiohttp  # here: settings are read by commands that never serve

        timeout = aiohttp.ClientTimeout(total=self.settings.timeout)
        async with aiohttp.ClientSession(timeout=timeout, raise_for_status=False) as session:
            while True:
                if not self._queue:
                    if self._closing:
                        return
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                event = self._in_flight = self._queue.popleft()
                delivered = await self._deliver(session, url, event)
                self._in_flight = None
                self._log_drops_when_due()  # drops stopped? their count still gets told
                if not delivered and self._closing:
                    return  # the endpoint is down: don't hold up the shutdown

    async def _deliver(self, session: aiohttp.ClientSession, url: str, event: WebhookEvent) -> bool:
        """POST ``event`` until a try succeeds or the retries run out."""
        tries = self.settings.retries + 1
        reason = ""
        for attempt in range(tries):
            if attempt:
                self._count_retry()
                await asyncio.sleep(retry_delay(self.settings.retry_delay, attempt))
            try:
                reason = await self._post(session, url, event.body)
            except Exception as exc:  # a bug here must not stop every later event
                log.exception("webhook %s (seq %d): unexpected error", event.name, event.seq)
                reason = f"unexpected error: {exc!r}"
            if not reason:
                self._count("delivered")
                return True
            log.debug(
                "webhook %s (seq %d) try %d failed: %s", event.name, event.seq, attempt + 1, reason
            )
        log.warning(
            "webhook %s (seq %d) dropped after %d tries: %s", event.name, event.seq, tries, reason
        )
        self._count("failed")
        return False

    async def _post(self, session: aiohttp.ClientSession, url: str, body: bytes) -> str:
        """One POST: "" when it was answered with a 2xx, else why not."""
        import aiohttp

        timeout = self.settings.timeout
        try:
            async with (
                asyncio.timeout(timeout),
                session.post(url, data=body, headers=_HEADERS, allow_redirects=False) as response,
            ):
                status = response.status
        except TimeoutError:
            return f"no answer within {timeout:g}s"
        except aiohttp.ClientError as exc:
            return f"{type(exc).__name__}: {exc}"
        return "" if 200 <= status < 300 else f"HTTP {status}"

    # -- counting ----------------------------------------------------------------------

    def _drop(self) -> None:
        """One event dropped without being sent: counted now, logged rate-limited."""
        self._count("dropped")
        self._unlogged_drops += 1
        self._log_drops_when_due()

    def _log_drops_when_due(self) -> None:
        if self._unlogged_drops and (now := time.monotonic()) >= self._next_drop_log:
            self._next_drop_log = now + DROP_LOG_INTERVAL
            self._log_drops()

    def _log_drops(self) -> None:
        if self._unlogged_drops:
            log.warning(
                "webhook queue full (%d events): dropped the %d oldest undelivered",
                self.settings.queue_size,
                self._unlogged_drops,
            )
            self._unlogged_drops = 0

    def _count(self, result: str, amount: int = 1) -> None:
        if self._metrics is not None:
            self._metrics.webhook_events.labels(result).inc(amount)

    def _count_retry(self) -> None:
        if self._metrics is not None:
            self._metrics.webhook_retries.inc()


def _log_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and (error := task.exception()) is not None:
        log.error("webhook delivery stopped: %r", error, exc_info=error)
