"""Video ``copy`` and ``drop`` (LPMS's ``VideoEncoder`` "copy"/"drop"), audio-only
inputs (LPMS's quirks.md: returned, not refused) and sources whose decoder needs the
container's picture size (FFV1), on real media read back with PyAV."""

from __future__ import annotations

import io
import itertools
from fractions import Fraction
from pathlib import Path

import av
import pytest

from lpms import TranscodeError, Transcoder
from lpms.transcode.output_options import AudioMode, VideoMode
from lpms.transcode.profiles import OutputFormat, ProfileError
from tests.integration.test_transcode_output_options import (
    codecs,
    lpms,
    profile,
    transcode,
    ts_and_mp4,
)
from tests.media import Part, make_clip, probe

SECONDS, FPS = 2, 30


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 s of 320x180 H.264 with B-frames (DTS before PTS), a keyframe a second, AAC."""
    path = tmp_path_factory.mktemp("copydrop") / "source.ts"
    path.write_bytes(make_clip(Part(320, 180, SECONDS), fps=FPS, gop_frames=FPS, b_frames=2))
    return path


def video_packets(path: Path) -> list[tuple[Fraction | None, Fraction | None, bool, int]]:
    """Each video packet as (pts, dts in seconds, keyframe, size), in file order."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        base = Fraction(stream.time_base or 1)
        return [
            (
                None if p.pts is None else p.pts * base,
                None if p.dts is None else p.dts * base,
                p.is_keyframe,
                p.size,
            )
            for p in container.demux(stream)
            if p.size
        ]


def payloads(path: Path) -> list[bytes]:
    with av.open(str(path)) as container:
        return [bytes(p) for p in container.demux(video=0) if p.size]


def encoded(path: Path, codec: str, *, seconds: float = 1.0) -> Path:
    """``seconds`` of 320x240 test pattern in ``codec`` (PyAV), the container by suffix."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=FPS)
        stream.width, stream.height = 320, 240
        stream.pix_fmt = "yuv420p"
        with av.open(
            f"testsrc=size=320x240:rate={FPS}:duration={seconds}", format="lavfi"
        ) as pattern:
            for frame in pattern.decode(video=0):
                frame.pict_type = av.video.frame.PictureType.NONE
                out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


def tone(path: Path, seconds: float = SECONDS) -> Path:
    """An audio-only MPEG-TS: ``seconds`` of an AAC tone, no video track."""
    with av.open(str(path), "w", format="mpegts") as out:
        stream = out.add_stream("aac", rate=48000)
        with av.open(f"sine=sample_rate=48000:duration={seconds}", format="lavfi") as sine:
            for frame in sine.decode(audio=0):
                out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


def test_video_copy_keeps_the_source_packets(source: Path, tmp_path: Path) -> None:
    ts, mp4 = ts_and_mp4(source, tmp_path, video=VideoMode.COPY)
    original = video_packets(source)
    assert any(pts != dts for pts, dts, _key, _size in original)  # B-frames: a real test
    assert video_packets(ts) == original  # payload sizes, PTS, DTS and keyframes as they were
    assert payloads(ts) == payloads(source)
    # MP4 stores H.264 with length prefixes, not start codes: the same pictures, at the
    # same times (to the millisecond of the edit list that moves them back by the DTS).
    copied = video_packets(mp4)
    assert [key for _pts, _dts, key, _size in copied] == [key for *_, key, _size in original]
    for (pts, _dts, _key, _size), (theirs, *_rest) in zip(copied, original, strict=True):
        assert pts is not None
        assert theirs is not None
        assert abs(pts - theirs) <= Fraction(1, 1000)
    for out in (ts, mp4):
        assert codecs(out) == [("video", "h264"), ("audio", "aac")]
        probed = probe(str(out))
        assert probed.errors == []
        assert probed.frames == SECONDS * FPS
        assert set(probed.video_sizes) == {(320, 180)}  # a copy keeps the source size (LPMS too)


@pytest.mark.parametrize(
    ("mode", "format", "codec"),
    [
        (None, OutputFormat.MPEGTS, "aac"),
        (AudioMode.OPUS, OutputFormat.MP4, "opus"),
        (AudioMode.COPY, OutputFormat.FMP4, "aac"),
    ],
)
def test_video_drop_is_an_audio_only_output(
    source: Path, tmp_path: Path, mode: AudioMode | None, format: OutputFormat, codec: str
) -> None:
    [out] = transcode(source, tmp_path, profile(video=VideoMode.DROP, audio=mode, format=format))
    assert codecs(out) == [("audio", codec)]
    probed = probe(str(out))
    assert probed.errors == []
    assert probed.audio_samples >= 48000 * SECONDS * 0.9


def test_copy_cuts_a_clip_at_the_first_keyframe_from_its_start(
    source: Path, tmp_path: Path
) -> None:
    with Transcoder([profile(video=VideoMode.COPY)]) as transcoder:
        transcoder.transcode_file(source, tmp_path, start=0.5, end=1.5)
    original = video_packets(source)
    first = original[0][0]
    assert first is not None
    keyframes = [pts for pts, _dts, key, _size in original if key and pts is not None]
    cut = next(pts for pts in keyframes if pts >= first + Fraction(1, 2))
    copied = video_packets(tmp_path / "out.ts")
    assert copied[0][2]  # a keyframe first
    assert copied[0][0] == cut - Fraction(1, 2)  # moved as the clip moves the source
    assert len(copied) == 15  # from the keyframe at 1 s to 1.5 s


def test_copy_of_joined_inputs_runs_on(tmp_path: Path) -> None:
    clip = tmp_path / "clip.ts"
    clip.write_bytes(make_clip(Part(320, 180, 1), fps=FPS, gop_frames=FPS))
    with Transcoder([profile(video=VideoMode.COPY)]) as transcoder:
        transcoder.transcode_files([clip, clip], tmp_path / "out")
    times = [pts for pts, _dts, _key, _size in video_packets(tmp_path / "out" / "out.ts")]
    assert len(times) == 2 * FPS
    steps = {b - a for a, b in itertools.pairwise(times) if a is not None and b is not None}
    assert steps == {Fraction(1, FPS)}


def test_copy_into_mpegts_needs_a_codec_it_carries(tmp_path: Path) -> None:
    vp9 = encoded(tmp_path / "vp9.webm", "libvpx-vp9")
    refused = pytest.raises(TranscodeError, match="MPEG-TS cannot carry the source's vp9")
    with Transcoder([profile(video=VideoMode.COPY)]) as transcoder, refused:
        transcoder.transcode_file(vp9, tmp_path)
    with Transcoder([profile(video=VideoMode.COPY, format=OutputFormat.MP4)]) as transcoder:
        transcoder.transcode_file(vp9, tmp_path)
    assert codecs(tmp_path / "out.mp4") == [("video", "vp9")]


def test_audio_only_input_makes_audio_only_outputs(tmp_path: Path) -> None:
    audio = tone(tmp_path / "tone.ts")
    profiles = [
        profile(name="encode"),
        profile(name="copy", video=VideoMode.COPY, format=OutputFormat.MP4),
        profile(name="opus", audio=AudioMode.OPUS),
    ]
    with Transcoder(profiles) as transcoder:
        result = transcoder.transcode_file(audio, tmp_path / "out")
        segment = transcoder.transcode(audio.read_bytes())  # a live segment without video
    assert result.decoded_frames == 0
    assert codecs(tmp_path / "out" / "encode.ts") == [("audio", "aac")]
    assert codecs(tmp_path / "out" / "copy.mp4") == [("audio", "aac")]
    assert codecs(tmp_path / "out" / "opus.ts") == [("audio", "opus")]
    assert segment.decoded_frames == 0
    for output in segment.outputs:
        with av.open(io.BytesIO(output.data)) as container:
            assert [s.type for s in container.streams] == ["audio"]


def test_video_and_audio_drop_is_refused() -> None:
    with pytest.raises(ProfileError, match="nothing left to write"):
        profile(video=VideoMode.DROP, audio=AudioMode.DROP)


def test_audio_only_input_with_audio_dropped_is_an_error(tmp_path: Path) -> None:
    audio = tone(tmp_path / "tone.ts")
    refused = pytest.raises(TranscodeError, match="no video and no audio")
    with Transcoder([profile(audio=AudioMode.DROP)]) as transcoder, refused:
        transcoder.transcode_file(audio, tmp_path)


def test_ffv1_source_transcodes(tmp_path: Path) -> None:
    """FFV1 version 1 keeps the picture size in the container, not the bitstream."""
    ffv1 = encoded(tmp_path / "ffv1.mkv", "ffv1")
    [out] = transcode(ffv1, tmp_path / "out", profile())
    probed = probe(str(out))
    assert probed.errors == []
    assert probed.frames == FPS


def test_cli_video_modes(source: Path, tmp_path: Path) -> None:
    for mode, layout in (("copy", ["video", "audio"]), ("drop", ["audio"])):
        done = lpms(
            "transcode",
            str(source),
            "--profiles",
            "P144p30fps16x9",
            "--outdir",
            str(tmp_path / mode),
            "--video",
            mode,
        )
        assert done.returncode == 0, done.stderr
        out = tmp_path / mode / "P144p30fps16x9.ts"
        assert [kind for kind, _codec in codecs(out)] == layout
    assert payloads(tmp_path / "copy" / "P144p30fps16x9.ts") == payloads(source)
