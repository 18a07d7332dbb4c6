"""HTTP-FLV and WebSocket-FLV playback: FFmpeg's own HTTP and FLV code and aiohttp's
WebSocket client against a stream FFmpeg publishes over RTMP. (mpegts.js in Chromium
plays WebSocket-FLV in tests/e2e/test_flv_browser.py.)"""

from __future__ import annotations

import asyncio
import io
from typing import Any

import aiohttp
import pytest

from lpms import LPMS, HTTPSettings, Settings
from tests.e2e.clients import read_packets
from tests.e2e.conftest import (
    ClipFile,
    LivePublisher,
    play,
    rtmp_url,
    serving,
    start_publish,
    wait_for_stream,
)
from tests.e2e.test_rtmp import assert_whole_stream_from

pytestmark = pytest.mark.e2e


def flv_url(server: LPMS, path: str, scheme: str = "http") -> str:
    return f"{scheme}://127.0.0.1:{server.http_port}/{path}.flv"


async def wait_for(check: Any, what: str, within: float = 15.0) -> None:
    """Poll ``check()`` until it is true (bounded)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not check():
        if loop.time() > deadline:
            raise AssertionError(f"{what} did not happen within {within}s")
        await asyncio.sleep(0.05)


async def test_ffmpeg_plays_http_flv_and_gets_every_packet_from_its_join_keyframe(
    server: LPMS, clip: ClipFile
) -> None:
    publisher = start_publish(rtmp_url(server, "stream/flv"), clip)
    await wait_for_stream(server, "stream/flv")
    players = [asyncio.create_task(play(flv_url(server, "stream/flv"))) for _ in range(2)]
    sent = await asyncio.wait_for(publisher, 30)
    results = await asyncio.wait_for(asyncio.gather(*players), 30)
    assert sent == len(clip.clip.packets)
    for received in results:
        assert_whole_stream_from(received, clip.clip, 0)
    metrics = server.metrics
    assert metrics.value("lpms_plays_total", protocol="http-flv") == 2
    assert metrics.value("lpms_sent_bytes_total", protocol="http-flv") > len(clip.clip.flv)
    assert metrics.value("lpms_live_connections", protocol="http-flv") == 0


async def test_websocket_flv_carries_the_stream_in_binary_messages_and_closes_normally(
    server: LPMS, clip: ClipFile
) -> None:
    publisher = start_publish(rtmp_url(server, "stream/ws"), clip)
    await wait_for_stream(server, "stream/ws")
    data = bytearray()
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(flv_url(server, "stream/ws", "ws")) as websocket,
    ):
        async for message in websocket:
            assert message.type is aiohttp.WSMsgType.BINARY, message
            data += message.data
        assert websocket.close_code == aiohttp.WSCloseCode.OK
    await asyncio.wait_for(publisher, 30)
    assert data.startswith(b"FLV\x01")
    assert_whole_stream_from(read_packets(io.BytesIO(bytes(data))), clip.clip, 0)
    assert server.metrics.value("lpms_plays_total", protocol="ws-flv") == 1


async def test_flv_players_are_listed_by_protocol_and_can_be_kicked(
    server: LPMS, clip12: ClipFile
) -> None:
    publisher = await LivePublisher.start(rtmp_url(server, "stream/kick"), clip12)
    try:
        live = await wait_for_stream(server, "stream/kick")
        base = f"http://127.0.0.1:{server.http_port}"
        async with aiohttp.ClientSession() as session:
            flv = await session.get(flv_url(server, "stream/kick"))
            assert flv.status == 200
            assert flv.headers["Content-Type"] == "video/x-flv"
            websocket = await session.ws_connect(flv_url(server, "stream/kick", "ws"))
            await websocket.receive_bytes(timeout=10)

            async def details() -> dict[str, Any]:
                async with session.get(f"{base}/api/streams/stream/kick") as response:
                    return dict(await response.json())

            stream = await details()
            assert stream["players"]["http-flv"] == 1
            assert stream["players"]["ws-flv"] == 1
            assert stream["urls"]["flv"] == "/stream/kick.flv"
            by_protocol = {p["protocol"]: p for p in stream["player_list"]}
            assert set(by_protocol) == {"http-flv", "ws-flv"}
            for player in by_protocol.values():
                async with session.delete(f"{base}/api/players/{player['id']}") as response:
                    assert response.status == 200
            # The HTTP body stops short (no clean end: the player was cut off) ...
            with pytest.raises(aiohttp.ClientPayloadError):
                await read_to_end(flv)
            # ... and the WebSocket closes.
            async with asyncio.timeout(10):
                while not websocket.closed:
                    await websocket.receive()
            flv.release()
            await wait_for(lambda: not live.players, "the players' ends")
        for protocol in ("http-flv", "ws-flv"):
            closed = server.metrics.value(
                "lpms_connections_closed_total", protocol=protocol, reason="kicked"
            )
            assert closed == 1, protocol
    finally:
        await publisher.stop()


async def read_to_end(response: aiohttp.ClientResponse) -> None:
    async with asyncio.timeout(10):
        while await response.content.read(65536):
            pass


async def refused_with(url: str, **kwargs: Any) -> int:
    async with aiohttp.ClientSession() as session, session.get(url, **kwargs) as response:
        return response.status


@pytest.mark.parametrize(
    "server", [Settings(max_players_per_stream=1)], indirect=True, ids=["one-player"]
)
async def test_refusals_are_http_statuses_counted_by_protocol(
    server: LPMS, clip12: ClipFile
) -> None:
    assert await refused_with(flv_url(server, "stream/nothing")) == 404
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        async with aiohttp.ClientSession() as session:
            await session.ws_connect(flv_url(server, "stream/nothing", "ws"))
    assert refused.value.status == 404

    def only_rtmp(request: Any) -> bool:
        return bool(request.protocol == "rtmp" or request.action == "publish")

    server.handle_auth(only_rtmp)
    publisher = await LivePublisher.start(rtmp_url(server, "stream/one"), clip12)
    try:
        await wait_for_stream(server, "stream/one")
        assert await refused_with(flv_url(server, "stream/one")) == 403
        server.handle_auth(None)
        async with aiohttp.ClientSession() as session:
            first = await session.get(flv_url(server, "stream/one"))
            assert first.status == 200
            assert await refused_with(flv_url(server, "stream/one")) == 503
            first.release()
    finally:
        await publisher.stop()
    refusals = {
        reason: server.metrics.value(
            "lpms_refusals_total", action="play", protocol=protocol, reason=reason
        )
        for protocol, reason in (
            ("http-flv", "not_found"),
            ("ws-flv", "not_found"),
            ("http-flv", "callback"),
            ("http-flv", "max_players_per_stream"),
        )
    }
    assert all(count == 1 for count in refusals.values()), refusals


async def test_connection_limits_count_flv_players_with_rtmp_clients(clip12: ClipFile) -> None:
    settings = Settings(max_connections_per_ip=2)
    async with serving(settings) as server:
        publisher = await LivePublisher.start(rtmp_url(server, "stream/limit"), clip12)
        try:
            await wait_for_stream(server, "stream/limit")
            async with aiohttp.ClientSession() as session:
                first = await session.get(flv_url(server, "stream/limit"))
                assert first.status == 200  # the publisher and this player: 2 from 127.0.0.1
                assert await refused_with(flv_url(server, "stream/limit")) == 503
                first.release()
        finally:
            await publisher.stop()
    closed = server.metrics.value(
        "lpms_connections_closed_total", protocol="http-flv", reason="max_connections_per_ip"
    )
    assert closed == 1


async def test_an_flv_url_without_a_name_is_not_found(server: LPMS) -> None:
    assert await refused_with(f"http://127.0.0.1:{server.http_port}/justone.flv") == 404


def test_the_send_timeout_is_a_checked_setting() -> None:
    with pytest.raises(ValueError, match="flv_send_timeout"):
        HTTPSettings(flv_send_timeout=0)
