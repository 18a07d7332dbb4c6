"""BitReader: exp-Golomb and fixed-width reads as the H.264/HEVC/AV1 specs define them."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lpms.errors import MediaError
from lpms.media.bitreader import BitReader, strip_emulation_prevention


def _ue_bits(value: int) -> str:
    """ue(v) as a bit string (H.264 9.1): leading zeros, then value + 1 in binary."""
    code = bin(value + 1)[2:]
    return "0" * (len(code) - 1) + code


def _se_bits(value: int) -> str:
    """se(v) (H.264 9.1.1): k > 0 maps to 2k - 1, k <= 0 to -2k."""
    return _ue_bits(2 * value - 1 if value > 0 else -2 * value)


def _pack(bit_string: str) -> bytes:
    padded = bit_string + "0" * (-len(bit_string) % 8)
    return int(padded, 2).to_bytes(len(padded) // 8, "big") if padded else b""


def test_fixed_width_reads_are_msb_first() -> None:
    bits = BitReader(b"\xa5\x0f")
    assert bits.read_bits(1) == 1
    assert bits.read_bits(3) == 0b010
    assert bits.read_bits(8) == 0x50
    assert bits.read_flag() is True
    assert bits.bits_left == 3
    bits.skip_bits(3)
    assert bits.bits_left == 0


@pytest.mark.parametrize(
    ("bit_string", "expected"),
    [("1", 0), ("010", 1), ("011", 2), ("00100", 3), ("0001000", 7), ("000010001", 16)],
)
def test_ue_known_codes(bit_string: str, expected: int) -> None:
    assert BitReader(_pack(bit_string)).read_ue() == expected


@pytest.mark.parametrize(
    ("bit_string", "expected"), [("1", 0), ("010", 1), ("011", -1), ("00100", 2), ("00101", -2)]
)
def test_se_known_codes(bit_string: str, expected: int) -> None:
    assert BitReader(_pack(bit_string)).read_se() == expected


@given(st.lists(st.integers(0, 2**32 - 2), max_size=20))
def test_ue_round_trip(values: list[int]) -> None:
    bits = BitReader(_pack("".join(_ue_bits(v) for v in values)))
    assert [bits.read_ue() for _ in values] == values


@given(st.lists(st.integers(-(2**31) + 1, 2**31 - 1), max_size=20))
def test_se_round_trip(values: list[int]) -> None:
    bits = BitReader(_pack("".join(_se_bits(v) for v in values)))
    assert [bits.read_se() for _ in values] == values


@given(st.lists(st.tuples(st.integers(0, 40), st.integers(0, 2**40 - 1)), max_size=20))
def test_fixed_width_round_trip(fields: list[tuple[int, int]]) -> None:
    fields = [(width, value % (1 << width)) for width, value in fields]
    bits = BitReader(_pack("".join(format(v, f"0{w}b") if w else "" for w, v in fields)))
    assert [bits.read_bits(w) for w, _ in fields] == [v for _, v in fields]


def test_reading_past_the_end_raises_media_error() -> None:
    bits = BitReader(b"\xff")
    bits.read_bits(6)
    with pytest.raises(MediaError, match="truncated"):
        bits.read_bits(3)
    with pytest.raises(MediaError):
        BitReader(b"").read_flag()
    with pytest.raises(MediaError):
        BitReader(b"\x00").read_ue()  # leading zeros run off the end


def test_overlong_exp_golomb_code_is_refused() -> None:
    with pytest.raises(MediaError, match="leading zero"):
        BitReader(bytes(8) + b"\xff").read_ue()


def test_negative_width_is_refused() -> None:
    with pytest.raises(MediaError):
        BitReader(b"\xff").read_bits(-1)


@given(st.binary(max_size=64))
def test_arbitrary_bytes_raise_only_media_error(data: bytes) -> None:
    bits = BitReader(data)
    try:
        while True:
            bits.read_se()
            bits.read_bits(3)
    except MediaError:
        pass


@pytest.mark.parametrize(
    ("nal_unit", "rbsp"),
    [
        (b"\x67\x42\x00\x00\x03\x01", b"\x67\x42\x00\x00\x01"),
        (b"\x00\x00\x03\x00\x00\x03", b"\x00\x00\x00\x00"),
        (b"\x00\x00\x00\x03\x01", b"\x00\x00\x00\x01"),  # 7.3.1 looks at any 00 00 03
        (b"\x01\x02\x03", b"\x01\x02\x03"),
    ],
)
def test_strip_emulation_prevention(nal_unit: bytes, rbsp: bytes) -> None:
    assert strip_emulation_prevention(nal_unit) == rbsp


@given(st.binary(max_size=64))
def test_emulation_prevention_round_trip(rbsp: bytes) -> None:
    """Inserting 03 after every 00 00 that precedes a byte <= 3 (H.264 7.4.1) inverts."""
    escaped = bytearray()
    zeros = 0
    for byte in rbsp:
        if zeros >= 2 and byte <= 3:
            escaped.append(3)
            zeros = 0
        escaped.append(byte)
        zeros = zeros + 1 if byte == 0 else 0
    assert strip_emulation_prevention(bytes(escaped)) == rbsp
