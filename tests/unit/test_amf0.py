"""AMF0 encoder and decoder: spec byte vectors, real client messages, hostile input."""

from __future__ import annotations

import contextlib
import enum
import math
import struct
import time
from collections import OrderedDict
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lpms.buffer import Buffer
from lpms.errors import RTMPProtocolError
from lpms.rtmp import amf0
from lpms.rtmp.amf0 import (
    UNDEFINED,
    UNSUPPORTED,
    AMF0Date,
    AMF0Value,
    ECMAArray,
    TypedObject,
    XMLDocument,
    decode_all,
    decode_value,
    encode,
)

# -- helpers that build wire bytes straight from the spec's grammar -------------


def utf8(text: str) -> bytes:
    """UTF-8 (spec 1.3): U16 byte length, then the bytes."""
    data = text.encode()
    return struct.pack(">H", len(data)) + data


def number(value: float) -> bytes:
    return b"\x00" + struct.pack(">d", value)


def string(text: str) -> bytes:
    return b"\x02" + utf8(text)


OBJECT_END = b"\x00\x00\x09"


def properties(*pairs: tuple[str, bytes]) -> bytes:
    return b"".join(utf8(name) + value for name, value in pairs) + OBJECT_END


# -- exact byte vectors, one or more per type (AMF0 spec section 2) ------------

VECTORS: list[tuple[str, AMF0Value, bytes]] = [
    ("number", 1.0, bytes.fromhex("00 3ff0000000000000")),
    ("number negative", -2.5, bytes.fromhex("00 c004000000000000")),
    ("number infinity", math.inf, bytes.fromhex("00 7ff0000000000000")),
    ("boolean true", True, bytes.fromhex("01 01")),
    ("boolean false", False, bytes.fromhex("01 00")),
    ("string", "hello", bytes.fromhex("02 0005 68656c6c6f")),
    ("string empty", "", bytes.fromhex("02 0000")),
    ("string utf-8", "héllo ✓", bytes.fromhex("02 000a 68c3a96c6c6f20e29c93")),
    ("object", {"a": 1.0}, bytes.fromhex("03 0001 61 00 3ff0000000000000 000009")),
    ("object empty", {}, bytes.fromhex("03 000009")),
    ("null", None, bytes.fromhex("05")),
    ("undefined", UNDEFINED, bytes.fromhex("06")),
    ("ecma array", ECMAArray(a=None), bytes.fromhex("08 00000001 0001 61 05 000009")),
    ("ecma array empty", ECMAArray(), bytes.fromhex("08 00000000 000009")),
    ("strict array", [1.0, "a"], bytes.fromhex("0a 00000002 00 3ff0000000000000 02 0001 61")),
    ("strict array empty", [], bytes.fromhex("0a 00000000")),
    (
        "date",
        AMF0Date(1_700_000_000_000.0, 0),
        bytes.fromhex("0b") + struct.pack(">d", 1_700_000_000_000.0) + bytes.fromhex("0000"),
    ),
    ("date with timezone", AMF0Date(0.0, -60), bytes.fromhex("0b 0000000000000000 ffc4")),
    ("unsupported", UNSUPPORTED, bytes.fromhex("0d")),
    ("xml document", XMLDocument("<a/>"), bytes.fromhex("0f 00000004 3c612f3e")),
    (
        "typed object",
        TypedObject("Foo", {"x": None}),
        bytes.fromhex("10 0003 466f6f 0001 78 05 000009"),
    ),
    (
        "nested",
        {"list": [ECMAArray(k=True)]},
        bytes.fromhex("03 0004 6c697374 0a 00000001 08 00000001 0001 6b 0101 000009 000009"),
    ),
    ("empty property name", {"": 0.0}, bytes.fromhex("03 0000 00 0000000000000000 000009")),
]


@pytest.mark.parametrize(
    ("value", "wire"), [(v, w) for _, v, w in VECTORS], ids=[n for n, *_ in VECTORS]
)
def test_encode_matches_spec_bytes(value: AMF0Value, wire: bytes) -> None:
    assert encode(value) == wire


@pytest.mark.parametrize(
    ("value", "wire"), [(v, w) for _, v, w in VECTORS], ids=[n for n, *_ in VECTORS]
)
def test_decode_matches_spec_bytes(value: AMF0Value, wire: bytes) -> None:
    decoded = decode_all(wire)
    assert decoded == [value]
    assert type(decoded[0]) is type(value)


def test_long_string_is_used_above_65535_utf8_bytes() -> None:
    short = "é" * 32767  # 65534 bytes
    long = "é" * 32768  # 65536 bytes
    assert encode(short)[:3] == b"\x02\xff\xfe"
    assert encode(long)[:5] == b"\x0c\x00\x01\x00\x00"
    assert decode_all(encode(long)) == [long]


def test_long_string_marker_with_short_text_decodes_to_str() -> None:
    assert decode_all(bytes.fromhex("0c 00000002 6869")) == ["hi"]


def test_boolean_any_nonzero_byte_is_true() -> None:
    assert decode_all(b"\x01\x7f") == [True]


def test_negative_zero_and_nan_keep_their_bits() -> None:
    (zero,) = decode_all(number(-0.0))
    assert isinstance(zero, float)
    assert math.copysign(1.0, zero) == -1.0
    (nan,) = decode_all(number(math.nan))
    assert isinstance(nan, float)
    assert math.isnan(nan)


def test_object_keeps_property_order() -> None:
    wire = b"\x03" + properties(("z", number(1)), ("a", number(2)), ("m", number(3)))
    (decoded,) = decode_all(wire)
    assert isinstance(decoded, dict)
    assert list(decoded) == ["z", "a", "m"]
    assert encode(decoded) == wire


def test_decode_value_leaves_cursor_after_the_value() -> None:
    buf = Buffer(encode({"a": [1, 2]}, "next"), RTMPProtocolError)
    assert decode_value(buf) == {"a": [1.0, 2.0]}
    assert decode_value(buf) == "next"
    assert buf.eof()


def test_decode_all_accepts_memoryview_and_bytearray() -> None:
    wire = encode("a", 1.0)
    assert decode_all(memoryview(wire)) == ["a", 1.0]
    assert decode_all(bytearray(wire)) == ["a", 1.0]
    assert decode_all(memoryview(b"xx" + wire)[2:]) == ["a", 1.0]
    assert decode_all(b"") == []


# -- real messages ---------------------------------------------------------------

# Captured from FFmpeg 8 (PyAV 18, libavformat 62.12.102) publishing to
# rtmp://127.0.0.1:33155/live/test: the body of each AMF0 command / data message.
FFMPEG_CONNECT = bytes.fromhex(
    "020007636f6e6e656374003ff00000000000000300036170700200046c69766500047479706502000a"
    "6e6f6e707269766174650008666c617368566572020024464d4c452f332e302028636f6d7061746962"
    "6c653b204c61766636322e31322e313032290005746355726c02001b72746d703a2f2f3132372e302e"
    "302e313a33333135352f6c697665000009"
)
FFMPEG_SET_DATA_FRAME = bytes.fromhex(
    "02000d40736574446174614672616d6502000a6f6e4d65746144617461080000000d00086475726174"
    "696f6e00000000000000000000057769647468004074000000000000000668656967687400406e0000"
    "00000000000d766964656f646174617261746500407e84800000000000096672616d65726174650040"
    "3e000000000000000c766964656f636f646563696400401c000000000000000d617564696f64617461"
    "7261746500405f400000000000000f617564696f73616d706c65726174650040e5888000000000000f"
    "617564696f73616d706c6573697a65004030000000000000000673746572656f0101000c617564696f"
    "636f64656369640040240000000000000007656e636f64657202000d4c61766636322e31322e313032"
    "000866696c6573697a65000000000000000000000009"
)
FFMPEG_COMMANDS: list[tuple[str, list[AMF0Value]]] = [
    (
        "02000d72656c6561736553747265616d0040000000000000000502000474657374",
        ["releaseStream", 2.0, None, "test"],
    ),
    (
        "02000946435075626c6973680040080000000000000502000474657374",
        ["FCPublish", 3.0, None, "test"],
    ),
    ("02000c63726561746553747265616d00401000000000000005", ["createStream", 4.0, None]),
    (
        "0200077075626c69736800401400000000000005020004746573740200046c697665",
        ["publish", 5.0, None, "test", "live"],
    ),
    (
        "02000c64656c65746553747265616d00401c00000000000005003ff0000000000000",
        ["deleteStream", 7.0, None, 1.0],
    ),
]


def test_ffmpeg_connect() -> None:
    assert decode_all(FFMPEG_CONNECT) == [
        "connect",
        1.0,
        {
            "app": "live",
            "type": "nonprivate",
            "flashVer": "FMLE/3.0 (compatible; Lavf62.12.102)",
            "tcUrl": "rtmp://127.0.0.1:33155/live",
        },
    ]
    assert encode(*decode_all(FFMPEG_CONNECT)) == FFMPEG_CONNECT


def test_obs_style_connect_from_spec_bytes() -> None:
    # OBS and FMLE announce themselves with this flashVer; built from the grammar.
    wire = (
        string("connect")
        + number(1.0)
        + b"\x03"
        + properties(
            ("app", string("live")),
            ("type", string("nonprivate")),
            ("flashVer", string("FMLE/3.0 (compatible; FMSc/1.0)")),
            ("swfUrl", string("rtmp://example.com/live")),
            ("tcUrl", string("rtmp://example.com/live")),
        )
    )
    command = [
        "connect",
        1.0,
        {
            "app": "live",
            "type": "nonprivate",
            "flashVer": "FMLE/3.0 (compatible; FMSc/1.0)",
            "swfUrl": "rtmp://example.com/live",
            "tcUrl": "rtmp://example.com/live",
        },
    ]
    assert decode_all(wire) == command
    assert encode(*command) == wire


def test_ffmpeg_set_data_frame_on_metadata() -> None:
    name, event, metadata = decode_all(FFMPEG_SET_DATA_FRAME)
    assert (name, event) == ("@setDataFrame", "onMetaData")
    assert isinstance(metadata, ECMAArray)
    assert metadata == {
        "duration": 0.0,
        "width": 320.0,
        "height": 240.0,
        "videodatarate": 488.28125,
        "framerate": 30.0,
        "videocodecid": 7.0,
        "audiodatarate": 125.0,
        "audiosamplerate": 44100.0,
        "audiosamplesize": 16.0,
        "stereo": True,
        "audiocodecid": 10.0,
        "encoder": "Lavf62.12.102",
        "filesize": 0.0,
    }
    assert encode(name, event, metadata) == FFMPEG_SET_DATA_FRAME


@pytest.mark.parametrize(
    ("wire", "expected"), FFMPEG_COMMANDS, ids=[str(c[1][0]) for c in FFMPEG_COMMANDS]
)
def test_ffmpeg_publish_commands(wire: str, expected: list[AMF0Value]) -> None:
    assert decode_all(bytes.fromhex(wire)) == expected
    assert encode(*expected) == bytes.fromhex(wire)


@pytest.mark.parametrize("declared", [0, 1, 5, 0xFFFFFFFF])
def test_ecma_array_count_is_only_a_hint(declared: int) -> None:
    wire = (
        string("onMetaData")
        + b"\x08"
        + struct.pack(">I", declared)
        + properties(("width", number(1280)), ("height", number(720)))
    )
    assert decode_all(wire) == ["onMetaData", ECMAArray(width=1280.0, height=720.0)]


# -- refusals --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("wire", "reason"),
    [
        (bytes.fromhex("07 0001"), "reference"),
        (bytes.fromhex("11 0a"), "AMF3"),
        (bytes.fromhex("04"), "movieclip"),
        (bytes.fromhex("0e"), "recordset"),
        (bytes.fromhex("12"), "unknown AMF0 type marker 0x12"),
        (bytes.fromhex("ff"), "unknown AMF0 type marker 0xff"),
        (bytes.fromhex("09"), "object-end"),
        (bytes.fromhex("0a 00000001 09"), "object-end"),
        (bytes.fromhex("03 0001 61 09"), "object-end marker after property name"),
        (bytes.fromhex("02 0002 c328"), "not valid UTF-8"),
        (bytes.fromhex("03 0001 ff 05 000009"), "not valid UTF-8"),
        (bytes.fromhex("00 3ff0"), "truncated"),
        (bytes.fromhex("02 0005 6869"), "truncated"),
        (bytes.fromhex("03 0001 61 05"), "truncated"),
        (bytes.fromhex("03 0001 61 05 0000"), "truncated"),
        (bytes.fromhex("08 0000"), "truncated"),
        (bytes.fromhex("0b 0000000000000000 00"), "truncated"),
        (bytes.fromhex("10 0005 4e"), "truncated"),
    ],
)
def test_refuses_with_a_reason(wire: bytes, reason: str) -> None:
    with pytest.raises(RTMPProtocolError, match=reason):
        decode_all(wire)


def _nested(kind: str, depth: int) -> bytes:
    opening = {
        "strict array": b"\x0a\x00\x00\x00\x01",
        "object": b"\x03" + utf8("k"),
        "ecma array": b"\x08\x00\x00\x00\x01" + utf8("k"),
        "typed object": b"\x10" + utf8("C") + utf8("k"),
    }[kind]
    closing = b"" if kind == "strict array" else OBJECT_END
    return opening * depth + b"\x05" + closing * depth


@pytest.mark.parametrize("kind", ["strict array", "object", "ecma array", "typed object"])
def test_nesting_up_to_max_depth_decodes(kind: str) -> None:
    (value,) = decode_all(_nested(kind, amf0.DEFAULT_MAX_DEPTH))
    assert encode(value) == _nested(kind, amf0.DEFAULT_MAX_DEPTH)


@pytest.mark.parametrize("kind", ["strict array", "object", "ecma array", "typed object"])
def test_nesting_beyond_max_depth_is_refused(kind: str) -> None:
    with pytest.raises(RTMPProtocolError, match="nested deeper than 32"):
        decode_all(_nested(kind, amf0.DEFAULT_MAX_DEPTH + 1))


def test_hostile_nesting_never_recurses() -> None:
    # With the limit lifted the decoder still walks 100k levels: it keeps its own stack.
    wire = b"\x0a\x00\x00\x00\x01" * 100_000 + b"\x05"
    with pytest.raises(RTMPProtocolError, match="nested deeper"):
        decode_all(wire)
    (value,) = decode_all(wire, max_depth=1_000_000)
    for _ in range(100_000):
        assert isinstance(value, list)
        (value,) = value
    assert value is None


@pytest.mark.parametrize(
    ("wire", "reason"),
    [
        (bytes.fromhex("0c ffffffff"), "over the limit"),
        (bytes.fromhex("0f ffffffff"), "over the limit"),
        (bytes.fromhex("0a ffffffff"), "over the limit"),
        (bytes.fromhex("0a 0000ffff 05"), "only 1 bytes follow"),
        (bytes.fromhex("0c 000fffff 61"), "truncated"),
        (b"\x0a\x00\x00\x00\x03" + b"\x0a\x00\x00\xff\xff" + b"\x05" * 10, "only 10 bytes follow"),
    ],
)
def test_huge_declared_lengths_are_refused_quickly(wire: bytes, reason: str) -> None:
    started = time.perf_counter()
    with pytest.raises(RTMPProtocolError, match=reason):
        decode_all(wire)
    assert time.perf_counter() - started < 0.5


def test_limits_can_be_lowered() -> None:
    with pytest.raises(RTMPProtocolError, match="over the limit of 4"):
        decode_all(string("hello"), max_string_length=4)
    with pytest.raises(RTMPProtocolError, match="over the limit of 4"):
        decode_all(b"\x03" + properties(("hello", b"\x05")), max_string_length=4)
    with pytest.raises(RTMPProtocolError, match="more than 2 properties"):
        decode_all(
            b"\x03" + properties(("a", b"\x05"), ("b", b"\x05"), ("c", b"\x05")), max_items=2
        )
    with pytest.raises(RTMPProtocolError, match="over the limit of 2"):
        decode_all(encode([1, 2, 3]), max_items=2)
    with pytest.raises(RTMPProtocolError, match="nested deeper than 1"):
        decode_all(encode([[1]]), max_depth=1)
    assert decode_all(encode([[1]]), max_depth=2) == [[[1.0]]]


def test_values_in_one_body_are_bounded() -> None:
    """8 MiB of nulls once decoded into 8 million values: seconds of CPU, 67 MiB."""
    started = time.perf_counter()
    with pytest.raises(RTMPProtocolError, match="more than 131072 values"):
        decode_all(b"\x05" * (8 << 20))
    assert time.perf_counter() - started < 0.5
    assert len(decode_all(b"\x05" * amf0.DEFAULT_MAX_VALUES)) == amf0.DEFAULT_MAX_VALUES
    # Containers and what they hold count alike, at any depth.
    nested = encode([None, [None, None]], "x")
    assert decode_all(nested, max_values=6) == [[None, [None, None]], "x"]
    with pytest.raises(RTMPProtocolError, match="more than 5 values"):
        decode_all(nested, max_values=5)
    buf = Buffer(nested, RTMPProtocolError)
    with pytest.raises(RTMPProtocolError, match="more than 4 values"):
        amf0.decode_value(buf, max_values=4)


def test_repeated_property_names_count_against_max_items() -> None:
    wire = b"\x03" + properties(*[("a", b"\x05")] * 3)
    assert decode_all(wire) == [{"a": None}]
    with pytest.raises(RTMPProtocolError, match="more than 2 properties"):
        decode_all(wire, max_items=2)


# -- encoding Python values --------------------------------------------------------


class Level(enum.IntEnum):
    HIGH = 3


class Code(enum.StrEnum):
    OK = "ok"


def test_encode_maps_python_types() -> None:
    assert encode(True) == b"\x01\x01"  # bool before int
    assert encode(7) == number(7.0)
    assert encode(Level.HIGH) == number(3.0)
    assert encode(Code.OK) == string("ok")
    assert encode(OrderedDict(a=None)) == b"\x03" + properties(("a", b"\x05"))
    assert encode((1, None)) == encode([1, None])
    assert encode() == b""
    assert encode("_result", 1, None, {"a": "b"}) == (
        string("_result") + number(1.0) + b"\x05" + b"\x03" + properties(("a", string("b")))
    )


@pytest.mark.parametrize("value", [b"bytes", {1, 2}, object(), 1j, {1: "a"}, [b"x"]])
def test_encode_refuses_unknown_types(value: object) -> None:
    with pytest.raises(TypeError):
        encode(value)


@pytest.mark.parametrize(
    "value",
    [
        {"k" * 65536: None},
        TypedObject("C" * 65536, {}),
        10**400,
        AMF0Date(0.0, 40000),
    ],
    ids=["long name", "long class name", "huge int", "timezone"],
)
def test_encode_refuses_values_amf0_cannot_carry(value: object) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - each case has its own message
        encode(value)


def test_encode_refuses_cycles_and_deep_nesting() -> None:
    cycle: list[Any] = []
    cycle.append(cycle)
    with pytest.raises(ValueError, match="nested deeper"):
        encode(cycle)
    deep: Any = None
    for _ in range(amf0.DEFAULT_MAX_DEPTH + 1):
        deep = [deep]
    with pytest.raises(ValueError, match="nested deeper"):
        encode(deep)


# -- properties ------------------------------------------------------------------

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.floats(allow_nan=False),
    st.integers(min_value=-(2**53), max_value=2**53),
    st.text(),
    st.sampled_from([UNDEFINED, UNSUPPORTED]),
    st.builds(AMF0Date, st.floats(allow_nan=False), st.integers(-0x8000, 0x7FFF)),
    st.builds(XMLDocument, st.text()),
)
names = st.text(max_size=8)


def containers(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.lists(children, max_size=5),
        st.dictionaries(names, children, max_size=5),
        st.dictionaries(names, children, max_size=5).map(ECMAArray),
        st.builds(TypedObject, names, st.dictionaries(names, children, max_size=5)),
    )


values = st.recursive(scalars, containers, max_leaves=20)


@settings(max_examples=200)
@given(st.lists(values, max_size=4))
def test_round_trip(items: list[Any]) -> None:
    wire = encode(*items)
    decoded = decode_all(wire)
    assert decoded == items
    # Re-encoding catches what == cannot: key order, ECMAArray vs dict, -0.0.
    assert encode(*decoded) == wire


@settings(max_examples=500)
@given(st.binary(max_size=256))
def test_arbitrary_bytes_raise_only_protocol_errors(data: bytes) -> None:
    with contextlib.suppress(RTMPProtocolError):
        decode_all(data)


@settings(max_examples=200)
@given(values, st.data())
def test_corrupted_encodings_raise_only_protocol_errors(value: Any, data: st.DataObject) -> None:
    wire = bytearray(encode(value))
    for _ in range(data.draw(st.integers(1, 4))):
        index = data.draw(st.integers(0, len(wire) - 1))
        wire[index] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(wire)))
    with contextlib.suppress(RTMPProtocolError):
        decode_all(bytes(wire[:cut]), max_items=64, max_string_length=4096)
