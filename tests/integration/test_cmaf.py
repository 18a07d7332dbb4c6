"""CMAF segments and parts of real streams (`lpms.hls.cmaf`), read back by FFmpeg:
H.264 with AAC (B-frames), and what Enhanced RTMP brings (HEVC with Opus, AV1), each
published as FFmpeg 8's FLV muxer writes it. Every frame comes out of the init
segment and the segments, and out of the parts alone, in order, with timestamps that
run on across segments."""

from __future__ import annotations

import io
import itertools
from dataclasses import dataclass
from fractions import Fraction

import av
import pytest

from lpms.hls.cmaf import CMAFSegmenter, PartReady, SegmentReady
from lpms.hls.cutter import CutterOptions
from tests.flv_file import flv_packets
from tests.media import Part, make_clip

SIZE = (320, 180)
SECONDS = 6.0


def encode_flv(video_codec: str, audio_codec: str | None, fps: int = 30, gop: int = 60) -> bytes:
    """An FLV of ``video_codec`` (and ``audio_codec``) as FFmpeg 8 writes it: Enhanced
    RTMP FourCC tags for HEVC, AV1 and Opus."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="flv") as out:
        video = out.add_stream(video_codec, rate=fps)
        video.width, video.height, video.pix_fmt = *SIZE, "yuv420p"
        video.codec_context.gop_size = gop
        options = {"libx265": {"x265-params": "log-level=error:keyint=60:min-keyint=60"}}
        options["libsvtav1"] = {"preset": "12", "svtav1-params": "keyint=60"}
        video.codec_context.options = options.get(video_codec, {})
        audio = out.add_stream(audio_codec, rate=48000) if audio_codec else None
        pattern = f"testsrc2=size={SIZE[0]}x{SIZE[1]}:rate={fps}:duration={SECONDS}"
        with av.open(pattern, format="lavfi") as source:
            for index, frame in enumerate(source.decode(video=0)):
                frame.pts, frame.time_base = index, Fraction(1, fps)
                frame.pict_type = av.video.frame.PictureType.NONE
                for packet in video.encode(frame):
                    out.mux(packet)
            for packet in video.encode(None):
                out.mux(packet)
        if audio is not None:
            tone = f"sine=frequency=440:duration={SECONDS}:sample_rate=48000"
            with av.open(tone, format="lavfi") as source:
                for frame in [*source.decode(audio=0), None]:
                    for packet in audio.encode(frame):
                        out.mux(packet)
    return buffer.getvalue()


@dataclass
class Cut:
    inits: dict[bool, bytes]
    segments: dict[bool, list[bytes]]
    parts: dict[bool, list[bytes]]
    ready: list[SegmentReady]


def cut(flv: bytes, part_duration: float | None = 0.333) -> Cut:
    segmenter = CMAFSegmenter(
        CutterOptions(segment_duration=2.0, part_duration=part_duration), first_sequence=50
    )
    events = []
    for packet in flv_packets(flv):
        events += segmenter.push(packet)
    events += segmenter.finish()
    result = Cut({}, {True: [], False: []}, {True: [], False: []}, [])
    for event in events:
        if isinstance(event, PartReady):
            result.parts[event.video].append(event.part.data)
            result.inits.setdefault(event.video, event.part.init.data)
        else:
            assert event.segment is not None
            result.segments[event.video].append(event.segment.data)
            result.ready.append(event)
    return result


def frames_of(data: bytes, kind: str) -> list[tuple[int, bool]]:
    """(pts, keyframe) of every frame FFmpeg decodes, and no decoding error."""
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0] if kind == "video" else container.streams.audio[0]
        found = []
        for packet in container.demux(stream):
            for frame in packet.decode():
                found.append((frame.pts, getattr(frame, "key_frame", True)))
    return found


CASES = {
    "h264-aac": lambda: make_clip(
        Part(*SIZE, SECONDS), fps=30, gop_frames=60, container="flv", b_frames=2
    ),
    "hevc-opus": lambda: encode_flv("libx265", "libopus"),
    "av1": lambda: encode_flv("libsvtav1", None),
}


@pytest.fixture(scope="module", params=sorted(CASES))
def stream(request: pytest.FixtureRequest) -> tuple[str, Cut]:
    return request.param, cut(CASES[request.param]())


def test_every_video_frame_decodes_from_the_segments_and_from_the_parts(
    stream: tuple[str, Cut],
) -> None:
    _, result = stream
    whole = frames_of(result.inits[True] + b"".join(result.segments[True]), "video")
    assert len(whole) == int(SECONDS * 30)
    assert [pts for pts, _ in whole] == sorted(pts for pts, _ in whole)
    keyframes = [pts for pts, key in whole if key]
    assert len(keyframes) == len(result.segments[True]) == 3  # one a segment, first
    assert b"".join(result.parts[True]) == b"".join(result.segments[True])
    assert frames_of(result.inits[True] + b"".join(result.parts[True]), "video") == whole


def test_audio_is_a_track_of_its_own_and_complete(stream: tuple[str, Cut]) -> None:
    name, result = stream
    if name == "av1":
        assert False not in result.inits
        return
    audio = frames_of(result.inits[False] + b"".join(result.segments[False]), "audio")
    expected = SECONDS * 48000 / (1024 if name == "h264-aac" else 960)
    assert abs(len(audio) - expected) <= 2
    assert b"".join(result.parts[False]) == b"".join(result.segments[False])


def test_decode_times_run_on_from_segment_to_segment(stream: tuple[str, Cut]) -> None:
    _, result = stream
    for video in (True, False):
        ready = [r for r in result.ready if r.video is video]
        for before, after in itertools.pairwise(ready):
            assert after.decode_time == before.decode_time + before.decode_duration
        assert [r.sequence for r in ready] == list(range(50, 50 + len(ready)))


def test_without_parts_each_segment_is_one_fragment() -> None:
    result = cut(CASES["h264-aac"](), part_duration=None)
    assert len(result.parts[True]) == len(result.segments[True]) == 3
    assert result.parts[True] == result.segments[True]
