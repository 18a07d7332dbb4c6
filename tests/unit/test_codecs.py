"""The codec shelf's dispatchers: RFC 6381 codec strings, checked against real
encoders' records, and picture sizes from any decoder configuration record."""

from __future__ import annotations

import io

import av
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lpms.errors import MediaError
from lpms.media.codecs import codecs_string, video_dimensions
from lpms.media.codecs.av1 import parse_av1_sequence_header
from lpms.media.codecs.h264 import parse_avc_sps
from lpms.media.codecs.hevc import parse_hevc_sps
from lpms.media.packet import Codec

# -- codec strings -----------------------------------------------------------------------


def _mp4_extradata(codec: str, options: dict[str, str]) -> bytes:
    """The decoder record an encoder's first frames give, as MP4 stores it (avcC,
    hvcC), read back by FFmpeg's demuxer."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as container:
        stream = container.add_stream(codec, rate=25, options=options)
        stream.width = 64
        stream.height = 64
        stream.pix_fmt = "yuv420p"
        for pts in range(3):
            frame = av.VideoFrame(64, 64, "yuv420p")
            frame.pts = pts
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    buffer.seek(0)
    with av.open(buffer) as container:
        extradata: bytes = container.streams.video[0].codec_context.extradata
    return extradata


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"profile": "high", "level": "3.1"}, "avc1.64001f"),
        # x264 sets constraint_set1 (0x40) for Main: decodable by Main decoders.
        ({"profile": "main", "level": "4.0"}, "avc1.4d4028"),
        ({"profile": "baseline", "level": "3.0"}, "avc1.42c01e"),
    ],
)
def test_codecs_string_for_x264_avcc(options: dict[str, str], expected: str) -> None:
    extradata = _mp4_extradata("libx264", options)
    assert extradata[0] == 1  # avcC, not Annex B
    assert codecs_string(Codec.H264, extradata) == expected


def test_codecs_string_for_x265_hvcc() -> None:
    extradata = _mp4_extradata("libx265", {"x265-params": "level-idc=31:log-level=none"})
    # Main profile (compatible with Main and Main 10: flags 1 and 2, reversed 0x6),
    # Main tier, level 3.1 (93), progressive and frame-only (constraint byte 0x90).
    assert codecs_string(Codec.HEVC, extradata) == "hvc1.1.6.L93.90"


def _hvcc(profile_byte: int, compatibility: int, constraints: bytes, level: int) -> bytes:
    return (
        bytes([1, profile_byte])
        + compatibility.to_bytes(4, "big")
        + constraints
        + bytes([level])
        + bytes(10)
    )


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        # Apple's HLS authoring examples.
        (_hvcc(0x01, 0x60000000, bytes.fromhex("b00000000000"), 93), "hvc1.1.6.L93.B0"),
        (_hvcc(0x02, 0x20000000, bytes.fromhex("b00000000000"), 123), "hvc1.2.4.L123.B0"),
        # High tier; constraint bytes in the middle kept, leading zeros dropped.
        (_hvcc(0x22, 0x20000000, bytes.fromhex("b0000a000000"), 150), "hvc1.2.4.H150.B0.0.A"),
        # Profile space 1 is written 'A'; no constraint flags at all.
        (_hvcc(0x41, 0x40000000, bytes(6), 90), "hvc1.A1.2.L90"),
        # Range extensions profile (4) with its own compatibility bit.
        (_hvcc(0x04, 0x08000000, bytes.fromhex("980000000000"), 120), "hvc1.4.10.L120.98"),
    ],
)
def test_codecs_string_for_hvcc_fields(record: bytes, expected: str) -> None:
    assert codecs_string(Codec.HEVC, record) == expected


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ("1210", "mp4a.40.2"),  # AAC-LC, 44.1 kHz, stereo
        ("1190", "mp4a.40.2"),  # AAC-LC, 48 kHz, stereo
        ("121056e500", "mp4a.40.2"),  # LC with an explicit "no SBR" sync extension
        ("2b1188", "mp4a.40.5"),  # HE-AAC, explicit: SBR 24 -> 48 kHz over AAC-LC
        ("eb1188", "mp4a.40.29"),  # HE-AAC v2 (parametric stereo)
        ("0a10", "mp4a.40.1"),  # AAC Main
        ("f94880", "mp4a.40.42"),  # escaped object type: 32 + 10 (USAC)
    ],
)
def test_codecs_string_for_audio_specific_config(config: str, expected: str) -> None:
    assert codecs_string(Codec.AAC, bytes.fromhex(config)) == expected


def test_codecs_string_for_ffmpeg_aac_encoder() -> None:
    encoder = av.CodecContext.create("aac", "w")
    encoder.sample_rate = 48000
    encoder.layout = "stereo"
    encoder.format = "fltp"
    encoder.open()
    assert codecs_string(Codec.AAC, encoder.extradata) == "mp4a.40.2"


def test_codecs_string_for_mp3() -> None:
    assert codecs_string(Codec.MP3, b"") == "mp4a.40.34"


@pytest.mark.parametrize(
    ("codec", "extradata"),
    [
        (Codec.H264, b""),
        (Codec.H264, bytes.fromhex("0164001f")),  # truncated avcC
        (Codec.H264, bytes.fromhex("0000000167640028acd9")),  # Annex B, not avcC
        (Codec.HEVC, b""),
        (Codec.HEVC, bytes.fromhex("0101600000009000000000005d")),  # truncated hvcC
        (Codec.HEVC, bytes.fromhex("00000001") + bytes(30)),  # Annex B
        (Codec.AAC, b""),
        (Codec.AAC, b"\x12"),  # truncated
        (Codec.AAC, bytes.fromhex("16900000")),  # reserved sampling frequency index 13
        (Codec.AAC, bytes.fromhex("0210")),  # object type 0 is no codec
        (Codec.AV1, bytes.fromhex("0100")),  # no av1C marker and version
        (Codec.VP9, b""),
        (Codec.VP9, bytes.fromhex("000a00")),  # bit depth 0
        (Codec.OPAQUE, b"\x01\x02"),
        (Codec.AMF0, b""),
    ],
)
def test_codecs_string_unknown_or_malformed(codec: Codec, extradata: bytes) -> None:
    assert codecs_string(codec, extradata) is None


@pytest.mark.parametrize(
    ("codec", "extradata", "expected"),
    [
        # av1C (AV1 ISOBMFF binding 2.3): profile 0, level 8 (4.0), Main tier, 8 bit.
        (Codec.AV1, bytes.fromhex("81080c00"), "av01.0.08M.08"),
        # Profile 0, level 13 (5.1), High tier, 10 bit.
        (Codec.AV1, bytes.fromhex("810dc000"), "av01.0.13H.10"),
        # vpcC as a FullBox payload (version 1, flags 0), and bare: profile 0, level 3.1.
        (Codec.VP9, bytes.fromhex("01000000001f8002020200"), "vp09.00.31.08"),
        (Codec.VP9, bytes.fromhex("021f a0 020202".replace(" ", "")), "vp09.02.31.10"),
        (Codec.OPUS, b"OpusHead", "opus"),
    ],
)
def test_codecs_string_of_cmaf_codecs(codec: Codec, extradata: bytes, expected: str) -> None:
    assert codecs_string(codec, extradata) == expected


# -- picture sizes -----------------------------------------------------------------------


@given(st.binary(max_size=48), st.sampled_from([Codec.H264, Codec.HEVC, Codec.AV1]))
def test_arbitrary_config_records_never_break_the_size_parsers(record: bytes, codec: Codec) -> None:
    width, height = video_dimensions(codec, record)
    assert width >= 0
    assert height >= 0


@given(st.binary(max_size=96))
def test_arbitrary_parameter_sets_raise_only_media_error(rbsp: bytes) -> None:
    """Random bits behind a valid NAL header reach deep into each SPS parser."""
    for parse, nal_header in (
        (parse_avc_sps, b"\x67"),
        (parse_hevc_sps, b"\x42\x01"),
        (parse_av1_sequence_header, b""),
    ):
        try:
            width, height = parse(nal_header + rbsp)
        except MediaError:
            continue
        assert 0 < width <= 32768
        assert 0 < height <= 32768
