"""NAL units, the syntax H.264 and HEVC share: start codes, headers, record lists.

Each codec module describes its NAL unit header with one `NalSyntax`; the Annex B
converter and the decoder configuration record parsers work from that description,
so they hold no codec's numbers themselves.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lpms.buffer import Buffer
from lpms.errors import BitstreamError

START_CODE = b"\x00\x00\x00\x01"
_START_CODE_3 = b"\x00\x00\x01"
# H.264 7.4.1 and H.265 7.4.2.1: forbidden_zero_bit, the first bit of every header.
FORBIDDEN_ZERO_BIT = 0x80


@dataclass(frozen=True, slots=True)
class NalSyntax:
    """What the converter needs to know about one codec's NAL unit headers."""

    record_name: str
    header_size: int  # H.264 7.3.1: one byte; H.265 7.3.1.2: two
    type_shift: int
    type_mask: int
    aud_type: int
    sps_type: int
    # Parameter sets a frame may carry in band, each type standing for itself when
    # deciding which of the record's sets a keyframe still needs.
    parameter_set_types: frozenset[int]
    # Types the record may hold that go in front of a keyframe, in decoding order.
    record_types: tuple[int, ...]
    # Types at the head of an access unit that inserted parameter sets go after.
    leading_types: frozenset[int] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "leading_types", self.parameter_set_types | {self.aud_type})

    def nal_unit_type(self, first_byte: int) -> int:
        return (first_byte >> self.type_shift) & self.type_mask


def record_nal_unit(buf: Buffer, syntax: NalSyntax, expected_type: int) -> bytes:
    """One NAL unit of a record's list, which must be of the type the list is for."""
    nal_unit = buf.pull_bytes(buf.pull_uint16())
    if len(nal_unit) < syntax.header_size or nal_unit[0] & FORBIDDEN_ZERO_BIT:
        raise BitstreamError(f"invalid NAL unit of {len(nal_unit)} bytes")
    nal_unit_type = syntax.nal_unit_type(nal_unit[0])
    if nal_unit_type != expected_type:
        raise BitstreamError(
            f"list of NAL unit type {expected_type} holds a NAL unit of type {nal_unit_type}"
        )
    return nal_unit


def annex_b_nal_units(data: bytes) -> list[bytes]:
    """The NAL units of an Annex B byte stream (start codes of 3 or 4 bytes removed)."""
    units = []
    start = data.find(_START_CODE_3)
    while start >= 0:
        begin = start + len(_START_CODE_3)
        start = data.find(_START_CODE_3, begin)
        end = len(data) if start < 0 else start
        unit = data[begin:end].rstrip(b"\x00")  # trailing zeros belong to the next start code
        if unit:
            units.append(unit)
    return units
