"""Per-output options (LPMS's ``TranscodeOptions``) on real media: each audio mode,
the muxer by name with its options, metadata tags, audio in MP4 and fMP4 outputs,
and the errors for options FFmpeg would not take, read back with PyAV and ffprobe."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import pytest

from lpms import TranscodeError, Transcoder
from lpms.media.codecs.aac import adts_to_raw
from lpms.transcode.output_options import AudioMode
from lpms.transcode.profiles import OutputFormat, ProfileError, VideoProfile, profiles_from_json
from lpms.transcode.session import output_name
from tests.media import Part, audio_packets, make_clip, probe

SECONDS, FPS = 2, 30


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 s of 320x180 test pattern at 30 fps with AAC in MPEG-TS."""
    path = tmp_path_factory.mktemp("outopts") / "source.ts"
    path.write_bytes(make_clip(Part(320, 180, SECONDS), fps=FPS, gop_frames=FPS))
    return path


def profile(**changes: object) -> VideoProfile:
    fields: dict[str, object] = {
        "name": "out",
        "width": 160,
        "height": 90,
        "bitrate": 200_000,
        "framerate": Fraction(FPS),
    }
    fields.update(changes)
    return VideoProfile(**fields)  # type: ignore[arg-type]


def transcode(source: Path, outdir: Path, *profiles: VideoProfile) -> list[Path]:
    with Transcoder(list(profiles)) as transcoder:
        transcoder.transcode_file(source, outdir)
        containers = transcoder.containers
    return [outdir / output_name(p, c) for p, c in zip(profiles, containers, strict=True)]


def ts_and_mp4(source: Path, outdir: Path, **changes: object) -> list[Path]:
    """``source`` through one profile with ``changes`` into MPEG-TS and into MP4."""
    return transcode(
        source,
        outdir,
        profile(name="ts", **changes),
        profile(name="mp4", format=OutputFormat.MP4, **changes),
    )


def ffprobe(path: Path) -> dict[str, object]:
    done = subprocess.run(
        ["ffprobe", "-v", "error", "-show_streams", "-show_format", "-of", "json", str(path)],
        capture_output=True,
        check=True,
        timeout=60,
    )
    decoded: dict[str, object] = json.loads(done.stdout)
    return decoded


def codecs(path: Path) -> list[tuple[str, str]]:
    with av.open(str(path)) as container:
        return [(s.type, s.codec_context.name) for s in container.streams]


@pytest.mark.parametrize("format", list(dict.fromkeys(OutputFormat)))
def test_every_format_carries_the_audio(source: Path, tmp_path: Path, format: OutputFormat) -> None:
    [out] = transcode(source, tmp_path, profile(format=format))
    assert codecs(out) == [("video", "h264"), ("audio", "aac")]
    probed = probe(str(out))
    assert probed.errors == []
    assert probed.audio_samples >= 48000 * SECONDS * 0.9


def test_audio_copy_keeps_the_source_packets(source: Path, tmp_path: Path) -> None:
    ts, mp4 = ts_and_mp4(source, tmp_path, audio=AudioMode.COPY)
    assert [digest for _pts, digest in audio_packets(str(ts))] == [
        digest for _pts, digest in audio_packets(str(source))
    ]
    with av.open(str(source)) as container:
        raw = [adts_to_raw(bytes(p))[1] for p in container.demux(audio=0) if p.size]
    with av.open(str(mp4)) as container:
        assert [bytes(p) for p in container.demux(audio=0) if p.size] == raw


@pytest.mark.parametrize(
    ("mode", "format", "codec"),
    [
        (AudioMode.AAC, OutputFormat.MPEGTS, "aac"),
        (AudioMode.OPUS, OutputFormat.MPEGTS, "opus"),
        (AudioMode.OPUS, OutputFormat.FMP4, "opus"),
        (AudioMode.AAC, OutputFormat.MP4, "aac"),
    ],
)
def test_audio_encoded(
    source: Path, tmp_path: Path, mode: AudioMode, format: OutputFormat, codec: str
) -> None:
    [out] = transcode(source, tmp_path, profile(audio=mode, format=format))
    assert codecs(out) == [("video", "h264"), ("audio", codec)]
    probed = probe(str(out))
    assert probed.errors == []
    assert probed.audio_samples >= 48000 * SECONDS * 0.9
    assert audio_packets(str(out)) != audio_packets(str(source))  # encoded anew


def test_audio_drop(source: Path, tmp_path: Path) -> None:
    [out] = transcode(source, tmp_path, profile(audio=AudioMode.DROP))
    assert codecs(out) == [("video", "h264")]


def test_muxer_by_name_with_options_and_metadata(source: Path, tmp_path: Path) -> None:
    mkv, ts = transcode(
        source,
        tmp_path,
        profile(name="mkv", muxer="matroska", metadata={"title": "lpms test"}),
        profile(name="ts", muxer_options={"mpegts_service_id": "77"}),
    )
    assert mkv.name == "mkv.mkv"
    found = ffprobe(mkv)
    assert found["format"]["format_name"].startswith("matroska")  # type: ignore[index]
    assert found["format"]["tags"]["title"] == "lpms test"  # type: ignore[index]
    assert codecs(mkv) == [("video", "h264"), ("audio", "aac")]
    programs = subprocess.run(
        ["ffprobe", "-v", "error", "-show_programs", "-of", "json", str(ts)],
        capture_output=True,
        check=True,
        timeout=60,
    )
    assert json.loads(programs.stdout)["programs"][0]["program_num"] == 77


def test_same_layout_as_ffmpeg(source: Path, tmp_path: Path) -> None:
    """lpms's MP4 with Opus against ``ffmpeg -c:v libx264 -c:a libopus`` doing the same."""
    if shutil.which("ffmpeg") is None:
        pytest.skip("no ffmpeg CLI")
    [ours] = transcode(source, tmp_path, profile(audio=AudioMode.OPUS, format=OutputFormat.MP4))
    theirs = tmp_path / "ffmpeg.mp4"
    command = ["ffmpeg", "-v", "error", "-i", str(source), "-s", "160x90", "-c:v", "libx264"]
    command += ["-c:a", "libopus", "-movflags", "+faststart", str(theirs)]
    subprocess.run(
        command,
        check=True,
        timeout=120,
    )
    mine, other = ffprobe(ours), ffprobe(theirs)
    layout = [(s["codec_type"], s["codec_name"]) for s in mine["streams"]]  # type: ignore[index, union-attr]
    assert layout == [(s["codec_type"], s["codec_name"]) for s in other["streams"]]  # type: ignore[index, union-attr]
    duration = float(mine["format"]["duration"])  # type: ignore[index]
    assert abs(duration - float(other["format"]["duration"])) <= 1 / FPS + 0.03  # type: ignore[index]


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"muxer": "nosuch"}, "nosuch"),
        ({"muxer": "webm"}, "h264"),
        ({"muxer_options": {"no_such_option": "1"}}, "no_such_option"),
        ({"muxer": "mp4", "muxer_options": {"mpegts_service_id": "1"}}, "mpegts_service_id"),
    ],
)
def test_bad_options_are_refused_at_start(changes: dict[str, object], named: str) -> None:
    with pytest.raises(TranscodeError, match=named):
        Transcoder([profile(**changes)])


def test_options_from_json() -> None:
    [parsed] = profiles_from_json(
        '[{"width": 160, "height": 90, "bitrate": 200000, "audio": "opus", "muxer": "mov",'
        ' "muxer_options": {"movflags": "+faststart"}, "metadata": {"title": "t"}}]'
    )
    assert parsed.audio is AudioMode.OPUS
    assert parsed.muxer == "mov"
    assert dict(parsed.muxer_options) == {"movflags": "+faststart"}
    assert dict(parsed.metadata) == {"title": "t"}
    with pytest.raises(ProfileError, match="unknown audio mode 'mp2'"):
        profiles_from_json('[{"width": 160, "height": 90, "bitrate": 1, "audio": "mp2"}]')


def lpms(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lpms", *args], capture_output=True, text=True, timeout=120
    )


def test_cli_output_options(source: Path, tmp_path: Path) -> None:
    done = lpms(
        "transcode",
        str(source),
        "--profiles",
        "P144p30fps16x9",
        "--outdir",
        str(tmp_path),
        "--audio",
        "opus",
        "--muxer",
        "matroska",
        "--muxer-option",
        "cluster_time_limit=500",
        "--metadata",
        "title=from the CLI",
    )
    assert done.returncode == 0, done.stderr
    out = tmp_path / "P144p30fps16x9.mkv"
    assert str(out) in done.stdout
    assert codecs(out) == [("video", "h264"), ("audio", "opus")]
    assert ffprobe(out)["format"]["tags"]["title"] == "from the CLI"  # type: ignore[index]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--muxer", "nosuch"], "no muxer 'nosuch'"),
        (["--muxer-option", "bogus=1"], "no option 'bogus'"),
        (["--metadata", "novalue"], "KEY=VALUE"),
    ],
)
def test_cli_refuses_bad_options_in_one_line(source: Path, args: list[str], message: str) -> None:
    done = lpms("transcode", str(source), "--profiles", "P144p30fps16x9", *args)
    assert done.returncode == 1
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
