"""The transcoder on real media: every LPMS preset through a whole file, segments in
sequence through one session, frame-rate and size changes, damaged segments, audio
that is copied or made AAC, accel choice and the session's lifetime.

Clips are encoded once per module with PyAV (FFmpeg's testsrc2 pattern and a tone);
outputs are checked as a player sees them: decoded by FFmpeg, its warnings captured.
"""

from __future__ import annotations

import itertools
import random
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import pytest
from av.video.reformatter import VideoReformatter

import lpms
from lpms import TranscodeError, Transcoder, TranscodeResult
from lpms.hls.fmp4 import read_fragmented_video
from lpms.transcode.accel import check_accel
from lpms.transcode.profiles import PRESETS, VideoCodec, VideoProfile, output_size
from lpms.transcode.rendition import OutputContainer, share_frame
from lpms.transcode.settings import Accel
from tests.integration.test_segmenter import continuity_follows
from tests.media import Part, Probed, make_clip, probe, split_at_keyframes

# Sources start 1 s in, as lpms's own segmenter writes them (START_OFFSET_MS): room
# for the encoders' B-frame delay. A source starting at 0 is its own test below.
START = 1.0


def thread_names() -> set[str]:
    """Python threads of our own (FFmpeg's threads that log show up as Dummy-N)."""
    return {t.name for t in threading.enumerate() if not t.name.startswith("Dummy-")}


# --- 1. every LPMS preset through transcode_file ----------------------------------------

FILE_WIDTH, FILE_HEIGHT, FILE_FPS, FILE_SECONDS = 1280, 720, 60, 10
"""The largest preset is 1280x720 at 60 fps: a source that size scales only down."""


@dataclass
class FileRun:
    source: Probed
    result: TranscodeResult
    outdir: Path
    progress: list[tuple[float, float]]


@pytest.fixture(scope="module")
def file_run(tmp_path_factory: pytest.TempPathFactory) -> FileRun:
    """One Transcoder with all 14 presets over a 10 s 720p60 clip (one decode)."""
    directory = tmp_path_factory.mktemp("presets")
    source = directory / "source.ts"
    source.write_bytes(
        make_clip(
            Part(FILE_WIDTH, FILE_HEIGHT, FILE_SECONDS),
            fps=FILE_FPS,
            gop_frames=2 * FILE_FPS,
            start=START,
        )
    )
    progress: list[tuple[float, float]] = []
    with Transcoder(list(PRESETS.values()), max_outputs=len(PRESETS)) as transcoder:
        result = transcoder.transcode_file(
            source, directory / "out", lambda done, total: progress.append((done, total))
        )
    return FileRun(probe(str(source)), result, directory / "out", progress)


def test_transcode_file_reports_the_whole_source(file_run: FileRun) -> None:
    result = file_run.result
    assert result.decoded_frames == FILE_SECONDS * FILE_FPS
    assert result.duration == pytest.approx(FILE_SECONDS, abs=0.01)
    assert [o.profile.name for o in result.outputs] == list(PRESETS)
    assert sorted(p.name for p in file_run.outdir.iterdir()) == sorted(f"{n}.ts" for n in PRESETS)
    done = [d for d, _total in file_run.progress]
    assert done == sorted(done)
    assert done[-1] == pytest.approx(FILE_SECONDS, abs=0.1)
    assert file_run.progress[-1][1] == pytest.approx(FILE_SECONDS, abs=0.1)


@pytest.mark.parametrize("name", list(PRESETS))
def test_preset_output(file_run: FileRun, name: str) -> None:
    profile = PRESETS[name]
    assert profile.framerate is not None
    fps = profile.framerate
    output = file_run.result.output(name)
    assert output.data == b""  # written to the file
    decoded = probe(str(file_run.outdir / f"{name}.ts"))
    assert decoded.errors == []
    assert decoded.warnings == []

    size = output_size(profile, FILE_WIDTH, FILE_HEIGHT)
    assert set(decoded.video_sizes) == {size}
    assert (output.width, output.height) == size

    assert abs(decoded.frames - FILE_SECONDS * fps) <= 2
    assert output.frames == decoded.frames
    seconds = decoded.video_seconds(fps)
    assert seconds == pytest.approx(FILE_SECONDS, abs=0.05)
    assert decoded.frames / seconds == pytest.approx(float(fps), rel=0.01)

    bitrate = decoded.video_packet_bytes * 8 / seconds
    assert bitrate == pytest.approx(profile.bitrate, rel=0.20), f"{bitrate:.0f} bit/s"
    assert output.bitrate == pytest.approx(bitrate, rel=0.01)

    # Keyframes where the source has them (so renditions line up), starting with one.
    assert decoded.video_keyframes[0]
    source_keys = set(file_run.source.keyframe_pts)
    output_keys = set(decoded.keyframe_pts)
    assert source_keys <= output_keys
    assert output.keyframes == len(output_keys)

    # AAC audio is copied, every packet.
    assert decoded.audio_codec == "aac"
    assert decoded.audio_packets == file_run.source.audio_packets


# --- 2. the segment API: one session, segments in order ---------------------------------

SEGMENT_FPS = 30
SEGMENT_PROFILES = (
    PRESETS["P360p30fps16x9"],  # the source's rate: every frame, same timestamps
    PRESETS["P240p30fps4x3"],  # another shape
    PRESETS["P144p25fps16x9"],  # a lower rate
)


@dataclass
class SegmentRun:
    inputs: list[bytes]
    probed_inputs: list[Probed]
    results: list[TranscodeResult]


@pytest.fixture(scope="module")
def clip_segments() -> list[bytes]:
    """A 10 s 640x360 30 fps clip with a keyframe every 2 s, cut at each keyframe as
    ``ffmpeg -f segment -segment_time 2 -reset_timestamps 0`` does."""
    clip = make_clip(Part(640, 360, 10), fps=SEGMENT_FPS, gop_frames=2 * SEGMENT_FPS, start=START)
    return split_at_keyframes(clip)


@pytest.fixture(scope="module")
def segment_run(clip_segments: list[bytes]) -> SegmentRun:
    with Transcoder(SEGMENT_PROFILES) as transcoder:
        results = [transcoder.transcode(segment) for segment in clip_segments]
    return SegmentRun(clip_segments, [probe(s) for s in clip_segments], results)


def test_segments_are_numbered_and_fully_decoded(segment_run: SegmentRun) -> None:
    assert len(segment_run.inputs) == 5
    assert [r.index for r in segment_run.results] == [0, 1, 2, 3, 4]
    for result, source in zip(segment_run.results, segment_run.probed_inputs, strict=True):
        assert result.decoded_frames == source.frames == 2 * SEGMENT_FPS
        assert result.duration == pytest.approx(2.0, abs=0.01)
        assert result.skipped_packets == 0
        assert [o.profile for o in result.outputs] == list(SEGMENT_PROFILES)


@pytest.mark.parametrize("profile", SEGMENT_PROFILES, ids=lambda p: p.name)
def test_each_output_segment_starts_with_a_keyframe(
    segment_run: SegmentRun, profile: VideoProfile
) -> None:
    for result in segment_run.results:
        output = result.output(profile.name)
        decoded = probe(output.data)
        assert output.first_keyframe
        assert decoded.first_packet_keyframe
        assert decoded.video_keyframes[0]
        assert decoded.errors == []
        assert decoded.warnings == []
        assert set(decoded.video_sizes) == {output_size(profile, 640, 360)}


@pytest.mark.parametrize("profile", SEGMENT_PROFILES, ids=lambda p: p.name)
def test_output_segments_keep_the_source_timestamps(
    segment_run: SegmentRun, profile: VideoProfile
) -> None:
    for result, source in zip(segment_run.results, segment_run.probed_inputs, strict=True):
        output = result.output(profile.name)
        decoded = probe(output.data)
        assert output.frames == decoded.frames
        if profile.framerate == SEGMENT_FPS:
            assert decoded.frames == source.frames
            assert decoded.video_pts == source.video_pts
        else:
            assert profile.framerate is not None
            assert abs(decoded.frames - 2 * profile.framerate) <= 1
            assert decoded.video_pts[0] == source.video_pts[0]
            assert set(decoded.video_pts) <= set(source.video_pts)
        assert decoded.audio_packets == source.audio_packets  # AAC copied


@pytest.mark.parametrize("profile", SEGMENT_PROFILES, ids=lambda p: p.name)
def test_output_segments_back_to_back_are_one_clean_stream(
    segment_run: SegmentRun, profile: VideoProfile
) -> None:
    outputs = [r.output(profile.name).data for r in segment_run.results]
    decoded = probe(b"".join(outputs), format="mpegts")
    assert decoded.errors == []
    assert decoded.warnings == []
    assert decoded.frames == sum(r.output(profile.name).frames for r in segment_run.results)
    assert decoded.video_pts == sorted(decoded.video_pts)
    assert decoded.audio_packets == sum(p.audio_packets for p in segment_run.probed_inputs)
    for first, second in itertools.pairwise(outputs):
        assert continuity_follows(first, second)


def test_first_segment_starting_at_zero_keeps_its_timestamps() -> None:
    """FFmpeg's segment muxer (and any source from 0) starts the first segment near 0."""
    clip = make_clip(Part(320, 240, 2), fps=30, gop_frames=60, start=0.0)
    source = probe(clip)
    profiles = [PRESETS["P240p30fps16x9"], PRESETS["P240p25fps16x9"]]
    with Transcoder(profiles) as transcoder:
        result = transcoder.transcode(clip)
    outputs = {o.profile.name: probe(o.data) for o in result.outputs}
    firsts = {name: decoded.video_pts[0] for name, decoded in outputs.items()}
    assert firsts == dict.fromkeys(firsts, source.video_pts[0])
    for decoded in outputs.values():
        assert decoded.errors == []
        assert decoded.warnings == []
        assert decoded.video_keyframes[0]
    assert outputs["P240p30fps16x9"].frames == source.frames


def test_segment_from_a_path(clip_segments: list[bytes], tmp_path: Path) -> None:
    path = tmp_path / "segment.ts"
    path.write_bytes(clip_segments[1])
    with Transcoder("P144p30fps16x9") as transcoder:
        assert transcoder.transcode(path).decoded_frames == 2 * SEGMENT_FPS
        assert transcoder.transcode(str(path)).outputs[0].frames == 2 * SEGMENT_FPS
        with pytest.raises(TranscodeError, match="cannot read segment"):
            transcoder.transcode(tmp_path / "missing.ts")


# --- 3. frame-rate change ---------------------------------------------------------------


@pytest.fixture(scope="module")
def small_clips() -> dict[int, bytes]:
    """A 2 s 320x240 segment at 30 and at 60 fps."""
    return {
        fps: make_clip(Part(320, 240, 2), fps=fps, gop_frames=2 * fps, start=START)
        for fps in (30, 60)
    }


@pytest.mark.parametrize(
    ("source_fps", "profile_fps", "frames"),
    [
        (60, 30, 60),  # half
        (60, 25, 50),
        (60, 60, 120),
        (60, None, 120),  # passthrough
        (30, 30, 60),  # all kept
        (30, 60, 60),  # never made up
    ],
)
def test_frame_rate(
    small_clips: dict[int, bytes], source_fps: int, profile_fps: int | None, frames: int
) -> None:
    rate = Fraction(profile_fps) if profile_fps else None
    profile = VideoProfile("rate", 320, 240, 300_000, rate)
    source = probe(small_clips[source_fps])
    with Transcoder([profile]) as transcoder:
        output = transcoder.transcode(small_clips[source_fps]).outputs[0]
    decoded = probe(output.data)
    assert abs(decoded.frames - frames) <= 1
    assert output.frames == decoded.frames
    assert output.framerate == pytest.approx(min(profile_fps or source_fps, source_fps), rel=0.02)
    assert decoded.video_pts[0] == source.video_pts[0]
    assert set(decoded.video_pts) <= set(source.video_pts)
    assert decoded.warnings == []


# --- 4. picture size changes mid-segment --------------------------------------------------


@pytest.mark.parametrize(
    "profile",
    [PRESETS["P360p30fps16x9"], PRESETS["P240p30fps4x3"], VideoProfile("tall", 360, 640, 500_000)],
    ids=lambda p: p.name,
)
def test_resolution_change_mid_segment(profile: VideoProfile) -> None:
    clip = make_clip([Part(1280, 720, 1), Part(640, 480, 1)], fps=30, gop_frames=30, start=START)
    source = probe(clip)
    assert source.video_sizes[0] == (1280, 720)
    assert source.video_sizes[-1] == (640, 480)
    with Transcoder([profile]) as transcoder:
        output = transcoder.transcode(clip).outputs[0]
        after = transcoder.transcode(clip).outputs[0]  # and the session goes on
    for made in (output, after):
        decoded = probe(made.data)
        assert decoded.errors == []
        assert decoded.warnings == []
        assert decoded.video_pts == source.video_pts
        assert (
            decoded.video_sizes
            == [output_size(profile, 1280, 720)] * 30 + [output_size(profile, 640, 480)] * 30
        )
        # Each size starts with a keyframe (a new encoder, parameter sets in-band).
        assert decoded.video_keyframes[0]
        assert decoded.video_keyframes[30]
        assert (made.width, made.height) == output_size(profile, 640, 480)


# --- 5. damaged segments ------------------------------------------------------------------


def damaged(kind: str, good: bytes) -> bytes:
    rng = random.Random(kind)
    data = bytearray(good)
    if kind == "truncated":
        return bytes(data[: len(data) * 3 // 10])
    if kind == "truncated-mid-packet":
        return bytes(data[: len(data) * 3 // 10 + 77])
    if kind == "flipped":  # every 97th byte of the middle third inverted
        for offset in range(len(data) // 3, 2 * len(data) // 3, 97):
            data[offset] ^= 0xFF
        return bytes(data)
    if kind == "garbled":  # 20 kB of noise in the middle
        middle = len(data) // 2
        data[middle : middle + 20_000] = rng.randbytes(20_000)
        return bytes(data)
    if kind == "headers-only":
        return bytes(data[: 3 * 188])
    raise AssertionError(kind)


def check_good_output(result: TranscodeResult, source: Probed) -> None:
    for output in result.outputs:
        decoded = probe(output.data)
        assert decoded.errors == []
        assert decoded.warnings == []
        assert decoded.video_keyframes[0]
        assert decoded.frames == output.frames
        rate = output.profile.framerate
        if rate is None or rate >= SEGMENT_FPS:
            assert decoded.video_pts == source.video_pts
        else:  # every output frame is a source frame, the first one kept
            assert abs(decoded.frames - source.frames * rate / SEGMENT_FPS) <= 1
            assert decoded.video_pts[0] == source.video_pts[0]
            assert set(decoded.video_pts) <= set(source.video_pts)


@pytest.mark.parametrize(
    "kind", ["truncated", "truncated-mid-packet", "flipped", "garbled", "headers-only"]
)
def test_damaged_segment_spoils_only_itself(clip_segments: list[bytes], kind: str) -> None:
    profiles = [PRESETS["P240p30fps16x9"], PRESETS["P144p25fps16x9"]]
    with Transcoder(profiles) as transcoder:
        check_good_output(transcoder.transcode(clip_segments[0]), probe(clip_segments[0]))
        try:
            result = transcoder.transcode(damaged(kind, clip_segments[1]))
        except TranscodeError:
            pass  # refused: fine; any other exception fails the test
        else:
            for output in result.outputs:
                decoded = probe(output.data)  # whatever came out is clean media
                assert decoded.errors == []
                assert decoded.frames == output.frames
        result = transcoder.transcode(clip_segments[2])
        assert result.index == 2
        check_good_output(result, probe(clip_segments[2]))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (random.Random(7).randbytes(100_000), "not readable media"),
        (b"", "empty segment"),
        (bytearray(), "empty segment"),
        (b"\x47" + bytes(187), "not readable media|no video track"),
    ],
    ids=["random", "empty", "empty-bytearray", "one-null-ts-packet"],
)
def test_unreadable_segment_is_a_transcode_error(
    clip_segments: list[bytes], data: bytes, message: str
) -> None:
    with Transcoder([PRESETS["P144p30fps16x9"]]) as transcoder:
        with pytest.raises(TranscodeError, match=message):
            transcoder.transcode(data)
        check_good_output(transcoder.transcode(clip_segments[3]), probe(clip_segments[3]))


# --- 6. audio: AAC and MP3 copied, anything else made AAC ---------------------------------


@pytest.mark.parametrize(
    ("container", "codec", "rate", "copied_as"),
    [
        ("mpegts", "aac", 44100, "aac"),  # ADTS already
        ("mp4", "aac", 48000, "aac"),  # raw AAC + AudioSpecificConfig: framed as ADTS
        ("flv", "aac", 44100, "aac"),
        ("mpegts", "libmp3lame", 44100, "mp3float"),
    ],
)
def test_aac_and_mp3_audio_is_copied(container: str, codec: str, rate: int, copied_as: str) -> None:
    clip = make_clip(
        Part(320, 240, 2),
        fps=30,
        gop_frames=60,
        audio=codec,
        sample_rate=rate,
        container=container,
        start=START,
    )
    source = probe(clip)
    with Transcoder([PRESETS["P240p30fps4x3"], PRESETS["P144p30fps16x9"]]) as transcoder:
        result = transcoder.transcode(clip)
    for output in result.outputs:
        decoded = probe(output.data)
        assert decoded.errors == []
        assert decoded.warnings == []
        assert decoded.audio_codec == copied_as
        assert decoded.audio_packets == source.audio_packets
        assert decoded.frames == source.frames


@pytest.mark.parametrize(
    ("container", "codec", "rate"),
    [
        ("matroska", "libopus", 48000),
        ("matroska", "flac", 44100),
        ("matroska", "pcm_s16le", 44100),
    ],
)
def test_other_audio_becomes_aac(container: str, codec: str, rate: int) -> None:
    clip = make_clip(
        Part(320, 240, 2),
        fps=30,
        gop_frames=60,
        audio=codec,
        sample_rate=rate,
        container=container,
        start=START,
    )
    source = probe(clip)
    with Transcoder([PRESETS["P240p30fps4x3"], PRESETS["P144p30fps16x9"]]) as transcoder:
        results = [transcoder.transcode(clip) for _ in range(2)]
    for result in results:
        for output in result.outputs:
            decoded = probe(output.data)
            assert decoded.frames == source.frames
            assert decoded.audio_codec == "aac"
            assert decoded.errors == []
            assert decoded.warnings == []
            # Two seconds of sound, give or take the encoder's padding.
            assert decoded.audio_samples == pytest.approx(source.audio_samples, abs=2048)


# --- 7. accel and codecs ------------------------------------------------------------------


def nvidia_present() -> bool:
    try:
        check_accel(Accel.NVIDIA)
    except TranscodeError:
        return False
    return True


@pytest.mark.parametrize("accel", ["nvidia", Accel.NVIDIA, " NVIDIA "])
def test_nvidia_without_a_gpu_is_refused_up_front(accel: str | Accel) -> None:
    if nvidia_present():
        pytest.skip("an NVIDIA GPU is here")
    threads = thread_names()
    with pytest.raises(TranscodeError, match="NVIDIA GPU") as caught:
        Transcoder([PRESETS["P144p30fps16x9"]], accel=accel)
    assert "--accel software" in str(caught.value)
    assert thread_names() == threads  # no encoder was started


def test_unknown_accel() -> None:
    with pytest.raises(TranscodeError, match="unknown accel 'quicksync'; choose one of"):
        Transcoder([PRESETS["P144p30fps16x9"]], accel="quicksync")


@pytest.mark.parametrize("codec", [VideoCodec.VP9, VideoCodec.AV1], ids=lambda c: c.value)
def test_vp9_and_av1_in_mpeg_ts_are_refused_with_a_reason(codec: VideoCodec) -> None:
    threads = thread_names()
    profile = VideoProfile("web", 640, 360, 1_000_000, codec=codec)
    # After a good profile: no encoder starts before all are checked.
    profiles = [PRESETS["P144p30fps16x9"], profile]
    with pytest.raises(TranscodeError, match=f"{codec.value} cannot go into MPEG-TS") as caught:
        Transcoder(profiles, output=OutputContainer.MPEGTS)
    assert "fmp4" in str(caught.value)
    assert thread_names() == threads


def test_vp9_has_no_nvidia_encoder() -> None:
    profile = VideoProfile("web", 640, 360, 1_000_000, codec=VideoCodec.VP9)
    with pytest.raises(TranscodeError, match=r"(?i)no vp9 encoder for the nvidia accel"):
        Transcoder([profile], accel="nvidia")


@pytest.mark.parametrize(
    ("codec", "decoder"),
    [(VideoCodec.AV1, "av1"), (VideoCodec.VP9, "vp9"), (VideoCodec.HEVC, "hevc")],
    ids=lambda value: getattr(value, "value", value),
)
def test_av1_vp9_and_hevc_renditions_as_cmaf(
    clip_segments: list[bytes], codec: VideoCodec, decoder: str
) -> None:
    """Each segment comes out as a fragmented MP4 of the video alone, FFmpeg's
    configuration record in it, at the profile's size and rate, every frame there."""
    profile = VideoProfile("web", 256, 144, 300_000, Fraction(30), codec=codec)
    with Transcoder([profile], output=OutputContainer.CMAF) as transcoder:
        result = transcoder.transcode(clip_segments[0])
    [output] = result.outputs
    assert output.data[4:8] == b"ftyp"
    video = read_fragmented_video(output.data)
    assert video.config.codec.value == decoder
    assert output.decoder_config == video.config.extradata
    probed = probe(output.data)
    assert probed.errors == []
    assert set(probed.video_sizes) == {(256, 144)}
    assert probed.frames == result.decoded_frames
    assert probed.audio_codec == "aac"  # MP4 carries the audio too (live HLS drops it)
    assert probed.first_packet_keyframe


def test_no_profiles() -> None:
    with pytest.raises(TranscodeError, match="at least one profile"):
        Transcoder([])
    with pytest.raises(TranscodeError, match="at least one profile"):
        Transcoder("")


# --- 7b. threads under load ---------------------------------------------------------------


def test_sessions_side_by_side_all_finish_with_the_same_output(
    segment_run: SegmentRun, clip_segments: list[bytes]
) -> None:
    """Four sessions on four threads at once (twelve encoder threads on two cores,
    each session's decoder frames crossing to its encoders): none deadlocks, and each
    makes what one session alone made, frame for frame."""
    alone = [
        [(o.frames, o.keyframes, o.width, o.height) for o in r.outputs] for r in segment_run.results
    ]
    made: dict[int, list[list[tuple[int, int, int, int]]]] = {}
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            with Transcoder(SEGMENT_PROFILES) as transcoder:
                made[index] = [
                    [
                        (o.frames, o.keyframes, o.width, o.height)
                        for o in transcoder.transcode(s).outputs
                    ]
                    for s in clip_segments
                ]
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,), name=f"load-{i}") for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=90)
    assert not any(thread.is_alive() for thread in threads), "a session hung"
    assert errors == []
    assert made == dict.fromkeys(range(4), alone)


def test_one_frame_scaled_by_many_threads_keeps_consistent_colour_fields() -> None:
    """PyAV's reformat swaps the source frame's colour fields out and back with the
    GIL released; `share_frame` (what the session does before handing a frame to
    its encoders) makes that safe when several encoders scale one frame at once."""
    frame = av.VideoFrame(1280, 720, "yuv420p")
    seen: set[tuple[int, int, int]] = set()
    sizes = [(640, 360), (426, 240), (256, 144), (854, 480)]
    for _ in range(100):
        frame.color_trc, frame.color_primaries, frame.colorspace = 1, 1, 5  # BT.709, BT.470BG
        share_frame(frame)
        expected = (frame.color_trc, frame.color_primaries, frame.colorspace)

        def scale(width: int, height: int) -> None:
            out = VideoReformatter().reformat(frame, width, height, "yuv420p")
            seen.add((out.color_trc, out.color_primaries, out.colorspace))

        threads = [threading.Thread(target=scale, args=size) for size in sizes]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        seen.add((frame.color_trc, frame.color_primaries, frame.colorspace))
        assert seen == {expected}


# --- 8. the session's lifetime --------------------------------------------------------------


def test_closed_transcoder_refuses_work(clip_segments: list[bytes], tmp_path: Path) -> None:
    transcoder = Transcoder("P144p30fps16x9")
    transcoder.transcode(clip_segments[0])
    transcoder.close()
    transcoder.close()  # twice is fine
    with pytest.raises(TranscodeError, match="closed"):
        transcoder.transcode(clip_segments[1])
    source = tmp_path / "source.ts"
    source.write_bytes(clip_segments[1])
    with pytest.raises(TranscodeError, match="closed"):
        transcoder.transcode_file(source, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.fixture
def no_thread_left() -> Iterator[None]:
    before = thread_names()
    yield
    assert thread_names() == before


def own_thread_count() -> int:
    return len(thread_names())


@pytest.mark.usefixtures("no_thread_left")
def test_context_manager_stops_the_encoder_threads(clip_segments: list[bytes]) -> None:
    before = own_thread_count()
    names = ("P240p30fps16x9", "P144p30fps16x9")
    with Transcoder(",".join(names)) as transcoder:
        assert {f"lpms-encode-{n}" for n in names} <= thread_names()
        assert own_thread_count() == before + len(names)
        transcoder.transcode(clip_segments[0])
    assert not any(name.startswith("lpms-encode-") for name in thread_names())
    assert own_thread_count() == before


@pytest.mark.usefixtures("no_thread_left")
def test_context_manager_closes_after_an_error(clip_segments: list[bytes]) -> None:
    with pytest.raises(TranscodeError), Transcoder("P144p30fps16x9") as transcoder:
        transcoder.transcode(b"not media at all" * 100)
    with pytest.raises(TranscodeError, match="closed"):
        transcoder.transcode(clip_segments[0])


def test_public_names() -> None:
    assert set(lpms.__all__) <= set(dir(lpms))
    for name in lpms.__all__:
        assert getattr(lpms, name) is not None
    with pytest.raises(AttributeError, match="no attribute 'Transcodr'"):
        _ = lpms.Transcodr  # type: ignore[attr-defined]
    assert lpms.Transcoder is Transcoder
    assert lpms.TranscodeError is TranscodeError
    assert issubclass(TranscodeError, lpms.LPMSError)
