"""Make FLV's codec payloads self-contained elementary streams for MPEG-TS.

RTMP carries H.264 and HEVC as length-prefixed NAL units (the ISO/IEC 14496-15 sample
format) with the parameter sets out of band in the avcC/hvcC record, and AAC as raw
frames with the AudioSpecificConfig out of band. MPEG-TS carries an Annex B byte
stream and ADTS, where everything a decoder needs is in band, and PyAV's
``add_mux_stream`` cannot hand the muxer extradata anyway. So every video frame gets
start codes, an access unit delimiter (ISO/IEC 13818-1 2.14.1 and 2.17.1 require one
in each AVC and HEVC access unit) and, on keyframes, the record's parameter sets, so
that a player can start at any segment; every AAC frame gets an ADTS header. This is
what FFmpeg's ``h264_mp4toannexb``/``hevc_mp4toannexb`` filters and its ``adts`` muxer
do, done here because stream-copy muxing through PyAV runs no bitstream filters.

It runs for every packet of every stream, so a frame is walked by its length fields
(never byte by byte), the output is one ``b"".join`` over ``memoryview`` slices, and
everything that depends only on the configuration is computed once per record.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import lru_cache

from lpms.buffer import Buffer
from lpms.errors import MediaError
from lpms.media.bitreader import BitReader
from lpms.media.packet import Codec

START_CODE = b"\x00\x00\x00\x01"
# ISO/IEC 14496-3 1.A.2.2: a 7-byte header without CRC and a 13-bit aac_frame_length
# that counts the header too.
ADTS_HEADER_SIZE = 7
MAX_ADTS_FRAME_LENGTH = (1 << 13) - 1
MAX_ADTS_PAYLOAD_SIZE = MAX_ADTS_FRAME_LENGTH - ADTS_HEADER_SIZE
# Distinct AudioSpecificConfigs whose ADTS header fields are kept: one per live AAC
# configuration is enough, the bound only keeps a config-switching publisher in check.
ADTS_HEADER_CACHE_SIZE = 256
# NAL units in one access unit. H.264 A.3.1 and H.265 Table A.8 cap slices per picture
# in the hundreds (600 at HEVC level 6.2) and SEI adds a few; without a cap a frame of
# one-byte NAL units would cost ~200 bytes of Python objects per byte it carries.
MAX_NAL_UNITS_PER_ACCESS_UNIT = 4096


class BitstreamError(MediaError):
    """A video frame, decoder record or AAC config cannot be made into an elementary stream."""


# -- NAL unit syntax -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _NalSyntax:
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


# H.264 Table 7-1.
_H264_SPS = 7
_H264_PPS = 8
_H264_AUD = 9
# H.265 Table 7-1: 0..31 are VCL NAL units.
_HEVC_VCL_TYPE_LIMIT = 32
_HEVC_VPS = 32
_HEVC_SPS = 33
_HEVC_PPS = 34
_HEVC_AUD = 35
_HEVC_PREFIX_SEI = 39

_FORBIDDEN_ZERO_BIT = 0x80

_H264 = _NalSyntax(
    record_name="avcC",
    header_size=1,
    type_shift=0,
    type_mask=0x1F,
    aud_type=_H264_AUD,
    sps_type=_H264_SPS,
    parameter_set_types=frozenset({_H264_SPS, _H264_PPS}),
    record_types=(_H264_SPS, _H264_PPS),
)
_HEVC = _NalSyntax(
    record_name="hvcC",
    header_size=2,
    type_shift=1,
    type_mask=0x3F,
    aud_type=_HEVC_AUD,
    sps_type=_HEVC_SPS,
    parameter_set_types=frozenset({_HEVC_VPS, _HEVC_SPS, _HEVC_PPS}),
    # Declarative prefix SEI (HDR mastering display, content light level) must reach
    # a player as surely as the SPS it describes. Suffix SEI may not precede a picture
    # (H.265 7.4.2.4.4) and is not needed to decode, so it is left out.
    record_types=(_HEVC_VPS, _HEVC_SPS, _HEVC_PPS, _HEVC_PREFIX_SEI),
)
_SYNTAX = {Codec.H264: _H264, Codec.HEVC: _HEVC}

# H.264 7.3.2.4: primary_pic_type 7 (any slice type) + rbsp_stop_one_bit, what
# FFmpeg's MPEG-TS muxer inserts too, since a keyframe flag does not promise I slices.
_H264_ACCESS_UNIT_DELIMITER = START_CODE + b"\x09\xf0"


def _hevc_access_unit_delimiter(temporal_id_plus1: int) -> bytes:
    """H.265 7.3.2.5: pic_type 2 (I, P or B slices) + rbsp_stop_one_bit.

    The AUD's TemporalId must be the access unit's (7.4.2.2), so there is one per
    nuh_temporal_id_plus1 value.
    """
    return START_CODE + bytes((_HEVC_AUD << 1, temporal_id_plus1, 0x50))


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


# -- video -------------------------------------------------------------------------------


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
    _syntax: _NalSyntax = field(init=False, repr=False, compare=False)
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
            if codec is Codec.H264:
                length_size, parameter_sets = _parse_avcc(extradata)
            else:
                length_size, parameter_sets = _parse_hvcc(extradata)
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
            if length < header_size or first & _FORBIDDEN_ZERO_BIT:
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
            if nal_unit_type < _HEVC_VCL_TYPE_LIMIT:
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
            if nal_unit_type == _HEVC_PREFIX_SEI:
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


def _refuse_annex_b_record(record: bytes, syntax: _NalSyntax) -> None:
    """A clear message for encoders that send start-code extradata instead of a record."""
    if record.startswith((b"\x00\x00\x01", b"\x00\x00\x00\x01")):
        raise BitstreamError(
            f"{syntax.record_name} record is an Annex B byte stream, not a decoder "
            f"configuration record (ISO/IEC 14496-15)"
        )


def _parse_avcc(record: bytes) -> tuple[int, tuple[bytes, ...]]:
    """(NAL unit length size, SPS and PPS) from an AVCDecoderConfigurationRecord.

    ISO/IEC 14496-15 5.3.3.1. The high-profile tail (chroma format, bit depths, SPS
    extensions for auxiliary pictures) is not read: the SPS says the same, and FFmpeg
    also ignores it, so a record with a missing or wrong tail still works.
    """
    buf = Buffer(record, BitstreamError)
    version = buf.pull_uint8()
    if version != 1:
        raise BitstreamError(f"configurationVersion {version}, expected 1")
    buf.pull_view(3)  # AVCProfileIndication, profile_compatibility, AVCLevelIndication
    length_size = (buf.pull_uint8() & 0x03) + 1
    sequence_parameter_sets = [
        _record_nal_unit(buf, _H264, _H264_SPS) for _ in range(buf.pull_uint8() & 0x1F)
    ]
    picture_parameter_sets = [
        _record_nal_unit(buf, _H264, _H264_PPS) for _ in range(buf.pull_uint8())
    ]
    return length_size, (*sequence_parameter_sets, *picture_parameter_sets)


def _parse_hvcc(record: bytes) -> tuple[int, tuple[bytes, ...]]:
    """(NAL unit length size, VPS/SPS/PPS/prefix SEI) from an HEVCDecoderConfigurationRecord.

    ISO/IEC 14496-15 8.3.3.1. Version 0 is taken too: writers of drafts before the
    3rd edition used it, and FFmpeg reads those. Arrays of types a keyframe does not
    need (suffix SEI) are skipped.
    """
    buf = Buffer(record, BitstreamError)
    version = buf.pull_uint8()
    if version > 1:
        raise BitstreamError(f"configurationVersion {version}, expected 1")
    # profile/tier/level, min_spatial_segmentation_idc, parallelismType, chromaFormat,
    # bit depths, avgFrameRate: 20 bytes up to the byte holding lengthSizeMinusOne.
    buf.pull_view(20)
    length_size = (buf.pull_uint8() & 0x03) + 1
    nal_units: list[tuple[int, bytes]] = []
    for _ in range(buf.pull_uint8()):  # numOfArrays
        array_type = buf.pull_uint8() & 0x3F  # after array_completeness, reserved
        for _ in range(buf.pull_uint16()):  # numNalus
            nal_unit = _record_nal_unit(buf, _HEVC, array_type)
            if array_type in _HEVC.record_types:
                nal_units.append((_HEVC.record_types.index(array_type), nal_unit))
    nal_units.sort(key=lambda ranked: ranked[0])  # stable: record order within a type
    return length_size, tuple(nal_unit for _, nal_unit in nal_units)


def _record_nal_unit(buf: Buffer, syntax: _NalSyntax, expected_type: int) -> bytes:
    """One NAL unit of a record's list, which must be of the type the list is for."""
    nal_unit = buf.pull_bytes(buf.pull_uint16())
    if len(nal_unit) < syntax.header_size or nal_unit[0] & _FORBIDDEN_ZERO_BIT:
        raise BitstreamError(f"invalid NAL unit of {len(nal_unit)} bytes")
    nal_unit_type = syntax.nal_unit_type(nal_unit[0])
    if nal_unit_type != expected_type:
        raise BitstreamError(
            f"list of NAL unit type {expected_type} holds a NAL unit of type {nal_unit_type}"
        )
    return nal_unit


# -- audio -------------------------------------------------------------------------------

# ISO/IEC 14496-3 1.6.3.3 samplingFrequencyIndex 0-12; 15 escapes to 24 explicit bits.
_AAC_SAMPLE_RATES = (
    96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
)  # fmt: skip
_AAC_ESCAPE_FREQUENCY_INDEX = 0x0F
_AAC_ESCAPE_OBJECT_TYPE = 31
_AAC_OBJECT_TYPE_SBR = 5
_AAC_OBJECT_TYPE_PS = 29
# ADTS profile_ObjectType is 2 bits, audioObjectType - 1: Main, LC, SSR, LTP.
_ADTS_OBJECT_TYPES = range(1, 5)
# ADTS channel_configuration is 3 bits, and 0 would need a PCE in the first frame.
_ADTS_CHANNEL_CONFIGURATIONS = range(1, 8)
# syncword 0xFFF, ID 0 (MPEG-4), layer 0, protection_absent 1 (no CRC).
_ADTS_SYNC_FIELDS = 0xFFF1
# adts_buffer_fullness 0x7FF (variable bit rate), number_of_raw_data_blocks 0: 13 bits.
_ADTS_VBR_FULLNESS = 0x7FF << 2
_ADTS_FRAME_LENGTH_SHIFT = 13
# GASpecificConfig's first bits: frameLengthFlag, dependsOnCoreCoder, extensionFlag.
_GA_FLAG_BITS = 3
_GA_FRAME_LENGTH_FLAG = 0b100
_GA_DEPENDS_ON_CORE_CODER = 0b010
_GA_EXTENSION_FLAG = 0b001


def adts_frame(audio_specific_config: bytes, raw_frame: bytes) -> bytes:
    """One raw AAC frame with the ADTS header (ISO/IEC 14496-3 1.A.2.2, no CRC) in front.

    The header's fixed fields depend only on the AudioSpecificConfig, so they are
    worked out once per config (cached) and each frame only adds its length.
    """
    if not raw_frame:
        raise BitstreamError("empty AAC frame")
    if len(raw_frame) > MAX_ADTS_PAYLOAD_SIZE:
        raise BitstreamError(
            f"AAC frame of {len(raw_frame)} bytes exceeds ADTS's {MAX_ADTS_PAYLOAD_SIZE}"
        )
    frame_length = len(raw_frame) + ADTS_HEADER_SIZE
    header = _adts_fixed_fields(bytes(audio_specific_config)) | (
        frame_length << _ADTS_FRAME_LENGTH_SHIFT
    )
    return b"".join((header.to_bytes(ADTS_HEADER_SIZE, "big"), raw_frame))


@lru_cache(maxsize=ADTS_HEADER_CACHE_SIZE)
def _adts_fixed_fields(audio_specific_config: bytes) -> int:
    """The 56-bit ADTS header with aac_frame_length left 0, for one AudioSpecificConfig."""
    object_type, frequency_index, channel_configuration = _adts_parameters(audio_specific_config)
    fixed = (
        _ADTS_SYNC_FIELDS << 16
        | (object_type - 1) << 14
        | frequency_index << 10
        | channel_configuration << 6
    )  # private_bit, original_copy, home and both copyright bits are 0
    return fixed << 24 | _ADTS_VBR_FULLNESS


def _adts_parameters(audio_specific_config: bytes) -> tuple[int, int, int]:
    """(audioObjectType, samplingFrequencyIndex, channelConfiguration) for ADTS."""
    try:
        return _read_adts_parameters(BitReader(audio_specific_config))
    except BitstreamError:
        raise
    except MediaError as exc:
        raise BitstreamError(f"truncated AudioSpecificConfig: {exc}") from exc


def _read_adts_parameters(bits: BitReader) -> tuple[int, int, int]:
    """The AudioSpecificConfig head (ISO/IEC 14496-3 1.6.2.1) as ADTS can say it.

    ADTS cannot signal SBR or PS, so explicitly signalled HE-AAC (v2) is written as
    its core object type at the core sample rate, as FFmpeg's adts muxer does;
    decoders find SBR/PS in the frames (implicit signalling).
    """
    object_type = _read_object_type(bits)
    frequency_index = _read_frequency_index(bits)
    channel_configuration = bits.read_bits(4)
    if object_type in (_AAC_OBJECT_TYPE_SBR, _AAC_OBJECT_TYPE_PS):
        _skip_frequency(bits)  # extensionSamplingFrequencyIndex: the SBR output rate
        object_type = _read_object_type(bits)
    if object_type not in _ADTS_OBJECT_TYPES:
        raise BitstreamError(
            f"AAC object type {object_type} cannot be carried in ADTS "
            f"(only Main, LC, SSR and LTP, with or without SBR/PS)"
        )
    if channel_configuration not in _ADTS_CHANNEL_CONFIGURATIONS:
        raise BitstreamError(
            f"AAC channelConfiguration {channel_configuration} cannot be carried in ADTS "
            f"(0 needs a program config element, above 7 does not fit 3 bits)"
        )
    _refuse_ga_flags(bits)
    return object_type, frequency_index, channel_configuration


def _refuse_ga_flags(bits: BitReader) -> None:
    """GASpecificConfig (14496-3 4.4.1) options an ADTS header has no field for.

    A config cut short after channelConfiguration leaves them 0, as FFmpeg reads it.
    """
    available = min(_GA_FLAG_BITS, bits.bits_left)
    flags = bits.read_bits(available) << (_GA_FLAG_BITS - available)
    if flags & _GA_FRAME_LENGTH_FLAG:
        raise BitstreamError("AAC with 960-sample frames cannot be carried in ADTS")
    if flags & _GA_DEPENDS_ON_CORE_CODER:
        raise BitstreamError("scalable AAC (dependsOnCoreCoder) cannot be carried in ADTS")
    if flags & _GA_EXTENSION_FLAG:
        raise BitstreamError("AAC with extensionFlag set cannot be carried in ADTS")


def _read_object_type(bits: BitReader) -> int:
    """GetAudioObjectType() (14496-3 1.6.2.1.1)."""
    object_type = bits.read_bits(5)
    if object_type == _AAC_ESCAPE_OBJECT_TYPE:
        return 32 + bits.read_bits(6)
    return object_type


def _skip_frequency(bits: BitReader) -> None:
    if bits.read_bits(4) == _AAC_ESCAPE_FREQUENCY_INDEX:
        bits.skip_bits(24)


def _read_frequency_index(bits: BitReader) -> int:
    """A samplingFrequencyIndex ADTS can carry; an explicit rate maps to its table entry."""
    index = bits.read_bits(4)
    if index == _AAC_ESCAPE_FREQUENCY_INDEX:
        sample_rate = bits.read_bits(24)
        if sample_rate not in _AAC_SAMPLE_RATES:
            raise BitstreamError(f"AAC sample rate {sample_rate} Hz has no ADTS index")
        return _AAC_SAMPLE_RATES.index(sample_rate)
    if index >= len(_AAC_SAMPLE_RATES):
        raise BitstreamError(f"reserved AAC samplingFrequencyIndex {index}")
    return index


_H264_SPS = 7
_H264_PPS = 8
_START_CODE_3 = b"\x00\x00\x01"
# 14496-15 5.3.3.1: sequenceParameterSetLength and pictureParameterSetLength are 16 bits.
_MAX_RECORD_NAL_UNIT_SIZE = 0xFFFF


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


def avc_config_from_annex_b(access_unit: bytes) -> bytes | None:
    """An avcC record (ISO/IEC 14496-15 5.3.3.1) built from the first SPS and PPS of an
    Annex B keyframe, as an encoder writes them in-band; None if either is missing.
    Lets a transcoded rendition describe itself (RFC 6381 CODECS) like the source.

    Only NAL units the record can carry count: a valid header and a length that fits
    the record's 16-bit field, so the record built is one `AnnexBConverter` reads."""
    sps = pps = None
    for unit in annex_b_nal_units(access_unit):
        if unit[0] & _FORBIDDEN_ZERO_BIT or len(unit) > _MAX_RECORD_NAL_UNIT_SIZE:
            continue
        kind = unit[0] & 0x1F
        if kind == _H264_SPS and sps is None and len(unit) >= 4:
            sps = unit
        elif kind == _H264_PPS and pps is None:
            pps = unit
        if sps is not None and pps is not None:
            break
    if sps is None or pps is None:
        return None
    return b"".join(
        (
            bytes((1, sps[1], sps[2], sps[3], 0xFF, 0xE1)),  # 4-byte lengths, one SPS
            len(sps).to_bytes(2, "big"),
            sps,
            b"\x01",
            len(pps).to_bytes(2, "big"),
            pps,
        )
    )
