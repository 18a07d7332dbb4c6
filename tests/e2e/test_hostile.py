"""Hostile clients against a live server: hundreds of connections that send garbage,
lie, stall or sit idle, while FFmpeg publishes and plays a real stream beside them.

The hostile clients are written here, with our own handshake, chunk writer and AMF0
encoder, because no real client misbehaves on purpose; the stream that must not
suffer is published and played by FFmpeg. The test checks that every hostile
connection is closed by the server within its timeouts, that the player received
the whole stream with no packet lost, that the server's memory stayed flat, and that
the closes were counted by reason."""

from __future__ import annotations

import asyncio
import gc
import os
import random
import socket
import struct
import sys
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path

import psutil
import pytest

from lpms import LPMS, ConnectionLimits, HTTPSettings, ListenerSettings, Settings, TLSSettings
from lpms.rtmp import amf0
from lpms.rtmp.chunk import ChunkWriter, RTMPMessage
from lpms.rtmp.handshake import HANDSHAKE_SIZE, ClientHandshake
from lpms.rtmp.messages import MessageType, set_chunk_size
from tests.certs import make_certificate
from tests.e2e.clients import Received
from tests.e2e.conftest import (
    ClipFile,
    clip_file,
    play,
    publish_timed,
    rtmp_url,
    start_publish,
    wait_for_stream,
)

pytestmark = pytest.mark.e2e

COPIES = 25  # of each hostile kind
IDLE = 300  # connections that connect and send nothing, or only the handshake
CLOSED_WITHIN_S = 10.0  # the longest timeout below, plus slack for a busy machine
RSS_GROWTH_LIMIT = 48 << 20

SETTINGS = Settings(
    max_connections=5000,
    max_connections_per_ip=5000,  # every client here is 127.0.0.1
    rtmp=ListenerSettings(
        handshake_timeout=2.0,
        idle_timeout=2.0,
        receive_timeout=3.0,
        connection=ConnectionLimits(),
    ),
)

Hostile = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


# --- what the hostile clients send ---------------------------------------------------


async def handshake(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    client = ClientHandshake()
    writer.write(client.initial_data())
    reply = await reader.readexactly(1 + 2 * HANDSHAKE_SIZE)
    writer.write(client.receive_data(reply))


def chunks(*messages: tuple[int, RTMPMessage]) -> bytes:
    writer = ChunkWriter()
    return b"".join(writer.write(csid, message) for csid, message in messages)


def command(*values: object, msid: int = 0) -> tuple[int, RTMPMessage]:
    return 3, RTMPMessage(MessageType.COMMAND_AMF0, 0, msid, amf0.encode(*values))


CONNECT = command("connect", 1.0, {"app": "stream", "tcUrl": "rtmp://127.0.0.1/stream"})


def garbage(size: int) -> bytes:
    return random.randbytes(size)


async def garbage_first(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(garbage(4096))


async def wrong_version(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"\x06" + garbage(HANDSHAKE_SIZE))


async def half_handshake(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"\x03" + garbage(HANDSHAKE_SIZE // 2))  # then stalls: handshake timeout


async def garbage_after_handshake(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    await handshake(reader, writer)
    writer.write(garbage(8192))


async def huge_message_claim(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await handshake(reader, writer)
    # A type 0 header claiming a 16 MiB - 1 video message, then 100 bytes, then silence.
    header = bytes([0x04]) + b"\x00\x00\x00" + (0xFFFFFF).to_bytes(3, "big") + b"\x09"
    writer.write(header + struct.pack("<I", 1) + garbage(100))


async def chunk_size_zero(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await handshake(reader, writer)
    writer.write(chunks((2, RTMPMessage(MessageType.SET_CHUNK_SIZE, 0, 0, b"\x00" * 4))))


async def chunk_size_max(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await handshake(reader, writer)
    writer.write(
        chunks((2, RTMPMessage(MessageType.SET_CHUNK_SIZE, 0, 0, set_chunk_size(0x7FFFFFFF))))
    )
    writer.write(garbage(4096))


async def unknown_chunk_stream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await handshake(reader, writer)
    writer.write(bytes([0xC0 | 42]) + garbage(128))  # type 3 on a stream never opened


async def deep_amf(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await handshake(reader, writer)
    nested = b"\x03\x00\x01a" * 5000  # objects in objects, never closed
    body = amf0.encode("connect", 1.0) + nested
    writer.write(chunks((3, RTMPMessage(MessageType.COMMAND_AMF0, 0, 0, body))))


async def bad_amf_type(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await handshake(reader, writer)
    body = amf0.encode("connect", 1.0) + b"\x0f\xff\xff\xff\xff" + garbage(64)
    writer.write(chunks((3, RTMPMessage(MessageType.COMMAND_AMF0, 0, 0, body))))


async def truncated_then_gone(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await handshake(reader, writer)
    data = chunks(CONNECT)
    writer.write(data[: len(data) // 2])
    await writer.drain()
    writer.close()


async def lying_publisher(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Publishes with an AVC sequence header that is garbage, frames whose NAL
    lengths overrun them, and timestamps that go backwards and jump by hours."""
    await handshake(reader, writer)
    name = f"liar{random.randrange(1 << 30)}"
    writer.write(
        chunks(
            CONNECT,
            command("createStream", 2.0, None),
            command("publish", 3.0, None, name, "live", msid=1),
        )
    )
    await asyncio.sleep(0.2)
    video: list[tuple[int, RTMPMessage]] = [
        (6, RTMPMessage(MessageType.VIDEO, 0, 1, b"\x17\x00\x00\x00\x00" + garbage(40)))
    ]
    for index, timestamp in enumerate([0, 40, 20, 3_600_000, 10, 0xFFFFFF00, 80]):
        keyframe = b"\x17" if index % 3 == 0 else b"\x27"
        frame = keyframe + b"\x01\x00\x00\x00" + b"\x7f\xff\xff\xff" + garbage(50)
        video.append((6, RTMPMessage(MessageType.VIDEO, timestamp, 1, frame)))
    video.append((4, RTMPMessage(MessageType.AUDIO, 5, 1, b"\xaf\x00" + garbage(3))))
    video.append((4, RTMPMessage(MessageType.AUDIO, 7, 1, b"\xaf\x01" + garbage(200))))
    writer.write(chunks(*video))
    await writer.drain()
    await asyncio.sleep(0.5)
    writer.close()


async def handshake_then_idle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await handshake(reader, writer)
    writer.write(chunks(CONNECT))  # connected, then never publishes or plays


async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    return  # connects and sends nothing


HOSTILE: list[Hostile] = [
    garbage_first,
    wrong_version,
    half_handshake,
    garbage_after_handshake,
    huge_message_claim,
    chunk_size_zero,
    chunk_size_max,
    unknown_chunk_stream,
    deep_amf,
    bad_amf_type,
    truncated_then_gone,
    lying_publisher,
]


async def run_client(port: int, behave: Hostile) -> str:
    """Connect, misbehave, then wait for the server to close; how it ended."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        try:
            await behave(reader, writer)
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            return "closed"  # the server hung up while we were still misbehaving
        if writer.is_closing():
            return "we closed"
        try:
            async with asyncio.timeout(CLOSED_WITHIN_S):
                while await reader.read(65536):
                    pass
        except TimeoutError:
            return "left open"
        except ConnectionError:
            pass
        return "closed"
    finally:
        writer.close()


async def start_victim(
    server: LPMS, stream_id: str, clip: ClipFile
) -> tuple[asyncio.Task[int], asyncio.Task[Received]]:
    """FFmpeg publishing `clip` as `stream_id` over RTMP, and FFmpeg playing it once it
    is live: the stream that must not suffer."""
    url = rtmp_url(server, stream_id)
    publisher = start_publish(url, clip)
    await wait_for_stream(server, stream_id)
    return publisher, asyncio.create_task(play(url))


def assert_whole_stream(received: Received, clip: ClipFile) -> None:
    """The player got the whole stream from the keyframe it joined at, nothing lost."""
    assert received.error is None
    clip_video = [p.payload for p in clip.clip.of_kind("video")]
    video = [p.payload for p in received.of_kind("video")]
    assert video, "the player received no video"
    assert video == clip_video[clip_video.index(video[0]) :]
    assert video[-1] == clip_video[-1]


def rss() -> int:
    gc.collect()
    return int(psutil.Process(os.getpid()).memory_info().rss)


@pytest.mark.timeout(180)
async def test_hostile_and_idle_connections_do_not_disturb_a_live_stream(
    clip12: ClipFile,
) -> None:
    server = LPMS(host="127.0.0.1", rtmp_port=0, http_port=0, settings=SETTINGS)
    await server.start()
    try:
        publisher, player = await start_victim(server, "stream/victim", clip12)
        await asyncio.sleep(0.5)
        rss_before = rss()

        kinds = [kind for kind in HOSTILE for _ in range(COPIES)]
        kinds += [silent] * (IDLE // 2) + [handshake_then_idle] * (IDLE // 2)
        random.shuffle(kinds)
        endings = await asyncio.gather(*(run_client(server.rtmp_port, k) for k in kinds))
        rss_after = rss()

        received = await asyncio.wait_for(player, 60)
        await asyncio.wait_for(publisher, 60)
    finally:
        await server.close()

    by_kind: dict[str, set[str]] = {}
    for kind, ending in zip(kinds, endings, strict=True):
        by_kind.setdefault(kind.__name__, set()).add(ending)
    print(f"hostile: {by_kind}, RSS +{(rss_after - rss_before) >> 20} MiB")
    assert all("left open" not in e for e in by_kind.values()), by_kind
    assert len(server._rtmp_connections) == 0

    assert_whole_stream(received, clip12)
    dts = [p.dts_ms for p in received.of_kind("video")]
    assert dts == sorted(dts)

    assert rss_after - rss_before < RSS_GROWTH_LIMIT, (
        f"RSS grew {(rss_after - rss_before) >> 20} MiB"
    )
    closed = {
        reason: server.metrics.value(
            "lpms_connections_closed_total", protocol="rtmp", reason=reason
        )
        for reason in ("protocol_error", "handshake_timeout", "idle_timeout")
    }
    assert closed["protocol_error"] >= 8 * COPIES, closed
    assert closed["handshake_timeout"] >= COPIES + IDLE // 2, closed
    assert closed["idle_timeout"] >= IDLE // 2, closed


FLOODER = r"""
import os, socket, sys, time
sock = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
sock.sendall(b"\x03" + os.urandom(1536))
reply = b""
while len(reply) < 3073:
    reply += sock.recv(65536)
sock.sendall(reply[1:1537])  # C2: S1 echoed
# A zero-length message on chunk stream 5, then one-byte type 3 chunks, each a new
# zero-length message: microseconds of parsing per byte sent.
sock.sendall(bytes([0x05]) + bytes(6) + b"\x09" + bytes(4))
flood = bytes([0xC5]) * 65536
sock.sendall(flood)
print("flooding", flush=True)
started = time.monotonic()
deadline = started + float(sys.argv[2])
try:
    while time.monotonic() < deadline:
        sock.sendall(flood)
except OSError:
    print(f"closed after {time.monotonic() - started:.1f}")
    sys.exit(0)
print("never closed")
"""
# The flood must last through the publisher's start (a child process importing PyAV),
# so it is allowed more seconds over budget than the default before it is cut.
FLOOD_SECONDS = 6
CONNECTED_WITHIN_S = 1.0


@pytest.mark.timeout(120)
async def test_a_flood_of_tiny_chunks_is_throttled_and_a_publisher_beside_it_is_unharmed(
    clip12: ClipFile,
) -> None:
    # The idle timeout would cut a flooder that never publishes; this one must be
    # caught by what it costs, as one that publishes first would be.
    rtmp = replace(SETTINGS.rtmp, idle_timeout=60.0, max_parse_cpu_seconds=FLOOD_SECONDS)
    server = LPMS(host="127.0.0.1", rtmp_port=0, http_port=0, settings=replace(SETTINGS, rtmp=rtmp))
    await server.start()
    flooder = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        FLOODER,
        str(server.rtmp_port),
        "40",
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert flooder.stdout is not None
        line = await asyncio.wait_for(flooder.stdout.readline(), 30)
        assert line == b"flooding\n"
        url = rtmp_url(server, "stream/flooded")
        publisher = asyncio.create_task(publish_timed(url, clip12))
        await wait_for_stream(server, "stream/flooded", within=30.0)
        player = asyncio.create_task(play(url))
        out, _ = await asyncio.wait_for(flooder.communicate(), 60)
        received = await asyncio.wait_for(player, 60)
        _, connected_in = await asyncio.wait_for(publisher, 60)
    finally:
        if flooder.returncode is None:
            flooder.kill()
            await flooder.wait()
        await server.close()
    verdict = (line + out).decode().split("\n")[1].strip()
    print("flood:", verdict, "publisher connected in", connected_in)
    # FFmpeg's handshake, connect and publish went on at once beside the flood ...
    assert connected_in < CONNECTED_WITHIN_S
    # ... which was cut for what it cost, once its seconds over budget ran out.
    assert verdict.startswith("closed after"), verdict
    assert FLOOD_SECONDS - 1 <= float(verdict.split()[-1]) < FLOOD_SECONDS + 5
    closed = server.metrics.value(
        "lpms_connections_closed_total", protocol="rtmp", reason="max_parse_cpu"
    )
    assert closed == 1
    assert received.error is None
    clip_video = [p.payload for p in clip12.clip.of_kind("video")]
    video = [p.payload for p in received.of_kind("video")]
    assert video == clip_video[clip_video.index(video[0]) :]


# --- HTTP-FLV and WebSocket-FLV players that misbehave --------------------------------

FLV_SEND_TIMEOUT = 1.0
WEBSOCKET_UPGRADE = (
    "GET /{path}.flv HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
    "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "Sec-WebSocket-Version: 13\r\n\r\n"
)


async def flv_client(
    port: int, request: str, *, receive_buffer: int | None = None
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A raw connection that sends ``request``; a small ``receive_buffer`` makes a
    client that never reads stall the server's writes soon."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if receive_buffer is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(sock=sock)
    writer.write(request.encode())
    await writer.drain()
    return reader, writer


async def closed_by_server(reader: asyncio.StreamReader) -> bool:
    """Read on until the server closes (True) or CLOSED_WITHIN_S passes (False)."""
    try:
        async with asyncio.timeout(CLOSED_WITHIN_S):
            while await reader.read(65536):
                pass
    except TimeoutError:
        return False
    except ConnectionError:
        pass
    return True


@pytest.mark.timeout(120)
async def test_flv_players_that_stall_or_send_garbage_are_closed_and_others_are_unharmed(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    # A 4K camera's bitrate (lossless 1080p, ~30 Mbit/s) fills a stalled player's
    # socket buffers, however large the kernel lets them grow, within a second or two.
    clip = clip_file(tmp_path_factory, 10.0, size=(1920, 1080), lossless=True, gop_frames=30)
    settings = replace(SETTINGS, http=HTTPSettings(flv_send_timeout=FLV_SEND_TIMEOUT))
    server = LPMS(host="127.0.0.1", rtmp_port=0, http_port=0, settings=settings)
    await server.start()
    writers: list[asyncio.StreamWriter] = []
    try:
        publisher = start_publish(rtmp_url(server, "stream/victim"), clip)
        await wait_for_stream(server, "stream/victim")
        port = server.http_port
        player = asyncio.create_task(play(f"http://127.0.0.1:{port}/stream/victim.flv"))
        http_get = "GET /stream/victim.flv HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        upgrade = WEBSOCKET_UPGRADE.format(path="stream/victim")
        # Clients that never read: their sockets fill, the server's writes stall.
        stalled = [
            await flv_client(port, request, receive_buffer=4096)
            for request in (http_get, upgrade) * 3
        ]
        # WebSocket players that send a frame that is not one, or one far too big.
        garbled = await flv_client(port, upgrade)
        await garbled[0].readuntil(b"\r\n\r\n")
        garbled[1].write(bytes([0x82, 0xFF]) + os.urandom(64))
        oversized = await flv_client(port, upgrade)
        await oversized[0].readuntil(b"\r\n\r\n")
        size = 1 << 20
        oversized[1].write(bytes([0x82, 0xFF]) + struct.pack(">Q", size) + os.urandom(4))
        writers += [w for _, w in stalled] + [garbled[1], oversized[1]]

        metrics = server.metrics

        def closed(protocol: str, reason: str) -> float:
            return metrics.value("lpms_connections_closed_total", protocol=protocol, reason=reason)

        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while closed("http-flv", "send_timeout") < 3 or closed("ws-flv", "send_timeout") < 3:
            assert loop.time() < deadline, "stalled FLV players were not closed"
            await asyncio.sleep(0.1)
        assert await closed_by_server(garbled[0])
        assert await closed_by_server(oversized[0])
        assert closed("ws-flv", "protocol_error") == 2
        received = await asyncio.wait_for(player, 60)
        await asyncio.wait_for(publisher, 60)
    finally:
        for writer in writers:
            writer.close()
        await server.close()

    assert received.error is None
    clip_video = [p.payload for p in clip.clip.of_kind("video")]
    video = [p.payload for p in received.of_kind("video")]
    assert video == clip_video[clip_video.index(video[0]) :]
    assert video[-1] == clip_video[-1]
    assert server.metrics.value("lpms_live_connections", protocol="ws-flv") == 0
    assert server.metrics.value("lpms_live_connections", protocol="http-flv") == 0


# --- TLS ------------------------------------------------------------------------------


async def rtmp_before_tls(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"\x03" + garbage(HANDSHAKE_SIZE))  # a plain RTMP client at the RTMPS port


async def http_before_tls(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"GET /api/server HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")  # plain HTTP at HTTPS


TLS_HANDSHAKE_TIMEOUT_S = 1.0


@pytest.mark.timeout(180)
async def test_garbage_and_silence_before_the_tls_handshake_do_not_disturb_a_live_stream(
    clip12: ClipFile, tmp_path: Path
) -> None:
    certificate = make_certificate(tmp_path)
    tls = TLSSettings(
        cert=str(certificate.cert),
        key=str(certificate.key),
        rtmps_port=0,
        https_port=0,
        handshake_timeout=TLS_HANDSHAKE_TIMEOUT_S,
    )
    server = LPMS(host="127.0.0.1", rtmp_port=0, http_port=0, settings=replace(SETTINGS, tls=tls))
    await server.start()
    try:
        publisher, player = await start_victim(server, "stream/tls-victim", clip12)
        clients = [(server.rtmps_port, kind) for kind in (rtmp_before_tls, silent)]
        clients += [(server.https_port, kind) for kind in (http_before_tls, silent)]
        hostile = [client for client in clients for _ in range(COPIES)]
        random.shuffle(hostile)
        endings = await asyncio.gather(*(run_client(port, kind) for port, kind in hostile))
        received = await asyncio.wait_for(player, 60)
        await asyncio.wait_for(publisher, 60)
    finally:
        await server.close()

    assert "left open" not in endings, endings
    assert_whole_stream(received, clip12)
    for protocol in ("rtmps", "https"):
        closed = {
            reason: server.metrics.value(
                "lpms_connections_closed_total", protocol=protocol, reason=reason
            )
            for reason in ("tls_handshake", "tls_handshake_timeout")
        }
        assert closed == {"tls_handshake": COPIES, "tls_handshake_timeout": COPIES}, closed
    # None of them reached the RTMP code behind the handshake.
    assert server.metrics.value("lpms_connections_total", protocol="rtmps") == 0
