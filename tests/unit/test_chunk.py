"""Chunk streams: the spec's byte examples, every header form, limits, hostile input."""

from __future__ import annotations

import struct
import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lpms.errors import RTMPProtocolError
from lpms.rtmp.chunk import (
    DEFAULT_CHUNK_SIZE,
    DEFAULT_MAX_CHUNK_SIZE,
    ChunkReader,
    ChunkWriter,
    RTMPMessage,
    _any_header,
    _next_header,
    _OutStream,
)

AUDIO = 8
VIDEO = 9
SET_CHUNK_SIZE = 1

# -- helpers that build chunks straight from the spec's tables (section 5.3.1) ------


def basic(fmt: int, csid: int) -> bytes:
    if csid < 64:
        return bytes([fmt << 6 | csid])
    if csid < 320:
        return bytes([fmt << 6, csid - 64])
    return bytes([fmt << 6 | 1, (csid - 64) & 0xFF, (csid - 64) >> 8])


def u24(value: int) -> bytes:
    return value.to_bytes(3, "big")


def ext(value: int) -> bytes:
    return struct.pack(">I", value)


def type0(csid: int, timestamp: int, length: int, type_id: int, msid: int) -> bytes:
    field = min(timestamp, 0xFFFFFF)
    header = basic(0, csid) + u24(field) + u24(length) + bytes([type_id])
    header += struct.pack("<I", msid)
    return header + (ext(timestamp) if field == 0xFFFFFF else b"")


def type1(csid: int, delta: int, length: int, type_id: int) -> bytes:
    field = min(delta, 0xFFFFFF)
    header = basic(1, csid) + u24(field) + u24(length) + bytes([type_id])
    return header + (ext(delta) if field == 0xFFFFFF else b"")


def type2(csid: int, delta: int) -> bytes:
    field = min(delta, 0xFFFFFF)
    return basic(2, csid) + u24(field) + (ext(delta) if field == 0xFFFFFF else b"")


def type3(csid: int) -> bytes:
    return basic(3, csid)


def read_all(data: bytes, reader: ChunkReader | None = None) -> list[RTMPMessage]:
    reader = reader or ChunkReader()
    reader.feed(data)
    out = []
    while (message := reader.next_message()) is not None:
        out.append(message)
    return out


def pattern(size: int, seed: int = 0) -> bytes:
    return bytes((seed + i * 7) & 0xFF for i in range(size))


# -- the spec's own examples (section 5.3.2) ---------------------------------------

# 5.3.2.1: four 32-byte audio messages on message stream 12345, 20 ms apart.
SPEC_AUDIO = [RTMPMessage(AUDIO, 1000 + 20 * i, 12345, pattern(32, i)) for i in range(4)]
SPEC_AUDIO_CHUNKS = [
    bytes.fromhex("03 0003e8 000020 08 39300000") + SPEC_AUDIO[0].payload,
    bytes.fromhex("83 000014") + SPEC_AUDIO[1].payload,
    bytes.fromhex("c3") + SPEC_AUDIO[2].payload,
    bytes.fromhex("c3") + SPEC_AUDIO[3].payload,
]

# 5.3.2.2: one 307-byte video message split at the default chunk size of 128.
SPEC_VIDEO = RTMPMessage(VIDEO, 1000, 12346, pattern(307))
SPEC_VIDEO_CHUNKS = (
    bytes.fromhex("04 0003e8 000133 09 3a300000")
    + SPEC_VIDEO.payload[:128]
    + b"\xc4"
    + SPEC_VIDEO.payload[128:256]
    + b"\xc4"
    + SPEC_VIDEO.payload[256:]
)


def test_spec_audio_example_is_written_byte_for_byte() -> None:
    writer = ChunkWriter()
    assert [writer.write(3, m) for m in SPEC_AUDIO] == SPEC_AUDIO_CHUNKS
    assert [len(c) for c in SPEC_AUDIO_CHUNKS] == [44, 36, 33, 33]  # the spec's table


def test_spec_audio_example_reads_back() -> None:
    assert read_all(b"".join(SPEC_AUDIO_CHUNKS)) == SPEC_AUDIO


def test_spec_video_example_is_written_byte_for_byte() -> None:
    assert ChunkWriter().write(4, SPEC_VIDEO) == SPEC_VIDEO_CHUNKS
    assert len(SPEC_VIDEO_CHUNKS) == 12 + 128 + 1 + 128 + 1 + 51


def test_spec_video_example_reads_back() -> None:
    assert read_all(SPEC_VIDEO_CHUNKS) == [SPEC_VIDEO]


# -- every header type -------------------------------------------------------------


def test_each_header_type_reads() -> None:
    data = (
        type0(5, 100, 3, 18, 1)
        + b"abc"
        + type1(5, 10, 2, 20)  # new length and type, +10 ms
        + b"de"
        + type2(5, 7)  # same length and type, +7 ms
        + b"fg"
        + type3(5)  # everything again, +7 ms
        + b"hi"
    )
    assert read_all(data) == [
        RTMPMessage(18, 100, 1, b"abc"),
        RTMPMessage(20, 110, 1, b"de"),
        RTMPMessage(20, 117, 1, b"fg"),
        RTMPMessage(20, 124, 1, b"hi"),
    ]


def test_type3_right_after_type0_adds_the_type0_timestamp() -> None:
    # Spec 5.3.1.2.4: "If a Type 3 chunk follows a Type 0 chunk, then the timestamp
    # delta for this Type 3 chunk is the same as the timestamp of the Type 0 chunk."
    # FFmpeg's writer relies on it (rtmppkt.c compares ts_field with the previous one).
    data = type0(4, 40, 1, AUDIO, 1) + b"a" + type3(4) + b"b" + type3(4) + b"c"
    assert [m.timestamp for m in read_all(data)] == [40, 80, 120]


def test_type0_after_type1_resets_to_absolute() -> None:
    data = type0(4, 500, 1, AUDIO, 1) + b"a" + type1(4, 5, 1, VIDEO) + b"b"
    data += type0(4, 20, 1, AUDIO, 2) + b"c" + type2(4, 3) + b"d"
    assert [(m.timestamp, m.message_stream_id) for m in read_all(data)] == [
        (500, 1),
        (505, 1),
        (20, 2),
        (23, 2),
    ]


def test_zero_length_message() -> None:
    data = type0(3, 0, 0, 20, 0) + type3(3) + type0(3, 5, 1, 20, 0) + b"x"
    assert read_all(data) == [
        RTMPMessage(20, 0, 0, b""),
        RTMPMessage(20, 0, 0, b""),
        RTMPMessage(20, 5, 0, b"x"),
    ]
    writer = ChunkWriter()
    empty = RTMPMessage(20, 0, 0, b"")
    assert read_all(writer.write(3, empty) + writer.write(3, empty)) == [empty, empty]


# -- basic header sizes (spec 5.3.1.1) ---------------------------------------------


@pytest.mark.parametrize(
    ("csid", "encoded"),
    [
        (2, "02"),
        (3, "03"),
        (63, "3f"),
        (64, "0000"),
        (319, "00ff"),
        (320, "010001"),
        (65599, "01ffff"),
    ],
)
def test_basic_header_forms(csid: int, encoded: str) -> None:
    message = RTMPMessage(AUDIO, 0, 1, b"xy")
    chunks = ChunkWriter().write(csid, message)
    assert chunks.startswith(bytes.fromhex(encoded) + bytes.fromhex("000000 000002 08"))
    reader = ChunkReader()
    assert read_all(chunks, reader) == [message]
    assert list(reader._streams) == [csid]


@pytest.mark.parametrize("csid", [64, 100, 319])
def test_three_byte_form_for_small_ids_is_accepted(csid: int) -> None:
    # The spec allows 64-319 in the 3-byte form too.
    header = bytes([0x01, csid - 64, 0]) + type0(3, 7, 1, AUDIO, 1)[1:]
    continuation = bytes([0xC1, csid - 64, 0])
    messages = read_all(header + b"a" + continuation + b"b")
    assert [m.payload for m in messages] == [b"a", b"b"]
    assert [m.timestamp for m in messages] == [7, 14]


def test_multi_chunk_message_with_three_byte_basic_header() -> None:
    message = RTMPMessage(VIDEO, 10, 1, pattern(300))
    chunks = ChunkWriter().write(65599, message)
    assert chunks.count(bytes([0xC1, 0xFF, 0xFF])) == 2
    assert read_all(chunks) == [message]


# -- extended timestamps (spec 5.3.1.3) --------------------------------------------


def test_extended_timestamp_on_type0_and_its_continuations() -> None:
    timestamp = 0x01020304
    payload = pattern(300)
    expected = (
        type0(6, timestamp, 300, VIDEO, 1)
        + payload[:128]
        + type3(6)
        + ext(timestamp)
        + payload[128:256]
        + type3(6)
        + ext(timestamp)
        + payload[256:]
    )
    message = RTMPMessage(VIDEO, timestamp, 1, payload)
    assert ChunkWriter().write(6, message) == expected
    assert read_all(expected) == [message]


def test_timestamp_0xffffff_itself_is_extended() -> None:
    message = RTMPMessage(AUDIO, 0xFFFFFF, 1, b"a")
    chunks = ChunkWriter().write(4, message)
    assert chunks == type0(4, 0xFFFFFF, 1, AUDIO, 1) + b"a"
    assert chunks[1:4] == b"\xff\xff\xff"
    assert read_all(chunks) == [message]


def test_extended_delta_on_type1_and_type2() -> None:
    data = (
        type0(4, 1, 1, AUDIO, 1)
        + b"a"
        + type1(4, 0x1000000, 2, AUDIO)
        + b"bc"
        + type2(4, 0xFFFFFF)
        + b"de"
    )
    assert [m.timestamp for m in read_all(data)] == [1, 0x1000001, 0x2000000]


def test_type3_new_message_after_extended_header_reads_its_own_delta() -> None:
    # FFmpeg writes a type 3 header with the new delta in the extended field when
    # both deltas are >= 0xFFFFFF; nginx-rtmp reads it the same way.
    data = type1_after(0x1000000) + type3(4) + ext(0x2000000) + b"c"
    assert [m.timestamp for m in read_all(data)] == [0, 0x1000000, 0x3000000]


def type1_after(delta: int) -> bytes:
    return type0(4, 0, 1, AUDIO, 1) + b"a" + type1(4, delta, 1, AUDIO) + b"b"


def test_writer_uses_extended_deltas_but_never_a_type3_with_one() -> None:
    writer = ChunkWriter()
    messages = [RTMPMessage(AUDIO, i * 0x1000000, 1, b"ab") for i in range(4)]
    chunks = [writer.write(4, m) for m in messages]
    assert [c[0] >> 6 for c in chunks] == [0, 2, 2, 2]
    assert chunks[2] == type2(4, 0x1000000) + b"ab"
    assert read_all(b"".join(chunks)) == messages


def test_timestamps_wrap_modulo_2_32() -> None:
    data = type0(4, 0xFFFFFFF0, 1, AUDIO, 1) + b"a" + type2(4, 0x20) + b"b" + type3(4) + b"c"
    assert [m.timestamp for m in read_all(data)] == [0xFFFFFFF0, 0x10, 0x30]


def test_writer_sends_type0_across_a_wrap() -> None:
    writer = ChunkWriter()
    messages = [RTMPMessage(AUDIO, t, 1, b"a") for t in (0xFFFFFFF0, 0x10, 0x20)]
    chunks = [writer.write(4, m) for m in messages]
    assert [c[0] >> 6 for c in chunks] == [0, 0, 2]
    assert read_all(b"".join(chunks)) == messages


# -- the writer's choice of header --------------------------------------------------


def header_types(messages: list[RTMPMessage], csid: int = 4) -> list[int]:
    writer = ChunkWriter()
    chunks = [writer.write(csid, m) for m in messages]
    assert read_all(b"".join(chunks)) == messages
    return [c[0] >> 6 for c in chunks]


def test_writer_header_choice() -> None:
    m = RTMPMessage
    assert header_types(
        [
            m(AUDIO, 0, 1, b"aa"),  # first on the chunk stream: type 0
            m(AUDIO, 20, 1, b"aa"),  # new delta: type 2
            m(AUDIO, 40, 1, b"aa"),  # same delta: type 3
            m(AUDIO, 60, 1, b"aa"),
            m(VIDEO, 60, 1, b"aaa"),  # new type and length: type 1
            m(VIDEO, 60, 2, b"aaa"),  # new message stream: type 0
            m(VIDEO, 50, 2, b"aaa"),  # backwards: type 0
            m(VIDEO, 50, 2, b"aaa"),  # delta 0 after a type 0: type 2, not 3
            m(VIDEO, 50, 2, b"aaa"),  # delta 0 again: type 3
            m(AUDIO, 50, 2, b"aaa"),  # same length, new type: type 1
        ]
    ) == [0, 2, 3, 3, 1, 0, 0, 2, 3, 1]


def test_writer_never_sends_type3_right_after_type0() -> None:
    # The delta after a type 0 is read differently by FFmpeg (the type 0 timestamp)
    # and nginx-rtmp/librtmp (zero), so a type 2 spells it out.
    assert header_types([RTMPMessage(AUDIO, 40 * i, 1, b"a") for i in range(1, 4)]) == [0, 2, 3]
    assert header_types([RTMPMessage(AUDIO, 0, 1, b"a")] * 3) == [0, 2, 3]


@given(
    st.lists(
        st.tuples(
            st.sampled_from([AUDIO, VIDEO]),
            st.one_of(st.integers(-50, 100), st.integers(0xFFFFF0, 0x1000010)),
            st.sampled_from([1, 1, 1, 2]),
            st.sampled_from([10, 10, 300, 5000]),
        ),
        max_size=40,
    )
)
def test_the_writers_common_case_picks_the_headers_the_general_rules_do(
    plan: list[tuple[int, int, int, int]],
) -> None:
    """`_next_header` works out the usual message itself; `_any_header` has every
    rule. Both must give the same bytes and leave the same state, message after
    message."""
    fast, general = _OutStream(6), _OutStream(6)
    timestamp = 1000
    for type_id, step, msid, length in plan:
        timestamp = (timestamp + step) & 0xFFFFFFFF
        assert _next_header(fast, type_id, timestamp, msid, length) == _any_header(
            general, type_id, timestamp, msid, length
        )
        assert [getattr(fast, n) for n in _OutStream.__slots__] == [
            getattr(general, n) for n in _OutStream.__slots__
        ]


def test_chunk_streams_are_independent_in_the_writer() -> None:
    writer = ChunkWriter()
    a = writer.write(4, RTMPMessage(AUDIO, 10, 1, b"a"))
    b = writer.write(6, RTMPMessage(VIDEO, 5, 1, b"bb"))
    c = writer.write(4, RTMPMessage(AUDIO, 20, 1, b"a"))
    assert [a[0] >> 6, b[0] >> 6, c[0] >> 6] == [0, 0, 2]


def test_writer_refuses_what_cannot_be_sent() -> None:
    writer = ChunkWriter()
    for csid in (0, 1, 65600):
        with pytest.raises(ValueError, match="chunk stream ID"):
            writer.write(csid, RTMPMessage(AUDIO, 0, 1, b""))
    with pytest.raises(ValueError, match="3-byte length"):
        writer.write(3, RTMPMessage(AUDIO, 0, 1, bytes(0x1000000)))
    with pytest.raises(ValueError, match="timestamp"):
        writer.write(3, RTMPMessage(AUDIO, 1 << 32, 1, b""))
    with pytest.raises(ValueError, match="type"):
        writer.write(3, RTMPMessage(256, 0, 1, b""))
    with pytest.raises(ValueError, match="stream ID"):
        writer.write(3, RTMPMessage(AUDIO, 0, -1, b""))
    for size in (0, 1 << 31):
        with pytest.raises(ValueError, match="chunk size"):
            writer.chunk_size = size
    with pytest.raises(ValueError, match="chunk size"):
        ChunkWriter(0)


# -- chunk size changes, interleaving, abort --------------------------------------


def test_chunk_size_changed_between_messages() -> None:
    writer = ChunkWriter()
    data = writer.write(2, RTMPMessage(SET_CHUNK_SIZE, 0, 0, struct.pack(">I", 4096)))
    writer.chunk_size = 4096
    big = RTMPMessage(VIDEO, 0, 1, pattern(10_000))
    data += writer.write(6, big)
    writer.chunk_size = 1
    tiny = RTMPMessage(AUDIO, 0, 1, b"xyz")
    data += writer.write(4, tiny)

    reader = ChunkReader()
    reader.feed(data)  # all at once: the reader must not run ahead of the change
    first = reader.next_message()
    assert first is not None
    assert first.type_id == SET_CHUNK_SIZE
    reader.chunk_size = 4096
    assert reader.next_message() == big
    reader.chunk_size = 1
    assert reader.next_message() == tiny
    assert reader.next_message() is None
    assert reader.buffered_bytes == 0


def test_reader_stops_after_each_message() -> None:
    data = b"".join(SPEC_AUDIO_CHUNKS)
    reader = ChunkReader()
    reader.feed(data)
    assert reader.next_message() == SPEC_AUDIO[0]
    assert reader.buffered_bytes == len(data) - 44


def test_read_messages_stops_after_a_control_message() -> None:
    """Media comes in runs; a Set Chunk Size ends one, so the caller can apply it
    before the chunks after it are parsed."""
    writer = ChunkWriter()
    media = [RTMPMessage(AUDIO, 20 * i, 1, pattern(50, i)) for i in range(3)]
    big = RTMPMessage(VIDEO, 100, 1, pattern(5000))
    change = RTMPMessage(SET_CHUNK_SIZE, 0, 0, struct.pack(">I", 4096))
    data = b"".join(writer.write(4, m) for m in media) + writer.write(2, change)
    writer.chunk_size = 4096
    data += writer.write(6, big)
    reader = ChunkReader()
    reader.feed(data)
    assert reader.read_messages(2) == media[:2]
    assert reader.read_messages(16) == [media[2], change]
    reader.chunk_size = 4096
    assert reader.read_messages(16) == [big]
    assert reader.read_messages(16) == []
    assert reader.buffered_bytes == 0


def test_read_messages_hands_over_what_came_before_a_bad_chunk_then_raises() -> None:
    writer = ChunkWriter()
    good = [RTMPMessage(AUDIO, 20 * i, 1, pattern(50, i)) for i in range(3)]
    bad = type1(9, 0, 10, AUDIO)  # a chunk stream may not open with a type 1 header
    reader = ChunkReader()
    reader.feed(b"".join(writer.write(4, m) for m in good) + bad)
    assert reader.read_messages(16) == good
    with pytest.raises(RTMPProtocolError, match="must be type 0"):
        reader.read_messages(16)
    with pytest.raises(RTMPProtocolError, match="must be type 0"):
        reader.next_message()  # the connection is broken for good


def test_interleaved_chunk_streams() -> None:
    video = pattern(300, 1)
    audio = pattern(200, 2)
    data = (
        type0(6, 40, 300, VIDEO, 1)
        + video[:128]
        + type0(4, 30, 200, AUDIO, 1)
        + audio[:128]
        + type3(6)
        + video[128:256]
        + type3(4)
        + audio[128:]
        + type3(6)
        + video[256:]
    )
    assert read_all(data) == [
        RTMPMessage(AUDIO, 30, 1, audio),
        RTMPMessage(VIDEO, 40, 1, video),
    ]
    for split in range(len(data) + 1):
        reader = ChunkReader()
        got = read_all(data[:split], reader) + read_all(data[split:], reader)
        assert [m.payload for m in got] == [audio, video]


def test_abort_drops_the_partial_message() -> None:
    reader = ChunkReader()
    first = type0(6, 0, 300, VIDEO, 1) + pattern(128)
    assert read_all(first, reader) == []
    assert reader.buffered_bytes == 128
    reader.abort(6)
    assert reader.buffered_bytes == 0
    # The chunk stream goes on with a new message; type 3 reuses the header fields.
    rest = type3(6) + pattern(128) + type3(6) + pattern(128) + type3(6) + pattern(44)
    assert read_all(rest, reader) == [RTMPMessage(VIDEO, 0, 1, pattern(128) * 2 + pattern(44))]
    reader.abort(6)  # nothing partial: nothing happens
    reader.abort(99)  # unknown: ignored
    assert reader.buffered_bytes == 0


def test_abort_in_the_middle_of_a_chunk_skips_the_rest_of_it() -> None:
    reader = ChunkReader()
    assert read_all(type0(6, 0, 300, VIDEO, 1) + pattern(100), reader) == []
    reader.abort(6)
    after = pattern(28) + type0(6, 9, 2, AUDIO, 1) + b"ok"
    assert read_all(after, reader) == [RTMPMessage(AUDIO, 9, 1, b"ok")]


def test_type0_or_type1_inside_a_message_is_a_continuation_if_it_agrees() -> None:
    data = (
        type0(6, 10, 200, VIDEO, 1) + pattern(128) + type0(6, 99, 200, VIDEO, 1) + pattern(72, 128)
    )
    assert read_all(data) == [RTMPMessage(VIDEO, 10, 1, pattern(128) + pattern(72, 128))]
    data = type0(6, 10, 200, VIDEO, 1) + pattern(128) + type2(6, 5) + pattern(72)
    assert read_all(data)[0].timestamp == 10


@pytest.mark.parametrize(
    "header",
    [type0(6, 10, 201, VIDEO, 1), type0(6, 10, 200, VIDEO, 2), type1(6, 0, 200, AUDIO)],
)
def test_header_contradicting_the_message_in_progress(header: bytes) -> None:
    data = type0(6, 10, 200, VIDEO, 1) + pattern(128) + header
    with pytest.raises(RTMPProtocolError, match="continuation chunks must be type 3"):
        read_all(data)


# -- feeding in pieces ------------------------------------------------------------


def mixed_stream() -> tuple[bytes, list[RTMPMessage]]:
    writer = ChunkWriter()
    messages = [
        RTMPMessage(20, 0, 0, pattern(150)),
        RTMPMessage(VIDEO, 0x1000000, 1, pattern(400, 3)),
        RTMPMessage(AUDIO, 5, 1, b""),
        RTMPMessage(AUDIO, 25, 1, pattern(10)),
        RTMPMessage(AUDIO, 45, 1, pattern(10, 1)),
        RTMPMessage(VIDEO, 0x1000040, 1, pattern(129)),
    ]
    csids = [3, 6, 400, 400, 400, 6]
    data = b"".join(writer.write(c, m) for c, m in zip(csids, messages, strict=True))
    return data, messages


def test_byte_at_a_time() -> None:
    data, messages = mixed_stream()
    reader = ChunkReader()
    got = []
    for i in range(len(data)):
        reader.feed(data[i : i + 1])
        while (message := reader.next_message()) is not None:
            got.append(message)
    assert got == messages
    assert reader.bytes_received == len(data)
    assert reader.buffered_bytes == 0


def test_every_split_point() -> None:
    data, messages = mixed_stream()
    for split in range(len(data) + 1):
        reader = ChunkReader()
        got = read_all(data[:split], reader)
        assert reader.buffered_bytes <= split
        got += read_all(data[split:], reader)
        assert got == messages, split


def test_memoryview_input_and_bytes_output() -> None:
    data, messages = mixed_stream()
    reader = ChunkReader()
    reader.feed(memoryview(data))
    got = []
    while (message := reader.next_message()) is not None:
        assert type(message.payload) is bytes
        got.append(message)
    assert got == messages


def test_buffer_does_not_grow_with_traffic() -> None:
    writer = ChunkWriter(4096)
    reader = ChunkReader()
    reader.chunk_size = 4096
    frame = pattern(50_000)
    for i in range(200):
        data = writer.write(6, RTMPMessage(VIDEO, i * 33, 1, frame))
        for start in range(0, len(data), 65536):
            reader.feed(data[start : start + 65536])
            while (message := reader.next_message()) is not None:
                assert message.payload == frame
    assert reader.buffered_bytes == 0
    assert len(reader._buf) < 70_000


def test_message_fed_a_byte_at_a_time_holds_its_bytes_not_an_object_per_read() -> None:
    """Each read's slice once stayed a bytes object: 20 bytes held per byte received."""
    writer = ChunkWriter(4096)
    reader = ChunkReader()
    reader.chunk_size = 4096
    message = RTMPMessage(VIDEO, 0, 1, pattern(1 << 18))
    data = writer.write(6, message)
    tracemalloc.start()
    try:
        for start in range(0, len(data) - 1, 2):
            reader.feed(data[start : start + 2])
            assert reader.next_message() is None
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert held < 2 * len(data)
    reader.feed(data[-1:])
    assert reader.next_message() == message
    assert reader.buffered_bytes == 0


def test_partial_messages_together_are_bounded() -> None:
    reader = ChunkReader(max_partial_bytes=300)
    reader.feed(type0(4, 0, 1000, VIDEO, 1) + bytes(128) + type0(5, 0, 1000, AUDIO, 1))
    reader.feed(bytes(128))
    assert reader.next_message() is None
    assert reader.buffered_bytes == 256
    reader.feed(type3(4) + bytes(128))
    with pytest.raises(RTMPProtocolError, match=r"2 chunk streams hold 384 bytes.*max_partial"):
        reader.next_message()


# -- limits -------------------------------------------------------------------------


def test_message_larger_than_the_limit() -> None:
    reader = ChunkReader(max_message_size=1000)
    largest = RTMPMessage(VIDEO, 0, 1, pattern(1000))
    assert read_all(ChunkWriter().write(4, largest), reader) == [largest]
    with pytest.raises(RTMPProtocolError, match="max_message_size"):
        read_all(type0(4, 0, 1001, VIDEO, 1), reader)
    reader = ChunkReader(max_message_size=1000)
    with pytest.raises(RTMPProtocolError, match="1001 bytes"):
        read_all(type0(4, 0, 10, VIDEO, 1) + bytes(10) + type1(4, 0, 1001, VIDEO), reader)


def test_default_message_limit() -> None:
    with pytest.raises(RTMPProtocolError, match="max_message_size"):
        read_all(type0(4, 0, (8 << 20) + 1, VIDEO, 1))


@pytest.mark.parametrize("size", [0, DEFAULT_MAX_CHUNK_SIZE + 1, 2**31 - 1])
def test_chunk_size_out_of_range(size: int) -> None:
    reader = ChunkReader()
    with pytest.raises(RTMPProtocolError, match="chunk size"):
        reader.chunk_size = size
    assert reader.chunk_size == DEFAULT_CHUNK_SIZE


def test_chunk_size_limits_accepted() -> None:
    reader = ChunkReader(max_chunk_size=4096)
    reader.chunk_size = 1
    reader.chunk_size = 4096
    with pytest.raises(RTMPProtocolError, match="1 to 4096"):
        reader.chunk_size = 4097
    ChunkReader().chunk_size = DEFAULT_MAX_CHUNK_SIZE


def test_too_many_chunk_streams() -> None:
    reader = ChunkReader(max_chunk_streams=3)
    data = b"".join(type0(csid, 0, 1, AUDIO, 1) + b"a" for csid in (3, 4, 5))
    assert len(read_all(data, reader)) == 3
    assert len(read_all(type0(4, 1, 1, AUDIO, 1) + b"b", reader)) == 1  # known ones are fine
    with pytest.raises(RTMPProtocolError, match="max_chunk_streams"):
        read_all(type0(6, 0, 1, AUDIO, 1) + b"a", reader)


def test_default_chunk_stream_limit() -> None:
    data = b"".join(type0(csid, 0, 0, AUDIO, 1) for csid in range(2, 66))
    assert len(read_all(data)) == 64
    with pytest.raises(RTMPProtocolError, match="64"):
        read_all(data + type0(66, 0, 0, AUDIO, 1))


@pytest.mark.parametrize("fmt", [1, 2, 3])
def test_unknown_chunk_stream_without_type0(fmt: int) -> None:
    header = {1: type1(7, 0, 1, AUDIO), 2: type2(7, 0), 3: type3(7)}[fmt]
    with pytest.raises(RTMPProtocolError, match=f"chunk stream 7 opens with a type {fmt}"):
        read_all(header + b"a")


# -- properties ---------------------------------------------------------------------

csids = st.sampled_from([2, 3, 4, 5, 6, 63, 64, 319, 320, 65599])
messages = st.builds(
    RTMPMessage,
    type_id=st.sampled_from([8, 9, 18, 20, 255]),
    timestamp=st.one_of(
        st.integers(0, 100),
        st.integers(0xFFFFF0, 0x1000010),
        st.integers(0, 2**32 - 1),
    ),
    message_stream_id=st.sampled_from([0, 1, 2, 2**32 - 1]),
    payload=st.one_of(st.binary(max_size=40), st.binary(min_size=100, max_size=700)),
)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(csids, messages, st.sampled_from([None, 1, 7, 128, 4096])), max_size=12),
    st.lists(st.integers(1, 700), max_size=8),
    st.sampled_from([1, 3, 16]),
)
def test_round_trip(
    plan: list[tuple[int, RTMPMessage, int | None]], feed_sizes: list[int], batch: int
) -> None:
    """Whatever the writer sends, the reader returns, however the bytes arrive and
    however many messages are asked for at once."""
    writer = ChunkWriter()
    reader = ChunkReader()
    # Chunk size changes go out as the messages the reader sees first.
    sent: list[bytes] = []
    for csid, planned, new_size in plan:
        sent.append(writer.write(csid, planned))
        if new_size is not None:
            payload = struct.pack(">I", new_size)
            sent.append(writer.write(2, RTMPMessage(SET_CHUNK_SIZE, 0, 0, payload)))
            writer.chunk_size = new_size
    data = b"".join(sent)
    expected = [m for _, m, _ in plan]

    got: list[RTMPMessage] = []
    sizes = iter(feed_sizes)
    offset = 0
    while offset < len(data):
        size = next(sizes, len(data))
        reader.feed(data[offset : offset + size])
        offset += size
        while messages := reader.read_messages(batch):
            assert len(messages) <= batch
            for message in messages:
                if message.type_id == SET_CHUNK_SIZE and message.message_stream_id == 0:
                    assert message is messages[-1]  # a control message ends a batch
                    reader.chunk_size = struct.unpack(">I", message.payload)[0]
                else:
                    got.append(message)
    assert got == expected
    assert reader.buffered_bytes == 0


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300), st.integers(1, 300), st.sampled_from([1, 2, 128]))
def test_arbitrary_bytes_raise_only_protocol_errors(
    data: bytes, split: int, chunk_size: int
) -> None:
    reader = ChunkReader(max_message_size=1000, max_chunk_streams=4)
    reader.chunk_size = chunk_size
    try:
        for start in range(0, len(data), split):
            reader.feed(data[start : start + split])
            while (message := reader.next_message()) is not None:
                assert len(message.payload) <= 1000
                if message.type_id == 2 and len(message.payload) >= 4:
                    reader.abort(int.from_bytes(message.payload[:4], "big"))
    except RTMPProtocolError:
        pass
    assert 0 <= reader.buffered_bytes <= len(data)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(csids, messages), min_size=1, max_size=6), st.binary(max_size=60))
def test_garbage_after_valid_chunks(plan: list[tuple[int, RTMPMessage]], junk: bytes) -> None:
    writer = ChunkWriter()
    data = b"".join(writer.write(c, m) for c, m in plan)
    reader = ChunkReader()
    got = []
    try:
        reader.feed(data + junk)
        while messages := reader.read_messages(16):
            got += messages
    except RTMPProtocolError:
        pass
    assert got[: len(plan)] == [m for _, m in plan]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(csids, messages), min_size=1, max_size=5),
    st.data(),
)
def test_corrupted_streams_raise_only_protocol_errors(
    plan: list[tuple[int, RTMPMessage]], data: st.DataObject
) -> None:
    writer = ChunkWriter()
    stream = bytearray(b"".join(writer.write(c, m) for c, m in plan))
    for _ in range(data.draw(st.integers(1, 4))):
        index = data.draw(st.integers(0, len(stream) - 1))
        stream[index] = data.draw(st.integers(0, 255))
    reader = ChunkReader(max_message_size=4096, max_chunk_streams=3)
    split = data.draw(st.integers(1, len(stream)))
    try:
        for start in range(0, len(stream), split):
            reader.feed(bytes(stream[start : start + split]))
            while reader.next_message() is not None:
                pass
    except RTMPProtocolError:
        pass
    assert reader.buffered_bytes <= len(stream)
