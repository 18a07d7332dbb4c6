"""A read cursor over bytes, so binary parsers read like the spec's tables.

Reads are zero-copy ``memoryview`` slices until a caller asks for ``bytes``. Running
past the end raises the error class the owning layer passed in, never IndexError
or struct.error, so each layer keeps its one error type.
"""

from __future__ import annotations

import struct

from lpms.errors import LPMSError

_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_F64 = struct.Struct(">d")


class Buffer:
    """Big-endian reader over a bytes-like object."""

    __slots__ = ("_data", "_error", "_pos")

    def __init__(self, data: bytes | bytearray | memoryview, error: type[LPMSError]) -> None:
        self._data = memoryview(data).cast("B") if not isinstance(data, bytes) else memoryview(data)
        self._pos = 0
        self._error = error

    @property
    def position(self) -> int:
        return self._pos

    @property
    def remaining(self) -> int:
        return len(self._data) - self._pos

    def eof(self) -> bool:
        return self._pos >= len(self._data)

    def _take(self, size: int) -> int:
        start = self._pos
        if size < 0 or start + size > len(self._data):
            raise self._error(
                f"truncated data: needed {size} bytes at offset {start}, "
                f"{len(self._data) - start} left"
            )
        self._pos = start + size
        return start

    def pull_uint8(self) -> int:
        start = self._take(1)
        return self._data[start]

    def pull_uint16(self) -> int:
        start = self._take(2)
        return int(_U16.unpack_from(self._data, start)[0])

    def pull_uint24(self) -> int:
        start = self._take(3)
        d = self._data
        return (d[start] << 16) | (d[start + 1] << 8) | d[start + 2]

    def pull_int24(self) -> int:
        value = self.pull_uint24()
        return value - 0x1000000 if value & 0x800000 else value

    def pull_uint32(self) -> int:
        start = self._take(4)
        return int(_U32.unpack_from(self._data, start)[0])

    def pull_float64(self) -> float:
        start = self._take(8)
        return float(_F64.unpack_from(self._data, start)[0])

    def pull_view(self, size: int) -> memoryview:
        start = self._take(size)
        return self._data[start : start + size]

    def pull_bytes(self, size: int) -> bytes:
        return bytes(self.pull_view(size))

    def pull_rest(self) -> memoryview:
        return self.pull_view(self.remaining)
