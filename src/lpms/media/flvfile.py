"""FLV as a byte stream (video_file_format_spec_v10_1, annex E): what HTTP-FLV and
WebSocket-FLV players read.

RTMP carries FLV tag *bodies* in its messages; an FLV stream wraps the same bodies
in tags (an 11-byte header each, then the size of the tag just written) after a
9-byte file header. The bodies come from `lpms.media.flv.tag_header`, so a packet
relayed from an RTMP publisher goes out exactly as it came in. Sans-IO: bytes out,
the caller writes them.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

from lpms.media.flv import tag_header
from lpms.media.packet import MediaPacket, TrackKind
from lpms.media.stream import PlayerClock

SIGNATURE = b"FLV\x01"
HEADER_SIZE = 9
TAG_HEADER_SIZE = 11
_HAS_AUDIO = 0x04
_HAS_VIDEO = 0x01
_TAG_HEADER = struct.Struct(">I3sBxxx")  # type and size, timestamp, its extension, stream ID 0
_PREVIOUS_TAG_SIZE = struct.Struct(">I")
_TAG_TYPES = {TrackKind.AUDIO: 8, TrackKind.VIDEO: 9, TrackKind.DATA: 18}  # E.4.1 TagType


def file_header(*, has_audio: bool, has_video: bool) -> bytes:
    """The file header and PreviousTagSize0 (E.2, E.3)."""
    flags = (_HAS_AUDIO if has_audio else 0) | (_HAS_VIDEO if has_video else 0)
    return SIGNATURE + bytes((flags,)) + struct.pack(">I", HEADER_SIZE) + bytes(4)


def tag(packet: MediaPacket, timestamp: int) -> bytes:
    """``packet`` as one FLV tag at ``timestamp`` (milliseconds), followed by its
    PreviousTagSize."""
    head = tag_header(packet)
    size = len(head) + len(packet.payload)
    timestamp &= 0xFFFFFFFF
    header = _TAG_HEADER.pack(
        _TAG_TYPES[packet.kind] << 24 | size,
        (timestamp & 0xFFFFFF).to_bytes(3, "big"),
        timestamp >> 24,
    )
    return b"".join((header, head, packet.payload, _PREVIOUS_TAG_SIZE.pack(TAG_HEADER_SIZE + size)))


class FLVStreamWriter:
    """One player's FLV stream: the header first, then tags on the player's own
    clock (its first media packet at 0, as RTMP players get them)."""

    def __init__(self) -> None:
        self.clock = PlayerClock()

    def tags(self, packets: Iterable[MediaPacket]) -> bytes:
        clock = self.clock
        return b"".join(tag(packet, clock.rebase(packet)) for packet in packets)
