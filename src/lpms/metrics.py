"""Counters of what the server did and refused, in Prometheus's terms.

Each `LPMS` has its own registry (not prometheus-client's global one), so several
servers in one process, as in tests or an application that runs two, never mix
their figures. Label values come from small fixed sets (protocol, action, the name
of a limit), never from a peer or a stream name, so a hostile client cannot grow
the number of series.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

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

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def value(self, name: str, **labels: str) -> float:
        """One sample's value (0 when it has not been counted yet), for tests and logs."""
        sample = self.registry.get_sample_value(name, labels)
        return sample if sample is not None else 0.0
