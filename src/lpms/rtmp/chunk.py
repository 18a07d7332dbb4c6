"""RTMP chunk streams (Adobe RTMP specification, section 5.3), sans-IO.

`ChunkReader` turns received bytes into whole messages; `ChunkWriter` turns messages
into chunks. Where the spec leaves room, the reader does what FFmpeg
(libavformat/rtmppkt.c) and nginx-rtmp (ngx_rtmp_handler.c) do, and the writer only
emits forms every reader we know agrees on:

- A type 3 chunk that starts a new message reuses the last timestamp delta; after a
  type 0 header that "delta" is the type 0 timestamp itself (spec 5.3.1.2.4, and
  FFmpeg's reader and writer). nginx-rtmp and librtmp read it as delta 0 there, so
  the writer never sends a type 3 new message straight after a type 0 header.
- Type 3 chunks carry the 4-byte extended timestamp whenever the latest type 0/1/2
  header on their chunk stream did (spec 5.3.1.3); FFmpeg, librtmp and nginx-rtmp
  write and expect them on continuation chunks too. On a type 3 chunk that starts
  a message, that field is the message's delta. The writer never emits that case.
- A type 0/1/2 header in the middle of a message is read as a continuation, as
  FFmpeg and nginx-rtmp do, as long as it does not contradict the message in
  progress; one that does is a protocol error.

The reader parses lazily: `read_messages` stops right after a control message (and
`next_message` after any one message), so the caller can apply a Set Chunk Size
before the chunks that follow it are read.
"""

from __future__ import annotations

import struct
from typing import NoReturn

from lpms.errors import RTMPProtocolError
from lpms.records import record

DEFAULT_CHUNK_SIZE = 128  # spec 5.4.1: until a Set Chunk Size says otherwise
DEFAULT_MAX_CHUNK_SIZE = 1 << 24
DEFAULT_MAX_MESSAGE_SIZE = 8 << 20
DEFAULT_MAX_CHUNK_STREAMS = 64
# Bytes of unfinished messages held across all chunk streams together: room for two
# of the largest messages in flight at once (a video keyframe interleaved with audio
# needs far less), so a peer cannot make each chunk stream hold max_message_size.
DEFAULT_MAX_PARTIAL_BYTES = 2 * DEFAULT_MAX_MESSAGE_SIZE

MIN_CHUNK_STREAM_ID = 2  # 0 and 1 mark the longer basic headers (spec 5.3.1.1)
MAX_CHUNK_STREAM_ID = 65599
MAX_WRITER_CHUNK_SIZE = 0x7FFFFFFF  # spec 5.4.1: the top bit must be zero
MAX_MESSAGE_LENGTH = 0xFFFFFF  # the 3-byte message length field (spec 5.3.1.2.1)
EXTENDED_TIMESTAMP = 0xFFFFFF  # timestamp field value announcing 4 more bytes (5.3.1.3)

_UINT32_MASK = 0xFFFFFFFF
_COMPACT_AT = 1 << 16  # consumed bytes kept at the buffer's front before we drop them

# Message header sizes by chunk type (fmt), spec 5.3.1.2.
_MESSAGE_HEADER_SIZES = (11, 7, 3, 0)

_U32 = struct.Struct(">I")
_U32_PAIR = struct.Struct(">II")
_U32_LE = struct.Struct("<I")

# Message types below this are protocol and user control messages (spec 5.4, 6.2).
_FIRST_NON_CONTROL_TYPE = 8


@record
class RTMPMessage:
    """One RTMP message (spec 5.3.1.2): what chunks are cut from and joined into."""

    type_id: int
    timestamp: int  # absolute, ms, modulo 2**32
    message_stream_id: int
    payload: bytes


# -- reading -----------------------------------------------------------------------


class _InStream:
    """What one incoming chunk stream remembers between chunks (spec 5.3.1.2)."""

    __slots__ = (
        "delta",
        "extended",
        "held",
        "length",
        "message_stream_id",
        "pieces",
        "received",
        "timestamp",
        "type_id",
    )

    def __init__(self) -> None:
        self.timestamp = 0  # of the message started last
        self.delta = 0  # what a type 3 chunk starting a message adds
        self.extended = False  # type 3 chunks carry an extended timestamp
        self.length = 0
        self.type_id = 0
        self.message_stream_id = 0
        # The message being received: what earlier next_message calls got of it, copied
        # into one bytearray (a message fed a byte at a time costs its bytes, not an
        # object per read), then this call's memoryview slices of the receive buffer.
        self.held = bytearray()
        self.pieces: list[memoryview] = []
        self.received = 0


class ChunkReader:
    """Reassembles messages from interleaved chunk streams.

    Bytes go into one ``bytearray`` with a read offset; payload pieces are slices of
    it, joined once per message. The buffer only ever holds a header's worth of
    unparsed bytes once the messages in it are taken, so it stays small; unfinished
    messages together hold at most ``max_partial_bytes``, whatever lengths their
    headers claim (nothing is allocated for a claim, only for bytes received).
    """

    __slots__ = (
        "_buf",
        "_bytes_received",
        "_chunk_left",
        "_chunk_size",
        "_current",
        "_error",
        "_max_chunk_size",
        "_max_chunk_streams",
        "_max_message_size",
        "_max_partial_bytes",
        "_partial_bytes",
        "_pos",
        "_skip",
        "_streams",
        "_viewing",
    )

    def __init__(
        self,
        *,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        max_chunk_size: int = DEFAULT_MAX_CHUNK_SIZE,
        max_chunk_streams: int = DEFAULT_MAX_CHUNK_STREAMS,
        max_partial_bytes: int = DEFAULT_MAX_PARTIAL_BYTES,
    ) -> None:
        self._max_message_size = max_message_size
        self._max_chunk_size = max_chunk_size
        self._max_chunk_streams = max_chunk_streams
        self._max_partial_bytes = max_partial_bytes
        self._chunk_size = DEFAULT_CHUNK_SIZE
        self._buf = bytearray()
        self._pos = 0
        self._streams: dict[int, _InStream] = {}
        self._current: _InStream | None = None  # whose chunk payload is being read
        self._chunk_left = 0  # payload bytes of the current chunk not yet read
        self._skip = 0  # payload bytes of an aborted chunk still to throw away
        self._partial_bytes = 0
        self._bytes_received = 0
        self._viewing: list[_InStream] = []
        self._error: RTMPProtocolError | None = None  # raised by the next read

    @property
    def chunk_size(self) -> int:
        return self._chunk_size

    @chunk_size.setter
    def chunk_size(self, size: int) -> None:
        """Apply the peer's Set Chunk Size; it counts from the next chunk on."""
        if not 1 <= size <= self._max_chunk_size:
            raise RTMPProtocolError(
                f"peer asked for chunk size {size}; we accept 1 to {self._max_chunk_size} "
                "(spec 5.4.1, max_chunk_size)"
            )
        self._chunk_size = size

    @property
    def bytes_received(self) -> int:
        """Every byte fed so far: the sequence number an Acknowledgement reports."""
        return self._bytes_received

    @property
    def buffered_bytes(self) -> int:
        """Bytes held: unparsed input plus partial messages (at most max_partial_bytes)."""
        return len(self._buf) - self._pos + self._partial_bytes

    @property
    def unparsed_bytes(self) -> int:
        """Bytes fed but not parsed yet: more messages may be waiting in them."""
        return len(self._buf) - self._pos

    def feed(self, data: bytes | memoryview) -> None:
        """Queue received bytes; `next_message` parses them when asked."""
        self._bytes_received += len(data)
        buf = self._buf
        pos = self._pos
        if pos >= _COMPACT_AT or (pos and pos == len(buf)):
            # CPython drops a bytearray's front without moving the rest.
            del buf[:pos]
            self._pos = 0
        buf += data

    def abort(self, chunk_stream_id: int) -> None:
        """Drop the partial message on a chunk stream (Abort Message, spec 5.4.2)."""
        stream = self._streams.get(chunk_stream_id)
        if stream is None:
            return
        if stream is self._current:
            self._skip = self._chunk_left
            self._chunk_left = 0
            self._current = None
        self._partial_bytes -= stream.received
        stream.received = 0
        stream.pieces = []
        stream.held = bytearray()

    def next_message(self) -> RTMPMessage | None:
        """The next complete message, or None until more bytes are fed."""
        messages = self.read_messages(1)
        return messages[0] if messages else None

    def read_messages(self, limit: int) -> list[RTMPMessage]:
        """Up to ``limit`` complete messages; fewer when the bytes run out, and none
        after a control message (types 1-7): the caller applies a Set Chunk Size or
        an Abort before the chunks that follow it are read.

        A publisher's read holds a run of media messages; parsing them under one
        view of the buffer, rather than one call each, is most of the saving.
        """
        error = self._error
        if error is not None:
            raise error
        messages: list[RTMPMessage] = []
        if self._pos >= len(self._buf):
            return messages
        view = memoryview(self._buf)
        try:
            while (message := self._parse(view)) is not None:
                messages.append(message)
                if message.type_id < _FIRST_NON_CONTROL_TYPE or len(messages) >= limit:
                    break
        except RTMPProtocolError as exc:
            if not messages:
                raise
            # The messages before the bad chunk are the peer's own: they go out first.
            self._error = exc
        finally:
            # Slices must not outlive this call: feed() has to grow the buffer.
            if self._viewing:
                self._materialize_views()
            view.release()
        return messages

    def _parse(self, view: memoryview) -> RTMPMessage | None:
        buf = self._buf
        end = len(buf)
        pos = self._pos
        while True:
            stream = self._current
            if stream is None:
                if self._skip:
                    pos = self._skip_aborted(pos, end)
                if pos >= end:
                    break
                stream = self._continuation(buf[pos])
                if stream is not None:
                    pos += 1
                else:
                    self._pos = pos  # kept exact even if the header is refused
                    stream = self._read_header(buf, pos, end)
                    if stream is None:
                        break
                    pos = self._pos
            left = self._chunk_left
            if left == stream.length and left <= end - pos and not stream.received:
                # A whole message in one chunk, all of it here (most audio): no pieces.
                self._pos = pos + left
                self._chunk_left = 0
                self._current = None
                return RTMPMessage(
                    stream.type_id,
                    stream.timestamp,
                    stream.message_stream_id,
                    bytes(view[pos : pos + left]),
                )
            if left:
                take = end - pos
                if take <= 0:
                    break
                if take > left:
                    take = left
                pieces = stream.pieces
                if not pieces:
                    self._viewing.append(stream)
                pieces.append(view[pos : pos + take])
                pos += take
                stream.received += take
                self._partial_bytes += take
                if self._partial_bytes > self._max_partial_bytes:
                    self._pos = pos
                    self._refuse_partial_bytes()
                left -= take
                self._chunk_left = left
                if left:
                    break
            self._current = None
            if stream.received == stream.length:
                self._pos = pos
                return self._take_message(stream)
        self._pos = pos
        return None

    def _continuation(self, first: int) -> _InStream | None:
        """The common chunk, a one-byte type 3 header continuing a message, made current.

        Anything else (None) goes through `_read_header`.
        """
        if first < 0xC2:  # not type 3, or a 2/3-byte basic header
            return None
        stream = self._streams.get(first & 0x3F)
        if stream is None or not stream.received or stream.extended:
            return None
        left = stream.length - stream.received
        self._chunk_left = left if left < self._chunk_size else self._chunk_size
        self._current = stream
        return stream

    def _skip_aborted(self, pos: int, end: int) -> int:
        take = min(self._skip, end - pos)
        self._skip -= take
        return pos + take

    def _read_header(self, buf: bytearray, pos: int, end: int) -> _InStream | None:
        """Parse one chunk header at ``pos`` (spec 5.3.1); None if it is not all in.

        On success the stream becomes current, ``_chunk_left`` holds the size of the
        chunk's payload, and ``_pos`` points just past the header.
        """
        first = buf[pos]
        fmt = first >> 6
        csid = first & 0x3F
        if (fmt == 1 or fmt == 2) and csid > 1:
            stream = self._streams.get(csid)
            if stream is not None and not stream.received:
                started = self._start_relative(stream, fmt, buf, pos, end)
                if started:
                    return stream
        off = pos + 1
        if csid < 2:  # spec 5.3.1.1: 0 -> one more byte, 1 -> two more (little-endian)
            if csid == 0:
                if off >= end:
                    return None
                csid = buf[off] + 64
                off += 1
            else:
                if off + 2 > end:
                    return None
                csid = buf[off] + (buf[off + 1] << 8) + 64
                off += 2
        header_end = off + _MESSAGE_HEADER_SIZES[fmt]
        if header_end > end:
            return None
        stream = self._streams.get(csid)
        if stream is None and fmt:
            raise RTMPProtocolError(
                f"chunk stream {csid} opens with a type {fmt} chunk header; the first "
                "chunk of a chunk stream must be type 0 (spec 5.3.1.2)"
            )
        length = type_id = field = 0
        # The 3-byte fields are read as the low bits of 32-bit words that start one
        # byte earlier; the basic header guarantees that byte exists.
        if fmt == 3:
            extended = stream.extended if stream is not None else False
        else:
            if fmt == 2:
                field = _U32.unpack_from(buf, off - 1)[0] & 0xFFFFFF
            else:
                high, low = _U32_PAIR.unpack_from(buf, off - 1)
                field = high & 0xFFFFFF
                length = low >> 8
                type_id = low & 0xFF
            extended = field == EXTENDED_TIMESTAMP
        if extended:
            if header_end + 4 > end:
                return None
            field = _U32.unpack_from(buf, header_end)[0]
            header_end += 4
        message_stream_id = _U32_LE.unpack_from(buf, off + 7)[0] if fmt == 0 else 0

        if stream is not None and stream.received:
            if fmt < 2:
                _check_continuation(stream, csid, fmt, length, type_id, message_stream_id)
            left = stream.length - stream.received
        else:
            if stream is None:
                stream = self._open_stream(csid)
            if fmt < 2:
                self._check_length(csid, length)
                stream.length = length
                stream.type_id = type_id
            _start_message(stream, fmt, field, extended, message_stream_id)
            left = stream.length
        self._chunk_left = left if left < self._chunk_size else self._chunk_size
        self._current = stream
        self._pos = header_end
        return stream

    def _start_relative(
        self, stream: _InStream, fmt: int, buf: bytearray, pos: int, end: int
    ) -> bool:
        """The usual header of a media message: type 1 or 2, on a known chunk stream
        with no message in progress, a delta without extension. False, with nothing
        changed, for anything else (or a header not all in): `_read_header` then
        applies the general rules."""
        if fmt == 1:
            header_end = pos + 8
            if header_end > end:
                return False
            high, low = _U32_PAIR.unpack_from(buf, pos)
            delta = high & 0xFFFFFF
            length = low >> 8
            if delta == EXTENDED_TIMESTAMP or length > self._max_message_size:
                return False
            stream.length = length
            stream.type_id = low & 0xFF
        else:
            header_end = pos + 4
            if header_end > end:
                return False
            delta = _U32.unpack_from(buf, pos)[0] & 0xFFFFFF
            if delta == EXTENDED_TIMESTAMP:
                return False
            length = stream.length
        stream.extended = False
        stream.delta = delta
        stream.timestamp = (stream.timestamp + delta) & _UINT32_MASK
        chunk_size = self._chunk_size
        self._chunk_left = length if length < chunk_size else chunk_size
        self._current = stream
        self._pos = header_end
        return True

    def _open_stream(self, csid: int) -> _InStream:
        if len(self._streams) >= self._max_chunk_streams:
            raise RTMPProtocolError(
                f"peer opened chunk stream {csid} with {len(self._streams)} already in use; "
                f"the limit is {self._max_chunk_streams} (max_chunk_streams)"
            )
        stream = self._streams[csid] = _InStream()
        return stream

    def _check_length(self, csid: int, length: int) -> None:
        if length > self._max_message_size:
            raise RTMPProtocolError(
                f"message of {length} bytes on chunk stream {csid} is larger than the "
                f"{self._max_message_size}-byte limit (max_message_size)"
            )

    def _refuse_partial_bytes(self) -> NoReturn:
        in_progress = sum(1 for stream in self._streams.values() if stream.received)
        raise RTMPProtocolError(
            f"unfinished messages on {in_progress} chunk streams hold {self._partial_bytes} "
            f"bytes, over the {self._max_partial_bytes}-byte limit (max_partial_bytes)"
        )

    def _take_message(self, stream: _InStream) -> RTMPMessage:
        held = stream.held
        if held:
            for piece in stream.pieces:
                held += piece
            payload = bytes(held)
            stream.held = bytearray()
        else:
            payload = b"".join(stream.pieces)
        stream.pieces = []
        self._partial_bytes -= stream.received
        stream.received = 0
        return RTMPMessage(stream.type_id, stream.timestamp, stream.message_stream_id, payload)

    def _materialize_views(self) -> None:
        """Copy this call's slices of partial messages out of the receive buffer."""
        for stream in self._viewing:
            held = stream.held
            for piece in stream.pieces:
                held += piece
            stream.pieces = []
        self._viewing.clear()


def _start_message(
    stream: _InStream, fmt: int, field: int, extended: bool, message_stream_id: int
) -> None:
    """Work out a new message's timestamp from its first chunk header (spec 5.3.1.2)."""
    if fmt == 0:
        stream.timestamp = stream.delta = field
        stream.message_stream_id = message_stream_id
        stream.extended = extended
        return
    if fmt == 3:
        # The previous delta, or this chunk's own extended field (as FFmpeg reads it).
        delta = field if extended else stream.delta
    else:
        delta = field
        stream.extended = extended
    stream.delta = delta
    stream.timestamp = (stream.timestamp + delta) & _UINT32_MASK


def _check_continuation(
    stream: _InStream, csid: int, fmt: int, length: int, type_id: int, message_stream_id: int
) -> None:
    """A type 0/1 header inside a message must describe that same message."""
    if (
        length != stream.length
        or type_id != stream.type_id
        or (fmt == 0 and message_stream_id != stream.message_stream_id)
    ):
        raise RTMPProtocolError(
            f"chunk stream {csid}: a type {fmt} header (type {type_id}, {length} bytes) "
            f"arrived with {stream.received} of a {stream.length}-byte type {stream.type_id} "
            "message received; continuation chunks must be type 3 (spec 5.3.1.2.4)"
        )


# -- writing -----------------------------------------------------------------------


def _basic_header(fmt: int, csid: int) -> bytes:
    # Spec 5.3.1.1: IDs 2-63 in one byte, 64-319 in two, up to 65599 in three.
    if csid < 64:
        return bytes((fmt << 6 | csid,))
    if csid < 320:
        return bytes((fmt << 6, csid - 64))
    return bytes((fmt << 6 | 1, (csid - 64) & 0xFF, (csid - 64) >> 8))


class _OutStream:
    """The header fields we last sent on one chunk stream."""

    __slots__ = (
        "basic_headers",
        "delta",
        "length",
        "message_stream_id",
        "repeat_ok",
        "timestamp",
        "type_id",
    )

    def __init__(self, csid: int) -> None:
        self.basic_headers = tuple(_basic_header(fmt, csid) for fmt in range(4))
        self.timestamp = 0
        self.delta = 0
        self.length = -1  # nothing sent yet: the first header must be type 0
        self.type_id = 0
        self.message_stream_id = 0
        # A type 3 header may start the next message with delta `delta`: only after
        # a type 1/2 header without extended timestamp, which every reader agrees on.
        self.repeat_ok = False


class ChunkWriter:
    """Cuts messages into chunks with the smallest header every reader agrees on."""

    __slots__ = ("_chunk_size", "_streams")

    def __init__(self, chunk_size: int = DEFAULT_CHUNK_SIZE) -> None:
        self._chunk_size = DEFAULT_CHUNK_SIZE
        self.chunk_size = chunk_size
        self._streams: dict[int, _OutStream] = {}

    @property
    def chunk_size(self) -> int:
        return self._chunk_size

    @chunk_size.setter
    def chunk_size(self, size: int) -> None:
        """Our outgoing chunk size; send the peer a Set Chunk Size first."""
        if not 1 <= size <= MAX_WRITER_CHUNK_SIZE:
            raise ValueError(f"chunk size {size} is outside 1..{MAX_WRITER_CHUNK_SIZE}")
        self._chunk_size = size

    def write(self, chunk_stream_id: int, message: RTMPMessage) -> bytes:
        """The chunks that carry ``message`` on ``chunk_stream_id``."""
        _check_message(message, len(message.payload))
        parts: list[bytes | memoryview] = []
        self.write_body(
            parts,
            chunk_stream_id,
            message.type_id,
            message.timestamp,
            message.message_stream_id,
            b"",
            message.payload,
        )
        return b"".join(parts)

    def write_body(
        self,
        out: list[bytes | memoryview],
        chunk_stream_id: int,
        type_id: int,
        timestamp: int,
        message_stream_id: int,
        prefix: bytes,
        payload: bytes,
    ) -> None:
        """Append to ``out`` the chunks of a message whose body is ``prefix + payload``
        (an FLV tag header and its media), as pieces that are never joined here: the
        relay joins everything queued for a peer once, so a packet's bytes are copied
        once on their way out, not once per layer."""
        length = len(prefix) + len(payload)
        if length > MAX_MESSAGE_LENGTH:
            raise ValueError(f"a {length}-byte message does not fit RTMP's 3-byte length field")
        state = self._streams.get(chunk_stream_id)
        if state is None:
            state = self._open_stream(chunk_stream_id)
        header, continuation = _next_header(
            state, type_id, timestamp & _UINT32_MASK, message_stream_id, length
        )
        chunk_size = self._chunk_size
        if length <= chunk_size:
            out += (header, prefix, payload)
            return
        first = chunk_size - len(prefix)
        if first <= 0:  # a header longer than a chunk: not worth a special case
            payload = prefix + payload
            prefix, first = b"", chunk_size
        view = memoryview(payload)
        out += (header, prefix, view[:first])
        for offset in range(first, len(payload), chunk_size):
            out += (continuation, view[offset : offset + chunk_size])

    def _open_stream(self, csid: int) -> _OutStream:
        if not MIN_CHUNK_STREAM_ID <= csid <= MAX_CHUNK_STREAM_ID:
            raise ValueError(
                f"chunk stream ID {csid} is outside "
                f"{MIN_CHUNK_STREAM_ID}..{MAX_CHUNK_STREAM_ID} (spec 5.3.1.1)"
            )
        state = self._streams[csid] = _OutStream(csid)
        return state


def _check_message(message: RTMPMessage, length: int) -> None:
    if length > MAX_MESSAGE_LENGTH:
        raise ValueError(f"a {length}-byte message does not fit RTMP's 3-byte length field")
    if not 0 <= message.timestamp <= _UINT32_MASK:
        raise ValueError(f"timestamp {message.timestamp} is not a 32-bit unsigned value")
    if not 0 <= message.message_stream_id <= _UINT32_MASK:
        raise ValueError(f"message stream ID {message.message_stream_id} is not 32-bit")
    if not 0 <= message.type_id <= 0xFF:
        raise ValueError(f"message type {message.type_id} does not fit one byte")


def _next_header(
    state: _OutStream, type_id: int, timestamp: int, message_stream_id: int, length: int
) -> tuple[bytes, bytes]:
    """The first chunk's header and the continuation chunks' header (spec 5.3.1.2).

    The common case, a message on a stream's message stream a little after the last
    one, is worked out here; a first message, a new message stream, a step back or
    an extended delta go to `_any_header`.
    """
    delta = timestamp - state.timestamp
    if (
        not 0 <= delta < EXTENDED_TIMESTAMP
        or state.length < 0
        or message_stream_id != state.message_stream_id
    ):
        return _any_header(state, type_id, timestamp, message_stream_id, length)
    basic_headers = state.basic_headers
    state.timestamp = timestamp
    if length != state.length or type_id != state.type_id:
        state.length = length
        state.type_id = type_id
        header = basic_headers[1] + ((delta << 32) | (length << 8) | type_id).to_bytes(7, "big")
    elif state.repeat_ok and delta == state.delta:
        return basic_headers[3], basic_headers[3]
    else:
        header = basic_headers[2] + delta.to_bytes(3, "big")
    state.delta = delta
    state.repeat_ok = True
    return header, basic_headers[3]


def _any_header(
    state: _OutStream, type_id: int, timestamp: int, message_stream_id: int, length: int
) -> tuple[bytes, bytes]:
    """The first chunk's header and the continuation chunks' header (spec 5.3.1.2).

    Type 0 for a chunk stream's first message, a new message stream ID or a timestamp
    that went backwards (a wrap included); otherwise type 1, 2 or 3, whichever
    carries just what changed. Updates ``state`` to what the peer will remember.
    """
    if (
        state.length < 0
        or message_stream_id != state.message_stream_id
        or timestamp < state.timestamp
    ):
        fmt, value = 0, timestamp
    else:
        value = timestamp - state.timestamp
        if length != state.length or type_id != state.type_id:
            fmt = 1
        elif state.repeat_ok and value == state.delta:
            fmt = 3
        else:
            fmt = 2
    extended = value >= EXTENDED_TIMESTAMP
    field = EXTENDED_TIMESTAMP if extended else value
    extension = _U32.pack(value) if extended else b""
    basic_headers = state.basic_headers
    if fmt == 0:
        fields = ((field << 32) | (length << 8) | type_id).to_bytes(7, "big")
        header = basic_headers[0] + fields + _U32_LE.pack(message_stream_id) + extension
    elif fmt == 1:
        fields = ((field << 32) | (length << 8) | type_id).to_bytes(7, "big")
        header = basic_headers[1] + fields + extension
    elif fmt == 2:
        header = basic_headers[2] + field.to_bytes(3, "big") + extension
    else:
        header = basic_headers[3]
    state.timestamp = timestamp
    state.length = length
    state.type_id = type_id
    state.message_stream_id = message_stream_id
    if fmt != 3:
        state.delta = value
        state.repeat_ok = fmt != 0 and not extended
    return header, basic_headers[3] + extension
