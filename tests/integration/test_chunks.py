"""A file cut into chunks, each transcoded apart, joined back: frame for frame what
the whole-file transcode makes (`lpms.transcode.chunks`), on the sources that make
that hard: an MP4 whose B-frames and AAC priming start below zero, a 60 fps
Matroska file with Opus (audio encoded while cutting, frames dropped to 30 fps),
MPEG-TS with no audio starting late. The chunks run in this process through the
same wire a Ray worker answers on; tests/e2e/test_ray_transcode.py runs them on Ray.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

import av
import pytest

from lpms.errors import TranscodeError
from lpms.transcode.chunks import (
    Chunk,
    ChunkedFile,
    InProcessChunkRunner,
    transcode_in_chunks,
)
from lpms.transcode.profiles import output_size, parse_profiles
from lpms.transcode.session import Transcoder, TranscodeResult
from tests.media import (
    Part,
    Probed,
    audio_packets,
    make_clip,
    probe,
    thumbnail_difference,
    thumbnails,
)

PROFILES = parse_profiles("P240p30fps16x9,P144p30fps16x9")
NAMES = [p.name for p in PROFILES]
SIZE = (320, 180)


@dataclass(frozen=True)
class Source:
    name: str
    container: str
    suffix: str
    fps: int
    gop_frames: int
    audio: str | None
    start: float = 0.0
    b_frames: int = 2
    seconds: float = 6.0
    open_gop: bool = False


SOURCES = [
    Source("mp4-bframes-aac", "mp4", "mp4", fps=30, gop_frames=30, audio="aac"),
    Source("mkv-60fps-opus", "matroska", "mkv", fps=60, gop_frames=45, audio="libopus"),
    Source("ts-no-audio-late", "mpegts", "ts", fps=25, gop_frames=20, audio=None, start=1.0),
    # Keyframes that are not IDR: a chunk starting at one gets no parameter sets
    # from the muxer, and must be given them.
    Source("mp4-open-gop", "mp4", "mp4", fps=30, gop_frames=30, audio="aac", open_gop=True),
]


@dataclass
class Made:
    source: Source
    chunks: list[float]  # where each chunk starts, source seconds
    whole: TranscodeResult
    chunked: TranscodeResult
    whole_dir: Path
    chunked_dir: Path


@pytest.fixture(scope="module", params=SOURCES, ids=lambda s: s.name)
def made(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Made:
    source: Source = request.param
    root = tmp_path_factory.mktemp(source.name)
    path = root / f"in.{source.suffix}"
    path.write_bytes(
        make_clip(
            Part(*SIZE, source.seconds),
            fps=source.fps,
            gop_frames=source.gop_frames,
            audio=source.audio,
            container=source.container,
            start=source.start,
            b_frames=source.b_frames,
            open_gop=source.open_gop,
        )
    )
    with Transcoder(PROFILES) as transcoder:
        whole = transcoder.transcode_file(path, root / "whole")
    runner = InProcessChunkRunner(PROFILES, "software", slots=2)
    starts: list[float] = []
    try:
        chunked = transcode_in_chunks(
            path,
            root / "chunked",
            NAMES,
            runner,
            seconds=1.5,
            on_plan=lambda plan: starts.extend(plan.chunk_start(i) for i in range(plan.count)),
        )
    finally:
        runner.close()
    return Made(source, starts, whole, chunked, root / "whole", root / "chunked")


def outputs(made: Made, name: str) -> tuple[Probed, Probed]:
    return (
        probe(str(made.whole_dir / f"{name}.ts")),
        probe(str(made.chunked_dir / f"{name}.ts")),
    )


def test_the_file_is_cut_into_several_chunks(made: Made) -> None:
    assert len(made.chunks) >= 3, made.chunks


@pytest.mark.parametrize("name", NAMES)
def test_every_frame_is_where_the_whole_file_transcode_puts_it(made: Made, name: str) -> None:
    whole, chunked = outputs(made, name)
    assert chunked.errors == []
    assert chunked.warnings == []
    assert chunked.frames == whole.frames > 0
    assert chunked.video_pts == whole.video_pts
    assert chunked.keyframe_pts == whole.keyframe_pts
    profile = next(p for p in PROFILES if p.name == name)
    assert set(chunked.video_sizes) == {output_size(profile, *SIZE)}


@pytest.mark.parametrize("name", NAMES)
def test_every_frame_looks_like_the_whole_file_transcodes(made: Made, name: str) -> None:
    """Encoders fresh at every chunk make other bits of the same pictures; a frame
    decoded from a missing reference (a leading picture without its keyframe) is
    another picture. Two encodes differ by about 0.3 grey levels here; such a
    frame by 4 or more."""
    whole = thumbnails(str(made.whole_dir / f"{name}.ts"))
    chunked = thumbnails(str(made.chunked_dir / f"{name}.ts"))
    assert chunked.keys() == whole.keys()
    worst = max(thumbnail_difference(whole[pts], chunked[pts]) for pts in whole)
    assert worst < 1.5


@pytest.mark.parametrize("name", NAMES)
def test_every_join_is_a_keyframe(made: Made, name: str) -> None:
    _, chunked = outputs(made, name)
    assert chunked.video_time_base is not None
    keyframes = {float(pts * chunked.video_time_base) for pts in chunked.keyframe_pts}
    lift = min(chunked.video_pts) * chunked.video_time_base - made.source.start
    for start in made.chunks[1:]:
        assert any(abs(k - float(lift) - start) < 1e-3 for k in keyframes), (start, keyframes)


@pytest.mark.parametrize("name", NAMES)
def test_the_audio_is_the_whole_file_transcodes_packet_for_packet(made: Made, name: str) -> None:
    whole = audio_packets(str(made.whole_dir / f"{name}.ts"))
    chunked = audio_packets(str(made.chunked_dir / f"{name}.ts"))
    assert chunked == whole
    assert bool(whole) == (made.source.audio is not None)


def test_the_summary_adds_up_to_the_whole_file(made: Made) -> None:
    assert made.chunked.decoded_frames == made.whole.decoded_frames
    for whole, chunked in zip(made.whole.outputs, made.chunked.outputs, strict=True):
        assert (chunked.frames, chunked.width, chunked.height) == (
            whole.frames,
            whole.width,
            whole.height,
        )
        assert chunked.first_keyframe
        assert chunked.size == (made.chunked_dir / f"{whole.profile.name}.ts").stat().st_size


# --- what cannot be cut, and chunks that fail ---------------------------------------------


@pytest.fixture(scope="module")
def clip_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("clip") / "in.ts"
    path.write_bytes(make_clip(Part(*SIZE, 4.0), fps=30, gop_frames=15))
    return path


def test_video_mpeg_ts_cannot_carry_is_refused_up_front(tmp_path: Path) -> None:
    path = tmp_path / "in.webm"
    pattern = "testsrc2=size=160x90:rate=30:duration=1"
    with av.open(str(path), "w", format="webm") as out, av.open(pattern, format="lavfi") as src:
        stream = out.add_stream("libvpx-vp9", rate=30)
        stream.width, stream.height, stream.pix_fmt = 160, 90, "yuv420p"
        for frame in [*src.decode(video=0), None]:
            for packet in stream.encode(frame):
                out.mux(packet)
    with pytest.raises(TranscodeError, match=r"vp9 video cannot be cut.*--engine local"):
        ChunkedFile(path, 1.0)


def test_a_chunk_over_the_size_limit_is_refused(clip_path: Path) -> None:
    chunked = ChunkedFile(clip_path, 2.0, max_chunk_bytes=10_000)
    with pytest.raises(TranscodeError, match="over 10000 bytes: use shorter chunks"):
        list(chunked.chunks())


class FailingRunner:
    """Chunks through the real runner, but one of them fails, or never answers."""

    def __init__(self, fail: int, hang: bool = False) -> None:
        self._runner = InProcessChunkRunner(PROFILES, "software", slots=1)
        self.slots = 1
        self._fail = fail
        self._hang = hang
        self.released = threading.Event()

    def submit(self, chunk: Chunk) -> Future[TranscodeResult]:
        if chunk.index != self._fail:
            return self._runner.submit(chunk)
        future: Future[TranscodeResult] = Future()
        if not self._hang:
            future.set_exception(TranscodeError("the worker's encoder broke"))
        return future

    def close(self) -> None:
        self._runner.close()


@pytest.mark.parametrize("hang", [False, True], ids=["fails", "hangs"])
def test_a_failed_chunk_fails_the_run_naming_it(
    clip_path: Path, tmp_path: Path, hang: bool
) -> None:
    runner = FailingRunner(fail=1, hang=hang)
    try:
        with pytest.raises(TranscodeError) as raised:
            transcode_in_chunks(clip_path, tmp_path, NAMES, runner, seconds=1.0, chunk_timeout=0.5)
    finally:
        runner.close()
    message = str(raised.value)
    assert message.startswith("chunk 1 (from 1.")
    assert ("not transcoded within 0.5 s" if hang else "the worker's encoder broke") in message


# --- the command line ----------------------------------------------------------------------


def lpms(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lpms", *args], capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize(
    "flag", [["--chunk-seconds", "2"], ["--ray-address", "local"], ["--chunk-timeout", "9"]]
)
def test_ray_flags_without_the_ray_engine_are_refused(clip_path: Path, flag: list[str]) -> None:
    done = lpms("transcode", str(clip_path), "--profiles", "P144p30fps16x9", *flag)
    assert done.returncode == 2
    assert f"{flag[0]} needs --engine ray" in done.stderr


@pytest.mark.parametrize("seconds", ["0", "-1", "abc", "inf"])
def test_a_chunk_length_that_is_no_length_is_refused(clip_path: Path, seconds: str) -> None:
    done = lpms(
        "transcode", str(clip_path), "--profiles", "P144p30fps16x9", "--engine", "ray",
        "--chunk-seconds", seconds,
    )  # fmt: skip
    assert done.returncode == 2
    assert "--chunk-seconds" in done.stderr
    assert "Traceback" not in done.stderr


def test_ray_unreachable_is_one_line_naming_the_address(clip_path: Path, tmp_path: Path) -> None:
    with socket.socket() as probe_socket:
        probe_socket.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{probe_socket.getsockname()[1]}"  # nothing listens there
    done = lpms(
        "transcode", str(clip_path), "--profiles", "P144p30fps16x9", "--engine", "ray",
        "--ray-address", address, "--outdir", str(tmp_path),
    )  # fmt: skip
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"lpms transcode: cannot reach Ray at {address}")


def test_a_profile_mpeg_ts_cannot_carry_is_refused_before_ray_starts(
    clip_path: Path, tmp_path: Path
) -> None:
    profiles = tmp_path / "av1.json"
    profiles.write_text(
        '[{"name": "av1_144p", "width": 256, "height": 144, "bitrate": "200k", "encoder": "AV1"}]'
    )
    done = lpms(
        "transcode", str(clip_path), "--profiles", str(profiles), "--engine", "ray",
        "--outdir", str(tmp_path),
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "lpms transcode: av1_144p: --engine ray joins the chunks as MPEG-TS, which cannot "
        "carry AV1; transcode it with --engine local (fragmented MP4)"
    )
    assert not list(tmp_path.glob("*.ts"))
