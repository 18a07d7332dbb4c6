"""A bit cursor for codec headers (H.264/HEVC SPS, AV1 sequence headers).

Codec parameter sets are bit-packed with exp-Golomb fields rather than byte-aligned,
so `lpms.buffer.Buffer` cannot read them. Running past the end, or an exp-Golomb
code longer than any legal value, raises `MediaError` like every other media parser.
"""

from __future__ import annotations

from lpms.errors import MediaError

# H.264 9.1 / HEVC 9.2: ue(v) values fit in 32 bits, so a legal code has at most 31
# leading zero bits before its marker bit (AV1 4.10.3 uvlc() allows 32).
MAX_EXP_GOLOMB_LEADING_ZEROS = 32


class BitReader:
    """Big-endian, most-significant-bit-first reader over one byte string."""

    __slots__ = ("_bit_length", "_data", "_pos")

    def __init__(self, data: bytes | bytearray | memoryview) -> None:
        self._data = bytes(data)
        self._bit_length = len(self._data) * 8
        self._pos = 0

    @property
    def bits_left(self) -> int:
        return self._bit_length - self._pos

    def read_bits(self, count: int) -> int:
        """The next ``count`` bits as an unsigned integer (u(n) / f(n) in the specs)."""
        if count < 0 or count > self.bits_left:
            raise MediaError(
                f"truncated bitstream: needed {count} bits at bit {self._pos}, "
                f"{self.bits_left} left"
            )
        # Only the bytes that hold the field become an int, so a read costs the same
        # however long the parameter set is.
        start = self._pos >> 3
        end = (self._pos + count + 7) >> 3
        self._pos += count
        window = int.from_bytes(self._data[start:end], "big")
        return (window >> (end * 8 - self._pos)) & ((1 << count) - 1)

    def read_flag(self) -> bool:
        return self.read_bits(1) == 1

    def skip_bits(self, count: int) -> None:
        self.read_bits(count)

    def read_ue(self, max_leading_zeros: int = MAX_EXP_GOLOMB_LEADING_ZEROS) -> int:
        """An unsigned exp-Golomb code, ue(v) (H.264 9.1), also AV1's uvlc()."""
        leading_zeros = 0
        while self.read_bits(1) == 0:
            leading_zeros += 1
            if leading_zeros > max_leading_zeros:
                raise MediaError(
                    f"exp-Golomb code with more than {max_leading_zeros} leading zero bits"
                )
        return (1 << leading_zeros) - 1 + self.read_bits(leading_zeros)

    def read_se(self) -> int:
        """A signed exp-Golomb code, se(v) (H.264 9.1.1): 1, -1, 2, -2, ..."""
        code = self.read_ue()
        return (code + 1) // 2 if code & 1 else -(code // 2)


def strip_emulation_prevention(nal_unit: bytes | memoryview) -> bytes:
    """The RBSP inside a NAL unit: every ``00 00 03`` loses its ``03`` (H.264 7.4.1).

    The pattern cannot overlap itself, so one left-to-right replace removes exactly
    the bytes the spec's byte-by-byte scan (7.3.1) removes.
    """
    return bytes(nal_unit).replace(b"\x00\x00\x03", b"\x00\x00")
