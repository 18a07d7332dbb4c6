"""FLV tag bodies (the payload of RTMP audio/video messages) to `MediaPacket`s and back.

An RTMP audio or video message body is an FLV tag body: a codec header (FLV spec
v10.1 annex E.4.2 AUDIODATA, E.4.3 VIDEODATA, extended by Enhanced RTMP v1/v2 with
FourCC video) followed by the codec's own bytes. The demuxer keeps the header bytes
on each packet (``flv_header``) so a relay resends a tag exactly as it arrived, and
`tag_body` only has to build a header for packets made elsewhere (the transcoder).

Width, height, sample rate and channels come from the codec's own configuration
(SPS, AV1 sequence header, AudioSpecificConfig), not from the FLV flags, which cannot
express most of them. A configuration we cannot read still travels: its numbers are
left 0 and decoders downstream get the record as it was sent.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from lpms.buffer import Buffer
from lpms.errors import MediaError
from lpms.media.bitreader import BitReader, strip_emulation_prevention
from lpms.media.packet import Codec, CodecConfig, MediaPacket, TrackKind

# A decoder configuration record (avcC, hvcC, av1C, vpcC, AudioSpecificConfig) is a
# few dozen bytes; HEVC with SEI arrays stays well under a few KiB.
MAX_CONFIG_RECORD_SIZE = 64 * 1024
# Enhanced RTMP v2 ModEx entries that may precede the real VideoPacketType; one
# (TimestampOffsetNano) is defined today.
MAX_MODEX_ENTRIES = 8
# Larger than any level of H.264, HEVC or AV1 allows, so a nonsense SPS is refused.
MAX_PICTURE_DIMENSION = 32768
# pic_order_cnt_type 1 cycle length, H.264 7.4.2.1.1: 0..255.
MAX_REF_FRAMES_IN_POC_CYCLE = 255
# AV1 4.10.5: a leb128() OBU size is at most 8 bytes.
MAX_LEB128_BYTES = 8

_SI24_MIN = -(1 << 23)
_SI24_MAX = (1 << 23) - 1


class VideoFrameType(enum.IntEnum):
    """FLV spec E.4.3.1 FrameType; Enhanced RTMP keeps the values in 3 bits."""

    KEY_FRAME = 1
    INTER_FRAME = 2
    DISPOSABLE_INTER_FRAME = 3
    GENERATED_KEY_FRAME = 4
    COMMAND = 5


class VideoCodecId(enum.IntEnum):
    """FLV spec E.4.3.1 CodecID (legacy, non-FourCC video)."""

    SORENSON_H263 = 2
    SCREEN = 3
    ON2_VP6 = 4
    ON2_VP6_ALPHA = 5
    SCREEN_V2 = 6
    AVC = 7


class AVCPacketType(enum.IntEnum):
    """FLV spec E.4.3.1 AVCPacketType."""

    SEQUENCE_HEADER = 0
    NALU = 1
    END_OF_SEQUENCE = 2


class VideoPacketType(enum.IntEnum):
    """Enhanced RTMP v2 ExVideoTagHeader VideoPacketType (low 4 bits of byte 0)."""

    SEQUENCE_START = 0
    CODED_FRAMES = 1
    SEQUENCE_END = 2
    CODED_FRAMES_X = 3
    METADATA = 4
    MPEG2TS_SEQUENCE_START = 5
    MULTITRACK = 6
    MOD_EX = 7


class SoundFormat(enum.IntEnum):
    """FLV spec E.4.2.1 SoundFormat; 9 is Enhanced RTMP's ExHeader."""

    LINEAR_PCM_PLATFORM_ENDIAN = 0
    ADPCM = 1
    MP3 = 2
    LINEAR_PCM_LITTLE_ENDIAN = 3
    NELLYMOSER_16KHZ_MONO = 4
    NELLYMOSER_8KHZ_MONO = 5
    NELLYMOSER = 6
    G711_A_LAW = 7
    G711_MU_LAW = 8
    EX_HEADER = 9
    AAC = 10
    SPEEX = 11
    MP3_8KHZ = 14
    DEVICE_SPECIFIC = 15


class AACPacketType(enum.IntEnum):
    """FLV spec E.4.2.1 AACPacketType."""

    SEQUENCE_HEADER = 0
    RAW = 1


class AudioPacketType(enum.IntEnum):
    """Enhanced RTMP v2 ExAudioTagHeader AudioPacketType (low 4 bits of byte 0)."""

    SEQUENCE_START = 0
    CODED_FRAMES = 1
    SEQUENCE_END = 2
    MULTICHANNEL_CONFIG = 4
    MULTITRACK = 5
    MOD_EX = 7


# Enhanced RTMP: byte 0 bit 7 of a video tag switches to the ExVideoTagHeader.
IS_EX_HEADER = 0x80
_OPUS_FOURCC = b"Opus"
_OPUS_PACKET_TYPES = frozenset({AudioPacketType.SEQUENCE_START, AudioPacketType.CODED_FRAMES})

_FOURCC_CODECS: dict[bytes, Codec] = {
    b"avc1": Codec.H264,
    b"hvc1": Codec.HEVC,
    b"av01": Codec.AV1,
    b"vp09": Codec.VP9,
}
_CODEC_FOURCCS: dict[Codec, bytes] = {
    Codec.HEVC: b"hvc1",
    Codec.AV1: b"av01",
    Codec.VP9: b"vp09",
}
# Codecs whose Enhanced RTMP CodedFrames carry an SI24 composition time.
_CODECS_WITH_COMPOSITION_TIME = frozenset({Codec.H264, Codec.HEVC})
_KEY_FRAME_TYPES = frozenset({VideoFrameType.KEY_FRAME, VideoFrameType.GENERATED_KEY_FRAME})
# The first bytes of the common tags, for the demuxer's fast paths.
_AVC_KEY_FRAME = VideoFrameType.KEY_FRAME << 4 | VideoCodecId.AVC
_AVC_INTER_FRAME = VideoFrameType.INTER_FRAME << 4 | VideoCodecId.AVC
_AVC_FRAME_STARTS = frozenset({_AVC_KEY_FRAME, _AVC_INTER_FRAME})
_AVC_NALU = int(AVCPacketType.NALU)

# FLV spec E.4.2.1: for AAC, SoundRate is 3 (44 kHz), SoundSize 1, SoundType 1 always.
_AAC_SOUND_FLAGS = SoundFormat.AAC << 4 | 0x0F
_AAC_RAW = bytes((_AAC_SOUND_FLAGS, AACPacketType.RAW))
# The fast paths' enum members, read once: a member looked up through its class
# costs more than the rest of a fast path's checks.
_AUDIO, _VIDEO, _DATA = TrackKind.AUDIO, TrackKind.VIDEO, TrackKind.DATA
_AAC, _H264 = Codec.AAC, Codec.H264
_LEGACY_SOUND_RATES = (5512, 11025, 22050, 44100)


@dataclass(frozen=True, slots=True)
class AudioSpecificConfig:
    """What a player needs from an AAC AudioSpecificConfig (ISO/IEC 14496-3 1.6.2.1)."""

    audio_object_type: int
    sample_rate: int
    channels: int


class _TagCursor(Buffer):
    """A `Buffer` over one tag body that can hand back the header it has read so far."""

    __slots__ = ("_body",)

    def __init__(self, body: bytes | bytearray | memoryview) -> None:
        super().__init__(body, MediaError)
        self._body = memoryview(body)

    def split(self) -> tuple[bytes, bytes]:
        """(the header read so far, everything after it)."""
        header = bytes(self._body[: self.position])
        return header, bytes(self.pull_rest())


class FLVDemuxer:
    """Per-publisher state: the codec configuration currently in force for each track.

    Feed it the bodies of RTMP audio and video messages; it returns one `MediaPacket`
    per body, or None for bodies that carry nothing to forward (empty keep-alive tags
    that FFmpeg and OBS send, end-of-sequence markers, video command frames).
    """

    __slots__ = ("_audio_config", "_max_config_size", "_max_modex_entries", "_video_config")

    def __init__(
        self,
        *,
        max_config_size: int = MAX_CONFIG_RECORD_SIZE,
        max_modex_entries: int = MAX_MODEX_ENTRIES,
    ) -> None:
        self._max_config_size = max_config_size
        self._max_modex_entries = max_modex_entries
        self._video_config: CodecConfig | None = None
        self._audio_config: CodecConfig | None = None

    @property
    def video_config(self) -> CodecConfig | None:
        return self._video_config

    @property
    def audio_config(self) -> CodecConfig | None:
        return self._audio_config

    # -- audio ---------------------------------------------------------------------

    def demux_audio(
        self, timestamp: int, body: bytes | bytearray | memoryview
    ) -> MediaPacket | None:
        """One AUDIODATA body (FLV spec E.4.2.1) as a packet; audio is always a keyframe."""
        if not body:
            return None
        if body[:2] == _AAC_RAW and len(body) > 2 and isinstance(body, bytes):
            # Nearly every audio tag: an AAC frame, read without a cursor.
            return MediaPacket(
                _AUDIO,
                _AAC,
                timestamp,
                timestamp,
                True,
                body[2:],
                False,
                _matching(self._audio_config, _AAC),
                _AAC_RAW,
            )
        tag = _TagCursor(body)
        flags = tag.pull_uint8()
        sound_format = flags >> 4
        if sound_format == SoundFormat.AAC:
            return self._demux_aac(timestamp, tag)
        if sound_format in (SoundFormat.MP3, SoundFormat.MP3_8KHZ):
            return _coded_packet(TrackKind.AUDIO, Codec.MP3, timestamp, 0, True, tag, None)
        packet_type = flags & 0x0F
        ex_header = sound_format == SoundFormat.EX_HEADER
        # A FourCC read and not Opus stays in the header of a packet relayed as it came.
        if (
            ex_header
            and packet_type in _OPUS_PACKET_TYPES
            and tag.remaining >= 4
            and tag.pull_bytes(4) == _OPUS_FOURCC
        ):
            return self._demux_opus(timestamp, packet_type, tag)
        # Other Enhanced RTMP audio (FLAC, AC-3, ...) and the old codecs are relayed
        # untouched; a SequenceStart is marked as config so late players get it too.
        is_config = ex_header and packet_type == AudioPacketType.SEQUENCE_START
        return _opaque_packet(TrackKind.AUDIO, timestamp, True, tag, is_config=is_config)

    def _demux_opus(self, timestamp: int, packet_type: int, tag: _TagCursor) -> MediaPacket | None:
        """Enhanced RTMP v2 Opus: a SequenceStart carries the Opus ID header (RFC 7845
        5.1, "OpusHead"), CodedFrames one Opus packet each."""
        if packet_type == AudioPacketType.SEQUENCE_START:
            header, record = self._config_record(tag, "Opus")
            config = _opus_codec_config(record)
            self._audio_config = config
            return _config_packet(TrackKind.AUDIO, timestamp, 0, True, header, config)
        in_force = _matching(self._audio_config, Codec.OPUS)
        return _coded_packet(TrackKind.AUDIO, Codec.OPUS, timestamp, 0, True, tag, in_force)

    def _demux_aac(self, timestamp: int, tag: _TagCursor) -> MediaPacket | None:
        aac_packet_type = tag.pull_uint8()
        if aac_packet_type == AACPacketType.SEQUENCE_HEADER:
            header, record = self._config_record(tag, "AAC")
            config = _aac_codec_config(record)
            self._audio_config = config
            return _config_packet(TrackKind.AUDIO, timestamp, 0, True, header, config)
        if aac_packet_type == AACPacketType.RAW:
            in_force = _matching(self._audio_config, Codec.AAC)
            return _coded_packet(TrackKind.AUDIO, Codec.AAC, timestamp, 0, True, tag, in_force)
        raise MediaError(f"unknown AACPacketType {aac_packet_type}")

    # -- video ---------------------------------------------------------------------

    def demux_video(
        self, timestamp: int, body: bytes | bytearray | memoryview
    ) -> MediaPacket | None:
        """One VIDEODATA body: legacy (FLV spec E.4.3.1) or Enhanced RTMP ExVideoTagHeader."""
        if not body:
            return None
        first = body[0]
        if (
            first in _AVC_FRAME_STARTS
            and len(body) > 5
            and body[1] == _AVC_NALU
            and isinstance(body, bytes)
        ):
            # Nearly every video tag: legacy AVC frames, read without a cursor.
            composition_time = int.from_bytes(body[2:5], "big", signed=True)
            return MediaPacket(
                _VIDEO,
                _H264,
                timestamp,
                timestamp + composition_time,
                first == _AVC_KEY_FRAME,
                body[5:],
                False,
                _matching(self._video_config, _H264),
                body[:5],
            )
        tag = _TagCursor(body)
        first = tag.pull_uint8()
        if first & IS_EX_HEADER:
            return self._demux_enhanced_video(timestamp, tag, first)
        return self._demux_legacy_video(timestamp, tag, first)

    def _demux_legacy_video(
        self, timestamp: int, tag: _TagCursor, first: int
    ) -> MediaPacket | None:
        frame_type = first >> 4
        if frame_type == VideoFrameType.COMMAND:
            return None  # E.4.3.1: a one-byte seek command instead of video data
        keyframe = frame_type in _KEY_FRAME_TYPES
        if (first & 0x0F) != VideoCodecId.AVC:
            # Sorenson, VP6, screen video: relayed as they came, never decoded.
            return _opaque_packet(TrackKind.VIDEO, timestamp, keyframe, tag)
        avc_packet_type = tag.pull_uint8()
        if avc_packet_type == AVCPacketType.END_OF_SEQUENCE:
            return None
        composition_time = tag.pull_int24()
        if avc_packet_type == AVCPacketType.SEQUENCE_HEADER:
            return self._sequence_start(Codec.H264, timestamp, composition_time, keyframe, tag)
        if avc_packet_type == AVCPacketType.NALU:
            return self._coded_frames(Codec.H264, timestamp, composition_time, keyframe, tag)
        raise MediaError(f"unknown AVCPacketType {avc_packet_type}")

    def _demux_enhanced_video(
        self, timestamp: int, tag: _TagCursor, first: int
    ) -> MediaPacket | None:
        frame_type = (first >> 4) & 0x07
        keyframe = frame_type in _KEY_FRAME_TYPES
        packet_type = self._skip_modex(tag, first & 0x0F)
        if packet_type == VideoPacketType.MULTITRACK:
            # Several tracks in one message (E-RTMP v2 multitrack): relayed, not split.
            return _opaque_packet(TrackKind.VIDEO, timestamp, keyframe, tag)
        if packet_type not in _VIDEO_PACKET_TYPES:
            raise MediaError(f"unknown Enhanced RTMP VideoPacketType {packet_type}")
        if frame_type == VideoFrameType.COMMAND and packet_type != VideoPacketType.METADATA:
            return None  # E-RTMP ExVideoTagHeader: a VideoCommand byte, no video body
        codec = _FOURCC_CODECS.get(tag.pull_bytes(4))
        if packet_type == VideoPacketType.SEQUENCE_END:
            return None
        if packet_type == VideoPacketType.METADATA:
            # AMF-encoded colorInfo (HDR); the frame type means nothing here (E-RTMP v2).
            return _opaque_packet(TrackKind.VIDEO, timestamp, False, tag)
        if codec is None or packet_type == VideoPacketType.MPEG2TS_SEQUENCE_START:
            # vp08, vvc1, ... and the AV1 MPEG-2 TS descriptor: relayed, not decoded.
            is_config = packet_type in _SEQUENCE_START_TYPES
            return _opaque_packet(TrackKind.VIDEO, timestamp, keyframe, tag, is_config=is_config)
        if packet_type == VideoPacketType.SEQUENCE_START:
            return self._sequence_start(codec, timestamp, 0, keyframe, tag)
        composition_time = 0
        if packet_type == VideoPacketType.CODED_FRAMES and codec in _CODECS_WITH_COMPOSITION_TIME:
            composition_time = tag.pull_int24()
        return self._coded_frames(codec, timestamp, composition_time, keyframe, tag)

    def _skip_modex(self, tag: _TagCursor, packet_type: int) -> int:
        """The real VideoPacketType behind E-RTMP v2 ModEx entries (kept in flv_header).

        The one ModEx type defined, TimestampOffsetNano, refines a timestamp below the
        millisecond, finer than anything lpms does with time, so its value is skipped.
        """
        for _ in range(self._max_modex_entries + 1):
            if packet_type != VideoPacketType.MOD_EX:
                return packet_type
            data_size = tag.pull_uint8() + 1
            if data_size == 256:
                data_size = tag.pull_uint16() + 1
            tag.pull_view(data_size)
            packet_type = tag.pull_uint8() & 0x0F
        raise MediaError(f"more than {self._max_modex_entries} ModEx entries in one video tag")

    def _sequence_start(
        self, codec: Codec, timestamp: int, composition_time: int, keyframe: bool, tag: _TagCursor
    ) -> MediaPacket:
        header, record = self._config_record(tag, codec.name)
        width, height = video_dimensions(codec, record)
        config = CodecConfig(codec=codec, extradata=record, width=width, height=height)
        self._video_config = config
        return _config_packet(
            TrackKind.VIDEO, timestamp, composition_time, keyframe, header, config
        )

    def _coded_frames(
        self, codec: Codec, timestamp: int, composition_time: int, keyframe: bool, tag: _TagCursor
    ) -> MediaPacket | None:
        config = _matching(self._video_config, codec)
        return _coded_packet(
            TrackKind.VIDEO, codec, timestamp, composition_time, keyframe, tag, config
        )

    def _config_record(self, tag: _TagCursor, what: str) -> tuple[bytes, bytes]:
        """(header, record); a sequence header must carry a record, and a sane one."""
        size = tag.remaining
        if size == 0:
            raise MediaError(f"{what} sequence header carries no configuration record")
        if size > self._max_config_size:
            raise MediaError(
                f"{what} configuration record of {size} bytes exceeds the "
                f"{self._max_config_size}-byte limit"
            )
        return tag.split()


_VIDEO_PACKET_TYPES = frozenset(VideoPacketType)
_SEQUENCE_START_TYPES = frozenset(
    {VideoPacketType.SEQUENCE_START, VideoPacketType.MPEG2TS_SEQUENCE_START}
)


def _opus_codec_config(head: bytes) -> CodecConfig:
    """An Opus ID header (RFC 7845 5.1): "OpusHead", version, channel count, pre-skip,
    input rate, gain, mapping family. Opus always decodes at 48 kHz."""
    if len(head) < 19 or not head.startswith(b"OpusHead") or head[8] >> 4 != 0:
        raise MediaError("Opus sequence start is not an Opus ID header (RFC 7845 5.1)")
    channels = head[9]
    if channels == 0:
        raise MediaError("Opus ID header with no channels")
    return CodecConfig(Codec.OPUS, bytes(head), sample_rate=48000, channels=channels)


def _matching(config: CodecConfig | None, codec: Codec) -> CodecConfig | None:
    """The config in force, if it describes this codec (a publisher may switch codecs)."""
    return config if config is not None and config.codec is codec else None


def _config_packet(
    kind: TrackKind,
    timestamp: int,
    composition_time: int,
    keyframe: bool,
    flv_header: bytes,
    config: CodecConfig,
) -> MediaPacket:
    return MediaPacket(
        kind=kind,
        codec=config.codec,
        dts=timestamp,
        pts=timestamp + composition_time,
        keyframe=keyframe,
        payload=config.extradata,
        is_config=True,
        config=config,
        flv_header=flv_header,
    )


def _coded_packet(
    kind: TrackKind,
    codec: Codec,
    timestamp: int,
    composition_time: int,
    keyframe: bool,
    tag: _TagCursor,
    config: CodecConfig | None,
) -> MediaPacket | None:
    """Everything after the header as one packet; None when the tag has no media in it."""
    flv_header, payload = tag.split()
    if not payload:
        return None
    return MediaPacket(
        kind=kind,
        codec=codec,
        dts=timestamp,
        pts=timestamp + composition_time,
        keyframe=keyframe,
        payload=payload,
        config=config,
        flv_header=flv_header,
    )


def _opaque_packet(
    kind: TrackKind, timestamp: int, keyframe: bool, tag: _TagCursor, *, is_config: bool = False
) -> MediaPacket | None:
    """A tag lpms does not decode, kept whole (header + payload) so it still relays."""
    flv_header, payload = tag.split()
    if not payload:
        return None
    return MediaPacket(
        kind=kind,
        codec=Codec.OPAQUE,
        dts=timestamp,
        pts=timestamp,
        keyframe=keyframe,
        payload=payload,
        is_config=is_config,
        flv_header=flv_header,
    )


# -- building tag bodies ---------------------------------------------------------------


def tag_body(packet: MediaPacket) -> bytes:
    """The FLV tag body (RTMP message body) that carries ``packet``.

    A packet that arrived over RTMP still holds its header, so relaying it costs one
    concatenation; others get the plainest header that carries them: legacy AVC/AAC
    tags (what every player reads) and Enhanced RTMP FourCC tags for HEVC, AV1, VP9.
    """
    return tag_header(packet) + packet.payload


def tag_header(packet: MediaPacket) -> bytes:
    """What goes before ``packet.payload`` in its FLV tag body (empty for script data):
    senders that write the two pieces out without joining them use this."""
    if packet.flv_header or packet.kind is _DATA:
        return packet.flv_header
    if packet.kind is TrackKind.VIDEO:
        return _video_tag_header(packet)
    return _audio_tag_header(packet)


def _video_tag_header(packet: MediaPacket) -> bytes:
    frame_type = VideoFrameType.KEY_FRAME if packet.keyframe else VideoFrameType.INTER_FRAME
    if packet.codec is Codec.H264:
        avc_packet_type = AVCPacketType.SEQUENCE_HEADER if packet.is_config else AVCPacketType.NALU
        first = frame_type << 4 | VideoCodecId.AVC
        return bytes((first, avc_packet_type)) + _si24(packet.composition_offset)
    fourcc = _CODEC_FOURCCS.get(packet.codec)
    if fourcc is None:
        raise MediaError(f"cannot build an FLV video header for a {packet.codec.name} packet")
    first = IS_EX_HEADER | frame_type << 4
    if packet.is_config:
        # E-RTMP SequenceStart has no composition time; a config's pts means nothing.
        return bytes((first | VideoPacketType.SEQUENCE_START,)) + fourcc
    if packet.codec in _CODECS_WITH_COMPOSITION_TIME:
        if packet.composition_offset == 0:
            return bytes((first | VideoPacketType.CODED_FRAMES_X,)) + fourcc
        return (
            bytes((first | VideoPacketType.CODED_FRAMES,))
            + fourcc
            + _si24(packet.composition_offset)
        )
    if packet.composition_offset != 0:
        raise MediaError(
            f"Enhanced RTMP {packet.codec.name} frames carry no composition time, "
            f"but the packet has pts - dts = {packet.composition_offset}"
        )
    return bytes((first | VideoPacketType.CODED_FRAMES,)) + fourcc


def _audio_tag_header(packet: MediaPacket) -> bytes:
    if packet.codec is Codec.AAC:
        aac_packet_type = AACPacketType.SEQUENCE_HEADER if packet.is_config else AACPacketType.RAW
        return bytes((_AAC_SOUND_FLAGS, aac_packet_type))
    if packet.codec is Codec.MP3:
        return bytes((_mp3_sound_flags(packet.config),))
    raise MediaError(f"cannot build an FLV audio header for a {packet.codec.name} packet")


def _mp3_sound_flags(config: CodecConfig | None) -> int:
    """E.4.2.1 flags for MP3; players take the real rate from the MP3 frame headers."""
    sample_rate = config.sample_rate if config is not None else 44100
    channels = config.channels if config is not None else 2
    rate_index = max(
        (i for i, rate in enumerate(_LEGACY_SOUND_RATES) if rate <= sample_rate), default=3
    )
    stereo = 0 if channels == 1 else 1
    return SoundFormat.MP3 << 4 | rate_index << 2 | 1 << 1 | stereo


def _si24(value: int) -> bytes:
    if not _SI24_MIN <= value <= _SI24_MAX:
        raise MediaError(f"composition offset {value} ms does not fit FLV's SI24 field")
    return (value & 0xFFFFFF).to_bytes(3, "big")


# -- codec configurations ----------------------------------------------------------------


def video_dimensions(codec: Codec, record: bytes) -> tuple[int, int]:
    """(width, height) from a decoder configuration record, (0, 0) when unreadable.

    Dimensions only label a stream (playlists, the API); decoders read the record
    themselves, so an SPS we cannot follow is no reason to refuse a publisher.
    """
    try:
        if codec is Codec.H264:
            return parse_avc_sps(_first_avc_sps(record))
        if codec is Codec.HEVC:
            return parse_hevc_sps(_first_hevc_sps(record))
        if codec is Codec.AV1:
            return parse_av1_sequence_header(_av1_sequence_header_obu(record))
    except MediaError:
        return 0, 0
    # vpcC holds no picture size; VP9 signals it in each keyframe.
    return 0, 0


def _first_avc_sps(record: bytes) -> memoryview:
    """The first SPS in an AVCDecoderConfigurationRecord (ISO/IEC 14496-15 5.3.3.1)."""
    buf = Buffer(record, MediaError)
    if buf.pull_uint8() != 1:
        raise MediaError("AVCDecoderConfigurationRecord version is not 1")
    buf.pull_view(4)  # profile, compatibility, level, lengthSizeMinusOne
    if buf.pull_uint8() & 0x1F == 0:
        raise MediaError("AVCDecoderConfigurationRecord holds no SPS")
    return buf.pull_view(buf.pull_uint16())


def _first_hevc_sps(record: bytes) -> memoryview:
    """The first SPS NAL unit in an HEVCDecoderConfigurationRecord (14496-15 8.3.3.1)."""
    buf = Buffer(record, MediaError)
    buf.pull_view(22)  # version, profile/tier/level, chroma, bit depths, frame rate
    for _ in range(buf.pull_uint8()):
        nal_unit_type = buf.pull_uint8() & 0x3F
        for _ in range(buf.pull_uint16()):
            nal_unit = buf.pull_view(buf.pull_uint16())
            if nal_unit_type == _HEVC_NAL_SPS:
                return nal_unit
    raise MediaError("HEVCDecoderConfigurationRecord holds no SPS")


_HEVC_NAL_SPS = 33
_AV1_OBU_SEQUENCE_HEADER = 1
# H.264 7.3.2.1.1: these profiles carry chroma_format_idc, bit depths, scaling lists.
_AVC_HIGH_PROFILES = frozenset({100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135})


def parse_avc_sps(nal_unit: bytes | memoryview) -> tuple[int, int]:
    """Displayed (width, height) from an H.264 SPS NAL unit (H.264 7.3.2.1.1, E.2.1)."""
    bits = BitReader(strip_emulation_prevention(nal_unit))
    if bits.read_bits(8) & 0x1F != 7:
        raise MediaError("not an H.264 SPS NAL unit")
    profile_idc = bits.read_bits(8)
    bits.skip_bits(16)  # constraint flags, level_idc
    bits.read_ue()  # seq_parameter_set_id
    chroma_format_idc = 1
    separate_colour_plane = False
    if profile_idc in _AVC_HIGH_PROFILES:
        chroma_format_idc = bits.read_ue()
        if chroma_format_idc == 3:
            separate_colour_plane = bits.read_flag()
        bits.read_ue()  # bit_depth_luma_minus8
        bits.read_ue()  # bit_depth_chroma_minus8
        bits.skip_bits(1)  # qpprime_y_zero_transform_bypass_flag
        if bits.read_flag():  # seq_scaling_matrix_present_flag
            _skip_avc_scaling_lists(bits, 8 if chroma_format_idc != 3 else 12)
    bits.read_ue()  # log2_max_frame_num_minus4
    _skip_avc_pic_order_cnt(bits)
    bits.read_ue()  # max_num_ref_frames
    bits.skip_bits(1)  # gaps_in_frame_num_value_allowed_flag
    width_in_mbs = bits.read_ue() + 1
    height_in_map_units = bits.read_ue() + 1
    frame_mbs_only = bits.read_flag()
    if not frame_mbs_only:
        bits.skip_bits(1)  # mb_adaptive_frame_field_flag
    bits.skip_bits(1)  # direct_8x8_inference_flag
    crop = _read_crop(bits) if bits.read_flag() else (0, 0, 0, 0)
    # 7.4.2.1.1: CropUnitX/Y depend on chroma subsampling and field coding.
    field_factor = 1 if frame_mbs_only else 2
    if chroma_format_idc == 0 or separate_colour_plane:
        crop_unit_x, crop_unit_y = 1, field_factor
    else:
        crop_unit_x = 1 if chroma_format_idc == 3 else 2
        crop_unit_y = (2 if chroma_format_idc == 1 else 1) * field_factor
    width = width_in_mbs * 16 - crop_unit_x * (crop[0] + crop[1])
    height = field_factor * height_in_map_units * 16 - crop_unit_y * (crop[2] + crop[3])
    return _checked_size(width, height)


def _skip_avc_scaling_lists(bits: BitReader, count: int) -> None:
    """H.264 7.3.2.1.1.1 scaling_list(): only the delta_scale codes are on the wire."""
    for index in range(count):
        if not bits.read_flag():
            continue
        last_scale = next_scale = 8
        for _ in range(16 if index < 6 else 64):
            if next_scale != 0:
                next_scale = (last_scale + bits.read_se() + 256) % 256
            last_scale = next_scale if next_scale != 0 else last_scale


def _skip_avc_pic_order_cnt(bits: BitReader) -> None:
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


def _read_crop(bits: BitReader) -> tuple[int, int, int, int]:
    """(left, right, top, bottom) crop or conformance window offsets, in chroma units."""
    return bits.read_ue(), bits.read_ue(), bits.read_ue(), bits.read_ue()


def parse_hevc_sps(nal_unit: bytes | memoryview) -> tuple[int, int]:
    """Displayed (width, height) from an HEVC SPS NAL unit (H.265 7.3.2.2.1)."""
    bits = BitReader(strip_emulation_prevention(nal_unit))
    if (bits.read_bits(16) >> 9) & 0x3F != _HEVC_NAL_SPS:
        raise MediaError("not an HEVC SPS NAL unit")
    bits.skip_bits(4)  # sps_video_parameter_set_id
    max_sub_layers_minus1 = bits.read_bits(3)
    bits.skip_bits(1)  # sps_temporal_id_nesting_flag
    _skip_hevc_profile_tier_level(bits, max_sub_layers_minus1)
    bits.read_ue()  # sps_seq_parameter_set_id
    chroma_format_idc = bits.read_ue()
    separate_colour_plane = chroma_format_idc == 3 and bits.read_flag()
    width = bits.read_ue()  # pic_width_in_luma_samples
    height = bits.read_ue()  # pic_height_in_luma_samples
    if bits.read_flag():  # conformance_window_flag
        left, right, top, bottom = _read_crop(bits)
        # Table 6-1: SubWidthC/SubHeightC; monochrome and 4:4:4 crop in luma samples.
        sub_width = 2 if chroma_format_idc in (1, 2) and not separate_colour_plane else 1
        sub_height = 2 if chroma_format_idc == 1 else 1
        width -= sub_width * (left + right)
        height -= sub_height * (top + bottom)
    return _checked_size(width, height)


def _skip_hevc_profile_tier_level(bits: BitReader, max_sub_layers_minus1: int) -> None:
    """H.265 7.3.3 profile_tier_level(1, sps_max_sub_layers_minus1)."""
    bits.skip_bits(88 + 8)  # general profile (88 bits), general_level_idc
    sub_layer_flags = [(bits.read_flag(), bits.read_flag()) for _ in range(max_sub_layers_minus1)]
    if max_sub_layers_minus1 > 0:
        bits.skip_bits(2 * (8 - max_sub_layers_minus1))  # reserved_zero_2bits
    for profile_present, level_present in sub_layer_flags:
        bits.skip_bits((88 if profile_present else 0) + (8 if level_present else 0))


def _av1_sequence_header_obu(record: bytes) -> memoryview:
    """The sequence header OBU's payload from an AV1CodecConfigurationRecord's configOBUs."""
    buf = Buffer(record, MediaError)
    if buf.pull_uint8() != 0x81:  # marker 1, version 1 (AV1-ISOBMFF 2.3.3)
        raise MediaError("AV1CodecConfigurationRecord has no marker/version 1")
    buf.pull_view(3)
    while not buf.eof():
        header = buf.pull_uint8()
        if header & 0x04:  # obu_extension_flag
            buf.pull_uint8()
        size = _read_leb128(buf) if header & 0x02 else buf.remaining
        payload = buf.pull_view(size)
        if (header >> 3) & 0x0F == _AV1_OBU_SEQUENCE_HEADER:
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
        _skip_av1_operating_points(bits)
    width_bits = bits.read_bits(4) + 1
    height_bits = bits.read_bits(4) + 1
    width = bits.read_bits(width_bits) + 1
    height = bits.read_bits(height_bits) + 1
    return _checked_size(width, height)


def _skip_av1_operating_points(bits: BitReader) -> None:
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


def _checked_size(width: int, height: int) -> tuple[int, int]:
    if not (0 < width <= MAX_PICTURE_DIMENSION and 0 < height <= MAX_PICTURE_DIMENSION):
        raise MediaError(f"implausible picture size {width}x{height}")
    return width, height


# ISO/IEC 14496-3 1.6.3.3 samplingFrequencyIndex; 0xF means 24 explicit bits follow.
_AAC_SAMPLE_RATES = (
    96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
)  # fmt: skip
_AAC_ESCAPE_FREQUENCY_INDEX = 0x0F
# 14496-3 1.6.3.4 channelConfiguration -> channels; 0 means a PCE describes them.
_AAC_CHANNELS = {1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 6: 6, 7: 8, 11: 7, 12: 8, 13: 24, 14: 8}
_AAC_OBJECT_TYPE_SBR = 5
_AAC_OBJECT_TYPE_PS = 29


def parse_aac_config(data: bytes | memoryview) -> AudioSpecificConfig:
    """The AudioSpecificConfig head (ISO/IEC 14496-3 1.6.2.1), incl. explicit HE-AAC.

    With explicit SBR/PS signalling the decoder outputs at the extension rate (and in
    stereo for PS), so that is what is reported.
    """
    bits = BitReader(data)
    audio_object_type = _read_aac_object_type(bits)
    sample_rate = _read_aac_sample_rate(bits)
    channels = _AAC_CHANNELS.get(bits.read_bits(4), 0)
    if audio_object_type in (_AAC_OBJECT_TYPE_SBR, _AAC_OBJECT_TYPE_PS):
        if audio_object_type == _AAC_OBJECT_TYPE_PS and channels == 1:
            channels = 2
        sample_rate = _read_aac_sample_rate(bits)
        audio_object_type = _read_aac_object_type(bits)
    return AudioSpecificConfig(audio_object_type, sample_rate, channels)


def _read_aac_object_type(bits: BitReader) -> int:
    object_type = bits.read_bits(5)
    return 32 + bits.read_bits(6) if object_type == 31 else object_type


def _read_aac_sample_rate(bits: BitReader) -> int:
    index = bits.read_bits(4)
    if index == _AAC_ESCAPE_FREQUENCY_INDEX:
        return bits.read_bits(24)
    if index >= len(_AAC_SAMPLE_RATES):
        raise MediaError(f"reserved AAC samplingFrequencyIndex {index}")
    return _AAC_SAMPLE_RATES[index]


def _aac_codec_config(record: bytes) -> CodecConfig:
    """The config for an AAC sequence header; rate and channels 0 when unreadable."""
    try:
        asc = parse_aac_config(record)
    except MediaError:
        return CodecConfig(codec=Codec.AAC, extradata=record)
    return CodecConfig(
        codec=Codec.AAC, extradata=record, sample_rate=asc.sample_rate, channels=asc.channels
    )
