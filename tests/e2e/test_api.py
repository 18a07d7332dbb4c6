"""The JSON API, Prometheus metrics and webhooks, against a stream FFmpeg publishes and
plays: what an operator's dashboard, scraper or event receiver would see."""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import jsonschema
import pytest
from aiohttp import web
from openapi_spec_validator import validate as validate_openapi
from prometheus_client.parser import text_string_to_metric_families

from lpms import LPMS, AuthSettings, Settings
from lpms.webhook_settings import WebhookSettings
from tests.e2e.clients import CLIP_FPS, CLIP_HEIGHT, CLIP_WIDTH, Clip
from tests.e2e.conftest import (
    ClipFile,
    decode_hls,
    play,
    rtmp_url,
    start_publish,
    wait_for_stream,
)
from tests.local_http import http_endpoint

pytestmark = pytest.mark.e2e

MEASURE_AFTER_S = 7.0  # into the 12 s clip: the 5 s window is full
BITRATE_TOLERANCE = 0.15


async def request(method: str, url: str, **kwargs: Any) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.request(method, url, **kwargs) as r:
        body = await r.json() if r.content_type == "application/json" else await r.text()
        return r.status, body


def api(server: LPMS, path: str) -> str:
    return f"http://127.0.0.1:{server.http_port}{path}"


def clip_bitrate(clip: Clip, kind: str, start_ms: int, end_ms: int) -> float:
    """Payload bits per second of the clip's packets with dts in [start, end]."""
    packets = [p for p in clip.of_kind(kind) if start_ms <= p.dts_ms <= end_ms]
    span = packets[-1].dts_ms - packets[0].dts_ms
    return sum(len(p.payload) for p in packets[1:]) * 8000 / span


def schema(document: dict[str, Any], name: str) -> dict[str, Any]:
    """A component schema, its $refs resolvable against the whole document."""
    return {"$ref": f"#/components/schemas/{name}", "components": document["components"]}


async def test_api_lists_a_live_stream_with_measured_tracks(server: LPMS, clip12: ClipFile) -> None:
    publisher = start_publish(rtmp_url(server, "stream/api"), clip12)
    await wait_for_stream(server, "stream/api")
    player = asyncio.create_task(play(rtmp_url(server, "stream/api")))
    await asyncio.sleep(MEASURE_AFTER_S)
    status, listing = await request("GET", api(server, "/api/streams"))
    hls_status, _ = await request("GET", api(server, "/stream/api.m3u8"))
    _, after_hls = await request("GET", api(server, "/api/streams/stream/api"))
    _, document = await request("GET", api(server, "/api/openapi.json"))
    await asyncio.wait_for(player, 60)
    await asyncio.wait_for(publisher, 60)

    assert status == 200
    validate_openapi(document)
    for listed in listing["streams"]:
        jsonschema.validate(listed, schema(document, "Stream"))
    jsonschema.validate(after_hls, schema(document, "StreamDetails"))
    (stream,) = listing["streams"]
    assert stream["id"] == "stream/api"
    assert (stream["app"], stream["name"]) == ("stream", "api")
    assert stream["publisher"]["protocol"] == "rtmp"
    assert stream["publisher"]["address"].startswith("127.0.0.1:")
    assert stream["uptime_s"] == pytest.approx(MEASURE_AFTER_S, abs=2.0)
    video, audio = stream["tracks"]
    assert (video["kind"], video["codec"]) == ("video", "h264")
    assert (video["width"], video["height"]) == (CLIP_WIDTH, CLIP_HEIGHT)
    assert video["fps"] == pytest.approx(CLIP_FPS, rel=0.05)
    assert (audio["kind"], audio["codec"], audio["sample_rate"]) == ("audio", "aac", 44100)
    # Measured over the last 5 s: the clip's own rate over some 5 s around then.
    uptime_ms = int(stream["uptime_s"] * 1000)
    for track, kind in ((video, "video"), (audio, "audio")):
        expected = clip_bitrate(clip12.clip, kind, max(0, uptime_ms - 6000), uptime_ms)
        assert track["bitrate"] == pytest.approx(expected, rel=BITRATE_TOLERANCE), kind
    assert stream["players"]["rtmp"] == 1
    assert stream["bytes_in"] > 0
    assert stream["bytes_out"] > 0
    assert stream["renditions"][0]["name"] == "source"
    assert stream["urls"]["rtmp"] == f"rtmp://127.0.0.1:{server.rtmp_port}/stream/api"
    assert stream["urls"]["obs_server"] == f"rtmp://127.0.0.1:{server.rtmp_port}/stream"
    assert stream["urls"]["obs_key"] == "api"
    assert hls_status == 200
    assert after_hls["players"]["hls"] == 1
    (rtmp_player,) = after_hls["player_list"]
    assert rtmp_player["protocol"] == "rtmp"

    status, gone = await request("GET", api(server, "/api/streams/stream/api"))
    assert status == 404
    assert gone["error"]["status"] == 404
    assert "stream/api" in gone["error"]["reason"]


async def test_server_info_and_json_errors(server: LPMS) -> None:
    status, info = await request("GET", api(server, "/api/server"))
    assert status == 200
    assert info["rtmp_port"] == server.rtmp_port
    assert info["http_port"] == server.http_port
    assert info["streams"] == 0
    assert info["hls"]["segment_duration"] == server.settings.hls.segment_duration
    for method, path, code in [
        ("GET", "/api/nothing", 404),
        ("POST", "/api/streams", 404),
        ("DELETE", "/api/streams/stream/none", 404),
        ("DELETE", "/api/players/abc", 400),
        ("DELETE", "/api/players/999999", 404),
    ]:
        status, body = await request(method, api(server, path))
        assert status == code, (method, path)
        assert body["error"]["status"] == code
        assert body["error"]["reason"]


async def test_kicking_a_player_and_a_publisher(server: LPMS, clip12: ClipFile) -> None:
    publisher = start_publish(rtmp_url(server, "stream/kick"), clip12)
    await wait_for_stream(server, "stream/kick")
    player = asyncio.create_task(play(rtmp_url(server, "stream/kick")))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 15
    details: dict[str, Any] = {}
    while loop.time() < deadline and not details.get("player_list"):
        _, details = await request("GET", api(server, "/api/streams/stream/kick"))
        await asyncio.sleep(0.2)
    (victim,) = details["player_list"]
    status, kicked = await request("DELETE", api(server, f"/api/players/{victim['id']}"))
    assert status == 200
    assert kicked["kicked"]["id"] == victim["id"]
    received = await asyncio.wait_for(player, 10)  # ends now, not with the 12 s stream
    assert len(received.of_kind("video")) < len(clip12.clip.of_kind("video"))

    status, kicked = await request("DELETE", api(server, "/api/streams/stream/kick"))
    assert status == 200
    assert kicked["kicked"]["stream"] == "stream/kick"
    done, _ = await asyncio.wait([publisher], timeout=10)
    assert publisher in done  # FFmpeg's publish ends (with an error: it was cut off)
    publisher.exception()
    assert server.streams.get("stream/kick") is None
    closed = server.metrics.value("lpms_connections_closed_total", protocol="rtmp", reason="kicked")
    assert closed == 2


@pytest.mark.parametrize("server", [Settings(auth=AuthSettings(api_token="t0ken"))], indirect=True)
async def test_kicking_needs_the_api_token_when_one_is_set(server: LPMS) -> None:
    url = api(server, "/api/streams/stream/none")
    status, body = await request("DELETE", url)
    assert status == 401
    assert "Bearer" in body["error"]["reason"]
    status, _ = await request("DELETE", url, headers={"Authorization": "Bearer wrong"})
    assert status == 401
    status, _ = await request("DELETE", url, headers={"Authorization": "Bearer t0ken"})
    assert status == 404  # allowed, and there is no such stream


async def test_metrics_parse_and_count_a_publish(server: LPMS, clip: ClipFile) -> None:
    publisher = start_publish(rtmp_url(server, "stream/metered"), clip)
    await wait_for_stream(server, "stream/metered")
    await play(rtmp_url(server, "stream/metered"))
    await asyncio.wait_for(publisher, 60)
    await asyncio.sleep(0.2)
    status, text = await request("GET", api(server, "/metrics"))
    assert status == 200
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }

    def value(name: str, **labels: str) -> float:
        return samples[(name, tuple(sorted(labels.items())))]

    assert value("lpms_publishes_total", protocol="rtmp") == 1
    assert value("lpms_plays_total", protocol="rtmp") == 1
    assert value("lpms_connections_total", protocol="rtmp") == 2
    assert value("lpms_received_bytes_total", protocol="rtmp") > 100_000
    assert value("lpms_sent_bytes_total", protocol="rtmp") > 100_000
    assert value("lpms_segments_total", rendition="source") >= 3
    assert value("lpms_segment_ready_delay_seconds_count", rendition="source") >= 3
    assert value("lpms_player_dropped_packets_total") == 0
    assert value("lpms_live_streams") == 0
    assert value("lpms_event_loop_lag_seconds") >= 0
    assert ("lpms_refusals_total", ()) not in samples


# --- webhooks --------------------------------------------------------------------------


@dataclass
class Receiver:
    url: str = ""
    events: list[dict[str, Any]] = field(default_factory=list)

    got_play_end: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        event = await request.json()
        self.events.append(event)
        if event["event"] == "play_end":
            self.got_play_end.set()
        return web.Response(status=204)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    endpoint = Receiver()
    async with http_endpoint("/hook", endpoint.handle) as url:
        endpoint.url = url
        yield endpoint


async def test_webhook_events_arrive_in_order(receiver: Receiver, clip: ClipFile) -> None:
    settings = Settings(webhook=WebhookSettings(url=receiver.url))
    server = LPMS(host="127.0.0.1", rtmp_port=0, http_port=0, settings=settings)
    await server.start()
    try:
        publisher = start_publish(rtmp_url(server, "stream/hooked"), clip)
        await wait_for_stream(server, "stream/hooked")
        await play(rtmp_url(server, "stream/hooked"))
        await asyncio.wait_for(publisher, 60)
        await asyncio.wait_for(receiver.got_play_end.wait(), 10)
    finally:
        await server.close()
    events = receiver.events
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    lifecycle = [e["event"] for e in events if e["event"] != "segment_ready"]
    assert lifecycle == ["publish_start", "play_start", "publish_end", "play_end"]
    start, _, end, play_end = (e for e in events if e["event"] != "segment_ready")
    assert start == {
        "event": "publish_start",
        "seq": 1,
        "time": start["time"],
        "stream": "stream/hooked",
        "app": "stream",
        "name": "hooked",
        "client_ip": "127.0.0.1",
        "protocol": "rtmp",
    }
    assert end["duration_s"] == pytest.approx(6.0, abs=1.5)
    assert end["packets"] == len(clip.clip.packets) + 3  # and the metadata and two configs
    assert play_end["protocol"] == "rtmp"
    assert play_end["dropped_packets"] == 0
    segments = [e for e in events if e["event"] == "segment_ready"]
    # CMAF: the video (source) and the audio rendition each get their segments.
    for rendition in ("source", "audio"):
        mine = [s for s in segments if s["rendition"] == rendition]
        assert len(mine) == 3
        assert [s["sequence"] for s in mine] == sorted(s["sequence"] for s in mine)
        expected = rf"/stream/hooked/{rendition}/[0-9a-f]{{8}}/{mine[0]['sequence']}\.m4s"
        assert re.fullmatch(expected, mine[0]["uri"]), mine[0]["uri"]


async def test_a_dead_webhook_endpoint_does_not_disturb_streaming(clip: ClipFile) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{unused.getsockname()[1]}/hook"
    settings = Settings(webhook=WebhookSettings(url=dead, timeout=0.5, retries=5, retry_delay=1))
    server = LPMS(host="127.0.0.1", rtmp_port=0, http_port=0, settings=settings)
    await server.start()
    try:
        publisher = start_publish(rtmp_url(server, "stream/deadhook"), clip)
        await wait_for_stream(server, "stream/deadhook")
        received = await play(rtmp_url(server, "stream/deadhook"))
        await asyncio.wait_for(publisher, 60)
        decoded = await decode_hls(api(server, "/stream/deadhook.m3u8"))
        loop = asyncio.get_running_loop()
        started = loop.time()
    finally:
        await server.close()
    assert loop.time() - started < server.settings.shutdown_timeout + 2  # bounded shutdown
    assert received.error is None
    video = [p.payload for p in received.of_kind("video")]
    clip_video = [p.payload for p in clip.clip.of_kind("video")]
    assert video == clip_video[clip_video.index(video[0]) :]
    assert decoded.error is None
    assert len(decoded.video_pts) == len(clip_video)
    assert server.metrics.value("lpms_webhook_events_total", result="delivered") == 0
