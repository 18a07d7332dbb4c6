"""FLV as a byte stream: what HTTP-FLV and WebSocket-FLV players are sent."""

from __future__ import annotations

import io

import av
from hypothesis import given
from hypothesis import strategies as st

from lpms.media.flvfile import FLVStreamWriter, file_header, tag
from lpms.media.packet import Codec, MediaPacket, TrackKind
from tests.e2e.clients import make_clip, read_packets
from tests.flv_file import flv_packets


def test_an_flv_stream_of_a_clips_packets_reads_back_in_ffmpeg_as_the_clip() -> None:
    clip = make_clip(2.0, gop_frames=30)
    packets = flv_packets(clip.flv)
    writer = FLVStreamWriter()
    data = file_header(has_audio=True, has_video=True) + writer.tags(packets)
    received = read_packets(io.BytesIO(data))
    assert received.error is None
    original = read_packets(io.BytesIO(clip.flv))
    assert [p.payload for p in received.packets] == [p.payload for p in original.packets]
    assert [p.keyframe for p in received.packets] == [p.keyframe for p in original.packets]
    assert received.video_size == original.video_size
    with av.open(io.BytesIO(data), format="flv") as container:
        frames = list(container.decode(video=0))
    assert frames
    assert (frames[0].width, frames[0].height) == original.video_size


def test_a_player_joining_late_starts_at_zero_with_composition_offsets_kept() -> None:
    packets = flv_packets(make_clip(2.0, gop_frames=30).flv)
    late = [p.with_timestamps(p.dts + 3_600_000, p.pts + 3_600_000) for p in packets]
    data = file_header(has_audio=True, has_video=True) + FLVStreamWriter().tags(late)
    again = flv_packets(data)
    first_media = next(p for p in packets if not p.is_config)
    assert [p.dts for p in again] == [max(0, p.dts - first_media.dts) for p in packets]
    assert [p.composition_offset for p in again] == [p.composition_offset for p in packets]


def test_the_header_flags_say_which_tracks_come() -> None:
    assert file_header(has_audio=True, has_video=False)[4] == 0x04
    assert file_header(has_audio=False, has_video=True)[4] == 0x01
    assert file_header(has_audio=True, has_video=True)[:5] == b"FLV\x01\x05"


@given(st.integers(0, 2**32 - 1), st.binary(min_size=1, max_size=64))
def test_a_tag_carries_any_32_bit_timestamp_and_its_size(timestamp: int, payload: bytes) -> None:
    packet = MediaPacket(TrackKind.AUDIO, Codec.AAC, 0, 0, True, payload)
    data = tag(packet, timestamp)
    size = int.from_bytes(data[1:4], "big")
    assert data[0] == 8  # FLV TagType: audio
    assert int.from_bytes(data[4:7], "big") | data[7] << 24 == timestamp
    assert len(data) == 11 + size + 4
    assert int.from_bytes(data[-4:], "big") == 11 + size
    assert data[11 + size - len(payload) : 11 + size] == payload
