"""Length-prefixed H.264 and HEVC frames to self-contained Annex B access units.

RTMP and MP4 carry H.264 and HEVC as length-prefixed NAL units (the ISO/IEC 14496-15
sample format) with the parameter sets out of band in the avcC/hvcC record. MPEG-TS
carries an Annex B byte stream, where everything a decoder needs is in band, and
PyAV's ``add_mux_stream`` cannot hand the muxer extradata anyway. So every frame gets
start codes, an access unit delimiter (ISO/IEC 13818-1 2.14.1 and 2.17.1 require one
in each AVC and HEVC access unit) and, on keyframes, the record's parameter sets, so
that a player can start at any segment. This is what FFmpeg's
``h264_mp4toannexb``/``hevc_mp4toannexb`` filters do, done here because stream-copy
muxing through PyAV runs no bitstream filters.

It runs for every packet of every stream, so a frame is walked by its length fields
(never byte by byte), the output is one ``b"".join`` over ``memoryview`` slices, and
everything that depends only on the configuration is computed once per record.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from lpms.errors import BitstreamError
from lpms.media.codecs import h264, hevc
from lpms.media.codecs.nal import FORBIDDEN_ZERO_BIT, START_CODE, NalSyntax
from lpms.media.packet import Codec

# NAL units in one access unit. H.264 A.3.1 and H.265 Table A.8 cap slices per picture
# in the hundreds (600 at HEVC level 6.2) and SEI adds a few; without a cap a frame of
# one-byte NAL units would cost ~200 bytes of Python objects per byte it carries.
MAX_NAL_UNITS_PER_ACCESS_UNIT = 4096

_SYNTAX = {Codec.H264: h264.NAL_SYNTAX, Codec.HEVC: hevc.NAL_SYNTAX}
_RECORD_PARSERS: dict[Codec, Callable[[bytes], tuple[int, tuple[bytes, ...]]]] = {
    Codec.H264: h264.parse_avcc,
    Codec.HEVC: hevc.parse_hvcc,
}

# H.264 7.3.2.4: primary_pic_type 7 (any slice type) + rbsp_stop_one_bit, what
# FFmpeg's MPEG-TS muxer inserts too, since a keyframe flag does not promise I slices.
_H264_ACCESS_UNIT_DELIMITER = START_CODE + b"\x09\xf0"


def _hevc_access_unit_delimiter(temporal_id_plus1: int) -> bytes:
    """H.265 7.3.2.5: pic_type 2 (I, P or B slices) + rbsp_stop_one_bit.

    The AUD's TemporalId must be the access unit's (7.4.2.2), so there is one per
    nuh_temporal_id_plus1 value.
    """
    return START_CODE + bytes((hevc.NAL_AUD << 1, temporal_id_plus1, 0x50))


_HEVC_ACCESS_UNIT_DELIMITERS = tuple(_hevc_access_unit_delimiter(tid) for tid in range(8))


def _unpack_uint24(buffer: memoryview, offset: int) -> tuple[int]:
    return (int.from_bytes(buffer[offset : offset + 3], "big"),)


# NAL unit length field readers by lengthSizeMinusOne + 1. 14496-15 allows 1, 2 and 4
# bytes; 3 is read too, as FFmpeg reads it, since the intent is unambiguous.
_LENGTH_READERS: dict[int, Callable[[memoryview, int], tuple[int, ...]]] = {
    1: struct.Struct(">B").unpack_from,
    2: struct.Struct(">H").unpack_from,
    3: _unpack_uint24,
    4: struct.Struct(">I").unpack_from,
}


@dataclass(frozen=True, slots=True)
class AnnexBConverter:
    """Built from one avcC/hvcC record; converts that configuration's frames.

    ``parameter_sets`` holds the record's NAL units that a keyframe needs in band, in
    decoding order (VPS, SPS, PPS, then HEVC declarative prefix SEI). Their Annex B
    form is joined once here, since nearly every keyframe needs all of them.
    """

    codec: Codec
    length_size: int
    parameter_sets: tuple[bytes, ...] = ()
    _syntax: NalSyntax = field(init=False, repr=False, compare=False)
    _in_band: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        syntax = _SYNTAX.get(self.codec)
        if syntax is None:
            raise BitstreamError(f"no Annex B conversion for {self.codec.name} video")
        if self.length_size not in _LENGTH_READERS:
            raise BitstreamError(f"NAL unit length size {self.length_size} is not 1-4 bytes")
        if any(len(nal_unit) < syntax.header_size for nal_unit in self.parameter_sets):
            raise BitstreamError(f"a {self.codec.name} parameter set shorter than its header")
        object.__setattr__(self, "_syntax", syntax)
        object.__setattr__(self, "_in_band", _annex_b(self.parameter_sets))

    @classmethod
    def from_config(cls, codec: Codec, extradata: bytes) -> AnnexBConverter:
        """The converter for frames described by an avcC (H.264) or hvcC (HEVC) record."""
        syntax = _SYNTAX.get(codec)
        if syntax is None:
            raise BitstreamError(f"no Annex B conversion for {codec.name} video")
        _refuse_annex_b_record(extradata, syntax)
        try:
            length_size, parameter_sets = _RECORD_PARSERS[codec](extradata)
        except BitstreamError as exc:
            raise BitstreamError(f"malformed {syntax.record_name} record: {exc}") from exc
        return cls(codec, length_size, parameter_sets)

    def convert(self, payload: bytes, keyframe: bool) -> bytes:
        """One frame's NAL units as an Annex B access unit, self-contained if a keyframe.

        An AUD goes first unless the frame has one; on a keyframe the record's
        parameter sets of each kind the frame does not carry itself go after its
        leading AUD and parameter sets, so they precede every SEI and slice that
        refers to them.
        """
        parts, types = self._split(payload)
        syntax = self._syntax
        delimiter = None if syntax.aud_type in types else self._delimiter(parts, types)
        if keyframe and self.parameter_sets:
            parameter_sets = self._parameter_sets_missing_from(types)
            if parameter_sets:
                parts.insert(2 * _count_leading(types, syntax.leading_types), parameter_sets)
        if delimiter is not None:
            parts.insert(0, delimiter)
        return b"".join(parts)

    def _split(self, payload: bytes) -> tuple[list[bytes | memoryview], list[int]]:
        """([start code, NAL unit, start code, NAL unit, ...], [nal_unit_type, ...])."""
        view = memoryview(payload)
        end = len(view)
        size = self.length_size
        read_length = _LENGTH_READERS[size]
        syntax = self._syntax
        header_size, shift, mask = syntax.header_size, syntax.type_shift, syntax.type_mask
        parts: list[bytes | memoryview] = []
        types: list[int] = []
        position = 0
        count = 0  # length fields read, empty NAL units included
        while position < end:
            start = position + size
            if start > end:
                raise BitstreamError(
                    f"truncated {size}-byte NAL unit length at offset {position} "
                    f"of a {end}-byte frame"
                )
            length: int = read_length(view, position)[0]
            position = start + length
            if position > end:
                raise BitstreamError(
                    f"NAL unit of {length} bytes at offset {start} runs past the "
                    f"end of a {end}-byte frame"
                )
            count += 1
            if count > MAX_NAL_UNITS_PER_ACCESS_UNIT:
                raise BitstreamError(
                    f"video frame holds more than {MAX_NAL_UNITS_PER_ACCESS_UNIT} NAL units "
                    f"(MAX_NAL_UNITS_PER_ACCESS_UNIT); its {size}-byte length fields are "
                    "probably not what its record says"
                )
            if length == 0:
                continue  # nothing to carry; a start code alone would be an empty NAL unit
            first = view[start]
            if length < header_size or first & FORBIDDEN_ZERO_BIT:
                raise BitstreamError(
                    f"invalid NAL unit header at offset {start}: the frame is not "
                    f"{size}-byte length-prefixed NAL units as its record says"
                )
            parts.append(START_CODE)
            parts.append(view[start:position])
            types.append((first >> shift) & mask)
        if not types:
            raise BitstreamError("video frame holds no NAL units")
        return parts, types

    def _delimiter(self, parts: list[bytes | memoryview], types: list[int]) -> bytes:
        if self.codec is Codec.H264:
            return _H264_ACCESS_UNIT_DELIMITER
        for index, nal_unit_type in enumerate(types):
            if nal_unit_type < hevc.VCL_TYPE_LIMIT:
                temporal_id_plus1 = parts[2 * index + 1][1] & 0x07
                if temporal_id_plus1 == 0:
                    raise BitstreamError("HEVC NAL unit with nuh_temporal_id_plus1 0")
                return _HEVC_ACCESS_UNIT_DELIMITERS[temporal_id_plus1]
        return _HEVC_ACCESS_UNIT_DELIMITERS[1]

    def _parameter_sets_missing_from(self, types: list[int]) -> bytes:
        """The record's sets, less the kinds the frame carries (and then stay current)."""
        syntax = self._syntax
        carried = syntax.parameter_set_types.intersection(types)
        if not carried:
            return self._in_band
        missing = []
        for nal_unit in self.parameter_sets:
            nal_unit_type = syntax.nal_unit_type(nal_unit[0])
            if nal_unit_type == hevc.NAL_PREFIX_SEI:
                # Declarative SEI describes the record's SPS: it goes where that goes.
                nal_unit_type = syntax.sps_type
            if nal_unit_type not in carried:
                missing.append(nal_unit)
        return _annex_b(missing)


def _count_leading(types: list[int], leading_types: frozenset[int]) -> int:
    count = 0
    for nal_unit_type in types:
        if nal_unit_type not in leading_types:
            break
        count += 1
    return count


def _annex_b(nal_units: Iterable[bytes]) -> bytes:
    return b"".join(START_CODE + nal_unit for nal_unit in nal_units)


def _refuse_annex_b_record(record: bytes, syntax: NalSyntax) -> None:
    """A clear message for encoders that send start-code extradata instead of a record."""
    if record.startswith((b"\x00\x00\x01", b"\x00\x00\x00\x01")):
        raise BitstreamError(
            f"{syntax.record_name} record is an Annex B byte stream, not a decoder "
            f"configuration record (ISO/IEC 14496-15)"
        )
