"""Codecs: what lpms knows about each codec's own bytes, one module per codec.

Parameter sets and decoder configuration records (H.264, HEVC, AV1, VP9, AAC, Opus),
length-prefixed to Annex B conversion, ADTS and RFC 6381 codec strings live here,
so FLV, the muxers, the transcoder and every protocol share one reading of them.
Containers (FLV tags, MP4 boxes, MPEG-TS) stay with their own layers.
"""

from __future__ import annotations

from lpms.errors import MediaError
from lpms.media.codecs import aac, av1, h264, hevc, vp9
from lpms.media.packet import Codec

# ISO/IEC 14496-3 1.5.1.1: object type 34 is MPEG-1/2 Layer 3, what Apple's HLS
# authoring spec writes for MP3 in CODECS.
_MP3_CODECS = "mp4a.40.34"


def video_dimensions(codec: Codec, record: bytes) -> tuple[int, int]:
    """(width, height) from a decoder configuration record, (0, 0) when unreadable.

    Dimensions only label a stream (playlists, the API); decoders read the record
    themselves, so an SPS we cannot follow is no reason to refuse a publisher.
    """
    try:
        if codec is Codec.H264:
            return h264.parse_avc_sps(h264.first_sps(record))
        if codec is Codec.HEVC:
            return hevc.parse_hevc_sps(hevc.first_sps(record))
        if codec is Codec.AV1:
            return av1.parse_av1_sequence_header(av1.sequence_header_obu(record))
    except MediaError:
        return 0, 0
    # vpcC holds no picture size; VP9 signals it in each keyframe.
    return 0, 0


def codecs_string(codec: Codec, extradata: bytes) -> str | None:
    """The RFC 6381 codec string for a track, read from its decoder configuration
    record (the ``extradata`` of `lpms.media.packet.CodecConfig`).

    None when the codec has no string here or the record cannot be read: a variant
    without CODECS is still playable, while a wrong one makes players skip it.
    """
    match codec:
        case Codec.H264:
            return h264.codecs_string(extradata)
        case Codec.HEVC:
            return hevc.codecs_string(extradata)
        case Codec.AV1:
            return av1.codecs_string(extradata)
        case Codec.VP9:
            return vp9.codecs_string(extradata)
        case Codec.AAC:
            return aac.codecs_string(extradata)
        case Codec.MP3:
            return _MP3_CODECS
        case Codec.OPUS:
            return "opus"  # the Opus-in-ISOBMFF encapsulation's codecs parameter
        case _:
            return None
