"""The one packet type that flows from ingest to every output.

An RTMP publisher, the HLS segmenter, RTMP players and the transcoder all speak
`MediaPacket`, so no stage needs to know which protocol fed it. Payloads are the
codec's own bytes (length-prefixed NAL units for H.264/HEVC, raw AAC frames), never
a container's framing, so muxers can take them as they are.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from lpms.records import record


class TrackKind(enum.Enum):
    """What a packet carries. Each protocol maps kinds to its own codes at its edge
    (RTMP message type IDs, FLV tag types), so none of them leaks into the rest."""

    AUDIO = "audio"
    VIDEO = "video"
    DATA = "data"


class Codec(enum.Enum):
    """Codecs lpms understands; anything else travels as ``OPAQUE`` payloads."""

    H264 = "h264"
    HEVC = "hevc"
    AV1 = "av1"
    VP9 = "vp9"
    AAC = "aac"
    MP3 = "mp3"
    OPUS = "opus"
    AMF0 = "amf0"
    OPAQUE = "opaque"


@dataclass(frozen=True, slots=True)
class CodecConfig:
    """Decoder configuration a run of packets depends on.

    ``extradata`` is what FFmpeg calls extradata: the avcC/hvcC/av1C record for video,
    the AudioSpecificConfig for AAC. Packets hold a reference to the config in force
    when they were received, so a late subscriber or a muxer always knows how to
    decode what it is handed, even across a mid-stream change.
    """

    codec: Codec
    extradata: bytes
    width: int = 0
    height: int = 0
    sample_rate: int = 0
    channels: int = 0


@record
class MediaPacket:
    """One access unit (or one config/metadata record) on one track.

    Timestamps are in milliseconds, the unit of RTMP and FLV. ``dts`` is when the
    packet is decoded, ``pts`` when it is shown (``dts`` plus the composition offset).

    ``is_config`` marks a sequence header (AVC/HEVC/AV1 decoder record, AAC
    AudioSpecificConfig); ``payload`` is then the config itself. ``DATA`` packets carry
    AMF0-encoded script data such as ``onMetaData``.

    ``flv_header`` is the FLV tag body prefix (1-5 bytes for legacy tags, 5+ for
    Enhanced RTMP) the packet arrived with, kept so a relay can resend the tag exactly;
    packets made elsewhere leave it empty and the FLV layer builds one.
    """

    kind: TrackKind
    codec: Codec
    dts: int
    pts: int
    keyframe: bool
    payload: bytes
    is_config: bool = False
    config: CodecConfig | None = None
    flv_header: bytes = b""

    @property
    def composition_offset(self) -> int:
        """Milliseconds from decode to presentation (B-frames make it positive)."""
        return self.pts - self.dts

    def with_timestamps(self, dts: int, pts: int) -> MediaPacket:
        """A copy at other timestamps, for per-player rebasing and repairs."""
        return MediaPacket(
            kind=self.kind,
            codec=self.codec,
            dts=dts,
            pts=pts,
            keyframe=self.keyframe,
            payload=self.payload,
            is_config=self.is_config,
            config=self.config,
            flv_header=self.flv_header,
        )
