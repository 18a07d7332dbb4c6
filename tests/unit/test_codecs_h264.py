"""H.264: an avcC record built from an encoder's Annex B output."""

from __future__ import annotations

from fractions import Fraction

import av

from lpms.media.codecs import codecs_string
from lpms.media.codecs.h264 import avc_config_from_annex_b
from lpms.media.packet import Codec


def test_avc_config_from_annex_b_keyframe() -> None:
    """The avcC built from an encoder's in-band SPS/PPS decodes the stream it came
    from and names the SPS's profile and level (what CODECS is made of)."""
    encoder = av.CodecContext.create("libx264", "w")
    assert isinstance(encoder, av.VideoCodecContext)
    encoder.width, encoder.height, encoder.pix_fmt = 320, 240, "yuv420p"
    encoder.time_base = Fraction(1, 30)
    encoder.options = {"preset": "veryfast", "profile": "high"}
    frame = av.VideoFrame(320, 240, "yuv420p")
    frame.pts = 0
    packets = encoder.encode(frame) + encoder.encode(None)
    keyframe = bytes(packets[0])
    record = avc_config_from_annex_b(keyframe)
    assert record is not None
    assert record[0] == 1
    assert record[1] == 100  # high profile
    assert codecs_string(Codec.H264, record) == f"avc1.64{record[2]:02x}{record[3]:02x}"
    decoder = av.CodecContext.create("h264", "r")
    decoder.extradata = record
    frames = decoder.decode(av.Packet(keyframe)) + decoder.decode(None)
    assert [(f.width, f.height) for f in frames] == [(320, 240)]
    assert avc_config_from_annex_b(b"\x00\x00\x00\x01\x65\x88") is None
