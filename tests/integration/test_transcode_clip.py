"""Clipping (LPMS's From/To) and joining several inputs into one output, on real
media: each track cut at its own boundary, timestamps rising across a join, and a
clip matching the FFmpeg CLI's ``-ss``/``-to`` frame for frame."""

from __future__ import annotations

import itertools
import shutil
import subprocess
from fractions import Fraction
from pathlib import Path

import av
import pytest

from lpms import TranscodeError, Transcoder
from tests.media import Part, make_clip, probe

PROFILE = "P240p30fps16x9"
FPS, START = 30, 1.0
AAC_FRAME = 1024 / 48000


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """10 s and 4 s MPEG-TS clips starting 1 s in, and a 4 s MP4 starting at 0."""
    directory = tmp_path_factory.mktemp("clips")
    made = {
        "ten.ts": make_clip(Part(640, 360, 10), fps=FPS, gop_frames=2 * FPS, start=START),
        "four.ts": make_clip(Part(640, 360, 4), fps=FPS, gop_frames=2 * FPS, start=START),
        "four.mp4": make_clip(Part(640, 360, 4), fps=FPS, gop_frames=2 * FPS, container="mp4"),
        "mp3.ts": make_clip(Part(640, 360, 2), fps=FPS, gop_frames=2 * FPS, audio="mp3"),
    }
    for name, data in made.items():
        (directory / name).write_bytes(data)
    return {name: directory / name for name in made}


def tracks(path: Path) -> tuple[list[float], list[bool], list[tuple[float, float]]]:
    """Video frames' times and keyframe flags, and audio packets' (start, length), in seconds."""
    with av.open(str(path)) as container:
        frames = [(float(f.pts * f.time_base), f.key_frame) for f in container.decode(video=0)]
    with av.open(str(path)) as container:
        audio = [
            (float(p.pts * p.time_base), float((p.duration or 0) * p.time_base))
            for p in container.demux(audio=0)
            if p.size and p.pts is not None
        ]
    return [t for t, _ in frames], [k for _, k in frames], audio


def transcode(
    sources: list[Path], outdir: Path, start: float | None = None, end: float | None = None
) -> Path:
    with Transcoder(PROFILE) as transcoder:
        result = transcoder.transcode_files(sources, outdir, start=start, end=end)
    assert result.outputs[0].first_keyframe
    return outdir / f"{PROFILE}.ts"


def test_clip_cuts_video_and_audio_each_at_its_own_boundary(
    clips: dict[str, Path], tmp_path: Path
) -> None:
    with Transcoder(PROFILE) as transcoder:
        result = transcoder.transcode_file(clips["ten.ts"], tmp_path, start=2, end=5)
    assert result.decoded_frames == 3 * FPS
    assert result.duration == pytest.approx(3.0)
    video, keyframes, audio = tracks(tmp_path / f"{PROFILE}.ts")
    assert len(video) == 3 * FPS
    assert keyframes[0]
    # The clip starts where the input did (both tracks moved back by `from` alike).
    assert video[0] == pytest.approx(START, abs=1e-4)
    assert video[-1] < START + 3
    assert START <= audio[0][0] < START + AAC_FRAME
    last_start, length = audio[-1]
    assert last_start < START + 3 <= last_start + length + 1e-6
    assert probe(str(tmp_path / f"{PROFILE}.ts")).errors == []


def test_from_only_and_to_only(clips: dict[str, Path], tmp_path: Path) -> None:
    video, keyframes, audio = tracks(transcode([clips["ten.ts"]], tmp_path / "from", start=7.5))
    assert len(video) == round(2.5 * FPS)
    assert keyframes[0]
    assert video[0] == pytest.approx(START, abs=1e-4)
    video, _, audio = tracks(transcode([clips["ten.ts"]], tmp_path / "to", end=3))
    assert len(video) == 3 * FPS
    assert video[0] == pytest.approx(START, abs=1e-4)
    assert audio[-1][0] < START + 3 <= audio[-1][0] + audio[-1][1] + 1e-6


@pytest.mark.parametrize(
    ("start", "end", "message"),
    [
        (5, 2, r"from \(5 s\) must be before to \(2 s\)"),
        (3, 3, "must be before"),
        (-1, None, "must not be negative"),
        (10, None, "past the end of the input"),
        (25, 30, "past the end of the input"),
    ],
)
def test_bad_clips_are_transcode_errors(
    clips: dict[str, Path], tmp_path: Path, start: float, end: float | None, message: str
) -> None:
    with Transcoder(PROFILE) as transcoder, pytest.raises(TranscodeError, match=message):
        transcoder.transcode_file(clips["ten.ts"], tmp_path, start=start, end=end)


def test_joined_inputs_make_one_output_with_rising_timestamps(
    clips: dict[str, Path], tmp_path: Path
) -> None:
    path = transcode([clips["ten.ts"], clips["four.ts"]], tmp_path)
    video, keyframes, audio = tracks(path)
    assert len(video) == 14 * FPS
    assert all(later > earlier for earlier, later in itertools.pairwise(video))
    assert video[-1] == pytest.approx(START + 14 - 1 / FPS, abs=1e-3)  # no gap at the join
    assert keyframes[10 * FPS]  # the second input's first frame, as its source has it
    starts = [start for start, _ in audio]
    assert all(later > earlier for earlier, later in itertools.pairwise(starts))
    gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]
    assert max(gaps) < 2 * AAC_FRAME  # audio goes on across the join
    assert probe(str(path)).errors == []


def test_joining_inputs_of_other_time_bases(clips: dict[str, Path], tmp_path: Path) -> None:
    """An MP4 (video in 1/15360, audio in 1/48000) after an MPEG-TS (1/90000)."""
    video, _, audio = tracks(transcode([clips["four.ts"], clips["four.mp4"]], tmp_path))
    assert len(video) == 8 * FPS
    assert all(later > earlier for earlier, later in itertools.pairwise(video))
    assert video[-1] == pytest.approx(START + 8 - 1 / FPS, abs=1e-3)
    assert audio[-1][0] == pytest.approx(START + 8, abs=2 * AAC_FRAME)


def test_a_clip_of_joined_inputs_spans_the_join(clips: dict[str, Path], tmp_path: Path) -> None:
    video, keyframes, _ = tracks(
        transcode([clips["ten.ts"], clips["four.ts"]], tmp_path, start=9, end=11)
    )
    assert len(video) == 2 * FPS
    assert keyframes[0]
    assert all(later > earlier for earlier, later in itertools.pairwise(video))


def test_joined_inputs_need_the_same_audio(clips: dict[str, Path], tmp_path: Path) -> None:
    with Transcoder(PROFILE) as transcoder, pytest.raises(TranscodeError, match="same audio"):
        transcoder.transcode_files([clips["four.ts"], clips["mp3.ts"]], tmp_path)


def test_no_inputs(tmp_path: Path) -> None:
    with Transcoder(PROFILE) as transcoder, pytest.raises(TranscodeError, match="no input"):
        transcoder.transcode_files([], tmp_path)


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs the ffmpeg CLI")
def test_clip_matches_the_ffmpeg_cli(clips: dict[str, Path], tmp_path: Path) -> None:
    theirs = tmp_path / "ffmpeg.ts"
    subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-ss",
            "2",
            "-to",
            "5",
            "-i",
            str(clips["ten.ts"]),
            "-c:v",
            "libx264",
            "-c:a",
            "aac",
            str(theirs),
        ],
        check=True,
        timeout=120,
    )
    ours, _, _ = tracks(transcode([clips["ten.ts"]], tmp_path / "ours", start=2, end=5))
    frames, _, _ = tracks(theirs)
    assert abs(len(ours) - len(frames)) <= 1
    assert Fraction(len(ours), FPS) == 3
