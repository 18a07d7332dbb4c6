"""Webhook delivery against a real HTTP receiver (aiohttp on 127.0.0.1, port 0): order
and body, retries, dead and hanging endpoints, a full queue, shutdown, no URL."""

from __future__ import annotations

import asyncio
import logging
import math
import re
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st

from lpms import webhooks as webhooks_module
from lpms.metrics import Metrics
from lpms.webhook_settings import WebhookSettings
from lpms.webhooks import (
    MAX_RETRY_DELAY,
    PLAY_END,
    PLAY_START,
    PUBLISH_END,
    PUBLISH_START,
    SEGMENT_READY,
    TRANSCODE_BEHIND,
    Webhooks,
    retry_delay,
    rfc3339_now,
)
from tests.local_http import http_endpoint

TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
WAIT_S = 5.0  # generous bound on anything expected to happen "soon"


@dataclass
class Receiver:
    """A webhook endpoint. Answers each request with the next of ``statuses`` (200
    once they run out), after ``delay`` seconds; with ``hang``, never answers."""

    url: str = ""
    statuses: list[int] = field(default_factory=list)
    delay: float = 0.0
    hang: bool = False
    requests: list[dict[str, Any]] = field(default_factory=list)
    content_types: list[str] = field(default_factory=list)
    released: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        self.content_types.append(request.content_type)
        self.requests.append(await request.json())
        if self.hang:
            await self.released.wait()
        if self.delay:
            await asyncio.sleep(self.delay)
        status = self.statuses.pop(0) if self.statuses else 200
        return web.Response(status=status)

    def seqs(self) -> list[int]:
        return [body["seq"] for body in self.requests]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    endpoint = Receiver()
    async with http_endpoint("/hook", endpoint.handle) as url:
        endpoint.url = url
        try:
            yield endpoint
        finally:
            endpoint.released.set()


@pytest.fixture
def refused_url() -> Iterator[str]:
    """A port that refuses connections: bound (so nothing else takes it), not listening."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/hook"


def make(url: str | None, metrics: Metrics | None = None, **settings: Any) -> Webhooks:
    """Webhooks with test-sized timeouts and retry delays (``settings`` override them)."""
    fast: dict[str, Any] = {"timeout": 1.0, "retries": 2, "retry_delay": 0.01}
    return Webhooks(WebhookSettings(url=url, **(fast | settings)), metrics)


def events(metrics: Metrics, result: str) -> float:
    return metrics.value("lpms_webhook_events_total", result=result)


async def eventually(condition: Callable[[], bool], within: float = WAIT_S) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


def cycle(webhooks: Webhooks) -> None:
    """What the server emits for one publish, one play, one segment, unpublish."""
    webhooks.emit(
        PUBLISH_START,
        stream="stream/test",
        app="stream",
        name="test",
        client_ip="127.0.0.1",
        protocol="rtmp",
    )
    webhooks.emit(PLAY_START, stream="stream/test", client_ip="127.0.0.2", protocol="rtmp")
    webhooks.emit(
        SEGMENT_READY,
        stream="stream/test",
        rendition="source",
        sequence=0,
        duration_s=2.0,
        uri="/stream/test/source/0.ts",
    )
    webhooks.emit(TRANSCODE_BEHIND, stream="stream/test", segment=1, waiting=3)
    webhooks.emit(
        PLAY_END,
        stream="stream/test",
        client_ip="127.0.0.2",
        protocol="rtmp",
        duration_s=1.5,
        dropped_packets=0,
    )
    webhooks.emit(
        PUBLISH_END,
        stream="stream/test",
        client_ip="127.0.0.1",
        protocol="rtmp",
        duration_s=2.25,
        bytes_in=123456,
        packets=321,
    )


# --- delivery ------------------------------------------------------------------------


async def test_events_arrive_in_order_with_rising_seq_and_their_fields(
    receiver: Receiver,
) -> None:
    metrics = Metrics()
    webhooks = make(receiver.url, metrics)
    webhooks.start()
    before = datetime.now(UTC) - timedelta(seconds=1)
    cycle(webhooks)
    await webhooks.close(WAIT_S)
    after = datetime.now(UTC) + timedelta(seconds=1)

    names = [body["event"] for body in receiver.requests]
    assert names == [
        PUBLISH_START,
        PLAY_START,
        SEGMENT_READY,
        TRANSCODE_BEHIND,
        PLAY_END,
        PUBLISH_END,
    ]
    assert receiver.seqs() == [1, 2, 3, 4, 5, 6]
    assert receiver.content_types == ["application/json"] * 6
    for body in receiver.requests:
        assert TIME.fullmatch(body["time"])
        assert before <= datetime.fromisoformat(body["time"]) <= after
    assert receiver.requests[0] == {
        "event": "publish_start",
        "seq": 1,
        "time": receiver.requests[0]["time"],
        "stream": "stream/test",
        "app": "stream",
        "name": "test",
        "client_ip": "127.0.0.1",
        "protocol": "rtmp",
    }
    assert receiver.requests[5]["bytes_in"] == 123456
    assert receiver.requests[5]["duration_s"] == 2.25
    assert events(metrics, "delivered") == 6
    assert events(metrics, "failed") == events(metrics, "dropped") == 0
    assert metrics.value("lpms_webhook_queue") == 0


async def test_events_emitted_before_start_are_sent_once_started(receiver: Receiver) -> None:
    webhooks = make(receiver.url)
    webhooks.emit(PLAY_START, stream="a/b", client_ip="::1", protocol="hls")
    await asyncio.sleep(0.01)
    assert receiver.requests == []
    webhooks.start()
    await webhooks.close(WAIT_S)
    assert receiver.seqs() == [1]


async def test_a_500_is_retried_and_the_event_delivered_once(receiver: Receiver) -> None:
    metrics = Metrics()
    receiver.statuses = [500]
    webhooks = make(receiver.url, metrics, retries=3)
    webhooks.start()
    webhooks.emit(PLAY_START, stream="a/b", client_ip="127.0.0.1", protocol="rtmp")
    webhooks.emit(PLAY_END, stream="a/b", client_ip="127.0.0.1", protocol="rtmp")
    await webhooks.close(WAIT_S)
    assert receiver.seqs() == [1, 1, 2]  # the first try answered 500, the second 200
    assert events(metrics, "delivered") == 2
    assert events(metrics, "failed") == 0
    assert metrics.value("lpms_webhook_retries_total") == 1


async def test_a_redirect_is_not_followed_but_retried(receiver: Receiver) -> None:
    metrics = Metrics()
    receiver.statuses = [307, 307]
    webhooks = make(receiver.url, metrics, retries=1)
    webhooks.start()
    webhooks.emit(PLAY_START, stream="a/b", client_ip="127.0.0.1", protocol="rtmp")
    await webhooks.close(WAIT_S)
    assert receiver.seqs() == [1, 1]
    assert events(metrics, "failed") == 1


async def test_an_endpoint_that_keeps_failing_gets_retries_plus_one_tries(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    metrics = Metrics()
    receiver.statuses = [503] * 3
    webhooks = make(receiver.url, metrics, retries=2)
    webhooks.start()
    webhooks.emit(SEGMENT_READY, stream="a/b", rendition="source", sequence=4)
    webhooks.emit(SEGMENT_READY, stream="a/b", rendition="source", sequence=5)
    with caplog.at_level(logging.WARNING, "lpms.webhooks"):
        await eventually(lambda: events(metrics, "delivered") == 1)
    assert receiver.seqs() == [1, 1, 1, 2]  # the next event is sent after the failed one
    assert events(metrics, "failed") == 1
    [warning] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "segment_ready" in warning
    assert "seq 1" in warning
    assert "3 tries" in warning
    assert "HTTP 503" in warning
    await webhooks.close(WAIT_S)


# --- dead endpoints never block the media path ----------------------------------------


async def ticker_gaps(until: asyncio.Future[None]) -> float:
    """The longest the loop kept a 5 ms sleeper waiting while ``until`` is pending."""
    longest = 0.0
    while not until.done():
        started = time.monotonic()
        await asyncio.sleep(0.005)
        longest = max(longest, time.monotonic() - started)
    return longest


async def test_a_refused_port_drops_after_retries_and_never_blocks_emit(
    refused_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    metrics = Metrics()
    webhooks = make(refused_url, metrics, queue_size=100, retries=2, retry_delay=0.01)
    webhooks.start()
    # emit is a plain function: 10k calls in a row await nothing, so nothing else
    # can have run in between, and the queue stays at its bound.
    for number in range(10_000):
        assert webhooks.emit(SEGMENT_READY, stream="a/b", sequence=number) is None  # type: ignore[func-returns-value]
        assert webhooks.queued <= 100
    assert webhooks.queued == 100
    assert events(metrics, "dropped") == 10_000 - 100
    assert metrics.value("lpms_webhook_queue") == 100

    with caplog.at_level(logging.WARNING, "lpms.webhooks"):
        await eventually(lambda: events(metrics, "failed") >= 2)
    failures = [r.getMessage() for r in caplog.records if "dropped after 3 tries" in r.getMessage()]
    assert failures[0].startswith("webhook segment_ready (seq 9901)")  # the oldest kept
    assert "connect" in failures[0].lower()
    await webhooks.close(0.0)


async def test_a_hanging_endpoint_times_out_and_the_loop_stays_responsive(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    metrics = Metrics()
    receiver.hang = True
    webhooks = make(receiver.url, metrics, timeout=0.1, retries=1, retry_delay=0.01)
    webhooks.start()
    done = asyncio.get_running_loop().create_future()
    gaps = asyncio.create_task(ticker_gaps(done))
    with caplog.at_level(logging.WARNING, "lpms.webhooks"):
        webhooks.emit(PUBLISH_START, stream="a/b", app="a", name="b")
        webhooks.emit(PUBLISH_END, stream="a/b")
        await eventually(lambda: events(metrics, "failed") == 2)
    done.set_result(None)
    assert await gaps < 1.0  # generous: the loop was never held by the delivery
    assert receiver.seqs() == [1, 1, 2, 2]
    messages = [r.getMessage() for r in caplog.records]
    assert any("publish_start (seq 1)" in m and "no answer within 0.1s" in m for m in messages)
    await webhooks.close(0.0)


async def test_emits_return_at_once_while_the_endpoint_hangs(receiver: Receiver) -> None:
    receiver.hang = True
    webhooks = make(receiver.url, queue_size=50, timeout=WAIT_S)
    webhooks.start()
    webhooks.emit(PLAY_START, stream="a/b")
    await eventually(lambda: len(receiver.requests) == 1)  # one POST in flight, stuck
    slowest = 0.0
    for number in range(1000):
        started = time.perf_counter()
        webhooks.emit(SEGMENT_READY, stream="a/b", sequence=number)
        slowest = max(slowest, time.perf_counter() - started)
        if number % 100 == 0:
            await asyncio.sleep(0)  # let the delivery task run: it must still be stuck
    assert slowest < 0.1  # generous: no emit waits on the network
    assert webhooks.queued == 50
    assert len(receiver.requests) == 1
    await webhooks.close(0.0)


# --- bounds and shutdown --------------------------------------------------------------


async def test_a_full_queue_drops_the_oldest_and_counts_it(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    metrics = Metrics()
    webhooks = make(receiver.url, metrics, queue_size=3)
    with caplog.at_level(logging.WARNING, "lpms.webhooks"):
        for number in range(1000):
            webhooks.emit(SEGMENT_READY, stream="a/b", sequence=number)
        webhooks.start()
        await webhooks.close(WAIT_S)
    assert receiver.seqs() == [998, 999, 1000]
    assert events(metrics, "dropped") == 997
    assert events(metrics, "delivered") == 3
    full = [r.getMessage() for r in caplog.records if "queue full" in r.getMessage()]
    # rate-limited: the first drop at once, the rest summed up (here at close)
    assert full == [
        "webhook queue full (3 events): dropped the 1 oldest undelivered",
        "webhook queue full (3 events): dropped the 996 oldest undelivered",
    ]


async def test_queue_full_lines_wait_out_their_interval_then_tell_the_count(
    receiver: Receiver, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(webhooks_module, "DROP_LOG_INTERVAL", 0.05)
    webhooks = make(receiver.url, queue_size=1)
    with caplog.at_level(logging.WARNING, "lpms.webhooks"):
        for number in range(4):
            webhooks.emit(SEGMENT_READY, sequence=number)
        assert len(caplog.records) == 1  # the first drop; the next two wait their turn
        await asyncio.sleep(0.1)
        webhooks.start()  # no more drops: the next delivery tells the count
        await eventually(lambda: len(caplog.records) == 2)
    assert caplog.records[1].getMessage().endswith("dropped the 2 oldest undelivered")
    await webhooks.close(WAIT_S)
    assert receiver.seqs() == [4]


@given(queue_size=st.integers(1, 20), emitted=st.integers(0, 60))
def test_the_queue_holds_at_most_queue_size_and_counts_the_rest(
    queue_size: int, emitted: int
) -> None:
    metrics = Metrics()
    webhooks = make("http://127.0.0.1:9/hook", metrics, queue_size=queue_size)
    for number in range(emitted):
        webhooks.emit(SEGMENT_READY, sequence=number)
        assert webhooks.queued <= queue_size
    assert webhooks.queued == min(emitted, queue_size)
    assert events(metrics, "dropped") == max(0, emitted - queue_size)


async def test_close_sends_what_it_can_within_its_timeout_and_drops_the_rest(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    metrics = Metrics()
    receiver.delay = 0.05
    webhooks = make(receiver.url, metrics)
    webhooks.start()
    for number in range(50):
        webhooks.emit(SEGMENT_READY, stream="a/b", sequence=number)
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, "lpms.webhooks"):
        await webhooks.close(0.3)
    assert time.monotonic() - started < 0.3 + 1.0
    delivered, dropped = events(metrics, "delivered"), events(metrics, "dropped")
    assert 0 < delivered < 50
    assert delivered + dropped == 50
    assert receiver.seqs() == list(range(1, len(receiver.requests) + 1))
    assert [r.getMessage() for r in caplog.records] == [
        f"webhooks: {int(dropped)} events not delivered by shutdown, dropped"
    ]
    webhooks.emit(PUBLISH_END, stream="a/b")  # after close: counted, not sent
    assert events(metrics, "dropped") == dropped + 1
    assert webhooks.queued == 0


async def test_close_does_not_wait_on_an_endpoint_that_is_down(refused_url: str) -> None:
    metrics = Metrics()
    webhooks = make(refused_url, metrics, retries=2, retry_delay=0.01)
    webhooks.start()
    for number in range(20):
        webhooks.emit(SEGMENT_READY, sequence=number)
    started = time.monotonic()
    await webhooks.close(60.0)
    assert time.monotonic() - started < WAIT_S  # not 60 s: gave up after one event
    assert events(metrics, "failed") == 1
    assert events(metrics, "dropped") == 19


async def test_close_without_start_drops_what_was_queued(
    caplog: pytest.LogCaptureFixture,
) -> None:
    metrics = Metrics()
    webhooks = make("http://127.0.0.1:9/hook", metrics)
    webhooks.emit(PUBLISH_END, stream="a/b")
    with caplog.at_level(logging.WARNING, "lpms.webhooks"):
        await webhooks.close(1.0)
    assert events(metrics, "dropped") == 1
    assert "1 events not delivered" in caplog.text


# --- no URL, bad events, settings -------------------------------------------------------


async def test_without_a_url_webhooks_are_inert() -> None:
    metrics = Metrics()
    webhooks = Webhooks(WebhookSettings(), metrics)
    tasks = asyncio.all_tasks()
    webhooks.start()
    assert asyncio.all_tasks() == tasks
    for number in range(1000):
        webhooks.emit(SEGMENT_READY, sequence=number)
    assert webhooks.queued == 0
    await webhooks.close(1.0)
    assert b"lpms_webhook_events_total{" not in metrics.render()


async def test_unsendable_fields_are_logged_and_counted_never_raised(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    metrics = Metrics()
    webhooks = make(receiver.url, metrics)
    webhooks.start()
    with caplog.at_level(logging.ERROR, "lpms.webhooks"):
        webhooks.emit(PLAY_START, stream=object())
        webhooks.emit(PLAY_START, duration_s=math.nan)
        webhooks.emit(PLAY_START, seq=7)
        webhooks.emit(PLAY_START, stream="a/b")
    await webhooks.close(WAIT_S)
    assert events(metrics, "dropped") == 3
    assert len(caplog.records) == 3
    assert receiver.seqs() == [4]  # the gap shows the receiver what it missed


def test_retry_delays_double_up_to_the_cap() -> None:
    assert [retry_delay(0.5, n) for n in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, 4.0]
    assert retry_delay(0.5, 10) == MAX_RETRY_DELAY
    assert retry_delay(0.5, 10_000) == MAX_RETRY_DELAY
    assert retry_delay(0.0, 3) == 0.0


def test_rfc3339_now_is_utc_with_milliseconds() -> None:
    stamp = rfc3339_now()
    assert TIME.fullmatch(stamp)
    assert abs(datetime.fromisoformat(stamp) - datetime.now(UTC)) < timedelta(seconds=5)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"url": "ftp://example.com/hook"}, "http:// or https://"),
        ({"url": "example.com/hook"}, "http:// or https://"),
        ({"url": "http:///hook"}, "with a host"),
        ({"queue_size": 0}, "queue_size must be >= 1"),
        ({"timeout": 0}, "timeout must be a number of seconds > 0"),
        ({"timeout": math.inf}, "timeout must be"),
        ({"timeout": math.nan}, "timeout must be"),
        ({"retries": -1}, "retries must be >= 0"),
        ({"retry_delay": -0.1}, "retry_delay must be a number of seconds >= 0"),
        ({"retry_delay": math.nan}, "retry_delay must be"),
    ],
)
def test_settings_refuse_bad_values(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        WebhookSettings(**settings)


def test_default_settings_are_valid() -> None:
    assert WebhookSettings().url is None
    WebhookSettings(url="https://hooks.example.com/lpms?token=x", retries=0, retry_delay=0)
