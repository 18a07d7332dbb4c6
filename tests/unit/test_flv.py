"""FLV tag bodies <-> MediaPacket, checked against FLV files that FFmpeg (PyAV) writes.

FFmpeg 8's FLV muxer writes legacy AVC/AAC/MP3 tags and Enhanced RTMP tags for HEVC,
AV1 and VP9, the same bodies OBS and FFmpeg publish over RTMP, so the tags of a small
file encoded here are real-world input for the demuxer.
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import av
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lpms.errors import MediaError
from lpms.media.codecs import video_dimensions
from lpms.media.codecs.aac import parse_aac_config
from lpms.media.codecs.h264 import parse_avc_sps
from lpms.media.flv import FLVDemuxer, tag_body
from lpms.media.packet import Codec, CodecConfig, MediaPacket, TrackKind
from tests.unit.rtmp_client import AVC_CONFIG

FRAME_RATE = 25  # 40 ms a frame: exact in FLV's millisecond timestamps
FRAME_MS = 1000 // FRAME_RATE
FLV_TAG_AUDIO = 8
FLV_TAG_VIDEO = 9


# -- real FLV files from PyAV ----------------------------------------------------------


@dataclass(frozen=True)
class EncodedPacket:
    keyframe: bool
    pts_ms: int
    dts_ms: int


@dataclass(frozen=True)
class EncodedFLV:
    data: bytes
    video: list[EncodedPacket]

    def tags(self, tag_type: int) -> list[tuple[int, bytes]]:
        return [(ts, body) for kind, ts, body in flv_tags(self.data) if kind == tag_type]


def flv_tags(data: bytes) -> Iterator[tuple[int, int, bytes]]:
    """(tag type, timestamp, body) for each tag of an FLV file (FLV spec E.2, E.3)."""
    assert data[:3] == b"FLV"
    pos = int.from_bytes(data[5:9], "big") + 4  # header, then PreviousTagSize0
    while pos + 11 <= len(data):
        tag_type = data[pos] & 0x1F
        size = int.from_bytes(data[pos + 1 : pos + 4], "big")
        timestamp = int.from_bytes(data[pos + 4 : pos + 7], "big") | data[pos + 7] << 24
        yield tag_type, timestamp, data[pos + 11 : pos + 11 + size]
        pos += 11 + size + 4


def _test_picture(width: int, height: int, pix_fmt: str, index: int) -> av.VideoFrame:
    frame = av.VideoFrame(width, height, pix_fmt)
    for plane_index, plane in enumerate(frame.planes):
        plane.update(
            bytes((x * 7 + index * 13 + plane_index * 50) & 0xFF for x in range(plane.buffer_size))
        )
    frame.pts = index
    return frame


def encode_video(
    codec: str,
    width: int,
    height: int,
    options: dict[str, str],
    frames: int = 6,
    pix_fmt: str = "yuv420p",
) -> EncodedFLV:
    out_file = io.BytesIO()
    container = av.open(out_file, "w", format="flv")
    stream = container.add_stream(codec, rate=FRAME_RATE)
    stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
    stream.options = options
    encoded: list[EncodedPacket] = []

    def mux(packets: list[Any]) -> None:
        for packet in packets:
            encoded.append(
                EncodedPacket(packet.is_keyframe, packet.pts * FRAME_MS, packet.dts * FRAME_MS)
            )
            container.mux(packet)

    for index in range(frames):
        mux(stream.encode(_test_picture(width, height, pix_fmt, index)))
    mux(stream.encode(None))
    container.close()
    return EncodedFLV(out_file.getvalue(), encoded)


def encode_audio(codec: str, sample_rate: int, layout: str, frames: int = 4) -> EncodedFLV:
    out_file = io.BytesIO()
    container = av.open(out_file, "w", format="flv")
    stream = container.add_stream(codec, rate=sample_rate, layout=layout)
    sample_format = stream.codec_context.format.name
    samples = 1024 if codec == "aac" else 1152
    for index in range(frames):
        frame = av.AudioFrame(format=sample_format, layout=layout, samples=samples)
        for plane in frame.planes:
            plane.update(bytes(plane.buffer_size))
        frame.sample_rate = sample_rate
        frame.pts = index * samples
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode(None):
        container.mux(packet)
    container.close()
    return EncodedFLV(out_file.getvalue(), [])


X264 = {"preset": "ultrafast", "x264-params": "bframes=2:b-adapt=0"}


@pytest.fixture(scope="module")
def h264_flv() -> EncodedFLV:
    return encode_video("libx264", 320, 240, X264)


@pytest.fixture(scope="module")
def hevc_flv() -> EncodedFLV:
    # 250x138 is no multiple of x265's 8-pixel CUs: the SPS needs a conformance window.
    return encode_video("libx265", 250, 138, {"preset": "ultrafast", "log-level": "error"})


@pytest.fixture(scope="module")
def av1_flv() -> EncodedFLV:
    return encode_video("libsvtav1", 320, 240, {"preset": "12"}, frames=3)


@pytest.fixture(scope="module")
def vp9_flv() -> EncodedFLV:
    return encode_video("libvpx-vp9", 320, 240, {"deadline": "realtime", "cpu-used": "8"}, 3)


def demux_all(flv: EncodedFLV, tag_type: int) -> list[MediaPacket]:
    demuxer = FLVDemuxer()
    demux = demuxer.demux_video if tag_type == FLV_TAG_VIDEO else demuxer.demux_audio
    packets = []
    for timestamp, body in flv.tags(tag_type):
        packet = demux(timestamp, body)
        if packet is not None:
            assert tag_body(packet) == body
            packets.append(packet)
    return packets


def coded(packets: list[MediaPacket], codec: Codec) -> list[MediaPacket]:
    return [p for p in packets if p.codec is codec and not p.is_config]


# -- H.264 ---------------------------------------------------------------------------


def test_avc_sequence_header_gives_the_encoded_size(h264_flv: EncodedFLV) -> None:
    packets = demux_all(h264_flv, FLV_TAG_VIDEO)
    header = packets[0]
    assert header.is_config
    assert header.codec is Codec.H264
    assert header.kind is TrackKind.VIDEO
    assert header.config is not None
    assert (header.config.width, header.config.height) == (320, 240)
    assert header.payload == header.config.extradata
    assert header.payload[0] == 1  # AVCDecoderConfigurationRecord version
    assert all(p.config is header.config for p in packets)


def test_avc_keyframes_and_composition_offsets_match_the_encoder(h264_flv: EncodedFLV) -> None:
    frames = coded(demux_all(h264_flv, FLV_TAG_VIDEO), Codec.H264)
    encoded = h264_flv.video
    assert len(frames) == len(encoded)
    assert any(p.pts_ms != p.dts_ms for p in encoded), "the encoder made no B-frames"
    assert [p.keyframe for p in frames] == [p.keyframe for p in encoded]
    assert [p.composition_offset for p in frames] == [p.pts_ms - p.dts_ms for p in encoded]
    # FFmpeg shifts the stream so its first dts is 0; spacing is kept.
    first_dts = encoded[0].dts_ms
    assert [p.dts for p in frames] == [p.dts_ms - first_dts for p in encoded]


def test_avc_end_of_sequence_is_dropped(h264_flv: EncodedFLV) -> None:
    last_timestamp, last_body = h264_flv.tags(FLV_TAG_VIDEO)[-1]
    assert last_body[:2] == b"\x17\x02"  # FFmpeg ends the stream with AVCPacketType 2
    assert FLVDemuxer().demux_video(last_timestamp, last_body) is None


@pytest.mark.parametrize(
    ("width", "height", "options", "pix_fmt"),
    [
        # 86 macroblocks wide, 10 columns cropped (4:2:0 crop unit 2).
        (1366, 768, {"preset": "ultrafast"}, "yuv420p"),
        # frame_mbs_only 0: heights count field macroblock pairs, crop unit 4.
        (320, 240, {"preset": "ultrafast", "x264-params": "interlaced=1"}, "yuv420p"),
        # High 4:4:4 (chroma_format_idc 3): crop unit 1.
        (176, 90, {"preset": "ultrafast"}, "yuv444p"),
    ],
    ids=["1366x768", "interlaced", "yuv444"],
)
def test_avc_sps_size_with_cropping(
    width: int, height: int, options: dict[str, str], pix_fmt: str
) -> None:
    flv = encode_video("libx264", width, height, options, frames=1, pix_fmt=pix_fmt)
    config = demux_all(flv, FLV_TAG_VIDEO)[0].config
    assert config is not None
    assert (config.width, config.height) == (width, height)


def test_unparseable_sps_leaves_the_size_zero() -> None:
    # One SPS that stops after level_idc, one PPS.
    record = bytes.fromhex("0164001fffe1000467640000" + "01000268ee")
    packet = FLVDemuxer().demux_video(0, b"\x17\x00\x00\x00\x00" + record)
    assert packet is not None
    assert packet.config is not None
    assert (packet.config.width, packet.config.height) == (0, 0)
    assert packet.config.extradata == record
    assert video_dimensions(Codec.H264, b"\x02garbage") == (0, 0)
    with pytest.raises(MediaError):
        parse_avc_sps(b"\x68\xee\x3c\x80")  # a PPS, not an SPS


# -- AAC and MP3 -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sample_rate", "layout", "channels"),
    [(44100, "stereo", 2), (48000, "mono", 1), (22050, "5.1", 6)],
)
def test_aac_config_gives_sample_rate_and_channels(
    sample_rate: int, layout: str, channels: int
) -> None:
    packets = demux_all(encode_audio("aac", sample_rate, layout), FLV_TAG_AUDIO)
    header = packets[0]
    assert header.is_config
    assert header.codec is Codec.AAC
    assert header.kind is TrackKind.AUDIO
    assert header.config is not None
    assert (header.config.sample_rate, header.config.channels) == (sample_rate, channels)
    frames = coded(packets, Codec.AAC)
    assert frames
    assert all(p.keyframe and p.config is header.config for p in frames)


def test_aac_5_1_multichannel_config_passes_through_opaque() -> None:
    """FFmpeg adds an Enhanced RTMP MultichannelConfig tag for 5.1 AAC."""
    packets = demux_all(encode_audio("aac", 22050, "5.1"), FLV_TAG_AUDIO)
    opaque = [p for p in packets if p.codec is Codec.OPAQUE]
    assert len(opaque) == 1
    assert opaque[0].flv_header[0] >> 4 == 9  # SoundFormat ExHeader
    assert opaque[0].keyframe
    assert not opaque[0].is_config


def test_mp3_packets() -> None:
    packets = demux_all(encode_audio("libmp3lame", 44100, "stereo"), FLV_TAG_AUDIO)
    assert packets
    assert all(p.codec is Codec.MP3 and p.keyframe for p in packets)
    assert all(p.payload[:2] == b"\xff\xfb" and p.flv_header == b"\x2f" for p in packets)


def test_unreadable_aac_config_is_kept_with_zero_rate() -> None:
    with pytest.raises(MediaError):
        parse_aac_config(b"\x16\x90")  # samplingFrequencyIndex 13 is reserved
    packet = FLVDemuxer().demux_audio(0, b"\xaf\x00\x16\x90")
    assert packet is not None
    assert packet.config is not None
    assert (packet.config.sample_rate, packet.config.channels) == (0, 0)


# -- Enhanced RTMP, as FFmpeg writes it --------------------------------------------------


def test_hevc_from_ffmpeg(hevc_flv: EncodedFLV) -> None:
    packets = demux_all(hevc_flv, FLV_TAG_VIDEO)
    header = packets[0]
    assert header.is_config
    assert header.codec is Codec.HEVC
    assert header.config is not None
    assert (header.config.width, header.config.height) == (250, 138)
    frames = coded(packets, Codec.HEVC)
    encoded = hevc_flv.video
    assert [p.keyframe for p in frames] == [p.keyframe for p in encoded]
    assert [p.composition_offset for p in frames] == [p.pts_ms - p.dts_ms for p in encoded]
    # FFmpeg uses CodedFramesX (no SI24) when the offset is 0.
    assert {p.flv_header[0] & 0x0F for p in frames} == {1, 3}
    metadata = [p for p in packets if p.codec is Codec.OPAQUE]
    assert len(metadata) == 1
    assert metadata[0].flv_header[0] & 0x0F == 4  # VideoPacketType Metadata (colorInfo)


@pytest.mark.parametrize(
    ("fixture", "codec", "size"),
    [("av1_flv", Codec.AV1, (320, 240)), ("vp9_flv", Codec.VP9, (0, 0))],
)
def test_av1_and_vp9_from_ffmpeg(
    request: pytest.FixtureRequest, fixture: str, codec: Codec, size: tuple[int, int]
) -> None:
    flv: EncodedFLV = request.getfixturevalue(fixture)
    packets = demux_all(flv, FLV_TAG_VIDEO)
    header = packets[0]
    assert header.is_config
    assert header.codec is codec
    assert header.config is not None
    assert (header.config.width, header.config.height) == size  # vpcC carries no size
    frames = coded(packets, codec)
    assert [p.keyframe for p in frames] == [p.keyframe for p in flv.video]
    assert all(p.pts == p.dts and p.config is header.config for p in frames)


# -- Enhanced RTMP, hand-built -----------------------------------------------------------

# An x265 SPS for 250x138 (coded 256x144, conformance window right 3, bottom 3).
HEVC_SPS = bytes.fromhex(
    "42010101600000030090000003000003003ca00808091c926595952930b9a02000000300200000030321"
)
HVCC = (
    bytes.fromhex("0101600000009000000000003cf000fcfdf8f800000f")
    + b"\x01\xa1\x00\x01"
    + len(HEVC_SPS).to_bytes(2, "big")
    + HEVC_SPS
)
# av1C (marker/version 0x81, main profile, 4:2:0) and an SVT-AV1 sequence header OBU
# for 320x240.
AV1C = bytes.fromhex("81000c000a0b000000043cffbc02f80040")
NALUS = b"\x00\x00\x00\x03\x26\x01\xaf"  # one length-prefixed NAL unit
OBUS = b"\x12\x00\x32\x03\x10\x20\x30"  # temporal delimiter + a frame OBU


def test_hand_built_hevc_bodies() -> None:
    demuxer = FLVDemuxer()
    start = demuxer.demux_video(1000, b"\x90hvc1" + HVCC)
    frame = demuxer.demux_video(1000, b"\x91hvc1\x00\x00\x50" + NALUS)
    frame_x = demuxer.demux_video(1040, b"\xa3hvc1" + NALUS)
    negative = demuxer.demux_video(1080, b"\xa1hvc1\xff\xff\xd8" + NALUS)
    assert start is not None
    assert frame is not None
    assert frame_x is not None
    assert negative is not None
    assert start.is_config
    assert start.config == CodecConfig(Codec.HEVC, HVCC, 250, 138)
    assert demuxer.video_config is start.config
    assert (frame.dts, frame.pts, frame.keyframe, frame.payload) == (1000, 1080, True, NALUS)
    assert frame.config is start.config
    assert frame.flv_header == b"\x91hvc1\x00\x00\x50"
    assert (frame_x.dts, frame_x.pts, frame_x.keyframe) == (1040, 1040, False)
    assert negative.composition_offset == -40


def test_hand_built_av1_bodies() -> None:
    demuxer = FLVDemuxer()
    start = demuxer.demux_video(0, b"\x90av01" + AV1C)
    frame = demuxer.demux_video(40, b"\xa1av01" + OBUS)
    frame_x = demuxer.demux_video(80, b"\xa3av01" + OBUS)
    assert start is not None
    assert frame is not None
    assert frame_x is not None
    assert start.config == CodecConfig(Codec.AV1, AV1C, 320, 240)
    # AV1 CodedFrames has no SI24: the OBUs start right after the FourCC.
    assert (frame.pts, frame.payload, frame.flv_header) == (40, OBUS, b"\xa1av01")
    assert frame_x.payload == OBUS
    assert frame_x.config is start.config


@pytest.mark.parametrize(
    "packet",
    [
        MediaPacket(TrackKind.VIDEO, Codec.HEVC, 0, 0, True, HVCC, is_config=True),
        MediaPacket(TrackKind.VIDEO, Codec.HEVC, 0, 80, True, NALUS),
        MediaPacket(TrackKind.VIDEO, Codec.HEVC, 40, 40, False, NALUS),
        MediaPacket(TrackKind.VIDEO, Codec.HEVC, 80, 40, False, NALUS),
        MediaPacket(TrackKind.VIDEO, Codec.AV1, 0, 0, True, AV1C, is_config=True),
        MediaPacket(TrackKind.VIDEO, Codec.AV1, 40, 40, False, OBUS),
        MediaPacket(TrackKind.VIDEO, Codec.VP9, 40, 40, True, b"\x82\x49\x83"),
    ],
    ids=["hevc-start", "hevc-frames", "hevc-frames-x", "hevc-negative", "av1-start", "av1", "vp9"],
)
def test_enhanced_packets_built_from_scratch_round_trip(packet: MediaPacket) -> None:
    body = tag_body(packet)
    assert body[0] & 0x80  # IsExHeader
    demuxed = FLVDemuxer().demux_video(packet.dts, body)
    assert demuxed is not None
    assert demuxed.flv_header == body[: len(body) - len(packet.payload)]
    assert dataclasses.replace(demuxed, flv_header=b"", config=None) == packet
    assert tag_body(demuxed) == body


def test_enhanced_bodies_built_from_scratch_match_the_spec_layout() -> None:
    start = MediaPacket(TrackKind.VIDEO, Codec.HEVC, 0, 0, True, HVCC, is_config=True)
    assert tag_body(start) == b"\x90hvc1" + HVCC
    frames = MediaPacket(TrackKind.VIDEO, Codec.HEVC, 0, 80, True, NALUS)
    assert tag_body(frames) == b"\x91hvc1\x00\x00\x50" + NALUS
    frames_x = MediaPacket(TrackKind.VIDEO, Codec.HEVC, 40, 40, False, NALUS)
    assert tag_body(frames_x) == b"\xa3hvc1" + NALUS
    av1 = MediaPacket(TrackKind.VIDEO, Codec.AV1, 40, 40, False, OBUS)
    assert tag_body(av1) == b"\xa1av01" + OBUS


def test_modex_timestamp_offset_is_skipped_and_kept() -> None:
    # ModEx (7): size-1 = 2, three bytes TimestampOffsetNano, then type 0 / CodedFrames.
    header = b"\x97\x02\x00\x01\xf4\x01hvc1\x00\x00\x28"
    packet = FLVDemuxer().demux_video(10, header + NALUS)
    assert packet is not None
    assert packet.codec is Codec.HEVC
    assert (packet.pts, packet.keyframe, packet.flv_header) == (50, True, header)
    # 16-bit size escape: UI8 255 means UI16 + 1 follows.
    long_header = b"\x97\xff\x01\x00" + bytes(257) + b"\x03hvc1"
    packet = FLVDemuxer().demux_video(10, long_header + NALUS)
    assert packet is not None
    assert packet.flv_header == long_header
    assert packet.pts == 10


def test_too_many_modex_entries_are_refused() -> None:
    body = b"\x97" + b"\x00\x00\x07" * 3 + b"\x00\x00\x01hvc1\x00\x00\x00" + NALUS
    assert FLVDemuxer(max_modex_entries=4).demux_video(0, body) is not None
    with pytest.raises(MediaError, match="ModEx"):
        FLVDemuxer(max_modex_entries=3).demux_video(0, body)


def test_enhanced_special_packet_types() -> None:
    demuxer = FLVDemuxer()
    assert demuxer.demux_video(0, b"\x92hvc1") is None  # SequenceEnd
    assert demuxer.demux_video(0, b"\xd1\x00") is None  # command frame: StartSeek
    metadata = demuxer.demux_video(0, b"\xd4hvc1\x02\x00\x09colorInfo\x03\x00\x00\x09")
    assert metadata is not None
    assert metadata.codec is Codec.OPAQUE
    assert not metadata.keyframe
    multitrack = demuxer.demux_video(0, b"\x96\x00hvc1\x00\x01" + NALUS)
    assert multitrack is not None
    assert multitrack.codec is Codec.OPAQUE
    assert multitrack.keyframe
    assert multitrack.flv_header == b"\x96"
    vp8_start = demuxer.demux_video(0, b"\x90vp08\x01\x00\x00\x00")
    assert vp8_start is not None
    assert vp8_start.codec is Codec.OPAQUE
    assert vp8_start.is_config
    assert demuxer.video_config is None
    with pytest.raises(MediaError, match="VideoPacketType 8"):
        demuxer.demux_video(0, b"\x98hvc1" + NALUS)
    with pytest.raises(MediaError):
        demuxer.demux_video(0, b"\x91hv")  # FourCC cut short
    with pytest.raises(MediaError):
        demuxer.demux_video(0, b"\x91hvc1\x00")  # SI24 cut short


# -- legacy codecs, state, refusals ------------------------------------------------------


def test_legacy_video_codecs_pass_through_opaque() -> None:
    vp6 = FLVDemuxer().demux_video(0, b"\x14\x00\x12\x34")
    assert vp6 is not None
    assert (vp6.codec, vp6.keyframe, vp6.flv_header, vp6.payload) == (
        Codec.OPAQUE,
        True,
        b"\x14",
        b"\x00\x12\x34",
    )
    sorenson = FLVDemuxer().demux_video(0, b"\x22\x00\x00\x84")
    assert sorenson is not None
    assert not sorenson.keyframe
    assert FLVDemuxer().demux_video(0, b"\x52\x01") is None  # FrameType 5: command


def test_legacy_audio_codecs_pass_through_opaque() -> None:
    for flags in (0x0E, 0x3F, 0x6E, 0x72, 0x82, 0xB6):
        packet = FLVDemuxer().demux_audio(0, bytes((flags,)) + b"\x01\x02")
        assert packet is not None
        assert packet.codec is Codec.OPAQUE
        assert packet.keyframe
        assert packet.flv_header == bytes((flags,))
        assert packet.payload == b"\x01\x02"


def test_empty_bodies_and_empty_frames_give_nothing() -> None:
    demuxer = FLVDemuxer()
    assert demuxer.demux_audio(0, b"") is None
    assert demuxer.demux_video(0, b"") is None
    assert demuxer.demux_audio(0, b"\xaf\x01") is None
    assert demuxer.demux_video(0, b"\x27\x01\x00\x00\x00") is None


def test_coded_packets_before_and_after_the_sequence_header() -> None:
    demuxer = FLVDemuxer()
    early = demuxer.demux_video(0, b"\x27\x01\x00\x00\x00" + NALUS)
    assert early is not None
    assert early.config is None
    header = demuxer.demux_video(40, b"\x17\x00\x00\x00\x00" + b"\x01\x64\x00\x1f\xff\xe0")
    assert header is not None
    assert header.config is not None
    late = demuxer.demux_video(80, b"\x27\x01\x00\x00\x00" + NALUS)
    assert late is not None
    assert late.config is header.config
    # A switch of codec without a sequence header: the H.264 config does not apply.
    hevc = demuxer.demux_video(120, b"\xa3hvc1" + NALUS)
    assert hevc is not None
    assert hevc.config is None
    raw = demuxer.demux_audio(0, b"\xaf\x01\x21\x10")
    assert raw is not None
    assert raw.config is None
    assert demuxer.audio_config is None


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"\x17", "truncated"),
        (b"\x17\x01\x00", "truncated"),
        (b"\x17\x03\x00\x00\x00\x01", "AVCPacketType 3"),
        (b"\x17\x00\x00\x00\x00", "no configuration record"),
        (b"\x90hvc1", "no configuration record"),
    ],
)
def test_malformed_video_is_refused(body: bytes, message: str) -> None:
    with pytest.raises(MediaError, match=message):
        FLVDemuxer().demux_video(0, body)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"\xaf", "truncated"),
        (b"\xaf\x02\x00", "AACPacketType 2"),
        (b"\xaf\x00", "no configuration record"),
    ],
)
def test_malformed_audio_is_refused(body: bytes, message: str) -> None:
    with pytest.raises(MediaError, match=message):
        FLVDemuxer().demux_audio(0, body)


def test_config_record_size_limit() -> None:
    body = b"\xaf\x00" + bytes(33)
    with pytest.raises(MediaError, match="32-byte limit"):
        FLVDemuxer(max_config_size=32).demux_audio(0, body)
    assert FLVDemuxer(max_config_size=33).demux_audio(0, body) is not None


def test_tag_body_from_scratch_for_legacy_codecs() -> None:
    avc = MediaPacket(TrackKind.VIDEO, Codec.H264, 100, 180, False, NALUS)
    assert tag_body(avc) == b"\x27\x01\x00\x00\x50" + NALUS
    aac_config = MediaPacket(TrackKind.AUDIO, Codec.AAC, 0, 0, True, b"\x12\x10", is_config=True)
    assert tag_body(aac_config) == b"\xaf\x00\x12\x10"
    mono = CodecConfig(Codec.MP3, b"", sample_rate=22050, channels=1)
    mp3 = MediaPacket(TrackKind.AUDIO, Codec.MP3, 0, 0, True, b"\xff\xfb", config=mono)
    assert tag_body(mp3) == b"\x2a\xff\xfb"
    data = MediaPacket(TrackKind.DATA, Codec.AMF0, 0, 0, False, b"\x02\x00\x0aonMetaData")
    assert tag_body(data) == data.payload


@pytest.mark.parametrize(
    "packet",
    [
        MediaPacket(TrackKind.VIDEO, Codec.OPAQUE, 0, 0, True, b"\x00"),
        MediaPacket(TrackKind.AUDIO, Codec.OPAQUE, 0, 0, True, b"\x00"),
        MediaPacket(TrackKind.VIDEO, Codec.AV1, 0, 40, True, OBUS),  # no place for pts
        MediaPacket(TrackKind.VIDEO, Codec.H264, 0, 1 << 23, True, NALUS),  # SI24 overflow
    ],
)
def test_tag_body_refuses_what_flv_cannot_carry(packet: MediaPacket) -> None:
    with pytest.raises(MediaError):
        tag_body(packet)


# -- properties --------------------------------------------------------------------------

interesting_first_bytes = st.sampled_from(
    [0x17, 0x27, 0x52, 0x90, 0x91, 0x93, 0x94, 0x96, 0x97, 0xD4, 0xAF, 0x2F, 0x9F, 0x14]
)
tag_bodies = st.one_of(
    st.binary(max_size=64),
    st.builds(lambda b, rest: bytes((b,)) + rest, interesting_first_bytes, st.binary(max_size=64)),
    st.builds(
        lambda b, fourcc, rest: bytes((b,)) + fourcc + rest,
        interesting_first_bytes,
        st.sampled_from([b"hvc1", b"av01", b"vp09", b"avc1", b"vp08"]),
        st.binary(max_size=64),
    ),
)


@given(st.lists(tag_bodies, max_size=4), st.booleans())
def test_arbitrary_bytes_raise_only_media_error_and_round_trip(
    bodies: list[bytes], as_audio: bool
) -> None:
    demuxer = FLVDemuxer()
    demux = demuxer.demux_audio if as_audio else demuxer.demux_video
    for body in bodies:
        try:
            packet = demux(0, body)
        except MediaError:
            continue
        if packet is not None:
            assert tag_body(packet) == body


payloads = st.binary(min_size=1, max_size=32)
timestamps = st.integers(0, 2**32 - 1)
composition_offsets = st.integers(-(1 << 23), (1 << 23) - 1)


@st.composite
def scratch_packets(draw: st.DrawFn) -> MediaPacket:
    """Packets as the transcoder would make them: no flv_header."""
    codec = draw(
        st.sampled_from([Codec.H264, Codec.HEVC, Codec.AV1, Codec.VP9, Codec.AAC, Codec.MP3])
    )
    dts = draw(timestamps)
    is_config = draw(st.booleans())
    if codec is Codec.AAC:
        return MediaPacket(TrackKind.AUDIO, codec, dts, dts, True, draw(payloads), is_config)
    if codec is Codec.MP3:
        return MediaPacket(TrackKind.AUDIO, codec, dts, dts, True, draw(payloads))
    offset = 0
    if codec is Codec.H264 or (codec is Codec.HEVC and not is_config):
        offset = draw(composition_offsets)
    keyframe = draw(st.booleans())
    return MediaPacket(
        TrackKind.VIDEO, codec, dts, dts + offset, keyframe, draw(payloads), is_config
    )


@given(scratch_packets())
def test_packets_built_from_scratch_round_trip(packet: MediaPacket) -> None:
    body = tag_body(packet)
    demuxer = FLVDemuxer()
    demux = demuxer.demux_audio if packet.kind is TrackKind.AUDIO else demuxer.demux_video
    demuxed = demux(packet.dts, body)
    assert demuxed is not None
    assert dataclasses.replace(demuxed, flv_header=b"", config=None) == packet
    assert tag_body(demuxed) == body
    if packet.is_config:
        assert demuxed.config is not None
        assert demuxed.config.extradata == packet.payload


@given(
    first=st.sampled_from([0x17, 0x27, 0x37, 0x14, 0x1C]),
    packet_type=st.sampled_from([0, 1, 2]),
    rest=st.binary(max_size=40),
    sound=st.sampled_from([0xAF, 0xAE, 0x2F]),
    aac_type=st.sampled_from([0, 1]),
)
def test_the_fast_paths_for_common_tags_match_the_general_parser(
    first: int, packet_type: int, rest: bytes, sound: int, aac_type: int
) -> None:
    """AVC frames and AAC frames skip the cursor when the body is bytes; a bytearray
    takes the general path, which must give the very same packet (or error)."""
    video = bytes((first, packet_type)) + rest
    audio = bytes((sound, aac_type)) + rest
    for body, demux in ((video, "demux_video"), (audio, "demux_audio")):
        results = []
        for given_body in (body, bytearray(body)):
            demuxer = FLVDemuxer()
            demuxer.demux_video(0, AVC_CONFIG)
            demuxer.demux_audio(0, b"\xaf\x00\x12\x10")
            try:
                results.append(getattr(demuxer, demux)(40, given_body))
            except MediaError as exc:
                results.append(str(exc))
        assert results[0] == results[1]


def test_opus_from_ffmpeg_is_opus_with_its_id_header() -> None:
    """FFmpeg 8's FLV muxer writes Opus as Enhanced RTMP v2 audio (FourCC "Opus"):
    the SequenceStart's Opus ID header becomes the track's configuration, and every
    coded frame is an Opus packet of it; the tags still relay byte for byte."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="flv") as out:
        stream = out.add_stream("libopus", rate=48000)
        with av.open("sine=frequency=440:duration=1:sample_rate=48000", format="lavfi") as tone:
            for frame in [*tone.decode(audio=0), None]:
                for packet in stream.encode(frame):
                    out.mux(packet)
    tags = [(ts, body) for kind, ts, body in flv_tags(buffer.getvalue()) if kind == FLV_TAG_AUDIO]
    demuxer = FLVDemuxer()
    packets = [demuxer.demux_audio(ts, body) for ts, body in tags]
    header = packets[0]
    assert header is not None
    assert header.is_config
    assert header.config is not None
    assert header.config.codec is Codec.OPUS
    assert header.config.extradata.startswith(b"OpusHead")
    assert (header.config.sample_rate, header.config.channels) == (48000, 2)  # its default
    frames = [p for p in packets if p is not None and p.codec is Codec.OPUS and not p.is_config]
    assert len(frames) >= 48  # a second of 20 ms packets
    assert all(p.config is header.config for p in frames)
    for (_, body), packet in zip(tags, packets, strict=True):
        assert packet is not None
        assert packet.flv_header + packet.payload == body


@pytest.mark.parametrize(
    "head",
    [
        b"OpusHead\x01",
        b"OpusTags" + bytes(11),
        b"OpusHead\x10\x02" + bytes(9),
        b"OpusHead\x01\x00" + bytes(9),
    ],
)
def test_an_opus_sequence_start_that_is_no_id_header_is_refused(head: bytes) -> None:
    body = bytes((0x90,)) + b"Opus" + head
    with pytest.raises(MediaError, match="Opus"):
        FLVDemuxer().demux_audio(0, body)
