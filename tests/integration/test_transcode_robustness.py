"""The robustness LPMS earned (its doc/quirks.md and ffmpeg/ tests), on real media:
phone video with a display matrix, variable frame rates, frames without timestamps
or out of order, audio that comes and goes, segments whose timestamps overlap or
start again, and the hard caps. Outputs are read back by FFmpeg (PyAV), and the
turned picture is compared with what the ffmpeg CLI makes of the same file."""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import pytest

from lpms import TranscodeError, Transcoder
from lpms.transcode.profiles import PRESETS, VideoProfile
from lpms.transcode.settings import DEFAULT_MAX_OUTPUTS
from tests.media import (
    VIDEO_TIME_BASE,
    Part,
    audio_packets,
    make_clip,
    probe,
    thumbnail_difference,
    thumbnails,
)

P360 = PRESETS["P360p30fps16x9"]
P144 = PRESETS["P144p30fps16x9"]


def video_dts(media: bytes) -> list[int]:
    with av.open(io.BytesIO(media)) as container:
        return [p.dts for p in container.demux(video=0) if p.size and p.dts is not None]


def concatenated(*clips: bytes) -> bytes:
    """MPEG-TS clips one after another, as `cat` joins them (LPMS's tests do)."""
    return b"".join(clips)


# --- 1. rotation: a phone's portrait video -------------------------------------------


@pytest.mark.parametrize("rotation", [90, 180, 270])
def test_display_matrix_video_comes_out_upright(tmp_path: Path, rotation: int) -> None:
    if shutil.which("ffmpeg") is None:
        pytest.skip("needs the ffmpeg CLI for the reference")
    phone = tmp_path / "phone.mp4"
    phone.write_bytes(
        make_clip(Part(640, 360, 1.0), fps=30, gop_frames=30, container="mp4", rotation=rotation)
    )
    with Transcoder([P360]) as transcoder:
        result = transcoder.transcode_file(phone, tmp_path / "out")
    upright = (360, 640) if rotation % 180 else (640, 360)
    assert (result.outputs[0].width, result.outputs[0].height) == upright
    made = tmp_path / "out" / f"{P360.name}.ts"
    decoded = probe(str(made))
    assert decoded.errors == []
    assert set(decoded.video_sizes) == {upright}
    # The ffmpeg CLI turns the picture by the matrix itself (autorotate).
    reference = tmp_path / "reference.mp4"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(phone), "-vf", f"scale={upright[0]}:{upright[1]}",
         "-c:v", "libx264", "-qp", "0", "-preset", "ultrafast", str(reference)],
        check=True, timeout=120,
    )  # fmt: skip
    size = (32, 56) if rotation % 180 else (32, 18)  # width 32: rows without padding
    ours = list(thumbnails(str(made), size).values())
    theirs = list(thumbnails(str(reference), size).values())
    assert len(ours) == len(theirs) == 30
    assert max(map(thumbnail_difference, ours, theirs)) < 3


def test_lpms_transcode_of_a_phone_video_is_portrait(tmp_path: Path) -> None:
    """The issue's report: a portrait phone video came out 640x360, sideways."""
    phone = tmp_path / "phone.mp4"
    phone.write_bytes(
        make_clip(Part(640, 360, 1.0), fps=30, gop_frames=30, container="mp4", rotation=90)
    )
    done = subprocess.run(
        [sys.executable, "-m", "lpms", "transcode", str(phone), "--profiles", P360.name,
         "--outdir", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "360x640" in done.stdout


# --- 2. variable frame rate, missing and out-of-order timestamps ----------------------


def vfr_clip(intervals: list[int], start: int = 90000) -> bytes:
    """H.264 in MPEG-TS, one frame after each interval (90 kHz ticks): a variable
    frame rate, as a phone or a screen recorder sends."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mpegts") as out:
        stream = out.add_stream("libx264", rate=60)
        stream.width, stream.height, stream.pix_fmt = 320, 180, "yuv420p"
        stream.codec_context.time_base = VIDEO_TIME_BASE
        stream.codec_context.options = {"preset": "ultrafast", "bf": "0"}
        source = av.open(f"testsrc2=size=320x180:rate=60:duration={len(intervals) / 60 + 1}",
                         format="lavfi")  # fmt: skip
        pts = start
        for frame, interval in zip(source.decode(video=0), intervals, strict=False):
            frame.pts, frame.time_base = pts, VIDEO_TIME_BASE
            frame.pict_type = av.video.frame.PictureType.NONE
            out.mux(stream.encode(frame))
            pts += interval
        out.mux(stream.encode(None))
        source.close()
    return buffer.getvalue()


# 1/60 s and 1/40 s apart, irregularly: about 48 fps on average.
VFR_INTERVALS = [1500, 2250, 1500, 1500, 2250, 2250, 1500, 2250] * 12


def test_variable_frame_rate_comes_out_at_the_profiles_rate() -> None:
    clip = vfr_clip(VFR_INTERVALS)
    source = probe(clip)
    profile = VideoProfile("cfr", 320, 180, 300_000, Fraction(30))
    with Transcoder([profile]) as transcoder:
        output = transcoder.transcode(clip).outputs[0]
    decoded = probe(output.data)
    assert decoded.errors == []
    assert decoded.warnings == []
    # One frame in each 1/30 s slot from the first: a quarter slot early at most.
    first, step = source.video_pts[0], 3000
    for index, pts in enumerate(decoded.video_pts):
        assert first + index * step - step // 4 <= pts < first + (index + 1) * step
    seconds = (source.video_pts[-1] - source.video_pts[0] + VFR_INTERVALS[-1]) / 90000
    assert output.duration == pytest.approx(seconds, abs=1 / 30)


def test_variable_frame_rate_passes_through_with_its_timestamps() -> None:
    clip = vfr_clip(VFR_INTERVALS)
    with Transcoder([VideoProfile("same", 320, 180, 300_000)]) as transcoder:
        output = transcoder.transcode(clip).outputs[0]
    assert probe(output.data).video_pts == probe(clip).video_pts


def test_a_gap_is_filled_at_the_profiles_rate() -> None:
    """Frames 1/60 s apart, then none for a fifth of a second: through a 30 fps
    profile the gap is five slots of the last picture, on the grid."""
    clip = vfr_clip([1500] * 30 + [18000] + [1500] * 29)
    source = probe(clip)
    profile = VideoProfile("cfr", 320, 180, 300_000, Fraction(30))
    with Transcoder([profile]) as transcoder:
        output = transcoder.transcode(clip).outputs[0]
    decoded = probe(output.data)
    first = source.video_pts[0]
    assert decoded.video_pts == [first + 3000 * index for index in range(decoded.frames)]
    assert decoded.frames == 15 + 6 + 15


def test_frames_without_timestamps_get_them() -> None:
    """A raw H.264 elementary stream (Annex B) has no PTS at all (AV_NOPTS_VALUE)."""
    raw = make_clip(Part(320, 180, 1.0), fps=30, gop_frames=30, container="h264", audio=None)
    assert set(probe(raw, format="h264").video_pts) == {None}
    with Transcoder([P144]) as transcoder:
        result = transcoder.transcode(raw)
    decoded = probe(result.outputs[0].data)
    assert result.decoded_frames == decoded.frames == 30
    assert decoded.video_pts == sorted(set(decoded.video_pts))  # strictly rising


def test_out_of_order_input_through_a_frame_rate_conversion_rises() -> None:
    """LPMS quirks.md "Handling out-of-order frames": the second half of this segment
    goes back in time by a second; every frame still comes out, PTS rising."""
    late = make_clip(Part(320, 180, 1.0), fps=60, gop_frames=60, start=2.0, audio=None)
    early = make_clip(Part(320, 180, 1.0), fps=60, gop_frames=60, start=1.0, audio=None)
    profile = VideoProfile("half", 320, 180, 300_000, Fraction(30))
    with Transcoder([profile]) as transcoder:
        result = transcoder.transcode(concatenated(late, early))
    decoded = probe(result.outputs[0].data)
    assert decoded.errors == []
    assert result.decoded_frames == 120
    assert abs(decoded.frames - 60) <= 1
    assert decoded.video_pts == sorted(set(decoded.video_pts))
    dts = video_dts(result.outputs[0].data)
    assert dts == sorted(set(dts))


# --- 3. audio that comes and goes ------------------------------------------------------


def without_audio_before(clip: bytes, seconds: float) -> bytes:
    """``clip`` with its audio packets before ``seconds`` left out: audio that starts
    part-way through a segment."""
    buffer = io.BytesIO()
    with av.open(io.BytesIO(clip)) as source, av.open(buffer, "w", format="mpegts") as out:
        streams = {s.index: out.add_stream_from_template(s) for s in source.streams}
        for packet in source.demux():
            if not packet.size:
                continue
            if packet.stream.type == "audio" and packet.pts * packet.time_base < seconds:
                continue
            packet.stream = streams[packet.stream.index]
            out.mux(packet)
    return buffer.getvalue()


def test_audio_that_starts_mid_segment_and_mid_stream() -> None:
    silent = make_clip(Part(320, 180, 1.0), fps=30, gop_frames=30, start=1.0, audio=None)
    late_audio = without_audio_before(
        make_clip(Part(320, 180, 1.0), fps=30, gop_frames=30, start=2.0), 2.5
    )
    full = make_clip(Part(320, 180, 1.0), fps=30, gop_frames=30, start=3.0)
    with Transcoder([P144]) as transcoder:
        outputs = [transcoder.transcode(s).outputs[0] for s in (silent, late_audio, full)]
    assert probe(outputs[0].data).audio_packets == 0
    for output, source in zip(outputs[1:], (late_audio, full), strict=True):
        assert audio_packets(output.data) == audio_packets(source)
        assert probe(output.data).frames == 30


# --- 4. segments whose timestamps overlap or start again -------------------------------


def test_overlapping_and_discontinuous_segments() -> None:
    """LPMS's TestTranscoder_API_DTSOverlap and discontinuity tests: the second segment
    starts before the first ends, the third starts again at 0 (with B-frames, so its
    first DTS would be negative); each output's DTS rise and no frame is lost."""
    starts = (1.0, 1.5, 0.0)
    segments = [
        make_clip(Part(320, 180, 1.0), fps=30, gop_frames=30, start=start, b_frames=2)
        for start in starts
    ]
    profiles = [P144, VideoProfile("same", 320, 180, 300_000)]
    with Transcoder(profiles) as transcoder:
        results = [transcoder.transcode(segment) for segment in segments]
    for result, segment in zip(results, segments, strict=True):
        source = probe(segment)
        for output in result.outputs:
            decoded = probe(output.data)
            assert decoded.errors == []
            assert decoded.warnings == []
            assert decoded.video_pts == source.video_pts  # 30 fps: every frame, as it was
            dts = video_dts(output.data)
            assert dts == sorted(set(dts))


# --- 5. the hard caps -------------------------------------------------------------------


def test_too_many_outputs() -> None:
    profiles = list(PRESETS.values())[: DEFAULT_MAX_OUTPUTS + 1]
    with pytest.raises(TranscodeError, match="too many outputs: 11 profiles, at most 10"):
        Transcoder(profiles)
    Transcoder(profiles, max_outputs=11).close()


def test_segment_over_the_duration_cap_is_refused_and_the_session_goes_on() -> None:
    clip = make_clip(Part(320, 180, 2.0), fps=30, gop_frames=30, start=1.0)
    short = make_clip(Part(320, 180, 1.0), fps=30, gop_frames=30, start=3.0)
    with Transcoder([P144], max_segment_seconds=1.5) as transcoder:
        with pytest.raises(TranscodeError, match=r"over the limit of 1\.5 s"):
            transcoder.transcode(clip)
        assert transcoder.transcode(short).outputs[0].frames == 30


def test_file_over_its_duration_cap(tmp_path: Path) -> None:
    path = tmp_path / "long.ts"
    path.write_bytes(make_clip(Part(320, 180, 2.0), fps=30, gop_frames=30))
    with (
        Transcoder([P144], max_file_seconds=1.0) as transcoder,
        pytest.raises(TranscodeError, match="over the limit of 1 s"),
    ):
        transcoder.transcode_file(path, tmp_path / "out")


def test_runaway_frame_rate_conversion_is_an_error() -> None:
    """LPMS's TestTranscoder_EncodedFrameRunaway: a jump of minutes in the timestamps
    would be filled with thousands of repeated frames; it is refused instead, and
    the next segment is transcoded as usual."""
    jump = concatenated(
        make_clip(Part(320, 180, 0.5), fps=60, gop_frames=60, start=1.0, audio=None),
        make_clip(Part(320, 180, 0.5), fps=60, gop_frames=60, start=120.0, audio=None),
    )
    after = make_clip(Part(320, 180, 1.0), fps=60, gop_frames=60, start=121.0, audio=None)
    with Transcoder([P144]) as transcoder:
        with pytest.raises(TranscodeError, match="encoded frames runaway"):
            transcoder.transcode(jump)
        assert transcoder.transcode(after).outputs[0].frames == 30


def test_cli_refuses_too_many_outputs_in_one_line(tmp_path: Path) -> None:
    clip = tmp_path / "in.ts"
    clip.write_bytes(make_clip(Part(320, 180, 1.0), fps=30, gop_frames=30))
    names = ",".join(list(PRESETS)[: DEFAULT_MAX_OUTPUTS + 1])
    done = subprocess.run(
        [sys.executable, "-m", "lpms", "transcode", str(clip), "--profiles", names,
         "--outdir", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "lpms transcode: too many outputs: 11 profiles, at most 10 a session"
    ]
