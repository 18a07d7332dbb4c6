"""The RTMP handshake (Adobe RTMP specification, section 5.2), sans-IO.

We speak the simple handshake: our S1/C1 carry zero in their version field, so
peers skip the Flash Player 9 HMAC digest scheme. FFmpeg's client validates a
digest only when it plays and S1's version byte is >= 3 (``rtmp_handshake`` in
libavformat/rtmpproto.c); librtmp (OBS, GStreamer's rtmpsink) turns its digest
mode off when S0 is 3 and S1's first version byte is zero. Both then echo S1 as
C2 and at most log a warning about S2, which we make an exact copy of C1.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable

from lpms.errors import RTMPProtocolError

RTMP_VERSION = 3
HANDSHAKE_SIZE = 1536

_TIME_AND_ZERO = struct.Struct(">II")
_RANDOM_SIZE = HANDSHAKE_SIZE - _TIME_AND_ZERO.size
_VERSION_BYTE = bytes((RTMP_VERSION,))

# What a wrong first byte usually means, so the log line says what to fix.
_VERSION_HINTS = {
    6: "RTMPE (encrypted RTMP) is not supported; use rtmp://",
    8: "RTMPE (encrypted RTMP) is not supported; use rtmp://",
    9: "RTMPE (encrypted RTMP) is not supported; use rtmp://",
    0x16: "this looks like TLS; rtmps:// needs a TLS terminator in front of lpms",
    ord("G"): "this looks like HTTP; use the HTTP port for HLS",
    ord("P"): "this looks like HTTP; use the HTTP port for HLS",
    ord("H"): "this looks like HTTP; use the HTTP port for HLS",
}


def _packet(time_ms: int, random_bytes: Callable[[int], bytes]) -> bytes:
    """C1/S1 (spec 5.2.3): time, four zero bytes, random filler."""
    filler = random_bytes(_RANDOM_SIZE)
    if len(filler) != _RANDOM_SIZE:
        raise ValueError(f"random_bytes returned {len(filler)} bytes, wanted {_RANDOM_SIZE}")
    return _TIME_AND_ZERO.pack(time_ms & 0xFFFFFFFF, 0) + filler


def _echoes(reply: bytes | bytearray, sent: bytes) -> bool:
    """Whether C2/S2 echo our random bytes (spec 5.2.4); the time fields may differ."""
    return reply[_TIME_AND_ZERO.size :] == sent[_TIME_AND_ZERO.size :]


class _Handshake:
    """What both sides share: the input buffer, the version check, leftovers."""

    __slots__ = ("_buffer", "_complete", "_echo_matched", "_leftover", "_version_checked")

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._complete = False
        self._echo_matched: bool | None = None
        self._leftover = b""
        self._version_checked = False

    @property
    def complete(self) -> bool:
        return self._complete

    @property
    def echo_matched(self) -> bool | None:
        """Whether the peer's last packet echoed ours; None until it arrived.

        Never fatal: FFmpeg answers a digest-style S1 with a signed C2, and other
        clients put their own time in, so this is something to count, not refuse.
        """
        return self._echo_matched

    def take_leftover(self) -> bytes:
        """Bytes that came after the handshake (the first chunks), handed out once."""
        leftover, self._leftover = self._leftover, b""
        return leftover

    def _append(self, data: bytes | memoryview, packet_name: str) -> bool:
        """Buffer ``data``; False once complete (the bytes then went to leftover)."""
        if self._complete:
            self._leftover += bytes(data)
            return False
        self._buffer += data
        if not self._version_checked and self._buffer:
            self._check_version(self._buffer[0], packet_name)
        return True

    def _check_version(self, version: int, packet_name: str) -> None:
        # Spec 5.2.2: version 3 is the only one defined for plain RTMP.
        if version != RTMP_VERSION:
            hint = _VERSION_HINTS.get(version, "the peer does not speak RTMP")
            raise RTMPProtocolError(
                f"{packet_name} asks for RTMP version {version} (byte 0x{version:02x}), "
                f"only version {RTMP_VERSION} is supported: {hint}"
            )
        self._version_checked = True

    def _finish(self, end: int, echo_of: bytes) -> None:
        """The peer's last packet ends at ``end``; what follows is chunk data."""
        buffer = self._buffer
        self._echo_matched = _echoes(buffer[end - HANDSHAKE_SIZE : end], echo_of)
        self._leftover = bytes(buffer[end:])
        buffer.clear()
        self._complete = True


class ServerHandshake(_Handshake):
    """The server side: C0+C1 in, S0+S1+S2 out at once, then C2 in.

    S0, S1 and S2 go out together as soon as C1 is in, because FFmpeg's client
    reads S0+S1 and S2 before it sends C2 (spec 5.2.1 allows either order).
    """

    __slots__ = ("_replied", "_s1")

    def __init__(
        self, *, time_ms: int = 0, random_bytes: Callable[[int], bytes] = os.urandom
    ) -> None:
        super().__init__()
        self._s1 = _packet(time_ms, random_bytes)
        self._replied = False

    def receive_data(self, data: bytes | memoryview) -> bytes:
        """Take bytes from the client; return the bytes to send now (often none)."""
        if not self._append(data, "C0"):
            return b""
        reply = b""
        if not self._replied:
            if len(self._buffer) < 1 + HANDSHAKE_SIZE:
                return b""
            c1 = bytes(self._buffer[1 : 1 + HANDSHAKE_SIZE])
            del self._buffer[: 1 + HANDSHAKE_SIZE]
            reply = b"".join((_VERSION_BYTE, self._s1, c1))
            self._replied = True
        if len(self._buffer) >= HANDSHAKE_SIZE:
            self._finish(HANDSHAKE_SIZE, self._s1)
        return reply


class ClientHandshake(_Handshake):
    """The client side: C0+C1 out, S0+S1+S2 in, then C2 (an echo of S1) out."""

    __slots__ = ("_c1",)

    def __init__(
        self, *, time_ms: int = 0, random_bytes: Callable[[int], bytes] = os.urandom
    ) -> None:
        super().__init__()
        self._c1 = _packet(time_ms, random_bytes)

    def initial_data(self) -> bytes:
        """C0+C1, to send once when the connection opens."""
        return _VERSION_BYTE + self._c1

    def receive_data(self, data: bytes | memoryview) -> bytes:
        """Take bytes from the server; return C2 once S0, S1 and S2 are all in.

        Like FFmpeg's client we wait for S2 before sending C2; spec 5.2.1 forbids
        sending anything but C2 before S2 anyway.
        """
        if not self._append(data, "S0"):
            return b""
        end = 1 + 2 * HANDSHAKE_SIZE
        if len(self._buffer) < end:
            return b""
        c2 = bytes(self._buffer[1 : 1 + HANDSHAKE_SIZE])
        self._finish(end, self._c1)
        return c2
