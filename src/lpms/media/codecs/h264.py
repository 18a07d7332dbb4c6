"""H.264: NAL unit syntax, the avcC record, and the SPS's picture size and codec string.

The record (ISO/IEC 14496-15 5.3.3.1) is what RTMP and MP4 carry out of band; an
encoder writing Annex B puts the same SPS and PPS in band, and `avc_config_from_annex_b`
builds the record back from them.
"""

from __future__ import annotations

from lpms.buffer import Buffer
from lpms.errors import BitstreamError, MediaError
from lpms.media.bitreader import BitReader, strip_emulation_prevention
from lpms.media.codecs.nal import (
    FORBIDDEN_ZERO_BIT,
    NalSyntax,
    annex_b_nal_units,
    record_nal_unit,
)
from lpms.media.codecs.picture import checked_size, read_crop

# H.264 Table 7-1.
NAL_SPS = 7
NAL_PPS = 8
NAL_AUD = 9

NAL_SYNTAX = NalSyntax(
    record_name="avcC",
    header_size=1,
    type_shift=0,
    type_mask=0x1F,
    aud_type=NAL_AUD,
    sps_type=NAL_SPS,
    parameter_set_types=frozenset({NAL_SPS, NAL_PPS}),
    record_types=(NAL_SPS, NAL_PPS),
)

# pic_order_cnt_type 1 cycle length, H.264 7.4.2.1.1: 0..255.
MAX_REF_FRAMES_IN_POC_CYCLE = 255
# H.264 7.3.2.1.1: these profiles carry chroma_format_idc, bit depths, scaling lists.
_HIGH_PROFILES = frozenset({100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135})
_AVCC_HEAD_SIZE = 7  # ISO/IEC 14496-15 5.3.3.1: up to numOfPictureParameterSets
# 14496-15 5.3.3.1: sequenceParameterSetLength and pictureParameterSetLength are 16 bits.
_MAX_RECORD_NAL_UNIT_SIZE = 0xFFFF


# -- the avcC record ---------------------------------------------------------------------


def parse_avcc(record: bytes) -> tuple[int, tuple[bytes, ...]]:
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
        record_nal_unit(buf, NAL_SYNTAX, NAL_SPS) for _ in range(buf.pull_uint8() & 0x1F)
    ]
    picture_parameter_sets = [
        record_nal_unit(buf, NAL_SYNTAX, NAL_PPS) for _ in range(buf.pull_uint8())
    ]
    return length_size, (*sequence_parameter_sets, *picture_parameter_sets)


def first_sps(record: bytes) -> memoryview:
    """The first SPS in an AVCDecoderConfigurationRecord (ISO/IEC 14496-15 5.3.3.1)."""
    buf = Buffer(record, MediaError)
    if buf.pull_uint8() != 1:
        raise MediaError("AVCDecoderConfigurationRecord version is not 1")
    buf.pull_view(4)  # profile, compatibility, level, lengthSizeMinusOne
    if buf.pull_uint8() & 0x1F == 0:
        raise MediaError("AVCDecoderConfigurationRecord holds no SPS")
    return buf.pull_view(buf.pull_uint16())


def avc_config_from_annex_b(access_unit: bytes) -> bytes | None:
    """An avcC record (ISO/IEC 14496-15 5.3.3.1) built from the first SPS and PPS of an
    Annex B keyframe, as an encoder writes them in-band; None if either is missing.
    Lets a transcoded rendition describe itself (RFC 6381 CODECS) like the source.

    Only NAL units the record can carry count: a valid header and a length that fits
    the record's 16-bit field, so the record built is one `AnnexBConverter` reads."""
    sps = pps = None
    for unit in annex_b_nal_units(access_unit):
        if unit[0] & FORBIDDEN_ZERO_BIT or len(unit) > _MAX_RECORD_NAL_UNIT_SIZE:
            continue
        kind = unit[0] & 0x1F
        if kind == NAL_SPS and sps is None and len(unit) >= 4:
            sps = unit
        elif kind == NAL_PPS and pps is None:
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


def codecs_string(record: bytes) -> str | None:
    """``avc1.PPCCLL`` (RFC 6381 3.3): profile_idc, the constraint flags byte and
    level_idc, which avcC (ISO/IEC 14496-15 5.3.3.1) copies from the SPS at bytes 1-3."""
    if len(record) < _AVCC_HEAD_SIZE or record[0] != 1:
        return None  # not an avcC: too short, or Annex B start codes
    return f"avc1.{record[1]:02x}{record[2]:02x}{record[3]:02x}"


# -- the SPS -----------------------------------------------------------------------------


def parse_avc_sps(nal_unit: bytes | memoryview) -> tuple[int, int]:
    """Displayed (width, height) from an H.264 SPS NAL unit (H.264 7.3.2.1.1, E.2.1)."""
    bits = BitReader(strip_emulation_prevention(nal_unit))
    if bits.read_bits(8) & 0x1F != NAL_SPS:
        raise MediaError("not an H.264 SPS NAL unit")
    profile_idc = bits.read_bits(8)
    bits.skip_bits(16)  # constraint flags, level_idc
    bits.read_ue()  # seq_parameter_set_id
    chroma_format_idc = 1
    separate_colour_plane = False
    if profile_idc in _HIGH_PROFILES:
        chroma_format_idc = bits.read_ue()
        if chroma_format_idc == 3:
            separate_colour_plane = bits.read_flag()
        bits.read_ue()  # bit_depth_luma_minus8
        bits.read_ue()  # bit_depth_chroma_minus8
        bits.skip_bits(1)  # qpprime_y_zero_transform_bypass_flag
        if bits.read_flag():  # seq_scaling_matrix_present_flag
            _skip_scaling_lists(bits, 8 if chroma_format_idc != 3 else 12)
    bits.read_ue()  # log2_max_frame_num_minus4
    _skip_pic_order_cnt(bits)
    bits.read_ue()  # max_num_ref_frames
    bits.skip_bits(1)  # gaps_in_frame_num_value_allowed_flag
    width_in_mbs = bits.read_ue() + 1
    height_in_map_units = bits.read_ue() + 1
    frame_mbs_only = bits.read_flag()
    if not frame_mbs_only:
        bits.skip_bits(1)  # mb_adaptive_frame_field_flag
    bits.skip_bits(1)  # direct_8x8_inference_flag
    crop = read_crop(bits) if bits.read_flag() else (0, 0, 0, 0)
    # 7.4.2.1.1: CropUnitX/Y depend on chroma subsampling and field coding.
    field_factor = 1 if frame_mbs_only else 2
    if chroma_format_idc == 0 or separate_colour_plane:
        crop_unit_x, crop_unit_y = 1, field_factor
    else:
        crop_unit_x = 1 if chroma_format_idc == 3 else 2
        crop_unit_y = (2 if chroma_format_idc == 1 else 1) * field_factor
    width = width_in_mbs * 16 - crop_unit_x * (crop[0] + crop[1])
    height = field_factor * height_in_map_units * 16 - crop_unit_y * (crop[2] + crop[3])
    return checked_size(width, height)


def _skip_scaling_lists(bits: BitReader, count: int) -> None:
    """H.264 7.3.2.1.1.1 scaling_list(): only the delta_scale codes are on the wire."""
    for index in range(count):
        if not bits.read_flag():
            continue
        last_scale = next_scale = 8
        for _ in range(16 if index < 6 else 64):
            if next_scale != 0:
                next_scale = (last_scale + bits.read_se() + 256) % 256
            last_scale = next_scale if next_scale != 0 else last_scale


def _skip_pic_order_cnt(bits: BitReader) -> None:
    pic_order_cnt_type = bits.read_ue()
    if pic_order_cnt_type == 0:
        bits.read_ue()  # log2_max_pic_order_cnt_lsb_minus4
    elif pic_order_cnt_type == 1:
        bits.skip_bits(1)  # delta_pic_order_always_zero_flag
        bits.read_se()  # offset_for_non_ref_pic
        bits.read_se()  # offset_for_top_to_bottom_field
        cycle_length = bits.read_ue()
        if cycle_length > MAX_REF_FRAMES_IN_POC_CYCLE:
            raise MediaError(f"num_ref_frames_in_pic_order_cnt_cycle {cycle_length} > 255")
        for _ in range(cycle_length):
            bits.read_se()
