"""The session core: one set of rules for publishers and players of every protocol."""

from __future__ import annotations

import pytest

from lpms.access import Action, PlayRequest, Protocol, PublishRequest, Refusal, RefusalReason
from lpms.auth import Authorizer, AuthRequest
from lpms.auth_settings import AuthSettings
from lpms.media.registry import StreamRegistry
from lpms.metrics import Metrics
from lpms.rtmp.listener import netstream_code
from lpms.sessions import ConnectionLimiter, SessionCore
from lpms.webhook_settings import WebhookSettings
from lpms.webhooks import Webhooks


def core(*, max_streams: int = 10, max_players: int = 10, **auth: object) -> SessionCore:
    metrics = Metrics()
    return SessionCore(
        streams=StreamRegistry(max_streams=max_streams),
        connections=ConnectionLimiter(3, 2, metrics),
        auth=Authorizer(AuthSettings(**auth)),  # type: ignore[arg-type]
        webhooks=Webhooks(WebhookSettings(), metrics),
        metrics=metrics,
        max_players_per_stream=max_players,
    )


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


async def refusal(awaitable: object) -> Refusal:
    with pytest.raises(Refusal) as caught:
        await awaitable  # type: ignore[misc]
    return caught.value


async def test_every_protocol_plays_through_the_same_checks_and_is_counted_by_protocol() -> None:
    sessions = core()
    stream, _ = await sessions.start_publish(PublishRequest("live", "a", client_ip="1.2.3.4"))
    for protocol in (Protocol.RTMP, Protocol.HTTP_FLV, Protocol.WS_FLV):
        request = PlayRequest("live", "a", client_ip="5.6.7.8", client_port=9, protocol=protocol)
        assert await sessions.start_play(request) is stream
        sessions.add_player(request, stream)
    counts = sessions.player_counts()
    assert counts["rtmp"] == counts["http-flv"] == counts["ws-flv"] == 1
    assert counts["hls"] == 0
    assert {p.protocol for p in stream.players} == {"rtmp", "http-flv", "ws-flv"}
    assert {p.peer for p in stream.players} == {"5.6.7.8:9"}
    assert sample(sessions.metrics, "lpms_plays_total", protocol="ws-flv") == 1


async def test_refusals_carry_a_reason_each_protocol_can_map() -> None:
    sessions = core(max_streams=1, max_players=1)
    missing = await refusal(
        sessions.start_play(PlayRequest("live", "none", protocol=Protocol.HTTP_FLV))
    )
    assert missing.reason is RefusalReason.NOT_FOUND
    await sessions.start_publish(PublishRequest("live", "a"))
    taken = await refusal(sessions.start_publish(PublishRequest("live", "a")))
    assert taken.reason is RefusalReason.BAD_NAME
    full = await refusal(sessions.start_publish(PublishRequest("live", "b")))
    assert (full.reason, full.label) == (RefusalReason.LIMIT, "max_streams")
    first = PlayRequest("live", "a", protocol=Protocol.WS_FLV)
    sessions.add_player(first, await sessions.start_play(first))
    over = await refusal(sessions.start_play(PlayRequest("live", "a", protocol=Protocol.RTMP)))
    assert (over.reason, over.label) == (RefusalReason.LIMIT, "max_players_per_stream")
    metrics = sessions.metrics
    assert (
        sample(
            metrics, "lpms_refusals_total", action="play", protocol="http-flv", reason="not_found"
        )
        == 1
    )
    assert (
        sample(
            metrics,
            "lpms_refusals_total",
            action="play",
            protocol="rtmp",
            reason="max_players_per_stream",
        )
        == 1
    )
    assert netstream_code(Action.PLAY, missing.reason) == "NetStream.Play.StreamNotFound"
    assert netstream_code(Action.PUBLISH, taken.reason) == "NetStream.Publish.BadName"


async def test_auth_sees_the_protocol_and_refuses_as_unauthorized() -> None:
    sessions = core(publish_key="secret")
    asked: list[AuthRequest] = []

    def allow_rtmp_only(request: AuthRequest) -> bool:
        asked.append(request)
        return request.protocol == "rtmp"

    sessions.auth.callback = allow_rtmp_only
    keyless = await refusal(sessions.start_publish(PublishRequest("live", "a")))
    assert (keyless.reason, keyless.label) == (RefusalReason.UNAUTHORIZED, "publish_key")
    stream, accepted = await sessions.start_publish(PublishRequest("live", "a_secret"))
    assert accepted.name == "a"
    assert stream.id == "live/a"
    refused = await refusal(
        sessions.start_play(PlayRequest("live", "a", protocol=Protocol.HTTP_FLV))
    )
    assert refused.reason is RefusalReason.UNAUTHORIZED
    assert [r.protocol for r in asked] == ["rtmp", "http-flv"]


async def test_an_application_callback_that_raises_refuses_with_its_reason() -> None:
    sessions = core()

    def broken(request: PlayRequest) -> None:
        raise RuntimeError("database down")

    sessions.get_stream = broken
    refused = await refusal(sessions.start_play(PlayRequest("live", "a")))
    assert refused.reason is RefusalReason.NOT_ALLOWED
    assert "database down" in refused.message
    assert refused.label == "callback"


def test_connection_limits_are_shared_across_protocols() -> None:
    metrics = Metrics()
    limiter = ConnectionLimiter(3, 2, metrics)
    assert limiter.admit(Protocol.RTMP, "1.1.1.1", "1.1.1.1:1")
    assert limiter.admit(Protocol.HTTP_FLV, "1.1.1.1", "1.1.1.1:2")
    assert not limiter.admit(Protocol.WS_FLV, "1.1.1.1", "1.1.1.1:3")  # per IP
    assert limiter.admit(Protocol.WS_FLV, "2.2.2.2", "2.2.2.2:1")
    assert not limiter.admit(Protocol.RTMPS, "3.3.3.3", "3.3.3.3:1")  # in total
    assert (
        sample(
            metrics,
            "lpms_connections_closed_total",
            protocol="ws-flv",
            reason="max_connections_per_ip",
        )
        == 1
    )
    assert (
        sample(metrics, "lpms_connections_closed_total", protocol="rtmps", reason="max_connections")
        == 1
    )
    limiter.release(Protocol.HTTP_FLV, "1.1.1.1")
    assert limiter.admit(Protocol.WS_FLV, "1.1.1.1", "1.1.1.1:4")
    assert sample(metrics, "lpms_live_connections", protocol="ws-flv") == 2
    assert len(limiter) == 3
