"""LPMS's transcoding tests (``ffmpeg/*_test.go``) that the other transcode tests do
not already mirror: short and skipped segments, decoded and encoded frame and pixel
counts against ffprobe's, the preset ladder against the ffmpeg CLI doing the same
job, odd and small source sizes, and SEI NAL units after the picture data
(``ffmpeg/sei_fixup.go``). docs/lpms-parity.md maps the whole list.
"""

from __future__ import annotations

import io
import json
import subprocess
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import pytest

from lpms import Transcoder, TranscodeResult
from lpms.transcode.profiles import PRESETS, VideoProfile, output_size
from tests.media import Part, make_clip, probe, split_at_keyframes

START = 1.0  # as lpms's segmenter writes them
FPS = 30
SAME_RATE = PRESETS["P144p30fps16x9"]  # every source frame, its timestamps kept
LOWER_RATE = PRESETS["P144p25fps16x9"]


@dataclass(frozen=True)
class Counted:
    """ffprobe's count of a file's video: ``-count_frames`` and the stream's size."""

    frames: int
    width: int
    height: int

    @property
    def pixels(self) -> int:
        return self.frames * self.width * self.height


def ffprobe_count(media: bytes | Path) -> Counted:
    """What ffprobe (the CLI, not PyAV) decodes of ``media``'s first video stream."""
    command = ["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0"]
    command += ["-show_entries", "stream=nb_read_frames,width,height", "-of", "json"]
    source = str(media) if isinstance(media, Path) else "pipe:0"
    given = media if isinstance(media, bytes) else None
    done = subprocess.run([*command, source], input=given, capture_output=True, check=True)
    stream = json.loads(done.stdout)["streams"][0]
    return Counted(int(stream["nb_read_frames"]), stream["width"], stream["height"])


def pts_seconds(media: bytes) -> list[float]:
    """Each decoded video frame's PTS in seconds, in output order."""
    with av.open(io.BytesIO(media)) as container:
        return [
            float(frame.pts * frame.time_base)
            for frame in container.decode(video=0)
            if frame.pts is not None and frame.time_base is not None
        ]


# --- short segments --------------------------------------------------------------


@pytest.mark.parametrize("seconds", [1 / FPS, 0.2])
def test_a_short_segment_transcodes_every_frame(seconds: float) -> None:
    """LPMS's TestTranscoder_ShortSegments: one frame, and a fifth of a second."""
    segment = make_clip(Part(320, 180, seconds), fps=FPS, gop_frames=FPS, start=START)
    frames = probe(segment).frames
    assert frames == round(seconds * FPS)
    with Transcoder([SAME_RATE, LOWER_RATE]) as transcoder:
        result = transcoder.transcode(segment)
    assert result.decoded_frames == frames
    same, lower = result.outputs
    assert same.frames == probe(same.data).frames == frames
    assert abs(lower.frames - seconds * 25) <= 1
    assert lower.frames == probe(lower.data).frames >= 1
    for output in result.outputs:
        assert output.first_keyframe
        assert probe(output.data).errors == []


# --- skipped segments ------------------------------------------------------------


def test_segments_skipped_in_a_session_keep_their_timestamps() -> None:
    """Segment 1, then 4 (2 and 3 lost): each output keeps its source's timestamps,
    rising, and the gap is not filled with frames (LPMS's skipped-segment test)."""
    clip = make_clip(Part(320, 180, 4.0), fps=FPS, gop_frames=FPS, audio=None, start=START)
    segments = split_at_keyframes(clip)
    assert len(segments) == 4
    first, fourth = segments[0], segments[3]
    with Transcoder([SAME_RATE, LOWER_RATE]) as transcoder:
        results = [transcoder.transcode(first), transcoder.transcode(fourth)]
    assert [r.decoded_frames for r in results] == [FPS, FPS]
    for source, result in zip((first, fourth), results, strict=True):
        source_start = min(pts_seconds(source))
        for output in result.outputs:
            times = pts_seconds(output.data)
            assert times == sorted(times)
            assert min(times) == pytest.approx(source_start, abs=1 / FPS)
            assert max(times) < source_start + 1.0
            assert probe(output.data).errors == []
    same = [r.outputs[0].frames for r in results]
    lower = [r.outputs[1].frames for r in results]
    assert same == [FPS, FPS]
    assert all(abs(count - 25) <= 1 for count in lower)


# --- frame and pixel counts ------------------------------------------------------


def test_decoded_and_encoded_counts_match_ffprobe() -> None:
    """LPMS's TranscodeResults: Decoded and Encoded {Frames, Pixels}, per output."""
    segment = make_clip(Part(640, 360, 1.0), fps=FPS, gop_frames=FPS, start=START)
    source = ffprobe_count(segment)
    ladder = [PRESETS["P360p30fps16x9"], PRESETS["P240p30fps4x3"], LOWER_RATE]
    with Transcoder(ladder) as transcoder:
        result = transcoder.transcode(segment)
    assert (result.decoded_frames, result.decoded_pixels) == (source.frames, source.pixels)
    for output in result.outputs:
        counted = ffprobe_count(output.data)
        assert (output.frames, output.width, output.height) == (
            counted.frames,
            counted.width,
            counted.height,
        )
        assert output.pixels == counted.pixels


# --- the preset ladder against the ffmpeg CLI ------------------------------------

LADDER = tuple(
    PRESETS[name]
    for name in ("P720p30fps16x9", "P360p30fps16x9", "P240p30fps4x3", "P144p25fps16x9")
)
LADDER_SECONDS = 4


def ffmpeg_cli_transcode(source: Path, profile: VideoProfile, target: Path) -> None:
    """The same job as lpms's profile, as the ffmpeg CLI is told to do it: scaled to
    `output_size`, at the profile's rate, x264 at its preset with LPMS's rate
    control (the bitrate as average, minimum, maximum and buffer)."""
    width, height = output_size(profile, 1280, 720)
    rate = str(profile.bitrate)
    command = ["ffmpeg", "-v", "error", "-y", "-i", str(source), "-map", "0:v:0"]
    command += ["-vf", f"scale={width}:{height}:flags=bicubic", "-r", str(profile.framerate)]
    command += ["-c:v", "libx264", "-preset", profile.preset, "-b:v", rate]
    command += ["-minrate", rate, "-maxrate", rate, "-bufsize", rate, "-f", "mpegts"]
    subprocess.run([*command, str(target)], check=True)


@dataclass
class LadderRun:
    directory: Path
    result: TranscodeResult


@pytest.fixture(scope="module")
def ladder_run(tmp_path_factory: pytest.TempPathFactory) -> LadderRun:
    directory = tmp_path_factory.mktemp("parity")
    source = directory / "source.ts"
    clip = make_clip(Part(1280, 720, LADDER_SECONDS), fps=FPS, gop_frames=2 * FPS, start=START)
    source.write_bytes(clip)
    with Transcoder(LADDER) as transcoder:
        result = transcoder.transcode_file(source, directory / "lpms")
    for profile in LADDER:
        ffmpeg_cli_transcode(source, profile, directory / f"{profile.name}.ffmpeg.ts")
    return LadderRun(directory, result)


@pytest.mark.parametrize("profile", LADDER, ids=[p.name for p in LADDER])
def test_the_ladder_matches_the_ffmpeg_cli(ladder_run: LadderRun, profile: VideoProfile) -> None:
    ours = probe(str(ladder_run.directory / "lpms" / f"{profile.name}.ts"))
    theirs = probe(str(ladder_run.directory / f"{profile.name}.ffmpeg.ts"))
    assert ours.errors == theirs.errors == []
    assert set(ours.video_sizes) == set(theirs.video_sizes)
    assert set(ours.video_sizes) == {output_size(profile, 1280, 720)}
    assert abs(ours.frames - theirs.frames) <= 1
    fps = Fraction(profile.framerate or FPS)
    our_seconds, their_seconds = ours.video_seconds(fps), theirs.video_seconds(fps)
    assert our_seconds == pytest.approx(their_seconds, abs=float(1 / fps))
    our_rate = ours.video_packet_bytes * 8 / our_seconds
    their_rate = theirs.video_packet_bytes * 8 / their_seconds
    assert our_rate == pytest.approx(their_rate, rel=0.25)
    assert ladder_run.result.output(profile.name).frames == ours.frames


# --- resolution ------------------------------------------------------------------


def odd_sized_clip(width: int, height: int) -> bytes:
    """A second of test pattern at an odd size: MPEG-4 Part 2 in MPEG-TS (x264 will
    not encode 4:2:0 at an odd size; a source in another codec may have one)."""
    command = ["ffmpeg", "-v", "error", "-f", "lavfi"]
    command += ["-i", f"testsrc2=size={width}x{height}:rate={FPS}:duration=1"]
    command += ["-c:v", "mpeg4", "-f", "mpegts", "pipe:1"]
    return subprocess.run(command, capture_output=True, check=True).stdout


@pytest.mark.parametrize(
    ("source", "profile"),
    [
        ((321, 241), PRESETS["P240p30fps16x9"]),  # odd both ways, to a box of another shape
        ((333, 187), SAME_RATE),
        ((320, 180), PRESETS["P720p30fps16x9"]),  # smaller than the box: scaled up, as LPMS
    ],
)
def test_output_sizes_are_output_size_and_even(
    source: tuple[int, int], profile: VideoProfile
) -> None:
    """Whatever the source's size, each output is `output_size`'s (the source's
    shape in the profile's box, LPMS's scale), both sides even, as x264 needs."""
    width, height = source
    clip = odd_sized_clip(width, height) if width % 2 or height % 2 else None
    if clip is None:
        clip = make_clip(Part(width, height, 1.0), fps=FPS, gop_frames=FPS, start=START)
    with Transcoder([profile]) as transcoder:
        result = transcoder.transcode(clip)
    (output,) = result.outputs
    expected = output_size(profile, width, height)
    assert (output.width, output.height) == expected
    assert expected[0] % 2 == expected[1] % 2 == 0
    decoded = probe(output.data)
    assert set(decoded.video_sizes) == {expected}
    assert decoded.frames == result.decoded_frames == FPS


# --- SEI after the picture data --------------------------------------------------

SEI_UUID = bytes(range(0x11, 0x21))  # user_data_unregistered's 16 bytes, no zeros


def sei_nal_unit(text: bytes) -> bytes:
    """An SEI NAL unit (type 6) of one user_data_unregistered message (payload type
    5, H.264 D.1.6), with the RBSP's stop bit."""
    payload = SEI_UUID + text
    assert len(payload) < 255
    assert b"\x00\x00" not in payload
    return bytes([0x06, 0x05, len(payload)]) + payload + b"\x80"


def nal_types(access_unit: bytes) -> list[int]:
    """The NAL unit types of an Annex B access unit, in order."""
    parts = access_unit.replace(b"\x00\x00\x00\x01", b"\x00\x00\x01").split(b"\x00\x00\x01")
    return [part[0] & 0x1F for part in parts if part]


def with_sei_after_the_slices(clip: bytes) -> tuple[bytes, list[list[int]]]:
    """``clip`` (MPEG-TS, video only) with an SEI NAL unit after the slice data of
    each access unit, as the encoders LPMS's sei_fixup.go is for write them; and the
    NAL unit types of each access unit as written."""
    buffer = io.BytesIO()
    written: list[list[int]] = []
    with av.open(io.BytesIO(clip)) as source, av.open(buffer, "w", format="mpegts") as out:
        video = source.streams.video[0]
        stream = out.add_stream_from_template(video)
        for index, packet in enumerate(source.demux(video)):
            if not packet.size:
                continue
            data = bytes(packet) + b"\x00\x00\x01" + sei_nal_unit(b"frame %d" % index)
            moved = av.Packet(data)
            moved.pts, moved.dts, moved.time_base = packet.pts, packet.dts, packet.time_base
            moved.is_keyframe = packet.is_keyframe
            moved.stream = stream
            out.mux(moved)
            written.append(nal_types(data))
    return buffer.getvalue(), written


def test_sei_after_the_picture_data_is_decoded_and_transcoded() -> None:
    """FFmpeg's H.264 parser takes each trailing SEI for the start of the next access
    unit (ahead of its delimiter) and the last for an access unit with no picture;
    the session still decodes every frame and its outputs are x264's own, clean."""
    clip = make_clip(Part(320, 180, 1.0), fps=FPS, gop_frames=FPS, audio=None, start=START)
    segment, written = with_sei_after_the_slices(clip)
    assert len(written) == FPS
    assert all(types[-1] == 6 and types[-2] in (1, 5) for types in written)  # SEI last
    with Transcoder([SAME_RATE, LOWER_RATE]) as transcoder:
        result = transcoder.transcode(segment)
    assert result.skipped_packets == 0
    assert result.decoded_frames == FPS
    same, lower = result.outputs
    assert same.frames == probe(same.data).frames == FPS
    assert lower.frames == probe(lower.data).frames == 25
    for output in result.outputs:
        decoded = probe(output.data)
        assert decoded.errors == decoded.warnings == []
        with av.open(io.BytesIO(output.data)) as container:
            units = [nal_types(bytes(p)) for p in container.demux(video=0) if p.size]
        assert all(types[-1] in (1, 5) for types in units)  # picture data last
