"""Reading an FLV file's tags the way an RTMP publish delivers them, for tests."""

from __future__ import annotations

from lpms.media.flv import FLVDemuxer
from lpms.media.packet import MediaPacket


def flv_packets(flv: bytes) -> list[MediaPacket]:
    """An FLV file's tags, demuxed the way an RTMP publish is."""
    demuxer = FLVDemuxer()
    packets: list[MediaPacket] = []
    pos = 9 + 4  # file header, then PreviousTagSize0
    while pos + 11 <= len(flv):
        tag_type = flv[pos]
        size = int.from_bytes(flv[pos + 1 : pos + 4], "big")
        timestamp = int.from_bytes(flv[pos + 4 : pos + 7], "big") | (flv[pos + 7] << 24)
        body = flv[pos + 11 : pos + 11 + size]
        pos += 11 + size + 4
        if tag_type == 8:
            packet = demuxer.demux_audio(timestamp, body)
        elif tag_type == 9:
            packet = demuxer.demux_video(timestamp, body)
        else:
            continue
        if packet is not None:
            packets.append(packet)
    return packets
