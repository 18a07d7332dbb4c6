"""HTTP safety: no URL reaches a file outside the recordings, and oversized or
malformed requests get a 4xx while the server goes on serving everyone else.

Requests are written on raw sockets, byte for byte, so nothing a client library
normalizes (``..``, ``%2f``, ``//``) is lost before it reaches the server."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from lpms import LPMS, HLSSettings, HTTPSettings, Settings

pytestmark = pytest.mark.e2e

SECRET = b"not for the web\n"


@pytest.fixture
async def recording_server(tmp_path: Path) -> AsyncIterator[LPMS]:
    """A server over a recordings directory holding one playlist, a symlink that
    points outside it, and a secret file beside it."""
    root = tmp_path / "recordings"
    (root / "stream" / "rec" / "source").mkdir(parents=True)
    (root / "stream" / "rec.m3u8").write_text("#EXTM3U\n#EXT-X-ENDLIST\n")
    (root / "stream" / "rec" / "source" / "1.ts").write_bytes(b"G" * 188)
    (tmp_path / "secret.ts").write_bytes(SECRET)
    (tmp_path / "secret.m3u8").write_bytes(SECRET)
    os.symlink(tmp_path / "secret.ts", root / "stream" / "rec" / "source" / "2.ts")
    os.symlink(tmp_path, root / "stream" / "outside")
    settings = Settings(
        workdir=str(root),
        hls=HLSSettings(record=True),
        http=HTTPSettings(max_request_line=2048, max_header_bytes=2048, max_headers=32),
    )
    server = LPMS(host="127.0.0.1", rtmp_port=0, http_port=0, settings=settings)
    await server.start()
    try:
        yield server
    finally:
        await server.close()


async def raw_request(server: LPMS, request: bytes, within: float = 5.0) -> tuple[int, bytes]:
    """Send ``request`` as is; the status code and the whole response (the server
    must answer and close, or answer ``within`` seconds)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.http_port)
    try:
        writer.write(request)
        await writer.drain()
        response = await asyncio.wait_for(_read_response(reader), within)
    finally:
        writer.close()
    status_line = response.split(b"\r\n", 1)[0]
    return int(status_line.split()[1]), response


async def _read_response(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return head + (await reader.readexactly(length) if length else b"")


def get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()


async def test_recordings_are_served(recording_server: LPMS) -> None:
    status, body = await raw_request(recording_server, get("/stream/rec.m3u8"))
    assert status == 200
    assert body.endswith(b"#EXT-X-ENDLIST\n")


@pytest.mark.parametrize(
    "path",
    [
        "/stream/rec/source/2.ts",  # a symlink to a file outside the root
        "/stream/outside/secret.ts",  # through a symlinked directory
        "/stream/../../secret.ts",
        "/stream/..%2f..%2fsecret.ts",
        "/stream/%2e%2e/%2e%2e/secret.m3u8",
        "/stream%2f..%2f..%2fsecret.m3u8",
        "//etc/passwd.m3u8",
        "/%2fetc%2fpasswd.m3u8",
        "/stream/rec/source/%00.ts",
        "/stream/rec/source/1.ts%00.ts",
        "/" + "a/" * 300 + "x.m3u8",
    ],
)
async def test_no_path_escapes_the_recordings(recording_server: LPMS, path: str) -> None:
    status, body = await raw_request(recording_server, get(path))
    assert 400 <= status < 500, (path, status)
    assert SECRET not in body


@pytest.mark.parametrize(
    ("request_bytes", "why"),
    [
        (get("/" + "a" * 4000 + ".m3u8"), "request line over max_request_line"),
        (
            b"GET /stream/rec.m3u8 HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 4000 + b"\r\n\r\n",
            "header over max_header_bytes",
        ),
        (
            b"GET /stream/rec.m3u8 HTTP/1.1\r\nHost: x\r\n"
            + b"".join(b"X-%d: 1\r\n" % i for i in range(100))
            + b"\r\n",
            "more headers than max_headers",
        ),
        (b"POST /api/streams HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\n\r\n", "body"),
        (b"GARBAGE\r\n\r\n", "not HTTP"),
        (b"GET /stream/rec.m3u8 HTTP/9.9\r\n\r\n", "unknown version"),
        (b"GET /stream/rec.m3u8 HTTP/1.1\r\nContent-Length: -5\r\n\r\n", "bad length"),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(64), "TLS hello"),
    ],
)
async def test_oversized_or_malformed_requests_get_a_4xx(
    recording_server: LPMS, request_bytes: bytes, why: str
) -> None:
    status, _ = await raw_request(recording_server, request_bytes)
    assert 400 <= status < 500, (why, status)
    # ... and the server still answers a good request.
    status, _ = await raw_request(recording_server, get("/stream/rec.m3u8"))
    assert status == 200
