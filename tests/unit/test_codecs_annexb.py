"""Annex B conversion, checked by decoding what it makes with FFmpeg (PyAV).

Video comes from libx264 and libx265 through PyAV's FLV muxer and lpms's own FLV
demuxer, the path a publisher's frames take, so the payloads and avcC/hvcC records
are what a real encoder sends. The converted frames must decode as a raw 'h264' or
'hevc' byte stream, which has no extradata to fall back on.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from dataclasses import dataclass

import av
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lpms.errors import BitstreamError, MediaError
from lpms.media.codecs.annexb import MAX_NAL_UNITS_PER_ACCESS_UNIT, AnnexBConverter
from lpms.media.codecs.nal import START_CODE
from lpms.media.flv import FLVDemuxer
from lpms.media.packet import Codec, MediaPacket

FRAME_RATE = 25
FLV_TAG_VIDEO = 9
H264_AUD = START_CODE + b"\x09\xf0"
HEVC_AUD = START_CODE + b"\x46\x01\x50"

# H.264 Table 7-1 and H.265 Table 7-1 NAL unit types the tests look for.
H264_SEI, H264_SPS, H264_PPS, H264_AUD_TYPE = 6, 7, 8, 9
HEVC_VPS, HEVC_SPS, HEVC_PPS, HEVC_AUD_TYPE = 32, 33, 34, 35
HEVC_PREFIX_SEI, HEVC_SUFFIX_SEI = 39, 40


# -- real encoder output ---------------------------------------------------------------


@dataclass(frozen=True)
class EncodedVideo:
    codec: Codec
    width: int
    height: int
    record: bytes
    frames: list[MediaPacket]

    @property
    def decoder_format(self) -> str:
        return self.codec.value

    def converter(self) -> AnnexBConverter:
        return AnnexBConverter.from_config(self.codec, self.record)


_RAMP = bytes(range(256)) * 32


def _picture(width: int, height: int, index: int) -> av.VideoFrame:
    """Diagonal ramps that move from frame to frame, so P and B frames have work."""
    frame = av.VideoFrame(width, height, "yuv420p")
    for plane_index, plane in enumerate(frame.planes):
        rows = (
            _RAMP[(row * 2 + index * 5 + plane_index * 40) % 256 :][: plane.line_size]
            for row in range(plane.buffer_size // plane.line_size)
        )
        plane.update(b"".join(rows))
    frame.pts = index
    return frame


def _flv_video_tags(data: bytes) -> Iterator[tuple[int, bytes]]:
    """(timestamp, body) of each video tag in an FLV file (FLV spec E.2, E.3)."""
    position = 9 + 4  # FLV header, PreviousTagSize0
    while position + 11 <= len(data):
        tag_type = data[position] & 0x1F
        size = int.from_bytes(data[position + 1 : position + 4], "big")
        timestamp = int.from_bytes(data[position + 4 : position + 7], "big")
        if tag_type == FLV_TAG_VIDEO:
            yield timestamp, data[position + 11 : position + 11 + size]
        position += 11 + size + 4


def encode_video(
    encoder: str, width: int, height: int, options: dict[str, str], frames: int = 12
) -> EncodedVideo:
    """Frames through PyAV's FLV muxer and lpms's FLV demuxer, as a publisher sends them."""
    out_file = io.BytesIO()
    with av.open(out_file, "w", format="flv") as container:
        stream = container.add_stream(encoder, rate=FRAME_RATE)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = options
        for index in range(frames):
            container.mux(stream.encode(_picture(width, height, index)))
        container.mux(stream.encode(None))
    demuxer = FLVDemuxer()
    packets = [demuxer.demux_video(ts, body) for ts, body in _flv_video_tags(out_file.getvalue())]
    # FFmpeg 8 also writes an Enhanced RTMP metadata tag (colour info), relayed as opaque.
    coded = [p for p in packets if p is not None and p.codec is not Codec.OPAQUE]
    coded = [p for p in coded if not p.is_config]
    config = coded[0].config
    assert config is not None
    return EncodedVideo(config.codec, width, height, config.extradata, coded)


# Two GOPs with B-frames, closed so that a decoder can start at the second keyframe.
X264 = {"preset": "veryfast", "x264-params": "keyint=6:min-keyint=6:bframes=2:scenecut=0"}
X265 = {
    "preset": "ultrafast",
    "log-level": "error",
    "x265-params": "keyint=6:min-keyint=6:bframes=2:scenecut=0:open-gop=0",
}


@pytest.fixture(scope="module")
def h264() -> EncodedVideo:
    return encode_video("libx264", 320, 240, X264)


@pytest.fixture(scope="module")
def hevc() -> EncodedVideo:
    # 250x138 is no multiple of the CU size: the decoded size comes from the SPS window.
    return encode_video("libx265", 250, 138, X265)


@pytest.fixture(params=["h264", "hevc"])
def video(request: pytest.FixtureRequest) -> EncodedVideo:
    encoded: EncodedVideo = request.getfixturevalue(request.param)
    return encoded


def decode(data: bytes, decoder_format: str) -> list[av.VideoFrame]:
    with av.open(io.BytesIO(data), format=decoder_format) as container:
        return list(container.decode(video=0))


# -- helpers over NAL units --------------------------------------------------------------


def nal_unit_type(codec: Codec, nal_unit: bytes) -> int:
    return nal_unit[0] & 0x1F if codec is Codec.H264 else (nal_unit[0] >> 1) & 0x3F


def annex_b_units(data: bytes) -> list[bytes]:
    """NAL units of an Annex B stream; emulation prevention keeps start codes out of them."""
    assert data.startswith(START_CODE)
    return data.split(START_CODE)[1:]


def annex_b_types(codec: Codec, data: bytes) -> list[int]:
    return [nal_unit_type(codec, unit) for unit in annex_b_units(data)]


def length_prefixed_units(payload: bytes, length_size: int = 4) -> list[bytes]:
    units, position = [], 0
    while position < len(payload):
        length = int.from_bytes(payload[position : position + length_size], "big")
        position += length_size
        units.append(payload[position : position + length])
        position += length
    return units


def length_prefixed(units: list[bytes], length_size: int = 4) -> bytes:
    return b"".join(len(unit).to_bytes(length_size, "big") + unit for unit in units)


def with_length_size(codec: Codec, record: bytes, length_size: int) -> bytes:
    """The record with lengthSizeMinusOne changed (avcC byte 4, hvcC byte 21)."""
    offset = 4 if codec is Codec.H264 else 21
    patched = bytearray(record)
    patched[offset] = (patched[offset] & 0xFC) | (length_size - 1)
    return bytes(patched)


def record_parameter_sets(video: EncodedVideo) -> list[bytes]:
    return list(video.converter().parameter_sets)


# -- decoding what the converter makes ---------------------------------------------------


def test_converted_frames_decode_without_extradata(video: EncodedVideo) -> None:
    converter = video.converter()
    stream = b"".join(converter.convert(f.payload, f.keyframe) for f in video.frames)
    frames = decode(stream, video.decoder_format)
    assert len(frames) == len(video.frames)
    assert {(f.width, f.height) for f in frames} == {(video.width, video.height)}


def test_decoding_can_start_at_any_keyframe(video: EncodedVideo) -> None:
    """What a player joining mid-stream sees: each keyframe carries what it needs."""
    converter = video.converter()
    keyframes = [index for index, f in enumerate(video.frames) if f.keyframe]
    assert len(keyframes) >= 2
    for start in keyframes:
        tail = video.frames[start:]
        stream = b"".join(converter.convert(f.payload, f.keyframe) for f in tail)
        frames = decode(stream, video.decoder_format)
        assert len(frames) == len(tail)
        assert {(f.width, f.height) for f in frames} == {(video.width, video.height)}


def test_h264_access_unit_layout(h264: EncodedVideo) -> None:
    converter = h264.converter()
    assert [nal_unit_type(Codec.H264, u) for u in converter.parameter_sets] == [
        H264_SPS,
        H264_PPS,
    ]
    for frame in h264.frames:
        converted = converter.convert(frame.payload, frame.keyframe)
        assert converted.startswith(H264_AUD)
        types = annex_b_types(Codec.H264, converted)
        original = [nal_unit_type(Codec.H264, u) for u in length_prefixed_units(frame.payload)]
        if frame.keyframe:
            # The sets go right after the AUD, ahead of x264's SEI that refers to them.
            assert types == [H264_AUD_TYPE, H264_SPS, H264_PPS, *original]
            assert annex_b_units(converted)[1:3] == list(converter.parameter_sets)
        else:
            assert types == [H264_AUD_TYPE, *original]
        assert annex_b_units(converted)[-len(original) :] == length_prefixed_units(frame.payload)


def test_hevc_access_unit_layout_includes_declarative_sei(hevc: EncodedVideo) -> None:
    converter = hevc.converter()
    record_types = [nal_unit_type(Codec.HEVC, u) for u in converter.parameter_sets]
    # x265's headers: VPS, SPS, PPS and a user-data SEI with its settings.
    assert record_types == [HEVC_VPS, HEVC_SPS, HEVC_PPS, HEVC_PREFIX_SEI]
    for frame in hevc.frames:
        converted = converter.convert(frame.payload, frame.keyframe)
        assert converted.startswith(HEVC_AUD)
        types = annex_b_types(Codec.HEVC, converted)
        original = [nal_unit_type(Codec.HEVC, u) for u in length_prefixed_units(frame.payload)]
        expected = [HEVC_AUD_TYPE, *(record_types if frame.keyframe else []), *original]
        assert types == expected


# -- NAL unit length sizes ---------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_h264() -> EncodedVideo:
    """Frames whose NAL units (SEI left out) all fit a 1-byte length."""
    return encode_video("libx264", 64, 48, {**X264, "crf": "51"}, frames=8)


@pytest.fixture(scope="module")
def tiny_hevc() -> EncodedVideo:
    return encode_video("libx265", 64, 48, {**X265, "crf": "51"}, frames=8)


@pytest.mark.parametrize("length_size", [1, 2, 3, 4])
@pytest.mark.parametrize("encoded", ["tiny_h264", "tiny_hevc"])
def test_every_nal_unit_length_size(
    request: pytest.FixtureRequest, encoded: str, length_size: int
) -> None:
    """Re-prefixed with 1-4 byte lengths, the frames convert to the very same stream.

    ISO/IEC 14496-15 allows 1, 2 and 4 bytes; 3 is taken as FFmpeg takes it.
    """
    video: EncodedVideo = request.getfixturevalue(encoded)
    sei_types = {H264_SEI, HEVC_PREFIX_SEI, HEVC_SUFFIX_SEI}
    frames = []
    for frame in video.frames:
        units = [
            u
            for u in length_prefixed_units(frame.payload)
            if nal_unit_type(video.codec, u) not in sei_types
        ]
        assert max(len(u) for u in units) < 256
        frames.append((units, frame.keyframe))
    reference = video.converter()
    converter = AnnexBConverter.from_config(
        video.codec, with_length_size(video.codec, video.record, length_size)
    )
    assert converter.length_size == length_size
    stream = b""
    for units, keyframe in frames:
        converted = converter.convert(length_prefixed(units, length_size), keyframe)
        assert converted == reference.convert(length_prefixed(units), keyframe)
        stream += converted
    decoded = decode(stream, video.decoder_format)
    assert len(decoded) == len(frames)
    assert {(f.width, f.height) for f in decoded} == {(video.width, video.height)}


# -- frames that already carry what would be added ---------------------------------------


def test_h264_frame_with_aud_and_parameter_sets_gets_no_duplicates(h264: EncodedVideo) -> None:
    keyframe = h264.frames[0]
    sps, pps = record_parameter_sets(h264)
    aud = H264_AUD[len(START_CODE) :]
    units = [aud, sps, pps, *length_prefixed_units(keyframe.payload)]
    converted = h264.converter().convert(length_prefixed(units), keyframe=True)
    assert converted == b"".join(START_CODE + u for u in units)
    assert decode(converted, "h264")[0].width == h264.width


def test_hevc_frame_with_aud_and_parameter_sets_gets_no_duplicates(hevc: EncodedVideo) -> None:
    keyframe = hevc.frames[0]
    vps, sps, pps, _ = record_parameter_sets(hevc)
    aud = HEVC_AUD[len(START_CODE) :]
    units = [aud, vps, sps, pps, *length_prefixed_units(keyframe.payload)]
    converted = hevc.converter().convert(length_prefixed(units), keyframe=True)
    # The record's SEI describes the record's SPS; a frame with its own SPS has no use for it.
    assert converted == b"".join(START_CODE + u for u in units)
    assert decode(converted, "hevc")[0].width == hevc.width


def test_frame_with_only_an_sps_gets_the_record_pps_after_it(h264: EncodedVideo) -> None:
    keyframe = h264.frames[0]
    sps, pps = record_parameter_sets(h264)
    units = length_prefixed_units(keyframe.payload)
    converted = h264.converter().convert(length_prefixed([sps, *units]), keyframe=True)
    assert converted == b"".join(START_CODE + u for u in [H264_AUD[4:], sps, pps, *units])


def test_frame_with_an_aud_not_first_gets_no_second_one(h264: EncodedVideo) -> None:
    units = length_prefixed_units(h264.frames[1].payload)
    payload = length_prefixed([*units, H264_AUD[4:]])
    converted = h264.converter().convert(payload, keyframe=False)
    assert annex_b_types(Codec.H264, converted).count(H264_AUD_TYPE) == 1


def test_non_keyframes_get_no_parameter_sets(video: EncodedVideo) -> None:
    converter = video.converter()
    frame = next(f for f in video.frames if not f.keyframe)
    units = length_prefixed_units(frame.payload)
    aud = H264_AUD if video.codec is Codec.H264 else HEVC_AUD
    expected = aud + b"".join(START_CODE + u for u in units)
    assert converter.convert(frame.payload, keyframe=False) == expected


def test_zero_length_nal_units_are_dropped(h264: EncodedVideo) -> None:
    frame = h264.frames[1]
    padded = b"\x00\x00\x00\x00" + frame.payload + b"\x00\x00\x00\x00"
    converter = h264.converter()
    assert converter.convert(padded, False) == converter.convert(frame.payload, False)


@pytest.mark.parametrize("nal_unit", [b"\x01\x41", b"\x00"])
def test_frames_of_countless_tiny_nal_units_are_refused(nal_unit: bytes) -> None:
    """A 2 MiB frame of one-byte NAL units once cost ~370 MiB and seconds to convert."""
    converter = AnnexBConverter(Codec.H264, 1, (b"\x67\x42",))
    most = b"\x01\x41" * MAX_NAL_UNITS_PER_ACCESS_UNIT
    assert converter.convert(most, False).count(START_CODE) == MAX_NAL_UNITS_PER_ACCESS_UNIT + 1
    with pytest.raises(BitstreamError, match="MAX_NAL_UNITS_PER_ACCESS_UNIT"):
        converter.convert(most + nal_unit, False)
    with pytest.raises(BitstreamError, match="MAX_NAL_UNITS_PER_ACCESS_UNIT"):
        converter.convert(nal_unit * (1 << 20), True)


def test_hevc_aud_takes_the_temporal_id_of_the_frame(hevc: EncodedVideo) -> None:
    converter = hevc.converter()
    frame = next(f for f in hevc.frames if not f.keyframe)
    units = length_prefixed_units(frame.payload)
    first = units[0]
    raised = length_prefixed([first[:1] + bytes([(first[1] & 0xF8) | 3]) + first[2:]])
    assert converter.convert(raised, False).startswith(START_CODE + b"\x46\x03\x50")
    zero = length_prefixed([first[:1] + bytes([first[1] & 0xF8]) + first[2:]])
    with pytest.raises(BitstreamError, match="nuh_temporal_id_plus1 0"):
        converter.convert(zero, False)


# -- malformed frames ------------------------------------------------------------------


def test_truncated_frames_are_refused(video: EncodedVideo) -> None:
    """Every cut that is not between two NAL units leaves a length running past the end."""
    converter = video.converter()
    frame = next(f for f in video.frames if not f.keyframe)
    payload = frame.payload
    boundaries, position = set(), 0
    while position < len(payload):
        position += 4 + int.from_bytes(payload[position : position + 4], "big")
        boundaries.add(position)
    for cut in range(1, len(payload)):
        if cut in boundaries:
            converter.convert(payload[:cut], frame.keyframe)
        else:
            with pytest.raises(BitstreamError, match=r"runs past|truncated"):
                converter.convert(payload[:cut], frame.keyframe)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"", "no NAL units"),
        (b"\x00\x00\x00\x00", "no NAL units"),
        (b"\x00\x00\x00\x02\x85\x00", "invalid NAL unit header"),  # forbidden_zero_bit
        (b"\x00\x00\x01\x00\x41", "runs past"),
        (b"\x00\x00\x00\x01\x41\x00\x00", "truncated 4-byte NAL unit length"),
    ],
)
def test_malformed_h264_frames(h264: EncodedVideo, payload: bytes, message: str) -> None:
    with pytest.raises(BitstreamError, match=message):
        h264.converter().convert(payload, keyframe=True)


def test_one_byte_hevc_nal_unit_is_refused(hevc: EncodedVideo) -> None:
    with pytest.raises(BitstreamError, match="invalid NAL unit header"):
        hevc.converter().convert(b"\x00\x00\x00\x01\x02", keyframe=False)


def test_annex_b_payload_is_refused_not_passed_on(h264: EncodedVideo) -> None:
    """A publisher sending start codes in FLV: 00 00 00 01 reads as a 1-byte NAL unit."""
    units = length_prefixed_units(h264.frames[1].payload)
    with pytest.raises(BitstreamError):
        h264.converter().convert(b"".join(START_CODE + u for u in units), keyframe=False)


# -- decoder configuration records ---------------------------------------------------------


def test_truncated_records_are_refused(video: EncodedVideo) -> None:
    converter = video.converter()
    # avcC's high-profile tail is not read; everything up to the last PPS must be there.
    needed = len(video.record)
    if video.codec is Codec.H264:
        needed = 7 + sum(2 + len(u) for u in converter.parameter_sets)
    for cut in range(needed):
        with pytest.raises(BitstreamError, match="record"):
            AnnexBConverter.from_config(video.codec, video.record[:cut])


def avcc(sps: list[bytes], pps: list[bytes], length_size: int = 4, version: int = 1) -> bytes:
    head = bytes((version, 0x64, 0x00, 0x1F, 0xFC | (length_size - 1), 0xE0 | len(sps)))
    return b"".join(
        [head, *(len(u).to_bytes(2, "big") + u for u in sps), bytes((len(pps),))]
        + [len(u).to_bytes(2, "big") + u for u in pps]
    )


def hvcc(arrays: list[tuple[int, list[bytes]]], version: int = 1) -> bytes:
    head = bytes((version,)) + bytes(20) + bytes((0x0F, len(arrays)))
    body = b"".join(
        bytes((0x80 | nal_type,))
        + len(units).to_bytes(2, "big")
        + b"".join(len(u).to_bytes(2, "big") + u for u in units)
        for nal_type, units in arrays
    )
    return head + body


def hevc_nal_unit(nal_type: int, body: bytes = b"\xaa") -> bytes:
    return bytes((nal_type << 1, 0x01)) + body


def test_hvcc_arrays_come_out_in_decoding_order() -> None:
    vps, sps, pps = (hevc_nal_unit(t) for t in (HEVC_VPS, HEVC_SPS, HEVC_PPS))
    sei, suffix = hevc_nal_unit(HEVC_PREFIX_SEI), hevc_nal_unit(HEVC_SUFFIX_SEI)
    record = hvcc(
        [
            (HEVC_PREFIX_SEI, [sei]),
            (HEVC_PPS, [pps]),
            (HEVC_SUFFIX_SEI, [suffix]),
            (HEVC_SPS, [sps]),
            (HEVC_VPS, [vps]),
        ]
    )
    converter = AnnexBConverter.from_config(Codec.HEVC, record)
    assert converter.parameter_sets == (vps, sps, pps, sei)
    assert converter.length_size == 4


def test_hvcc_version_0_from_draft_writers_is_read(hevc: EncodedVideo) -> None:
    record = b"\x00" + hevc.record[1:]
    assert AnnexBConverter.from_config(Codec.HEVC, record) == hevc.converter()


def test_record_without_parameter_sets_adds_only_the_aud(h264: EncodedVideo) -> None:
    """avc3-style streams keep their parameter sets in band; nothing to insert then."""
    converter = AnnexBConverter.from_config(Codec.H264, avcc([], []))
    frame = h264.frames[0]
    units = length_prefixed_units(frame.payload)
    assert converter.convert(frame.payload, True) == H264_AUD + b"".join(
        START_CODE + u for u in units
    )


@pytest.mark.parametrize(
    ("codec", "record", "message"),
    [
        (Codec.H264, b"", "truncated"),
        (Codec.H264, avcc([b"\x67\x42"], [b"\x68\xce"], version=2), "configurationVersion 2"),
        (Codec.H264, avcc([b"\x68\xce"], [b"\x68\xce"]), "type 7 holds a NAL unit of type 8"),
        (Codec.H264, avcc([b"\x67\x42"], [b""]), "invalid NAL unit of 0 bytes"),
        (Codec.H264, avcc([b"\xe7\x42"], []), "invalid NAL unit"),
        (Codec.H264, START_CODE + b"\x67\x42\x00\x1f", "Annex B byte stream"),
        (Codec.HEVC, b"\x00\x00\x01\x40\x01\x0c", "Annex B byte stream"),
        (Codec.HEVC, hvcc([], version=2), "configurationVersion 2"),
        (Codec.HEVC, hvcc([(HEVC_SPS, [hevc_nal_unit(HEVC_PPS)])]), "type 33 holds"),
        (Codec.HEVC, hvcc([(HEVC_VPS, [b"\x40"])]), "invalid NAL unit of 1 bytes"),
        (Codec.AV1, b"\x81\x00\x0c\x00", "no Annex B conversion for AV1"),
    ],
)
def test_malformed_records(codec: Codec, record: bytes, message: str) -> None:
    with pytest.raises(BitstreamError, match=message):
        AnnexBConverter.from_config(codec, record)


def test_converter_checks_what_it_is_built_from() -> None:
    with pytest.raises(BitstreamError, match="length size 5"):
        AnnexBConverter(Codec.H264, 5)
    with pytest.raises(BitstreamError, match="shorter than its header"):
        AnnexBConverter(Codec.HEVC, 4, (b"\x42",))
    converter = AnnexBConverter(Codec.H264, 4, (b"\x67\x42",))
    converted = converter.convert(b"\x00\x00\x00\x01\x65", keyframe=True)
    assert converted == H264_AUD + START_CODE + b"\x67\x42" + START_CODE + b"\x65"


def test_bitstream_error_is_a_media_error() -> None:
    assert issubclass(BitstreamError, MediaError)


# -- properties ------------------------------------------------------------------------

nal_bodies = st.binary(min_size=0, max_size=40).map(lambda b: b.replace(b"\x00", b"\x01"))


@given(
    st.lists(st.tuples(st.integers(1, 23), nal_bodies), min_size=1, max_size=8),
    st.sampled_from([1, 2, 3, 4]),
    st.booleans(),
)
def test_h264_nal_units_come_out_in_order_behind_start_codes(
    units: list[tuple[int, bytes]], length_size: int, keyframe: bool
) -> None:
    nal_units = [bytes((0x60 | nal_type,)) + body for nal_type, body in units]
    sps, pps = b"\x67\x42\x00\x1f", b"\x68\xce\x3c\x80"
    converter = AnnexBConverter(Codec.H264, length_size, (sps, pps))
    converted = converter.convert(length_prefixed(nal_units, length_size), keyframe)
    out = annex_b_units(converted)
    types = [nal_unit_type(Codec.H264, u) for u in nal_units]
    if H264_AUD_TYPE not in types:
        assert out.pop(0) == b"\x09\xf0"
    leading = 0
    while leading < len(types) and types[leading] in (H264_AUD_TYPE, H264_SPS, H264_PPS):
        leading += 1
    inserted = [u for u in (sps, pps) if keyframe and nal_unit_type(Codec.H264, u) not in types]
    assert out == nal_units[:leading] + inserted + nal_units[leading:]


@given(st.binary(max_size=300), st.sampled_from([1, 2, 3, 4]), st.booleans())
def test_arbitrary_payloads_raise_only_bitstream_error(
    payload: bytes, length_size: int, keyframe: bool
) -> None:
    for codec in (Codec.H264, Codec.HEVC):
        parameter_sets = (b"\x67\x42",) if codec is Codec.H264 else (b"\x42\x01\x01",)
        converter = AnnexBConverter(codec, length_size, parameter_sets)
        try:
            converted = converter.convert(payload, keyframe)
        except BitstreamError:
            continue
        assert converted.startswith(START_CODE)


@given(st.binary(max_size=120), st.sampled_from([Codec.H264, Codec.HEVC]), st.binary(max_size=64))
def test_arbitrary_records_raise_only_bitstream_error(
    record: bytes, codec: Codec, payload: bytes
) -> None:
    try:
        converter = AnnexBConverter.from_config(codec, record)
    except BitstreamError:
        return
    for keyframe in (True, False):
        with contextlib.suppress(BitstreamError):
            converter.convert(payload, keyframe)


@given(st.data())
def test_arbitrary_changes_to_real_records_raise_only_bitstream_error(
    h264: EncodedVideo, hevc: EncodedVideo, data: st.DataObject
) -> None:
    video = data.draw(st.sampled_from([h264, hevc]))
    record = bytearray(video.record)
    for _ in range(data.draw(st.integers(1, 4))):
        record[data.draw(st.integers(0, len(record) - 1))] = data.draw(st.integers(0, 255))
    try:
        converter = AnnexBConverter.from_config(video.codec, bytes(record))
    except BitstreamError:
        return
    frame = video.frames[0]
    with contextlib.suppress(BitstreamError):
        converter.convert(frame.payload, frame.keyframe)
