"""AMF0: the value format of RTMP command and data messages (Adobe AMF0 spec).

Decoding walks containers with an explicit stack instead of recursion, so a hostile
peer nesting arrays a million deep gets an `RTMPProtocolError` at ``max_depth``, never
a `RecursionError`, whatever limit the caller picks. Every length on the wire is
checked against a named limit and against the bytes actually left before anything is
read or allocated.

Choices where the spec or the field leave room:

- References (0x07) are refused. No RTMP encoder we serve (FFmpeg, OBS, GStreamer,
  librtmp) sends them, and resolving them would let a peer build shared or cyclic
  graphs that later re-encoding would expand without bound.
- Invalid UTF-8 is refused rather than replaced, so ``decode(encode(x)) == x`` holds
  exactly. A caller that wants to survive odd metadata can catch the error for that
  one data message.
- The ECMA array count is ignored: encoders write a guess (FFmpeg's FLV muxer counts
  before it knows whether a frame rate follows and only patches the count when the
  output is seekable, which RTMP is not). The object-end marker ends the array.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeAlias

from lpms.buffer import Buffer
from lpms.errors import RTMPProtocolError

DEFAULT_MAX_DEPTH = 32
"""Containers nested inside one another; FFmpeg's deepest is 2 (connect's object)."""
DEFAULT_MAX_STRING_LENGTH = 1 << 20
"""Bytes in one string, long string or XML document."""
DEFAULT_MAX_ITEMS = 65536
"""Entries in one object, ECMA array, typed object or strict array."""
DEFAULT_MAX_VALUES = 1 << 17
"""Values in one message body, containers and everything in them counted alike.

Bytes alone do not bound the work: an 8 MiB body of one-byte nulls is 8 million
values, seconds of CPU and tens of MiB of Python objects. ``onMetaData``, even with a
keyframe index, holds a few thousand.
"""

_U16_MAX = 0xFFFF
_U32_MAX = 0xFFFFFFFF


class AMF0Marker(enum.IntEnum):
    """Type markers, AMF0 spec 2.1 (names as the spec's ``*-marker`` rules)."""

    NUMBER = 0x00
    BOOLEAN = 0x01
    STRING = 0x02
    OBJECT = 0x03
    MOVIECLIP = 0x04  # reserved, not supported
    NULL = 0x05
    UNDEFINED = 0x06
    REFERENCE = 0x07
    ECMA_ARRAY = 0x08
    OBJECT_END = 0x09
    STRICT_ARRAY = 0x0A
    DATE = 0x0B
    LONG_STRING = 0x0C
    UNSUPPORTED = 0x0D
    RECORDSET = 0x0E  # reserved, not supported
    XML_DOCUMENT = 0x0F
    TYPED_OBJECT = 0x10
    AVMPLUS_OBJECT = 0x11  # spec 3.1: the rest of the value is AMF3


class AMF0Special(enum.Enum):
    """Markers that carry no data and have no Python counterpart (spec 2.8, 2.15).

    Kept apart from ``None`` (which is AMF0 null) so they round-trip: some clients
    answer ``undefined`` where others answer ``null``.
    """

    UNDEFINED = "undefined"
    UNSUPPORTED = "unsupported"

    def __repr__(self) -> str:
        return self.name


UNDEFINED = AMF0Special.UNDEFINED
UNSUPPORTED = AMF0Special.UNSUPPORTED


class ECMAArray(dict[str, "AMF0Value"]):
    """An associative array (spec 2.10), a dict that re-encodes as one.

    ``onMetaData`` travels as an ECMA array; relaying it as a plain object would
    change the bytes players see, and some players only accept the array form.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return f"ECMAArray({dict.__repr__(self)})"


@dataclass(frozen=True, slots=True)
class AMF0Date:
    """A date (spec 2.13): milliseconds since the Unix epoch, UTC.

    ``timezone`` is the spec's reserved S16 that should be 0; kept so the bytes
    round-trip.
    """

    milliseconds: float
    timezone: int = 0


@dataclass(frozen=True, slots=True)
class XMLDocument:
    """An XML document (spec 2.17), kept as text: nothing in RTMP needs it parsed."""

    text: str


@dataclass(frozen=True, slots=True)
class TypedObject:
    """An object with an ActionScript class name (spec 2.18)."""

    class_name: str
    properties: dict[str, AMF0Value]


AMF0Value: TypeAlias = (
    bool
    | float
    | str
    | dict[str, "AMF0Value"]
    | list["AMF0Value"]
    | ECMAArray
    | AMF0Date
    | XMLDocument
    | TypedObject
    | AMF0Special
    | None
)

_F64 = struct.Struct(">d")
_S16 = struct.Struct(">h")
_MARKER_F64 = struct.Struct(">Bd")
_MARKER_U16 = struct.Struct(">BH")
_MARKER_U32 = struct.Struct(">BI")
_MARKER_F64_S16 = struct.Struct(">Bdh")
_U16 = struct.Struct(">H")

# ---------------------------------------------------------------------------
# Decoding
# ---------------------------------------------------------------------------


def decode_all(
    data: bytes | bytearray | memoryview,
    *,
    max_depth: int = DEFAULT_MAX_DEPTH,
    max_string_length: int = DEFAULT_MAX_STRING_LENGTH,
    max_items: int = DEFAULT_MAX_ITEMS,
    max_values: int = DEFAULT_MAX_VALUES,
) -> list[AMF0Value]:
    """Every value in a command or data message body, in order.

    ``max_values`` counts every value in the body, top-level and nested alike.
    """
    buf = Buffer(data, RTMPProtocolError)
    values: list[AMF0Value] = []
    decoded = 0
    while not buf.eof():
        value, decoded = _decode(buf, max_depth, max_string_length, max_items, max_values, decoded)
        values.append(value)
    return values


def decode_value(
    buf: Buffer,
    *,
    max_depth: int = DEFAULT_MAX_DEPTH,
    max_string_length: int = DEFAULT_MAX_STRING_LENGTH,
    max_items: int = DEFAULT_MAX_ITEMS,
    max_values: int = DEFAULT_MAX_VALUES,
) -> AMF0Value:
    """One value at the cursor, leaving the cursor just past it.

    Truncation is reported with the error class ``buf`` was built with, so build it
    with `RTMPProtocolError`.
    """
    return _decode(buf, max_depth, max_string_length, max_items, max_values, 0)[0]


def _decode(
    buf: Buffer,
    max_depth: int,
    max_string_length: int,
    max_items: int,
    max_values: int,
    decoded: int,
) -> tuple[AMF0Value, int]:
    """One value, and ``decoded`` plus the values it held (itself included)."""
    stack: list[_KeyedContainer | _ArrayContainer] = []
    while True:
        marker = stack[-1].next_marker(buf, max_string_length) if stack else buf.pull_uint8()
        value: AMF0Value
        if marker is None:
            value = stack.pop().result()
        else:
            decoded += 1
            if decoded > max_values:
                raise RTMPProtocolError(
                    f"AMF0 body with more than {max_values} values at offset "
                    f"{buf.position - 1} (max_values)"
                )
            if (read_scalar := _SCALAR_READERS.get(marker)) is not None:
                value = read_scalar(buf, max_string_length)
            else:
                start = buf.position - 1
                container = _open_container(marker, buf, max_string_length, max_items)
                if len(stack) >= max_depth:
                    raise RTMPProtocolError(
                        f"AMF0 values nested deeper than {max_depth} at offset {start}"
                    )
                stack.append(container)
                continue
        if not stack:
            return value, decoded
        stack[-1].add(value)


def _read_utf8(buf: Buffer, length: int, max_string_length: int) -> str:
    """UTF-8 text of ``length`` bytes (spec 1.3: AMF0 strings are plain UTF-8)."""
    if length > max_string_length:
        raise RTMPProtocolError(
            f"AMF0 string of {length} bytes at offset {buf.position} is over the "
            f"limit of {max_string_length}"
        )
    view = buf.pull_view(length)
    try:
        return str(view, "utf-8")
    except UnicodeDecodeError as exc:
        raise RTMPProtocolError(
            f"AMF0 string at offset {buf.position - length} is not valid UTF-8: {exc.reason}"
        ) from None


def _read_number(buf: Buffer, _max_string_length: int) -> AMF0Value:
    return buf.pull_float64()  # spec 2.2


def _read_boolean(buf: Buffer, _max_string_length: int) -> AMF0Value:
    return buf.pull_uint8() != 0  # spec 2.3: any non-zero byte is true


def _read_string(buf: Buffer, max_string_length: int) -> AMF0Value:
    return _read_utf8(buf, buf.pull_uint16(), max_string_length)  # spec 2.4


def _read_long_string(buf: Buffer, max_string_length: int) -> AMF0Value:
    return _read_utf8(buf, buf.pull_uint32(), max_string_length)  # spec 2.14


def _read_null(_buf: Buffer, _max_string_length: int) -> AMF0Value:
    return None


def _read_undefined(_buf: Buffer, _max_string_length: int) -> AMF0Value:
    return UNDEFINED


def _read_unsupported(_buf: Buffer, _max_string_length: int) -> AMF0Value:
    return UNSUPPORTED


def _read_date(buf: Buffer, _max_string_length: int) -> AMF0Value:
    milliseconds = buf.pull_float64()  # spec 2.13: DOUBLE then S16 time-zone
    (timezone,) = _S16.unpack(buf.pull_view(2))
    return AMF0Date(milliseconds, int(timezone))


def _read_xml_document(buf: Buffer, max_string_length: int) -> AMF0Value:
    return XMLDocument(_read_utf8(buf, buf.pull_uint32(), max_string_length))  # spec 2.17


def _refuse(reason: str) -> Callable[[Buffer, int], AMF0Value]:
    def read(buf: Buffer, _max_string_length: int) -> AMF0Value:
        raise RTMPProtocolError(f"{reason} (at offset {buf.position - 1})")

    return read


_SCALAR_READERS: dict[int, Callable[[Buffer, int], AMF0Value]] = {
    AMF0Marker.NUMBER: _read_number,
    AMF0Marker.BOOLEAN: _read_boolean,
    AMF0Marker.STRING: _read_string,
    AMF0Marker.NULL: _read_null,
    AMF0Marker.UNDEFINED: _read_undefined,
    AMF0Marker.DATE: _read_date,
    AMF0Marker.LONG_STRING: _read_long_string,
    AMF0Marker.UNSUPPORTED: _read_unsupported,
    AMF0Marker.XML_DOCUMENT: _read_xml_document,
    AMF0Marker.MOVIECLIP: _refuse("AMF0 movieclip marker 0x04 is reserved and not supported"),
    AMF0Marker.RECORDSET: _refuse("AMF0 recordset marker 0x0e is reserved and not supported"),
    AMF0Marker.REFERENCE: _refuse(
        "AMF0 references (marker 0x07) are not supported; RTMP encoders do not send them"
    ),
    AMF0Marker.OBJECT_END: _refuse("AMF0 object-end marker outside an object"),
    AMF0Marker.AVMPLUS_OBJECT: _refuse(
        "AMF3 is not supported: the peer switched to AMF3 (marker 0x11); "
        "configure it for AMF0 (objectEncoding 0)"
    ),
}


class _KeyedContainer:
    """An object, ECMA array or typed object being read (spec 2.5, 2.10, 2.18)."""

    __slots__ = ("_class_name", "_count", "_key", "_marker", "_max_items", "_properties")

    def __init__(self, marker: int, class_name: str, max_items: int) -> None:
        self._marker = marker
        self._class_name = class_name
        self._max_items = max_items
        self._properties: dict[str, AMF0Value] = (
            ECMAArray() if marker == AMF0Marker.ECMA_ARRAY else {}
        )
        self._key = ""
        self._count = 0

    def next_marker(self, buf: Buffer, max_string_length: int) -> int | None:
        """The next property's value marker, or None once the object has ended.

        Spec 2.5: properties are (UTF-8 name, value) pairs until an empty name
        followed by the object-end marker. An empty name before any other marker is
        an ordinary property named "".
        """
        self._key = _read_utf8(buf, buf.pull_uint16(), max_string_length)
        marker = buf.pull_uint8()
        if marker == AMF0Marker.OBJECT_END:
            if self._key:
                raise RTMPProtocolError(
                    f"AMF0 object-end marker after property name {self._key!r} "
                    f"at offset {buf.position - 1}"
                )
            return None
        self._count += 1
        if self._count > self._max_items:
            raise RTMPProtocolError(
                f"AMF0 object with more than {self._max_items} properties "
                f"at offset {buf.position - 1}"
            )
        return marker

    def add(self, value: AMF0Value) -> None:
        self._properties[self._key] = value

    def result(self) -> AMF0Value:
        if self._marker == AMF0Marker.TYPED_OBJECT:
            return TypedObject(self._class_name, self._properties)
        return self._properties


class _ArrayContainer:
    """A strict array being read (spec 2.12)."""

    __slots__ = ("_items", "_remaining")

    def __init__(self, count: int) -> None:
        self._items: list[AMF0Value] = []
        self._remaining = count

    def next_marker(self, buf: Buffer, _max_string_length: int) -> int | None:
        if self._remaining == 0:
            return None
        self._remaining -= 1
        return buf.pull_uint8()

    def add(self, value: AMF0Value) -> None:
        self._items.append(value)

    def result(self) -> AMF0Value:
        return self._items


def _open_container(
    marker: int, buf: Buffer, max_string_length: int, max_items: int
) -> _KeyedContainer | _ArrayContainer:
    if marker == AMF0Marker.OBJECT:
        return _KeyedContainer(marker, "", max_items)
    if marker == AMF0Marker.ECMA_ARRAY:
        buf.pull_uint32()  # associative-count: a hint encoders get wrong; see module doc
        return _KeyedContainer(marker, "", max_items)
    if marker == AMF0Marker.TYPED_OBJECT:
        class_name = _read_utf8(buf, buf.pull_uint16(), max_string_length)
        return _KeyedContainer(marker, class_name, max_items)
    if marker == AMF0Marker.STRICT_ARRAY:
        return _ArrayContainer(_read_array_count(buf, max_items))
    raise RTMPProtocolError(f"unknown AMF0 type marker 0x{marker:02x} at offset {buf.position - 1}")


def _read_array_count(buf: Buffer, max_items: int) -> int:
    """A strict array's count, refused before it can drive any work or memory."""
    count = buf.pull_uint32()
    if count > max_items:
        raise RTMPProtocolError(
            f"AMF0 strict array of {count} elements at offset {buf.position - 4} is "
            f"over the limit of {max_items}"
        )
    if count > buf.remaining:  # every element takes at least its marker byte
        raise RTMPProtocolError(
            f"AMF0 strict array at offset {buf.position - 4} declares {count} elements "
            f"but only {buf.remaining} bytes follow"
        )
    return count


# ---------------------------------------------------------------------------
# Encoding
# ---------------------------------------------------------------------------


def encode(*values: object) -> bytes:
    """The AMF0 encoding of ``values``, one after another (a message body).

    ``bool`` is Boolean, ``int`` and ``float`` are Number, ``str`` is String or Long
    String by UTF-8 length, ``dict`` is Object, `ECMAArray` is ECMA array, ``list``
    and ``tuple`` are Strict Array, ``None`` is Null. Raises TypeError for anything
    else and ValueError for values AMF0 cannot carry (a property name over 65535
    bytes, an int too large for a double, nesting deeper than `DEFAULT_MAX_DEPTH`,
    which also catches cycles).
    """
    parts: list[bytes] = []
    for value in values:
        _encode_value(parts, value, 0)
    return b"".join(parts)


_Encoder: TypeAlias = Callable[[list[bytes], Any, int], None]


def _encode_value(parts: list[bytes], value: object, depth: int) -> None:
    encoder = _ENCODERS.get(type(value))
    if encoder is None:
        encoder = _encoder_for_subclass(value)
    encoder(parts, value, depth)


def _encoder_for_subclass(value: object) -> _Encoder:
    """Encoder for subclasses (IntEnum, OrderedDict, str enums); order matters."""
    if isinstance(value, bool):
        return _encode_boolean
    if isinstance(value, int):
        return _encode_int
    if isinstance(value, float):
        return _encode_number
    if isinstance(value, str):
        return _encode_string
    if isinstance(value, ECMAArray):
        return _encode_ecma_array
    if isinstance(value, dict):
        return _encode_object
    if isinstance(value, list | tuple):
        return _encode_strict_array
    if isinstance(value, AMF0Special):
        return _encode_special
    raise TypeError(f"cannot encode {type(value).__name__} as AMF0")


def _encode_number(parts: list[bytes], value: float, _depth: int) -> None:
    parts.append(_MARKER_F64.pack(AMF0Marker.NUMBER, value))


def _encode_int(parts: list[bytes], value: int, _depth: int) -> None:
    try:
        number = float(value)
    except OverflowError:
        raise ValueError(f"integer {value} is too large for an AMF0 number") from None
    parts.append(_MARKER_F64.pack(AMF0Marker.NUMBER, number))


def _encode_boolean(parts: list[bytes], value: bool, _depth: int) -> None:
    parts.append(b"\x01\x01" if value else b"\x01\x00")


def _encode_string(parts: list[bytes], value: str, _depth: int) -> None:
    data = value.encode("utf-8")
    if len(data) <= _U16_MAX:
        parts.append(_MARKER_U16.pack(AMF0Marker.STRING, len(data)))
    else:
        parts.append(_long_header(AMF0Marker.LONG_STRING, len(data)))
    parts.append(data)


def _long_header(marker: int, length: int) -> bytes:
    if length > _U32_MAX:
        raise ValueError(f"AMF0 cannot carry {length} bytes in one value")
    return _MARKER_U32.pack(marker, length)


def _encode_null(parts: list[bytes], _value: None, _depth: int) -> None:
    parts.append(b"\x05")


def _encode_special(parts: list[bytes], value: AMF0Special, _depth: int) -> None:
    parts.append(b"\x06" if value is AMF0Special.UNDEFINED else b"\x0d")


def _encode_date(parts: list[bytes], value: AMF0Date, _depth: int) -> None:
    if not -0x8000 <= value.timezone <= 0x7FFF:
        raise ValueError(f"AMF0 date timezone {value.timezone} does not fit in 16 bits")
    parts.append(_MARKER_F64_S16.pack(AMF0Marker.DATE, value.milliseconds, value.timezone))


def _encode_xml_document(parts: list[bytes], value: XMLDocument, _depth: int) -> None:
    data = value.text.encode("utf-8")
    parts.append(_long_header(AMF0Marker.XML_DOCUMENT, len(data)))
    parts.append(data)


def _nested(depth: int) -> int:
    """The depth of a container's children, refusing what our decoder would refuse."""
    if depth >= DEFAULT_MAX_DEPTH:
        raise ValueError(f"AMF0 values nested deeper than {DEFAULT_MAX_DEPTH} (or a cycle)")
    return depth + 1


def _encode_name(parts: list[bytes], name: object) -> None:
    if not isinstance(name, str):
        raise TypeError(f"AMF0 property names must be str, not {type(name).__name__}")
    data = name.encode("utf-8")
    if len(data) > _U16_MAX:
        raise ValueError(f"AMF0 property name of {len(data)} bytes is over 65535")
    parts.append(_U16.pack(len(data)))
    parts.append(data)


def _encode_properties(parts: list[bytes], properties: dict[Any, Any], depth: int) -> None:
    for name, item in properties.items():
        _encode_name(parts, name)
        _encode_value(parts, item, depth)
    parts.append(b"\x00\x00\x09")  # spec 2.11: empty name, object-end marker


def _encode_object(parts: list[bytes], value: dict[Any, Any], depth: int) -> None:
    child_depth = _nested(depth)
    parts.append(b"\x03")
    _encode_properties(parts, value, child_depth)


def _encode_ecma_array(parts: list[bytes], value: ECMAArray, depth: int) -> None:
    child_depth = _nested(depth)
    parts.append(_long_header(AMF0Marker.ECMA_ARRAY, len(value)))
    _encode_properties(parts, value, child_depth)


def _encode_typed_object(parts: list[bytes], value: TypedObject, depth: int) -> None:
    child_depth = _nested(depth)
    parts.append(b"\x10")
    _encode_name(parts, value.class_name)
    _encode_properties(parts, value.properties, child_depth)


def _encode_strict_array(
    parts: list[bytes], value: list[Any] | tuple[Any, ...], depth: int
) -> None:
    child_depth = _nested(depth)
    parts.append(_long_header(AMF0Marker.STRICT_ARRAY, len(value)))
    for item in value:
        _encode_value(parts, item, child_depth)


_ENCODERS: dict[type, _Encoder] = {
    float: _encode_number,
    int: _encode_int,
    bool: _encode_boolean,
    str: _encode_string,
    type(None): _encode_null,
    dict: _encode_object,
    ECMAArray: _encode_ecma_array,
    list: _encode_strict_array,
    tuple: _encode_strict_array,
    AMF0Special: _encode_special,
    AMF0Date: _encode_date,
    XMLDocument: _encode_xml_document,
    TypedObject: _encode_typed_object,
}
