"""AV1: the av1C record's sequence header OBU, its picture size, and the codec string."""

from __future__ import annotations

from lpms.buffer import Buffer
from lpms.errors import MediaError
from lpms.media.bitreader import BitReader
from lpms.media.codecs.picture import checked_size

# AV1 4.10.5: a leb128() OBU size is at most 8 bytes.
MAX_LEB128_BYTES = 8
_OBU_SEQUENCE_HEADER = 1
_RECORD_MARKER_VERSION = 0x81  # marker 1, version 1 (AV1-ISOBMFF 2.3.3)


def sequence_header_obu(record: bytes) -> memoryview:
    """The sequence header OBU's payload from an AV1CodecConfigurationRecord's configOBUs."""
    buf = Buffer(record, MediaError)
    if buf.pull_uint8() != _RECORD_MARKER_VERSION:
        raise MediaError("AV1CodecConfigurationRecord has no marker/version 1")
    buf.pull_view(3)
    while not buf.eof():
        header = buf.pull_uint8()
        if header & 0x04:  # obu_extension_flag
            buf.pull_uint8()
        size = _read_leb128(buf) if header & 0x02 else buf.remaining
        payload = buf.pull_view(size)
        if (header >> 3) & 0x0F == _OBU_SEQUENCE_HEADER:
            return payload
    raise MediaError("AV1CodecConfigurationRecord holds no sequence header OBU")


def _read_leb128(buf: Buffer) -> int:
    """AV1 4.10.5 leb128(): little-endian base-128, at most 8 bytes."""
    value = 0
    for index in range(MAX_LEB128_BYTES):
        byte = buf.pull_uint8()
        value |= (byte & 0x7F) << (7 * index)
        if not byte & 0x80:
            return value
    raise MediaError(f"leb128 value longer than {MAX_LEB128_BYTES} bytes")


def parse_av1_sequence_header(obu_payload: bytes | memoryview) -> tuple[int, int]:
    """(max_frame_width, max_frame_height) from an AV1 sequence header OBU (AV1 5.5.1)."""
    bits = BitReader(obu_payload)
    bits.skip_bits(4)  # seq_profile, still_picture
    if bits.read_flag():  # reduced_still_picture_header
        bits.skip_bits(5)  # seq_level_idx[0]
    else:
        _skip_operating_points(bits)
    width_bits = bits.read_bits(4) + 1
    height_bits = bits.read_bits(4) + 1
    width = bits.read_bits(width_bits) + 1
    height = bits.read_bits(height_bits) + 1
    return checked_size(width, height)


def _skip_operating_points(bits: BitReader) -> None:
    """AV1 5.5.1 from timing_info_present_flag to the last operating point."""
    buffer_delay_length = 0
    decoder_model_info_present = False
    if bits.read_flag():  # timing_info_present_flag
        bits.skip_bits(64)  # num_units_in_display_tick, time_scale
        if bits.read_flag():  # equal_picture_interval
            bits.read_ue()  # num_ticks_per_picture_minus_1, uvlc()
        decoder_model_info_present = bits.read_flag()
        if decoder_model_info_present:
            buffer_delay_length = bits.read_bits(5) + 1
            bits.skip_bits(32 + 5 + 5)
    initial_display_delay_present = bits.read_flag()
    for _ in range(bits.read_bits(5) + 1):  # operating_points_cnt_minus_1
        bits.skip_bits(12)  # operating_point_idc
        if bits.read_bits(5) > 7:  # seq_level_idx
            bits.skip_bits(1)  # seq_tier
        if decoder_model_info_present and bits.read_flag():
            bits.skip_bits(2 * buffer_delay_length + 1)  # operating_parameters_info()
        if initial_display_delay_present and bits.read_flag():
            bits.skip_bits(4)  # initial_display_delay_minus_1


def codecs_string(record: bytes) -> str | None:
    """``av01.P.LLT.DD`` (AV1 ISOBMFF binding, "Codecs Parameter String") from av1C:
    seq_profile and seq_level_idx_0 in its second byte, seq_tier_0 and the bit-depth
    flags in its third."""
    if len(record) < 4 or record[0] != _RECORD_MARKER_VERSION:
        return None
    profile, level = record[1] >> 5, record[1] & 0x1F
    tier = "H" if record[2] & 0x80 else "M"
    high_bitdepth, twelve_bit = record[2] & 0x40, record[2] & 0x20
    depth = 12 if profile == 2 and high_bitdepth and twelve_bit else 10 if high_bitdepth else 8
    return f"av01.{profile}.{level:02d}{tier}.{depth:02d}"
