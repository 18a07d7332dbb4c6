"""AAC: the AudioSpecificConfig (ISO/IEC 14496-3 1.6.2.1), its codec string, and ADTS.

RTMP and MP4 carry raw AAC frames with the AudioSpecificConfig out of band; MPEG-TS
carries ADTS, where each frame's header repeats what a decoder needs, so every frame
bound for MPEG-TS gets one (what FFmpeg's ``adts`` muxer does).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from lpms.errors import BitstreamError, MediaError
from lpms.media.bitreader import BitReader
from lpms.media.packet import Codec, CodecConfig

# ISO/IEC 14496-3 1.A.2.2: a 7-byte header without CRC and a 13-bit aac_frame_length
# that counts the header too.
ADTS_HEADER_SIZE = 7
MAX_ADTS_FRAME_LENGTH = (1 << 13) - 1
MAX_ADTS_PAYLOAD_SIZE = MAX_ADTS_FRAME_LENGTH - ADTS_HEADER_SIZE
# Distinct AudioSpecificConfigs whose ADTS header fields are kept: one per live AAC
# configuration is enough, the bound only keeps a config-switching publisher in check.
ADTS_HEADER_CACHE_SIZE = 256

# ISO/IEC 14496-3 1.6.3.3 samplingFrequencyIndex 0-12; 15 escapes to 24 explicit bits.
_SAMPLE_RATES = (
    96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
)  # fmt: skip
_ESCAPE_FREQUENCY_INDEX = 0x0F
_ESCAPE_OBJECT_TYPE = 31
# 14496-3 1.6.3.4 channelConfiguration -> channels; 0 means a PCE describes them.
_CHANNELS = {1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 6: 6, 7: 8, 11: 7, 12: 8, 13: 24, 14: 8}
_OBJECT_TYPE_SBR = 5
_OBJECT_TYPE_PS = 29
# ADTS profile_ObjectType is 2 bits, audioObjectType - 1: Main, LC, SSR, LTP.
_ADTS_OBJECT_TYPES = range(1, 5)
# ADTS channel_configuration is 3 bits, and 0 would need a PCE in the first frame.
_ADTS_CHANNEL_CONFIGURATIONS = range(1, 8)
# syncword 0xFFF, ID 0 (MPEG-4), layer 0, protection_absent 1 (no CRC).
_ADTS_SYNC_FIELDS = 0xFFF1
# adts_buffer_fullness 0x7FF (variable bit rate), number_of_raw_data_blocks 0: 13 bits.
_ADTS_VBR_FULLNESS = 0x7FF << 2
_ADTS_FRAME_LENGTH_SHIFT = 13
# The 12-bit syncword 0xFFF at the start of every ADTS header.
_ADTS_SYNCWORD_MASK = 0xFFF0
# GASpecificConfig's first bits: frameLengthFlag, dependsOnCoreCoder, extensionFlag.
_GA_FLAG_BITS = 3
_GA_FRAME_LENGTH_FLAG = 0b100
_GA_DEPENDS_ON_CORE_CODER = 0b010
_GA_EXTENSION_FLAG = 0b001


@dataclass(frozen=True, slots=True)
class AudioSpecificConfig:
    """What a player needs from an AAC AudioSpecificConfig (ISO/IEC 14496-3 1.6.2.1)."""

    audio_object_type: int
    sample_rate: int
    channels: int


# -- the AudioSpecificConfig -------------------------------------------------------------


def parse_aac_config(data: bytes | memoryview) -> AudioSpecificConfig:
    """The AudioSpecificConfig head (ISO/IEC 14496-3 1.6.2.1), incl. explicit HE-AAC.

    With explicit SBR/PS signalling the decoder outputs at the extension rate (and in
    stereo for PS), so that is what is reported.
    """
    bits = BitReader(data)
    audio_object_type = _read_object_type(bits)
    sample_rate = _read_sample_rate(bits)
    channels = _CHANNELS.get(bits.read_bits(4), 0)
    if audio_object_type in (_OBJECT_TYPE_SBR, _OBJECT_TYPE_PS):
        if audio_object_type == _OBJECT_TYPE_PS and channels == 1:
            channels = 2
        sample_rate = _read_sample_rate(bits)
        audio_object_type = _read_object_type(bits)
    return AudioSpecificConfig(audio_object_type, sample_rate, channels)


def codec_config(record: bytes) -> CodecConfig:
    """The config for an AAC sequence header; rate and channels 0 when unreadable."""
    try:
        asc = parse_aac_config(record)
    except MediaError:
        return CodecConfig(codec=Codec.AAC, extradata=record)
    return CodecConfig(
        codec=Codec.AAC, extradata=record, sample_rate=asc.sample_rate, channels=asc.channels
    )


def codecs_string(record: bytes) -> str | None:
    """``mp4a.40.<audio object type>`` (RFC 6381 3.3) from an AudioSpecificConfig.

    The first object type in the record is the one named, so explicitly signalled
    HE-AAC is ``mp4a.40.5`` and HE-AAC v2 ``mp4a.40.29``. Backward-compatible
    (implicit) SBR stays ``mp4a.40.2``: that signalling exists so AAC-LC decoders
    can play the stream, which is what the LC string promises.
    """
    try:
        parse_aac_config(record)  # refuses truncated records and reserved rates
        object_type = _read_object_type(BitReader(record))
    except MediaError:
        return None
    return f"mp4a.40.{object_type}" if object_type else None


def _read_object_type(bits: BitReader) -> int:
    """GetAudioObjectType() (14496-3 1.6.2.1.1)."""
    object_type = bits.read_bits(5)
    if object_type == _ESCAPE_OBJECT_TYPE:
        return 32 + bits.read_bits(6)
    return object_type


def _read_sample_rate(bits: BitReader) -> int:
    index = bits.read_bits(4)
    if index == _ESCAPE_FREQUENCY_INDEX:
        return bits.read_bits(24)
    if index >= len(_SAMPLE_RATES):
        raise MediaError(f"reserved AAC samplingFrequencyIndex {index}")
    return _SAMPLE_RATES[index]


# -- ADTS --------------------------------------------------------------------------------


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


def is_adts(payload: bytes) -> bool:
    """Whether a frame already starts with an ADTS header (an encoder that writes them)."""
    first_bits = payload[0] << 8 | payload[1] if len(payload) >= ADTS_HEADER_SIZE else 0
    return first_bits & _ADTS_SYNCWORD_MASK == _ADTS_SYNCWORD_MASK


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
    if object_type in (_OBJECT_TYPE_SBR, _OBJECT_TYPE_PS):
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


def _skip_frequency(bits: BitReader) -> None:
    if bits.read_bits(4) == _ESCAPE_FREQUENCY_INDEX:
        bits.skip_bits(24)


def _read_frequency_index(bits: BitReader) -> int:
    """A samplingFrequencyIndex ADTS can carry; an explicit rate maps to its table entry."""
    index = bits.read_bits(4)
    if index == _ESCAPE_FREQUENCY_INDEX:
        sample_rate = bits.read_bits(24)
        if sample_rate not in _SAMPLE_RATES:
            raise BitstreamError(f"AAC sample rate {sample_rate} Hz has no ADTS index")
        return _SAMPLE_RATES.index(sample_rate)
    if index >= len(_SAMPLE_RATES):
        raise BitstreamError(f"reserved AAC samplingFrequencyIndex {index}")
    return index


def adts_to_raw(payload: bytes) -> tuple[bytes, bytes]:
    """An ADTS frame as (AudioSpecificConfig, raw AAC frame), as MP4 and Matroska
    carry AAC: the config once, as the track's extradata (ISO/IEC 14496-3 1.6.2.1:
    object type, frequency index, channel configuration), each frame bare."""
    if not is_adts(payload):
        raise BitstreamError("not an ADTS frame")
    protection_absent = payload[1] & 1
    object_type = (payload[2] >> 6) + 1
    frequency_index = (payload[2] >> 2) & 0x0F
    channels = (payload[2] & 1) << 2 | payload[3] >> 6
    config = (object_type << 11 | frequency_index << 7 | channels << 3).to_bytes(2, "big")
    header = ADTS_HEADER_SIZE if protection_absent else ADTS_HEADER_SIZE + 2
    return config, payload[header:]
