"""AAC: the AudioSpecificConfig as players read it, its codec string, and ADTS.

ADTS frames are checked by decoding what they make with FFmpeg (PyAV): AAC frames
from FFmpeg's encoder, wrapped in ADTS, must decode as a raw 'aac' stream, which has
no extradata to fall back on.
"""

from __future__ import annotations

import array
import contextlib
import io
import math
from dataclasses import dataclass

import av
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lpms.errors import BitstreamError, MediaError
from lpms.media.codecs.aac import MAX_ADTS_PAYLOAD_SIZE, adts_frame, is_adts, parse_aac_config

# -- ADTS --------------------------------------------------------------------------------

# ISO/IEC 14496-3 1.A.2.2.1 adts_fixed_header + adts_variable_header, MSB first.
ADTS_FIELDS = (
    ("syncword", 12),
    ("id", 1),
    ("layer", 2),
    ("protection_absent", 1),
    ("profile", 2),
    ("sampling_frequency_index", 4),
    ("private_bit", 1),
    ("channel_configuration", 3),
    ("original_copy", 1),
    ("home", 1),
    ("copyright_identification_bit", 1),
    ("copyright_identification_start", 1),
    ("aac_frame_length", 13),
    ("adts_buffer_fullness", 11),
    ("number_of_raw_data_blocks_in_frame", 2),
)


def adts_header_fields(frame: bytes) -> dict[str, int]:
    value, remaining = int.from_bytes(frame[:7], "big"), 56
    fields = {}
    for name, width in ADTS_FIELDS:
        remaining -= width
        fields[name] = (value >> remaining) & ((1 << width) - 1)
    return fields


def audio_specific_config(*fields: tuple[int, int]) -> bytes:
    """(value, bit width) fields packed MSB first, zero-padded to whole bytes."""
    value, width = 0, 0
    for field_value, field_width in fields:
        value, width = value << field_width | field_value, width + field_width
    padding = -width % 8
    return (value << padding).to_bytes((width + padding) // 8, "big")


def expected_header(
    profile: int, frequency_index: int, channels: int, frame_length: int
) -> dict[str, int]:
    return {
        "syncword": 0xFFF,
        "id": 0,
        "layer": 0,
        "protection_absent": 1,
        "profile": profile,
        "sampling_frequency_index": frequency_index,
        "private_bit": 0,
        "channel_configuration": channels,
        "original_copy": 0,
        "home": 0,
        "copyright_identification_bit": 0,
        "copyright_identification_start": 0,
        "aac_frame_length": frame_length,
        "adts_buffer_fullness": 0x7FF,
        "number_of_raw_data_blocks_in_frame": 0,
    }


def test_adts_header_for_aac_lc_44100_stereo() -> None:
    frame = adts_frame(b"\x12\x10", b"\x21" * 300)
    assert adts_header_fields(frame) == expected_header(1, 4, 2, 307)
    assert frame[:7] == bytes.fromhex("fff15080267ffc")
    assert frame[7:] == b"\x21" * 300


@dataclass(frozen=True)
class EncodedAudio:
    config: bytes
    frames: list[bytes]
    sample_rate: int
    channels: int


def encode_aac(sample_rate: int, layout: str, seconds: float = 1.0) -> EncodedAudio:
    """A 440 Hz sine through FFmpeg's AAC encoder: raw frames and the AudioSpecificConfig."""
    encoder = av.CodecContext.create("aac", "w")
    encoder.sample_rate, encoder.layout, encoder.format = sample_rate, layout, "fltp"
    encoder.open()
    frame_size = encoder.frame_size
    packets = []
    for start in range(0, int(sample_rate * seconds), frame_size):
        frame = av.AudioFrame(format="fltp", layout=layout, samples=frame_size)
        sine = array.array(
            "f",
            (
                0.5 * math.sin(2 * math.pi * 440 * (start + i) / sample_rate)
                for i in range(frame_size)
            ),
        ).tobytes()
        for plane in frame.planes:
            plane.update(sine)
        frame.sample_rate, frame.pts = sample_rate, start
        packets += [bytes(p) for p in encoder.encode(frame)]
    packets += [bytes(p) for p in encoder.encode(None)]
    channels = len(encoder.layout.channels)
    return EncodedAudio(bytes(encoder.extradata), packets, sample_rate, channels)


@pytest.mark.parametrize(
    ("sample_rate", "layout", "frequency_index"),
    [(44100, "stereo", 4), (48000, "mono", 3), (22050, "5.1", 7)],
)
def test_adts_frames_from_ffmpeg_decode(
    sample_rate: int, layout: str, frequency_index: int
) -> None:
    audio = encode_aac(sample_rate, layout)
    stream = b"".join(adts_frame(audio.config, raw) for raw in audio.frames)
    header = adts_header_fields(stream)
    channel_configuration = {1: 1, 2: 2, 6: 6}[audio.channels]
    assert header == expected_header(
        1, frequency_index, channel_configuration, header["aac_frame_length"]
    )
    with av.open(io.BytesIO(stream), format="aac") as container:
        decoded = list(container.decode(audio=0))
    assert len(decoded) == len(audio.frames)
    assert sum(f.samples for f in decoded) == 1024 * len(audio.frames) >= sample_rate
    assert {(f.sample_rate, len(f.layout.channels)) for f in decoded} == {
        (sample_rate, audio.channels)
    }


@pytest.mark.parametrize(
    ("config", "profile", "frequency_index", "channels"),
    [
        # HE-AAC: SBR at 44100 Hz over an AAC-LC core at 22050 Hz. Cut short after
        # the core object type, as some encoders send it: the missing flags read as 0.
        (audio_specific_config((5, 5), (7, 4), (2, 4), (4, 4), (2, 5)), 1, 7, 2),
        # HE-AACv2: SBR + PS at 48000 Hz over a mono AAC-LC core at 24000 Hz.
        (audio_specific_config((29, 5), (6, 4), (1, 4), (3, 4), (2, 5)), 1, 6, 1),
        # Explicit SBR rate as 24 bits is skipped over, not looked up.
        (audio_specific_config((5, 5), (8, 4), (1, 4), (15, 4), (35000, 24), (2, 5)), 1, 8, 1),
        (audio_specific_config((1, 5), (3, 4), (1, 4)), 0, 3, 1),  # AAC Main
        (audio_specific_config((4, 5), (11, 4), (7, 4)), 3, 11, 7),  # AAC LTP, 7.1
        # An explicit rate that the index table has is written as its index.
        (audio_specific_config((2, 5), (15, 4), (48000, 24), (2, 4)), 1, 3, 2),
        # FFmpeg's encoder adds the implicit-SBR sync extension; ADTS ignores it.
        (bytes.fromhex("121056e500"), 1, 4, 2),
    ],
)
def test_adts_header_fields(
    config: bytes, profile: int, frequency_index: int, channels: int
) -> None:
    frame = adts_frame(config, b"\x00" * 10)
    assert adts_header_fields(frame) == expected_header(profile, frequency_index, channels, 17)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (audio_specific_config((2, 5), (4, 4), (0, 4)), "channelConfiguration 0"),
        (audio_specific_config((2, 5), (4, 4), (11, 4)), "channelConfiguration 11"),
        (audio_specific_config((23, 5), (4, 4), (2, 4)), "object type 23"),
        (audio_specific_config((31, 5), (10, 6), (4, 4), (2, 4)), "object type 42"),
        (audio_specific_config((5, 5), (4, 4), (2, 4), (4, 4), (22, 5)), "object type 22"),
        (audio_specific_config((2, 5), (13, 4), (2, 4)), "reserved AAC samplingFrequencyIndex"),
        (audio_specific_config((2, 5), (15, 4), (44000, 24), (2, 4)), "44000 Hz has no ADTS"),
        (audio_specific_config((2, 5), (4, 4), (2, 4), (1, 1)), "960-sample frames"),
        (audio_specific_config((2, 5), (4, 4), (2, 4), (0, 1), (1, 1)), "dependsOnCoreCoder"),
        (audio_specific_config((2, 5), (4, 4), (2, 4), (0, 2), (1, 1)), "extensionFlag"),
        (b"", "truncated AudioSpecificConfig"),
        (b"\x12", "truncated AudioSpecificConfig"),
    ],
)
def test_configs_adts_cannot_carry_are_refused(config: bytes, message: str) -> None:
    with pytest.raises(BitstreamError, match=message):
        adts_frame(config, b"\x00" * 10)


def test_adts_frame_size_limits() -> None:
    largest = adts_frame(b"\x12\x10", bytes(MAX_ADTS_PAYLOAD_SIZE))
    assert adts_header_fields(largest)["aac_frame_length"] == 8191
    with pytest.raises(BitstreamError, match="exceeds ADTS's 8184"):
        adts_frame(b"\x12\x10", bytes(MAX_ADTS_PAYLOAD_SIZE + 1))
    with pytest.raises(BitstreamError, match="empty AAC frame"):
        adts_frame(b"\x12\x10", b"")


@given(st.binary(max_size=8), st.binary(min_size=1, max_size=64))
def test_arbitrary_configs_raise_only_bitstream_error(config: bytes, raw: bytes) -> None:
    try:
        frame = adts_frame(config, raw)
    except BitstreamError:
        return
    header = adts_header_fields(frame)
    assert header["syncword"] == 0xFFF
    assert header["aac_frame_length"] == len(frame) == len(raw) + 7
    assert frame[7:] == raw


def test_is_adts() -> None:
    assert is_adts(adts_frame(b"\x12\x10", b"\x21"))
    assert not is_adts(b"\x21" * 8)
    assert not is_adts(b"\xff\xf1")  # shorter than a header


# -- the AudioSpecificConfig -------------------------------------------------------------


@pytest.mark.parametrize(
    ("asc", "object_type", "sample_rate", "channels"),
    [
        (bytes.fromhex("1210"), 2, 44100, 2),
        (bytes.fromhex("1188"), 2, 48000, 1),
        # samplingFrequencyIndex 0xF: the rate follows in 24 bits.
        (audio_specific_config((2, 5), (15, 4), (22222, 24), (2, 4)), 2, 22222, 2),
        # Explicit HE-AAC: AOT 5, core 24 kHz stereo, extension 48 kHz, then AOT 2.
        (audio_specific_config((5, 5), (6, 4), (2, 4), (3, 4), (2, 5)), 2, 48000, 2),
        # HE-AAC v2 (AOT 29, PS): a mono core decodes to stereo.
        (audio_specific_config((29, 5), (6, 4), (1, 4), (3, 4), (2, 5)), 2, 48000, 2),
        # audioObjectType escape (31 -> 32 + 6 bits) and channelConfiguration 7 = 7.1.
        (audio_specific_config((31, 5), (10, 6), (3, 4), (7, 4)), 42, 48000, 8),
    ],
    ids=["lc-44100-stereo", "lc-48000-mono", "escape-rate", "sbr", "ps", "escape-aot"],
)
def test_parse_aac_config(asc: bytes, object_type: int, sample_rate: int, channels: int) -> None:
    config = parse_aac_config(asc)
    assert (config.audio_object_type, config.sample_rate, config.channels) == (
        object_type,
        sample_rate,
        channels,
    )


@given(st.binary(max_size=16))
def test_arbitrary_aac_configs_raise_only_media_error(record: bytes) -> None:
    with contextlib.suppress(MediaError):
        parse_aac_config(record)
