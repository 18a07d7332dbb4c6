"""Opus: the ID header (RFC 7845 5.1) and the duration of a packet (RFC 6716 3.1)."""

from __future__ import annotations

from lpms.errors import MediaError
from lpms.media.packet import Codec, CodecConfig

# RFC 7845 4: Opus always decodes at 48 kHz, whatever rate the input had.
SAMPLE_RATE = 48000
# RFC 6716 3.1: the frame size of each TOC configuration, in 48 kHz samples.
_FRAME_SAMPLES = (
    [480, 960, 1920, 2880] * 3  # SILK-only: 10, 20, 40, 60 ms
    + [480, 960] * 2  # hybrid: 10, 20 ms
    + [120, 240, 480, 960] * 4  # CELT-only: 2.5, 5, 10, 20 ms
)


def codec_config(head: bytes) -> CodecConfig:
    """An Opus ID header (RFC 7845 5.1): "OpusHead", version, channel count, pre-skip,
    input rate, gain, mapping family. Opus always decodes at 48 kHz."""
    if len(head) < 19 or not head.startswith(b"OpusHead") or head[8] >> 4 != 0:
        raise MediaError("Opus sequence start is not an Opus ID header (RFC 7845 5.1)")
    channels = head[9]
    if channels == 0:
        raise MediaError("Opus ID header with no channels")
    return CodecConfig(Codec.OPUS, bytes(head), sample_rate=SAMPLE_RATE, channels=channels)


def packet_samples(packet: bytes) -> int:
    """48 kHz samples in an Opus packet, from its TOC byte (RFC 6716 3.1)."""
    if not packet:
        raise MediaError("an empty Opus packet")
    toc = packet[0]
    frame = _FRAME_SAMPLES[toc >> 3]
    code = toc & 0x3
    if code == 0:
        count = 1
    elif code in (1, 2):
        count = 2
    else:
        if len(packet) < 2:
            raise MediaError("an Opus code 3 packet without its frame count")
        count = packet[1] & 0x3F
    return frame * count
