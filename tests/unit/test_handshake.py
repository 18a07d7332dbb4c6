"""The RTMP handshake: both sides against each other, split reads, bad peers."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lpms.errors import RTMPProtocolError
from lpms.rtmp.handshake import HANDSHAKE_SIZE, RTMP_VERSION, ClientHandshake, ServerHandshake

SERVER_RANDOM = bytes(range(256)) * 6  # 1536 bytes; the first 1528 are used
CLIENT_RANDOM = bytes(reversed(range(256))) * 6


def server_random(size: int) -> bytes:
    return SERVER_RANDOM[:size]


def client_random(size: int) -> bytes:
    return CLIENT_RANDOM[:size]


def make_server(time_ms: int = 0) -> ServerHandshake:
    return ServerHandshake(time_ms=time_ms, random_bytes=server_random)


def make_client(time_ms: int = 0) -> ClientHandshake:
    return ClientHandshake(time_ms=time_ms, random_bytes=client_random)


def test_server_and_client_complete_against_each_other() -> None:
    server, client = make_server(time_ms=1234), make_client(time_ms=99)
    c0c1 = client.initial_data()
    assert len(c0c1) == 1 + HANDSHAKE_SIZE
    assert c0c1[0] == RTMP_VERSION
    assert c0c1[1:9] == struct.pack(">II", 99, 0)

    s0s1s2 = server.receive_data(c0c1)
    assert len(s0s1s2) == 1 + 2 * HANDSHAKE_SIZE
    s1 = s0s1s2[1 : 1 + HANDSHAKE_SIZE]
    assert s0s1s2[0] == RTMP_VERSION
    assert s1 == struct.pack(">II", 1234, 0) + SERVER_RANDOM[: HANDSHAKE_SIZE - 8]
    assert s0s1s2[1 + HANDSHAKE_SIZE :] == c0c1[1:]  # S2 echoes C1 exactly
    assert not server.complete

    c2 = client.receive_data(s0s1s2)
    assert c2 == s1  # C2 echoes S1
    assert client.complete
    assert client.echo_matched

    assert server.receive_data(c2) == b""
    assert server.complete
    assert server.echo_matched
    assert server.take_leftover() == b""
    assert client.take_leftover() == b""


def test_server_s1_version_field_is_zero() -> None:
    # FFmpeg's client validates a digest in S1 only when S1's version byte is >= 3
    # (rtmpproto.c: `serverdata[5] >= 3`); librtmp only when it is non-zero.
    reply = make_server().receive_data(make_client().initial_data())
    assert reply[5:9] == b"\x00\x00\x00\x00"


def test_ffmpeg_style_c1_with_version_and_digest_is_echoed() -> None:
    # FFmpeg's C1: uptime 0, client version 9.0.124.2, then pseudo-random bytes with
    # an HMAC digest; we do not check it, we just echo it back as S2.
    c1 = struct.pack(">I", 0) + bytes([9, 0, 124, 2]) + bytes(range(200)) * 7 + bytes(128)
    assert len(c1) == HANDSHAKE_SIZE
    reply = make_server().receive_data(bytes([3]) + c1)
    assert reply[1 + HANDSHAKE_SIZE :] == c1


def test_server_byte_at_a_time() -> None:
    server, client = make_server(), make_client()
    c0c1 = client.initial_data()
    replies = [server.receive_data(c0c1[i : i + 1]) for i in range(len(c0c1))]
    assert all(r == b"" for r in replies[:-1])
    c2 = client.receive_data(replies[-1])
    for i in range(len(c2)):
        assert not server.complete
        assert server.receive_data(c2[i : i + 1]) == b""
    assert server.complete
    assert server.echo_matched


def test_client_byte_at_a_time() -> None:
    server, client = make_server(), make_client()
    s0s1s2 = server.receive_data(client.initial_data())
    out = [client.receive_data(memoryview(s0s1s2)[i : i + 1]) for i in range(len(s0s1s2))]
    assert all(o == b"" for o in out[:-1])
    assert out[-1] == s0s1s2[1 : 1 + HANDSHAKE_SIZE]
    assert client.complete


def test_server_every_split_point_with_leftover() -> None:
    client = make_client()
    c0c1 = client.initial_data()
    c2 = client.receive_data(make_server().receive_data(c0c1))
    chunks = b"\x03\x00\x00\x00\x00\x00\x05\x14\x00\x00\x00\x00hello"
    stream = c0c1 + c2 + chunks
    for split in range(len(stream) + 1):
        server = make_server()
        reply = server.receive_data(stream[:split]) + server.receive_data(stream[split:])
        assert len(reply) == 1 + 2 * HANDSHAKE_SIZE
        assert server.complete
        assert server.take_leftover() == chunks
        assert server.take_leftover() == b""  # handed out once


def test_client_every_split_point_with_leftover() -> None:
    s0s1s2 = make_server().receive_data(make_client().initial_data())
    extra = b"\x02\x00\x00\x00\x00\x00\x04\x01\x00\x00\x00\x00\x00\x00\x10\x00"
    stream = s0s1s2 + extra
    for split in range(0, len(stream) + 1, 7):
        client = make_client()
        c2 = client.receive_data(stream[:split]) + client.receive_data(stream[split:])
        assert c2 == s0s1s2[1 : 1 + HANDSHAKE_SIZE]
        assert client.take_leftover() == extra


def test_all_at_once_with_leftover() -> None:
    client = make_client()
    c0c1 = client.initial_data()
    c2 = client.receive_data(make_server().receive_data(c0c1))
    server = make_server()
    assert len(server.receive_data(c0c1 + c2 + b"chunks")) == 1 + 2 * HANDSHAKE_SIZE
    assert server.complete
    assert server.take_leftover() == b"chunks"


def test_bytes_after_completion_go_to_leftover() -> None:
    client = make_client()
    c0c1 = client.initial_data()
    c2 = client.receive_data(make_server().receive_data(c0c1))
    server = make_server()
    server.receive_data(c0c1 + c2 + b"ab")
    assert server.receive_data(b"cd") == b""
    assert server.take_leftover() == b"abcd"


def test_c2_that_does_not_echo_s1_is_accepted_and_noted() -> None:
    # FFmpeg answers a digest-style S1 with its own signed C2; other clients put
    # their own time in. Neither is a reason to hang up.
    server = make_server()
    server.receive_data(make_client().initial_data())
    server.receive_data(bytes(HANDSHAKE_SIZE))
    assert server.complete
    assert server.echo_matched is False


def test_c2_with_other_time_fields_still_matches() -> None:
    server = make_server()
    s1 = server.receive_data(make_client().initial_data())[1 : 1 + HANDSHAKE_SIZE]
    server.receive_data(struct.pack(">II", 7, 8) + s1[8:])
    assert server.echo_matched is True


def test_echo_unknown_before_completion() -> None:
    assert make_server().echo_matched is None
    assert make_client().echo_matched is None


@pytest.mark.parametrize(
    ("version", "hint"),
    [
        (6, "RTMPE"),
        (0x16, "TLS"),
        (ord("G"), "HTTP"),
        (0, "does not speak RTMP"),
        (4, "does not speak RTMP"),
    ],
)
def test_server_refuses_other_versions(version: int, hint: str) -> None:
    server = make_server()
    with pytest.raises(RTMPProtocolError, match=rf"version {version} \(byte 0x{version:02x}\)"):
        server.receive_data(bytes([version]))
    with pytest.raises(RTMPProtocolError, match=hint):
        make_server().receive_data(bytes([version]) + bytes(HANDSHAKE_SIZE))


def test_client_refuses_other_server_versions() -> None:
    client = make_client()
    client.initial_data()
    with pytest.raises(RTMPProtocolError, match="S0 asks for RTMP version 6"):
        client.receive_data(b"\x06")


def test_time_is_kept_to_32_bits() -> None:
    reply = make_server(time_ms=(1 << 32) + 5).receive_data(make_client().initial_data())
    assert reply[1:5] == struct.pack(">I", 5)


def test_random_source_must_fill_the_packet() -> None:
    with pytest.raises(ValueError, match="1528"):
        ServerHandshake(random_bytes=lambda size: b"short")


def test_default_random_differs_between_handshakes() -> None:
    first = ServerHandshake().receive_data(make_client().initial_data())
    second = ServerHandshake().receive_data(make_client().initial_data())
    assert first[9 : 1 + HANDSHAKE_SIZE] != second[9 : 1 + HANDSHAKE_SIZE]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=4000), st.integers(1, 4000))
def test_arbitrary_bytes_raise_only_protocol_errors(data: bytes, split: int) -> None:
    for handshake in (make_server(), make_client()):
        try:
            for start in range(0, len(data), split):
                handshake.receive_data(data[start : start + split])
        except RTMPProtocolError:
            assert data[0] != RTMP_VERSION
        else:
            assert not data or data[0] == RTMP_VERSION
