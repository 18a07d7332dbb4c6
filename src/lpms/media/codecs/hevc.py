"""HEVC: NAL unit syntax, the hvcC record, and the SPS's picture size and codec string."""

from __future__ import annotations

from lpms.buffer import Buffer
from lpms.errors import BitstreamError, MediaError
from lpms.media.bitreader import BitReader, strip_emulation_prevention
from lpms.media.codecs.nal import NalSyntax, record_nal_unit
from lpms.media.codecs.picture import checked_size, read_crop

# H.265 Table 7-1: 0..31 are VCL NAL units.
VCL_TYPE_LIMIT = 32
NAL_VPS = 32
NAL_SPS = 33
NAL_PPS = 34
NAL_AUD = 35
NAL_PREFIX_SEI = 39

NAL_SYNTAX = NalSyntax(
    record_name="hvcC",
    header_size=2,
    type_shift=1,
    type_mask=0x3F,
    aud_type=NAL_AUD,
    sps_type=NAL_SPS,
    parameter_set_types=frozenset({NAL_VPS, NAL_SPS, NAL_PPS}),
    # Declarative prefix SEI (HDR mastering display, content light level) must reach
    # a player as surely as the SPS it describes. Suffix SEI may not precede a picture
    # (H.265 7.4.2.4.4) and is not needed to decode, so it is left out.
    record_types=(NAL_VPS, NAL_SPS, NAL_PPS, NAL_PREFIX_SEI),
)

_HVCC_HEAD_SIZE = 23  # ISO/IEC 14496-15 8.3.3.1: up to numOfArrays
_PROFILE_SPACES = ("", "A", "B", "C")


# -- the hvcC record ---------------------------------------------------------------------


def parse_hvcc(record: bytes) -> tuple[int, tuple[bytes, ...]]:
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
            nal_unit = record_nal_unit(buf, NAL_SYNTAX, array_type)
            if array_type in NAL_SYNTAX.record_types:
                nal_units.append((NAL_SYNTAX.record_types.index(array_type), nal_unit))
    nal_units.sort(key=lambda ranked: ranked[0])  # stable: record order within a type
    return length_size, tuple(nal_unit for _, nal_unit in nal_units)


def first_sps(record: bytes) -> memoryview:
    """The first SPS NAL unit in an HEVCDecoderConfigurationRecord (14496-15 8.3.3.1)."""
    buf = Buffer(record, MediaError)
    buf.pull_view(22)  # version, profile/tier/level, chroma, bit depths, frame rate
    for _ in range(buf.pull_uint8()):
        nal_unit_type = buf.pull_uint8() & 0x3F
        for _ in range(buf.pull_uint16()):
            nal_unit = buf.pull_view(buf.pull_uint16())
            if nal_unit_type == NAL_SPS:
                return nal_unit
    raise MediaError("HEVCDecoderConfigurationRecord holds no SPS")


def codecs_string(record: bytes) -> str | None:
    """``hvc1.<space><profile>.<compat>.<tier><level>[.<constraints>]`` as ISO/IEC
    14496-15 Annex E.3 builds it from hvcC (8.3.3.1):

    the profile space as '', 'A', 'B', 'C' before general_profile_idc in decimal; the
    32 compatibility flags bit-reversed, in hex without leading zeros; 'L' (Main) or
    'H' (High tier) before general_level_idc in decimal; then the six constraint
    indicator bytes in hex, dot-separated, trailing zero bytes left out.
    """
    if len(record) < _HVCC_HEAD_SIZE or record[0] != 1:
        return None
    space = _PROFILE_SPACES[record[1] >> 6]
    tier = "H" if record[1] & 0x20 else "L"
    profile_idc = record[1] & 0x1F
    compatibility = int(f"{int.from_bytes(record[2:6], 'big'):032b}"[::-1], 2)
    level_idc = record[12]
    constraints = record[6:12].rstrip(b"\x00")
    fields = [f"hvc1.{space}{profile_idc}", f"{compatibility:X}", f"{tier}{level_idc}"]
    fields.extend(f"{byte:X}" for byte in constraints)
    return ".".join(fields)


# -- the SPS -----------------------------------------------------------------------------


def parse_hevc_sps(nal_unit: bytes | memoryview) -> tuple[int, int]:
    """Displayed (width, height) from an HEVC SPS NAL unit (H.265 7.3.2.2.1)."""
    bits = BitReader(strip_emulation_prevention(nal_unit))
    if (bits.read_bits(16) >> 9) & 0x3F != NAL_SPS:
        raise MediaError("not an HEVC SPS NAL unit")
    bits.skip_bits(4)  # sps_video_parameter_set_id
    max_sub_layers_minus1 = bits.read_bits(3)
    bits.skip_bits(1)  # sps_temporal_id_nesting_flag
    _skip_profile_tier_level(bits, max_sub_layers_minus1)
    bits.read_ue()  # sps_seq_parameter_set_id
    chroma_format_idc = bits.read_ue()
    separate_colour_plane = chroma_format_idc == 3 and bits.read_flag()
    width = bits.read_ue()  # pic_width_in_luma_samples
    height = bits.read_ue()  # pic_height_in_luma_samples
    if bits.read_flag():  # conformance_window_flag
        left, right, top, bottom = read_crop(bits)
        # Table 6-1: SubWidthC/SubHeightC; monochrome and 4:4:4 crop in luma samples.
        sub_width = 2 if chroma_format_idc in (1, 2) and not separate_colour_plane else 1
        sub_height = 2 if chroma_format_idc == 1 else 1
        width -= sub_width * (left + right)
        height -= sub_height * (top + bottom)
    return checked_size(width, height)


def _skip_profile_tier_level(bits: BitReader, max_sub_layers_minus1: int) -> None:
    """H.265 7.3.3 profile_tier_level(1, sps_max_sub_layers_minus1)."""
    bits.skip_bits(88 + 8)  # general profile (88 bits), general_level_idc
    sub_layer_flags = [(bits.read_flag(), bits.read_flag()) for _ in range(max_sub_layers_minus1)]
    if max_sub_layers_minus1 > 0:
        bits.skip_bits(2 * (8 - max_sub_layers_minus1))  # reserved_zero_2bits
    for profile_present, level_present in sub_layer_flags:
        bits.skip_bits((88 if profile_present else 0) + (8 if level_present else 0))
