"""fMP4 boxes (`lpms.hls.fmp4`) read back two ways: by a box walker written here
from ISO/IEC 14496-12 (sizes nest, ``trun`` points into ``mdat``, ``tfdt`` runs on)
and by FFmpeg's own MP4 demuxer (the samples come out as they went in)."""

from __future__ import annotations

import io
import itertools
import struct
from collections.abc import Iterator

import av
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lpms.errors import HLSError
from lpms.hls.fmp4 import (
    NON_SYNC_SAMPLE_FLAGS,
    SYNC_SAMPLE_FLAGS,
    VIDEO_TIMESCALE,
    Sample,
    Track,
    dops_box,
    fragment,
    init_segment,
)
from lpms.media.packet import Codec, CodecConfig
from tests.media import Part, make_clip


def boxes(data: bytes, start: int = 0, end: int | None = None) -> Iterator[tuple[bytes, int, int]]:
    """(type, payload start, payload end) of each box in data[start:end]."""
    end = len(data) if end is None else end
    while start < end:
        size, kind = struct.unpack_from(">I4s", data, start)
        assert size >= 8, f"box {kind!r} of size {size}"
        assert start + size <= end, f"box {kind!r} runs past its parent"
        yield kind, start + 8, start + size
        start += size


def child(data: bytes, start: int, end: int, kind: bytes) -> tuple[int, int]:
    return next((s, e) for k, s, e in boxes(data, start, end) if k == kind)


def read_fragment(data: bytes) -> tuple[int, int, list[tuple[int, int, int, int]], bytes]:
    """(sequence number, tfdt, [(duration, size, flags, composition offset)], mdat)."""
    (moof_kind, moof_start, moof_end), (mdat_kind, mdat_start, mdat_end) = list(boxes(data))
    assert (moof_kind, mdat_kind) == (b"moof", b"mdat")
    mfhd = child(data, moof_start, moof_end, b"mfhd")
    sequence = struct.unpack_from(">I", data, mfhd[0] + 4)[0]
    traf = child(data, moof_start, moof_end, b"traf")
    tfdt = child(data, *traf, b"tfdt")
    assert data[tfdt[0]] == 1  # version 1: 64-bit
    base = struct.unpack_from(">Q", data, tfdt[0] + 4)[0]
    trun = child(data, *traf, b"trun")
    count, offset = struct.unpack_from(">Ii", data, trun[0] + 4)
    assert moof_start - 8 + offset == mdat_start  # data offset: from the moof's first byte
    entries = [struct.unpack_from(">IIIi", data, trun[0] + 12 + 16 * i) for i in range(count)]
    assert sum(size for _, size, _, _ in entries) == mdat_end - mdat_start
    return sequence, base, entries, data[mdat_start:mdat_end]


samples_strategy = st.lists(
    st.builds(
        Sample,
        data=st.binary(min_size=1, max_size=40),
        duration=st.integers(1, 6000),
        keyframe=st.booleans(),
        composition_offset=st.integers(-3000, 9000),
    ),
    min_size=1,
    max_size=30,
)


@given(st.lists(samples_strategy, min_size=1, max_size=8), st.integers(0, 2**40))
def test_fragments_carry_their_samples_and_a_running_decode_time(
    parts: list[list[Sample]], start: int
) -> None:
    decode_time = start
    for number, samples in enumerate(parts, 1):
        sequence, base, entries, mdat = read_fragment(fragment(number, 1, decode_time, samples))
        assert sequence == number
        assert base == decode_time
        assert mdat == b"".join(s.data for s in samples)
        assert [(d, z, c) for d, z, _, c in entries] == [
            (s.duration, len(s.data), s.composition_offset) for s in samples
        ]
        assert [f for _, _, f, _ in entries] == [
            SYNC_SAMPLE_FLAGS if s.keyframe else NON_SYNC_SAMPLE_FLAGS for s in samples
        ]
        decode_time += sum(s.duration for s in samples)


def test_a_fragment_needs_samples_and_a_time_from_zero() -> None:
    with pytest.raises(HLSError, match="needs a sample"):
        fragment(1, 1, 0, [])
    with pytest.raises(HLSError, match="before 0"):
        fragment(1, 1, -1, [Sample(b"x", 1, True)])


def test_an_init_segment_is_ftyp_then_moov_with_a_fragmented_track_each() -> None:
    video = Track(1, CodecConfig(Codec.H264, b"\x01\x64\x00\x1f\xff\xe0\x00", 640, 360), 90000)
    audio = Track(2, CodecConfig(Codec.AAC, b"\x11\x90", sample_rate=48000, channels=2), 48000)
    data = init_segment([video, audio])
    kinds = [kind for kind, _, _ in boxes(data)]
    assert kinds == [b"ftyp", b"moov"]
    moov = child(data, *next((s, e) for k, s, e in boxes(data) if k == b"moov"), b"mvex")
    assert [k for k, _, _ in boxes(data, *moov)] == [b"trex", b"trex"]
    moov_start, moov_end = next((s, e) for k, s, e in boxes(data) if k == b"moov")
    assert [k for k, _, _ in boxes(data, moov_start, moov_end)] == [
        b"mvhd",
        b"trak",
        b"trak",
        b"mvex",
    ]


def test_ffmpeg_reads_back_every_sample_of_h264_and_aac() -> None:
    """A real clip's packets through our boxes, then FFmpeg's MP4 demuxer: the same
    payloads, timestamps and keyframes, and every frame decodes."""
    clip = make_clip(Part(320, 180, 2.0), fps=30, gop_frames=30, container="mp4", b_frames=2)
    with av.open(io.BytesIO(clip)) as source:
        video, audio = source.streams.video[0], source.streams.audio[0]
        video_config = CodecConfig(Codec.H264, bytes(video.codec_context.extradata), 320, 180)
        audio_config = CodecConfig(
            Codec.AAC, bytes(audio.codec_context.extradata), sample_rate=48000, channels=1
        )
        packets = [p for p in source.demux() if p.size]
        frames = [p for p in packets if p.stream is video]
        sounds = [p for p in packets if p.stream is audio]
        time_base = video.time_base
    # Decode times from 0 (the MP4's first is below it, for its B-frames), 90 kHz.
    ticks = [round(p.dts * time_base * VIDEO_TIMESCALE) for p in frames]
    ticks = [t - ticks[0] for t in ticks]
    durations = [b - a for a, b in itertools.pairwise(ticks)] + [3000]
    offsets = [round((p.pts - p.dts) * time_base * VIDEO_TIMESCALE) for p in frames]
    samples = [
        Sample(bytes(p), duration, p.is_keyframe, offset)
        for p, duration, offset in zip(frames, durations, offsets, strict=True)
    ]
    video_out = init_segment([Track(1, video_config, VIDEO_TIMESCALE)])
    video_out += fragment(1, 1, ticks[0], samples[:20])
    video_out += fragment(2, 1, ticks[20], samples[20:])
    audio_out = init_segment([Track(1, audio_config, 48000)])
    audio_out += fragment(1, 1, 0, [Sample(bytes(p), 1024, True) for p in sounds])
    with av.open(io.BytesIO(video_out)) as container:
        got = [p for p in container.demux() if p.size]
        assert [bytes(p) for p in got] == [bytes(p) for p in frames]
        assert [p.is_keyframe for p in got] == [p.is_keyframe for p in frames]
        assert [round(p.pts * p.time_base * VIDEO_TIMESCALE) for p in got] == [
            t + offset for t, offset in zip(ticks, offsets, strict=True)
        ]
    with av.open(io.BytesIO(video_out)) as container:
        assert len(list(container.decode(video=0))) == len(frames)
    with av.open(io.BytesIO(audio_out)) as container:
        got = [p for p in container.demux() if p.size]
        assert [bytes(p) for p in got] == [bytes(p) for p in sounds]
        assert [p.pts for p in got] == [1024 * n for n in range(len(sounds))]


def test_opus_id_header_becomes_a_big_endian_dops() -> None:
    head = b"OpusHead" + bytes([1, 2]) + struct.pack("<HIhB", 312, 48000, 0, 0)
    assert dops_box(head) == struct.pack(">I4s", 19, b"dOps") + struct.pack(
        ">BBHIhB", 0, 2, 312, 48000, 0, 0
    )
    with pytest.raises(HLSError, match="shorter"):
        dops_box(head[:15])


def test_a_codec_fmp4_cannot_carry_is_refused() -> None:
    track = Track(1, CodecConfig(Codec.AMF0, b""), 1000)
    with pytest.raises(HLSError, match="cannot go into fMP4"):
        init_segment([track])
