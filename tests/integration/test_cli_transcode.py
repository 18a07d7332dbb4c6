"""`lpms transcode` and `lpms probe` as a user runs them: a real clip in, files and a
summary out, a clear one-line error and exit status 1 for bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import av
import pytest

from lpms import output_size, profile_by_name
from tests.media import Part, make_clip, probe

PROFILES = "P240p30fps16x9,P144p30fps16x9"


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cli") / "in.ts"
    path.write_bytes(make_clip(Part(640, 360, 3.0), fps=30, gop_frames=60))
    return path


def lpms(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lpms", *args], capture_output=True, text=True, timeout=120
    )


def test_transcode_writes_one_file_per_profile_and_a_summary(clip: Path, tmp_path: Path) -> None:
    done = lpms("transcode", str(clip), "--profiles", PROFILES, "--outdir", str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "x real time" in done.stdout
    for name in PROFILES.split(","):
        profile = profile_by_name(name)
        width, height = output_size(profile, 640, 360)
        row = next(line for line in done.stdout.splitlines() if line.startswith(name))
        assert f"{width}x{height}" in row
        assert " 90 " in row  # frames
        probed = probe(str(tmp_path / f"{name}.ts"))
        assert probed.errors == []
        assert set(probed.video_sizes) == {(width, height)}
        assert len(probed.video_pts) == 90
        assert probed.audio_codec == "aac"


def test_transcode_progress_bar_reaches_the_end(clip: Path, tmp_path: Path) -> None:
    done = lpms(
        "transcode", str(clip), "--profiles", "P144p30fps16x9", "--outdir", str(tmp_path),
        "--progress",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "100.0%" in done.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--profiles", "P361p"], "unknown profile 'P361p'"),
        (["--profiles", "P144p30fps16x9", "--accel", "nvidia"], "nvidia"),
    ],
)
def test_transcode_refuses_clearly(clip: Path, args: list[str], message: str) -> None:
    done = lpms("transcode", str(clip), *args)
    if "nvidia" in args and done.returncode == 0:
        pytest.skip("this machine has an NVIDIA GPU")
    assert done.returncode == 1
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_transcode_format_mp4_has_its_index_at_the_front(clip: Path, tmp_path: Path) -> None:
    done = lpms(
        "transcode", str(clip), "--profiles", "P144p30fps16x9", "--outdir", str(tmp_path),
        "--format", "mp4",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    output = tmp_path / "P144p30fps16x9.mp4"
    assert str(output) in done.stdout
    data = output.read_bytes()
    assert data.index(b"moov") < data.index(b"mdat")  # faststart
    with av.open(str(output)) as container:
        assert "mp4" in container.format.name
    assert len(probe(str(output)).video_pts) == 90


def test_transcode_profiles_file_with_quality_and_format(clip: Path, tmp_path: Path) -> None:
    profiles = tmp_path / "ladder.json"
    profiles.write_text(
        '[{"name": "crf", "width": 256, "height": 144, "quality": 30, "format": "fmp4",'
        ' "encoder_options": {"tune": "zerolatency"}}]'
    )
    done = lpms("transcode", str(clip), "--profiles", str(profiles), "--outdir", str(tmp_path))
    assert done.returncode == 0, done.stderr
    data = (tmp_path / "crf.mp4").read_bytes()
    assert b"moof" in data
    assert len(probe(str(tmp_path / "crf.mp4")).video_pts) == 90


@pytest.mark.parametrize(
    ("profile", "args", "message"),
    [
        (
            '{"name": "web", "width": 256, "height": 144, "bitrate": 100000, "encoder": "AV1"}',
            ["--format", "mpegts"],
            "web: AV1 cannot go into MPEG-TS",
        ),
        (
            '{"name": "web", "width": 256, "height": 144, "bitrate": 100000,'
            ' "encoder_options": {"tuen": "film"}}',
            [],
            "web: libx264 has no option 'tuen' (encoder_options)",
        ),
        (
            '{"name": "web", "width": 256, "height": 144, "bitrate": 1, "qualty": 3}',
            [],
            "unknown field 'qualty'; did you mean 'quality'?",
        ),
    ],
)
def test_transcode_refuses_bad_profiles_in_one_line(
    clip: Path, tmp_path: Path, profile: str, args: list[str], message: str
) -> None:
    profiles = tmp_path / "ladder.json"
    profiles.write_text(f"[{profile}]")
    done = lpms(
        "transcode", str(clip), "--profiles", str(profiles), "--outdir", str(tmp_path), *args
    )
    assert done.returncode == 1
    assert message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert not list(tmp_path.glob("web.*"))


def test_transcode_of_a_missing_or_bad_file(tmp_path: Path) -> None:
    missing = lpms("transcode", str(tmp_path / "nope.ts"), "--profiles", "P144p30fps16x9")
    assert missing.returncode == 1
    assert "cannot read" in missing.stderr
    junk = tmp_path / "junk.ts"
    junk.write_bytes(b"not media at all" * 100)
    bad = lpms("transcode", str(junk), "--profiles", "P144p30fps16x9", "--outdir", str(tmp_path))
    assert bad.returncode == 1
    assert "Traceback" not in bad.stderr


def test_probe_table_and_json(clip: Path) -> None:
    table = lpms("probe", str(clip))
    assert table.returncode == 0, table.stderr
    assert "mpegts" in table.stdout
    assert "640x360 30 fps" in table.stdout
    as_json = lpms("probe", str(clip), "--json")
    info = json.loads(as_json.stdout)
    video = next(t for t in info["tracks"] if t["kind"] == "video")
    assert (video["codec"], video["width"], video["height"]) == ("h264", 640, 360)
    assert info["duration"] == pytest.approx(3.0, abs=0.1)
    assert lpms("probe", "/nonexistent.ts").returncode == 1


def test_transcoding_does_not_load_the_server() -> None:
    """`lpms transcode` and `import lpms` for the Transcoder start without the HTTP
    stack or the settings tree (together a fifth of a second of start-up on a 2-core
    machine, a tenth of bench/transcode.py's whole run)."""
    code = (
        "import sys, lpms, lpms.cli; lpms.Transcoder; lpms.parse_profiles; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'aiohttp' "
        "or m in ('lpms.server', 'lpms.http.hls', 'lpms.config')))"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"


def test_transcode_joins_inputs_and_clips_them(clip: Path, tmp_path: Path) -> None:
    """Two 3 s inputs joined, 1 s to 3 s of them kept: 2 s at 30 fps."""
    done = lpms(
        "transcode", str(clip), str(clip), "--profiles", "P240p30fps16x9",
        "--from", "1", "--to", "3", "--outdir", str(tmp_path),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    probed = probe(str(tmp_path / "P240p30fps16x9.ts"))
    assert probed.errors == []
    assert len(probed.video_pts) == 60
    assert probed.video_keyframes[0]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--from", "3", "--to", "1"], "lpms transcode: from (3 s) must be before to (1 s)\n"),
        (["--from", "-2"], "lpms transcode: from must not be negative (-2 s)\n"),
        (["--from", "9"], "lpms transcode: from (9 s) is past the end of the input"),
    ],
)
def test_transcode_bad_clip_is_one_line_and_status_1(
    clip: Path, tmp_path: Path, options: list[str], message: str
) -> None:
    done = lpms("transcode", str(clip), "--profiles", PROFILES, "--outdir", str(tmp_path), *options)
    assert done.returncode == 1
    assert done.stderr.startswith(message)
    assert done.stderr.count("\n") == 1


def test_transcode_help_tells_of_joining_and_clipping() -> None:
    done = lpms("transcode", "--help")
    assert "INPUT [INPUT ...]" in done.stdout
    assert "--from S" in done.stdout
    assert "--to S" in done.stdout
