"""FLV tag bodies (the payload of RTMP audio/video messages) to `MediaPacket`s and back.

An RTMP audio or video message body is an FLV tag body: a codec header (FLV spec
v10.1 annex E.4.2 AUDIODATA, E.4.3 VIDEODATA, extended by Enhanced RTMP v1/v2 with
FourCC video) followed by the codec's own bytes. The demuxer keeps the header bytes
on each packet (``flv_header``) so a relay resends a tag exactly as it arrived, and
`tag_body` only has to build a header for packets made elsewhere (the transcoder).

Width, height, sample rate and channels come from the codec's own configuration
(SPS, AV1 sequence header, AudioSpecificConfig, read by `lpms.media.codecs`), not
from the FLV flags, which cannot express most of them. A configuration we cannot
read still travels: its numbers are left 0 and decoders downstream get the record
as it was sent.
"""

from __future__ import annotations

import enum

from lpms.buffer import Buffer
from lpms.errors import MediaError
from lpms.media.codecs import aac, opus, video_dimensions
from lpms.media.packet import Codec, CodecConfig, MediaPacket, TrackKind

# A decoder configuration record (avcC, hvcC, av1C, vpcC, AudioSpecificConfig) is a
# few dozen bytes; HEVC with SEI arrays stays well under a few KiB.
MAX_CONFIG_RECORD_SIZE = 64 * 1024
# Enhanced RTMP v2 ModEx entries that may precede the real VideoPacketType; one
# (TimestampOffsetNano) is defined today.
MAX_MODEX_ENTRIES = 8

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
            config = opus.codec_config(record)
            self._audio_config = config
            return _config_packet(TrackKind.AUDIO, timestamp, 0, True, header, config)
        in_force = _matching(self._audio_config, Codec.OPUS)
        return _coded_packet(TrackKind.AUDIO, Codec.OPUS, timestamp, 0, True, tag, in_force)

    def _demux_aac(self, timestamp: int, tag: _TagCursor) -> MediaPacket | None:
        aac_packet_type = tag.pull_uint8()
        if aac_packet_type == AACPacketType.SEQUENCE_HEADER:
            header, record = self._config_record(tag, "AAC")
            config = aac.codec_config(record)
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
