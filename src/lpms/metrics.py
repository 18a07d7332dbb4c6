"""Counters of what the server did and refused, in Prometheus's terms.

Each `LPMS` has its own registry (not prometheus-client's global one), so several
servers in one process, as in tests or an application that runs two, never mix
their figures. Label values come from small fixed sets (protocol, action, the name
of a limit), never from a peer or a stream name, so a hostile client cannot grow
the number of series.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import ClassVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from lpms.transcode.engines import Engine, FailureReason

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    """The server's metrics; `render` gives the text exposition format."""

    def __init__(self) -> None:
        registry = self.registry = CollectorRegistry(auto_describe=True)
        self.connections = Counter(
            "lpms_connections",
            "Connections accepted, by protocol",
            ["protocol"],
            registry=registry,
        )
        self.connections_closed = Counter(
            "lpms_connections_closed",
            "Connections lpms closed on its own, by reason: a limit's name, "
            "protocol_error, or internal_error",
            ["protocol", "reason"],
            registry=registry,
        )
        self.refusals = Counter(
            "lpms_refusals",
            "Publish and play requests refused, by action, protocol and reason",
            ["action", "protocol", "reason"],
            registry=registry,
        )
        self.publishes = Counter(
            "lpms_publishes", "Publishes accepted", ["protocol"], registry=registry
        )
        self.plays = Counter("lpms_plays", "Plays accepted", ["protocol"], registry=registry)
        self.live_connections = Gauge(
            "lpms_live_connections", "Open connections", ["protocol"], registry=registry
        )
        self.webhook_events = Counter(
            "lpms_webhook_events",
            "Webhook events by result: delivered (a 2xx), failed (every try failed), "
            "dropped (never sent: the queue was full, lpms was shutting down, or the "
            "event's fields were not JSON)",
            ["result"],
            registry=registry,
        )
        self.webhook_retries = Counter(
            "lpms_webhook_retries", "Webhook POSTs tried again after a failure", registry=registry
        )
        self.webhook_queue = Gauge(
            "lpms_webhook_queue", "Webhook events waiting to be sent", registry=registry
        )

        self.bytes_received = Counter(
            "lpms_received_bytes", "Bytes received from clients", ["protocol"], registry=registry
        )
        self.bytes_sent = Counter(
            "lpms_sent_bytes", "Media bytes sent to players", ["protocol"], registry=registry
        )
        # Renditions are "source" and the configured profiles' names: a fixed set.
        self.segments = Counter(
            "lpms_segments", "HLS segments produced", ["rendition"], registry=registry
        )
        self.segment_delay = Histogram(
            "lpms_segment_ready_delay_seconds",
            "From the end of a segment's media (by the stream's clock) to its listing "
            "in the playlist: near 0 for the source, the transcoding time for renditions",
            ["rendition"],
            buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0),
            registry=registry,
        )
        self.gap_segments = Counter(
            "lpms_transcode_gap_segments",
            "Source segments left out of the renditions because transcoding was behind",
            registry=registry,
        )
        self.transcode_realtime = Gauge(
            "lpms_transcode_realtime_factor",
            "Seconds of media encoded per second of encoding, per profile, over the "
            "last segment (below 1 cannot keep up)",
            ["profile"],
            registry=registry,
        )
        self.engine_calls = Counter(
            "lpms_transcode_engine_calls",
            "Segments a transcoding engine answered, by engine (local, ray)",
            ["engine"],
            registry=registry,
        )
        self.engine_failures = Counter(
            "lpms_transcode_engine_failures",
            "Segments a transcoding engine gave nothing for, by engine and reason: "
            "error (the segment), late (past its deadline), worker_lost (its process or "
            "node died), unreachable (the engine itself is down)",
            ["engine", "reason"],
            registry=registry,
        )
        self.engine_recreations = Counter(
            "lpms_transcode_engine_recreations",
            "Stream sessions made anew after their old one was lost or late",
            ["engine"],
            registry=registry,
        )
        self.engine_overhead = Histogram(
            "lpms_transcode_engine_overhead_seconds",
            "Round trip of a segment call less the transcoding itself: what moving the "
            "work costs (threads: near 0; Ray: serialization and network)",
            ["engine"],
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
            registry=registry,
        )
        self.segment_write_errors = Counter(
            "lpms_segment_write_errors",
            "HLS segment and playlist files that could not be written (a full disk, "
            "permissions); the segments are then served from memory while they are live",
            registry=registry,
        )
        self.tls_reloads = Counter(
            "lpms_tls_reloads",
            "TLS certificate reloads (SIGHUP), by result: ok, or failed (the certificate "
            "in use was kept)",
            ["result"],
            registry=registry,
        )
        self.loop_lag = Gauge(
            "lpms_event_loop_lag_seconds",
            "How late the event loop ran a timer, at the last check",
            registry=registry,
        )

    # -- EngineObserver (lpms.transcode.engines) ----------------------------------------

    def engine_call(self, engine: Engine, overhead: float) -> None:
        self.engine_calls.labels(engine.value).inc()
        self.engine_overhead.labels(engine.value).observe(overhead)

    def engine_failure(self, engine: Engine, reason: FailureReason) -> None:
        self.engine_failures.labels(engine.value, reason.value).inc()

    def engine_recreated(self, engine: Engine) -> None:
        self.engine_recreations.labels(engine.value).inc()

    def add_collector(self, collector: Collector) -> None:
        self.registry.register(collector)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def value(self, name: str, **labels: str) -> float:
        """One sample's value (0 when it has not been counted yet), for tests and logs."""
        sample = self.registry.get_sample_value(name, labels)
        return sample if sample is not None else 0.0


class StreamTotals(Collector):
    """Counters kept on each stream (packets dropped for slow players, timestamp
    repairs) and gauges of what is live, summed when Prometheus asks.

    A stream's counts move into ``ended`` when it ends (`retire`), in the same loop
    turn as it leaves the registry, so each total only ever rises.
    """

    COUNTERS: ClassVar[dict[str, str]] = {
        "lpms_player_dropped_packets": "Packets dropped for players that fell behind",
        "lpms_timestamp_jumps": "Timestamp jumps re-based on live streams",
        "lpms_timestamp_backward_steps": "Timestamps held because they went backwards",
        "lpms_timestamp_wraps": "32-bit RTMP timestamp wraps unwrapped",
    }

    def __init__(
        self,
        streams: Callable[[], Iterable[object]],
        counts: Callable[[object], dict[str, int]],
        players: Callable[[], dict[str, int]],
    ) -> None:
        self._streams = streams
        self._counts = counts
        self._players = players
        self.ended = dict.fromkeys(self.COUNTERS, 0)

    def retire(self, stream: object) -> None:
        for name, value in self._counts(stream).items():
            self.ended[name] += value

    def describe(self) -> Iterable[Metric]:
        return []  # collected fresh each time; nothing to check at registration

    def collect(self) -> Iterator[Metric]:
        totals = dict(self.ended)
        live = 0
        for stream in self._streams():
            live += 1
            for name, value in self._counts(stream).items():
                totals[name] += value
        for name, help_text in self.COUNTERS.items():
            yield CounterMetricFamily(name, help_text, value=totals[name])
        yield GaugeMetricFamily("lpms_live_streams", "Streams being published", value=live)
        players = GaugeMetricFamily(
            "lpms_players", "Players connected, by protocol", labels=["protocol"]
        )
        for protocol, count in self._players().items():
            players.add_metric([protocol], count)
        yield players
