"""Publish and play authorization: the HTTP hook (``--auth-url``), the publish key and
the library callback, with FFmpeg's RTMP client and plain HTTP for HLS."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from lpms import LPMS, AuthRequest, Settings
from lpms.auth_settings import AuthSettings
from tests.e2e.conftest import (
    ClipFile,
    PublishRefused,
    play,
    publish,
    rtmp_url,
    start_publish,
    wait_for_stream,
)
from tests.local_http import http_endpoint

pytestmark = pytest.mark.e2e

REFUSED_WITHIN_S = 5.0  # a refusal closes the connection; the client must not time out


@dataclass
class Hook:
    """An auth endpoint: records each request body, answers ``status`` (per action)
    after ``delay`` seconds."""

    url: str = ""
    status: dict[str, int] = field(default_factory=lambda: {"publish": 200, "play": 200})
    delay: float = 0.0
    calls: list[dict[str, Any]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.calls.append(body)
        if self.delay:
            await asyncio.sleep(self.delay)
        return web.Response(status=self.status[body["action"]], text="")

    def actions(self) -> list[tuple[str, str]]:
        return [(c["action"], c["protocol"]) for c in self.calls]


@pytest.fixture
async def hook() -> AsyncIterator[Hook]:
    endpoint = Hook()
    async with http_endpoint("/auth", endpoint.handle) as url:
        endpoint.url = url
        yield endpoint


async def start_server(auth: AuthSettings) -> LPMS:
    server = LPMS(host="127.0.0.1", rtmp_port=0, http_port=0, settings=Settings(auth=auth))
    await server.start()
    return server


async def refused_publish(url: str, clip: ClipFile) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(PublishRefused):
        await publish(url, clip, realtime=False)
    assert loop.time() - started < REFUSED_WITHIN_S


async def http_get(url: str) -> tuple[int, bytes]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.read()


def refusals(server: LPMS, action: str, reason: str, protocol: str = "rtmp") -> float:
    return server.metrics.value(
        "lpms_refusals_total", action=action, protocol=protocol, reason=reason
    )


# --- the HTTP hook ---------------------------------------------------------------------


async def test_hook_allows_publish_and_play_and_is_told_who_asks(
    hook: Hook, clip: ClipFile
) -> None:
    server = await start_server(AuthSettings(url=hook.url))
    try:
        url = rtmp_url(server, "stream/hooked?token=abc")
        publisher = start_publish(url, clip)
        await wait_for_stream(server, "stream/hooked")
        received = await play(rtmp_url(server, "stream/hooked?viewer=7"))
        assert received.error is None
        assert received.of_kind("video")
        await asyncio.wait_for(publisher, 30)
    finally:
        await server.close()
    assert hook.calls[0] == {
        "action": "publish",
        "app": "stream",
        "name": "hooked",
        "query": {"token": "abc"},
        "client_ip": "127.0.0.1",
        "protocol": "rtmp",
    }
    assert hook.calls[1] == {
        "action": "play",
        "app": "stream",
        "name": "hooked",
        "query": {"viewer": "7"},
        "client_ip": "127.0.0.1",
        "protocol": "rtmp",
    }


async def test_hook_refusal_closes_the_publisher(hook: Hook, clip: ClipFile) -> None:
    hook.status["publish"] = 403
    server = await start_server(AuthSettings(url=hook.url))
    try:
        await refused_publish(rtmp_url(server, "stream/denied"), clip)
        assert len(server.streams) == 0
        assert server.hls.get("stream/denied") is None
        assert refusals(server, "publish", "hook") == 1
    finally:
        await server.close()


async def test_hook_timeout_refuses(hook: Hook, clip: ClipFile) -> None:
    hook.delay = 3.0
    server = await start_server(AuthSettings(url=hook.url, timeout=0.3))
    try:
        await refused_publish(rtmp_url(server, "stream/slow"), clip)
        assert refusals(server, "publish", "timeout") == 1
        assert len(server.streams) == 0
    finally:
        await server.close()


async def test_unreachable_hook_refuses(clip: ClipFile) -> None:
    with socket.socket() as unused:  # a port nobody listens on
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    server = await start_server(AuthSettings(url=f"http://127.0.0.1:{port}/auth"))
    try:
        await refused_publish(rtmp_url(server, "stream/nohook"), clip)
        assert refusals(server, "publish", "hook_unreachable") == 1
    finally:
        await server.close()


async def test_hook_refuses_play_over_rtmp_and_hls(hook: Hook, clip12: ClipFile) -> None:
    hook.status["play"] = 403
    server = await start_server(AuthSettings(url=hook.url))
    try:
        publisher = start_publish(rtmp_url(server, "stream/paid"), clip12)
        await wait_for_stream(server, "stream/paid")
        received = await play(rtmp_url(server, "stream/paid"))
        assert received.error is not None
        assert not received.packets
        base = f"http://127.0.0.1:{server.http_port}/stream"
        for path in ("paid.m3u8", "paid_hls.m3u8", "paid/source.m3u8", "paid/source/1.ts"):
            status, _ = await http_get(f"{base}/{path}?t=1")
            assert status == 403, path
        assert refusals(server, "play", "hook") == 1
        assert refusals(server, "play", "hook", "hls") == 4
        # Allowed now: a playlist, then its segments (no query of their own) on the grant.
        hook.status["play"] = 200
        calls = len(hook.calls)
        playlist = await wait_for_playlist(f"{base}/paid/source.m3u8?t=2")
        segment = next(line for line in playlist.splitlines() if line.endswith(".m4s"))
        status, body = await http_get(f"{base}/paid/{segment}")
        assert status == 200
        assert body[4:8] == b"moof"  # a CMAF fragment
        assert len(hook.calls) == calls + 1, "the grant covers the segment"
        assert hook.calls[-1]["protocol"] == "hls"
        assert hook.calls[-1]["query"] == {"t": "2"}
        await asyncio.wait_for(publisher, 30)
    finally:
        await server.close()


async def wait_for_playlist(url: str, within: float = 15.0) -> str:
    """The playlist once it lists a segment (bounded)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while loop.time() < deadline:
        status, body = await http_get(url)
        if status == 200 and b"#EXTINF" in body:
            return body.decode()
        await asyncio.sleep(0.2)
    raise AssertionError(f"{url} listed no segment within {within}s")


# --- the publish key -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "allowed"),
    [
        ("stream/keyed?key=s3cret", True),
        ("stream?key=s3cret/keyed", True),  # OBS puts it after the app
        ("stream/keyed_s3cret", True),  # as a suffix of the stream key
        ("stream/keyed?key=wrong", False),
        ("stream/keyed_wrong", False),
        ("stream/keyed", False),
        ("stream/_s3cret", False),  # a key alone is no stream name
    ],
)
async def test_publish_key(clip: ClipFile, path: str, allowed: bool) -> None:
    server = await start_server(AuthSettings(publish_key="s3cret"))
    try:
        url = rtmp_url(server, path)
        if not allowed:
            await refused_publish(url, clip)
            assert refusals(server, "publish", "publish_key") == 1
            return
        publisher = start_publish(url, clip)
        stream = await wait_for_stream(server, "stream/keyed")
        assert stream.id == "stream/keyed"
        received = await play(rtmp_url(server, "stream/keyed"))  # players need no key
        assert received.error is None
        assert received.of_kind("video")
        await asyncio.wait_for(publisher, 30)
    finally:
        await server.close()


# --- the library callback ------------------------------------------------------------


@pytest.mark.parametrize("style", ["sync", "async"])
async def test_callback_decides_publish_and_play(clip: ClipFile, style: str) -> None:
    server = await start_server(AuthSettings())
    asked: list[AuthRequest] = []

    def decide(request: AuthRequest) -> bool:
        asked.append(request)
        return request.action == "publish" or request.query.get("ticket") == "ok"

    async def decide_async(request: AuthRequest) -> bool:
        await asyncio.sleep(0)
        return decide(request)

    server.handle_auth(decide if style == "sync" else decide_async)
    try:
        publisher = start_publish(rtmp_url(server, "stream/cb"), clip)
        await wait_for_stream(server, "stream/cb")
        denied = await play(rtmp_url(server, "stream/cb"))
        assert denied.error is not None
        allowed = await play(rtmp_url(server, "stream/cb?ticket=ok"))
        assert allowed.error is None
        assert allowed.of_kind("video")
        await asyncio.wait_for(publisher, 30)
    finally:
        await server.close()
    assert [(r.action, r.protocol, r.app, r.name) for r in asked] == [
        ("publish", "rtmp", "stream", "cb"),
        ("play", "rtmp", "stream", "cb"),
        ("play", "rtmp", "stream", "cb"),
    ]
    assert all(r.client_ip == "127.0.0.1" for r in asked)


@pytest.mark.parametrize("failure", ["raises", "none", "too_slow"])
async def test_callback_failure_refuses(clip: ClipFile, failure: str) -> None:
    server = await start_server(AuthSettings(timeout=0.3))

    async def decide(request: AuthRequest) -> bool | None:
        if failure == "raises":
            raise PermissionError("no")
        if failure == "too_slow":
            await asyncio.sleep(5)
        return None

    server.handle_auth(decide)
    try:
        await refused_publish(rtmp_url(server, "stream/cbfail"), clip)
        reason = "timeout" if failure == "too_slow" else "callback"
        assert refusals(server, "publish", reason) == 1
        assert len(server.streams) == 0
    finally:
        await server.close()


async def test_callback_and_hook_must_both_allow(hook: Hook, clip: ClipFile) -> None:
    server = await start_server(AuthSettings(url=hook.url))
    server.handle_auth(lambda request: False)
    try:
        await refused_publish(rtmp_url(server, "stream/both"), clip)
        assert hook.calls == []  # the callback refused first
    finally:
        await server.close()
