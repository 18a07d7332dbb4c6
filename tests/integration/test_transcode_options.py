"""Profiles' rate control, intra-only GOPs, encoder options and output formats on
real media, each checked by reading the output back with PyAV.

Rate control is LPMS's (``ffmpeg/encoder.c``: a bitrate is the average, minimum,
maximum and one-second VBV buffer; ``ffmpeg/ffmpeg.go``: a quality is ``crf``, or
NVENC's ``cq`` at quality + 7). Formats: MPEG-TS, MP4 with its index at the front,
fragmented MP4.
"""

from __future__ import annotations

import struct
from fractions import Fraction
from pathlib import Path

import av
import pytest

from lpms import TranscodeError, Transcoder
from lpms.transcode.profiles import (
    INTRA_ONLY,
    OutputFormat,
    VideoCodec,
    VideoProfile,
)
from lpms.transcode.rendition import rate_control
from lpms.transcode.session import output_name
from tests.integration.test_transcode import thread_names
from tests.media import Part, make_clip, probe

SECONDS, FPS = 4, 30


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 s of 640x360 test pattern at 30 fps, a keyframe every 2 s, with AAC."""
    path = tmp_path_factory.mktemp("options") / "source.ts"
    path.write_bytes(make_clip(Part(640, 360, SECONDS), fps=FPS, gop_frames=2 * FPS))
    return path


def profile(**changes: object) -> VideoProfile:
    fields: dict[str, object] = {
        "name": "out",
        "width": 320,
        "height": 180,
        "bitrate": 300_000,
        "framerate": Fraction(FPS),
    }
    fields.update(changes)
    return VideoProfile(**fields)  # type: ignore[arg-type]


def transcode(source: Path, outdir: Path, *profiles: VideoProfile, **kwargs: object) -> list[Path]:
    with Transcoder(list(profiles), **kwargs) as transcoder:  # type: ignore[arg-type]
        transcoder.transcode_file(source, outdir)
        containers = transcoder.containers
    return [outdir / output_name(p, c) for p, c in zip(profiles, containers, strict=True)]


def video_packets(path: Path) -> list[av.Packet]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return [p for p in container.demux(stream) if p.size]


def peak_window_bits(packets: list[av.Packet], seconds: float = 1.0) -> int:
    """The most bits in any run of packets spanning ``seconds`` of presentation."""
    timed = sorted((float(p.pts * p.time_base), p.size * 8) for p in packets)
    peak = 0
    for i, (start, _) in enumerate(timed):
        peak = max(peak, sum(bits for at, bits in timed[i:] if at < start + seconds))
    return peak


def boxes(data: bytes) -> list[str]:
    """The top-level ISO BMFF boxes' types, in file order."""
    found, offset = [], 0
    while offset + 8 <= len(data):
        size, kind = struct.unpack_from(">I4s", data, offset)
        if size == 1:
            size = struct.unpack_from(">Q", data, offset + 8)[0]
        found.append(kind.decode("latin-1"))
        if size < 8:
            break
        offset += size
    return found


# --- rate control ---------------------------------------------------------------------


def test_rate_control_is_lpms() -> None:
    """A bitrate: average, minimum, maximum and buffer alike; a quality: crf (NVENC:
    cq at quality + 7), the bitrate then only the maximum."""
    rate = {"b": "300000", "minrate": "300000", "maxrate": "300000", "bufsize": "300000"}
    assert rate_control("libx264", profile(), 300_000) == rate
    assert rate_control("h264_nvenc", profile(), 300_000) == rate
    crf = profile(bitrate=0, quality=23)
    assert rate_control("libx264", crf, 0) == {"b": "0", "crf": "23"}
    assert rate_control("h264_nvenc", crf, 0) == {"b": "0", "rc": "vbr", "cq": "30"}
    capped = profile(quality=23)
    assert rate_control("libx265", capped, 300_000) == {
        "b": "0",
        "crf": "23",
        "maxrate": "300000",
        "bufsize": "300000",
    }
    # libvpx takes a constrained quality's ceiling as its target bitrate.
    assert rate_control("libvpx-vp9", capped, 300_000)["b"] == "300000"
    # SVT-AV1 takes no maximum outside CRF mode.
    assert rate_control("libsvtav1", profile(), 300_000) == {"b": "300000", "bufsize": "300000"}


def test_a_quality_beyond_nvenc_cq_is_refused() -> None:
    with pytest.raises(TranscodeError, match="quality 45 is beyond NVENC's CQ"):
        rate_control("h264_nvenc", profile(quality=45), 300_000)
    assert rate_control("h264_nvenc", profile(quality=44), 0)["cq"] == "51"


def test_lower_crf_is_larger_and_unlike_bitrate_mode(source: Path, tmp_path: Path) -> None:
    fine, coarse, rated = transcode(
        source,
        tmp_path,
        profile(name="fine", bitrate=0, quality=18),
        profile(name="coarse", bitrate=0, quality=38),
        profile(name="rated"),
    )
    sizes = {path.stem: sum(p.size for p in video_packets(path)) for path in (fine, coarse, rated)}
    assert sizes["fine"] > 2 * sizes["coarse"]
    assert sizes["rated"] not in (sizes["fine"], sizes["coarse"])
    for path in (fine, coarse, rated):
        probed = probe(str(path))
        assert probed.errors == []
        assert probed.frames == SECONDS * FPS


def test_bitrate_peak_is_bounded_by_the_vbv(source: Path, tmp_path: Path) -> None:
    """A one-second buffer at the bitrate: no second of output holds more than the
    buffer plus a second's bitrate (twice the bitrate)."""
    bitrate = 200_000
    [rated] = transcode(source, tmp_path, profile(bitrate=bitrate))
    packets = video_packets(rated)
    assert peak_window_bits(packets) <= 2 * bitrate
    average = sum(p.size for p in packets) * 8 / SECONDS
    assert 0.5 * bitrate < average < 1.3 * bitrate


def test_bitrate_with_a_quality_is_a_ceiling(source: Path, tmp_path: Path) -> None:
    """CRF 10 alone spends far more than the bitrate; given one, it stays under it."""
    ceiling = 150_000
    free, capped = transcode(
        source,
        tmp_path,
        profile(name="free", bitrate=0, quality=10),
        profile(name="capped", bitrate=ceiling, quality=10),
    )
    assert sum(p.size for p in video_packets(free)) * 8 / SECONDS > 3 * ceiling
    packets = video_packets(capped)
    assert sum(p.size for p in packets) * 8 / SECONDS < 1.2 * ceiling
    assert peak_window_bits(packets) <= 2 * ceiling


# --- intra-only -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "intra",
    [
        profile(gop=INTRA_ONLY),
        profile(gop=INTRA_ONLY, codec=VideoCodec.HEVC),
        profile(gop=INTRA_ONLY, codec=VideoCodec.VP9),
        profile(gop=INTRA_ONLY, codec=VideoCodec.AV1, bitrate=0, quality=40),
    ],
    ids=lambda p: p.codec.value,
)
def test_intra_only_makes_every_frame_a_keyframe(
    source: Path, tmp_path: Path, intra: VideoProfile
) -> None:
    [path] = transcode(source, tmp_path, intra)
    packets = video_packets(path)
    assert len(packets) == SECONDS * FPS
    assert all(p.is_keyframe for p in packets)
    probed = probe(str(path))
    assert probed.errors == []
    assert all(probed.video_keyframes)


def test_svt_av1_intra_only_needs_a_quality() -> None:
    threads = thread_names()
    with pytest.raises(TranscodeError, match="SVT-AV1 makes every frame a keyframe only"):
        Transcoder([profile(gop=INTRA_ONLY, codec=VideoCodec.AV1)])
    assert thread_names() == threads


# --- encoder options --------------------------------------------------------------------


def test_encoder_options_take_effect(source: Path, tmp_path: Path) -> None:
    """x264's zerolatency: no B-frames, so packets come in presentation order; its
    own keyint, over lpms's keyframe placement: a keyframe every 15 frames."""
    default, tuned = transcode(
        source,
        tmp_path,
        profile(name="default"),
        profile(
            name="tuned",
            encoder_options={"tune": "zerolatency", "x264-params": "keyint=15:min-keyint=15"},
        ),
    )

    def reordered(path: Path) -> bool:
        return any(p.pts != p.dts for p in video_packets(path))

    assert reordered(default)  # B-frames: decode order is not presentation order
    assert not reordered(tuned)
    assert sum(p.is_keyframe for p in video_packets(default)) == SECONDS // 2
    assert sum(p.is_keyframe for p in video_packets(tuned)) == SECONDS * FPS // 15


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"tune": "zerolatency", "no-such-option": "1"}, "libx264 has no option 'no-such-option'"),
        ({"preset": "warp9"}, "libx264 for out would not open"),
    ],
)
def test_bad_encoder_options_fail_before_any_media(options: dict[str, str], message: str) -> None:
    threads = thread_names()
    with pytest.raises(TranscodeError, match=message):
        Transcoder([profile(name="fine"), profile(encoder_options=options)])
    assert thread_names() == threads  # no encoder was started


def test_unknown_option_of_another_codec_names_it() -> None:
    vp9 = profile(codec=VideoCodec.VP9, encoder_options={"x264-params": "keyint=1"})
    with pytest.raises(TranscodeError, match="out: libvpx-vp9 has no option 'x264-params'"):
        Transcoder([vp9])


# --- formats ----------------------------------------------------------------------------


def test_mp4_has_its_index_at_the_front(source: Path, tmp_path: Path) -> None:
    [path] = transcode(source, tmp_path, profile(format=OutputFormat.MP4))
    assert path.name == "out.mp4"
    order = boxes(path.read_bytes())
    assert order[0] == "ftyp"
    assert order.index("moov") < order.index("mdat")
    assert "moof" not in order
    assert not list(tmp_path.glob(".lpms-*"))  # the scratch file is gone
    probed = probe(str(path))
    assert probed.errors == []
    assert probed.frames == SECONDS * FPS
    assert probed.first_packet_keyframe


def test_fmp4_is_fragmented(source: Path, tmp_path: Path) -> None:
    [path] = transcode(
        source,
        tmp_path,
        profile(format=OutputFormat.FMP4, codec=VideoCodec.VP9, bitrate=0, quality=40),
    )
    order = boxes(path.read_bytes())
    assert order[:2] == ["ftyp", "moov"]
    assert order.count("moof") == SECONDS // 2  # a fragment from each keyframe
    assert probe(str(path)).frames == SECONDS * FPS


def test_output_overrides_each_profiles_format(source: Path, tmp_path: Path) -> None:
    ts, mp4 = transcode(
        source,
        tmp_path,
        profile(name="a", format=OutputFormat.MP4),
        profile(name="b"),
        output=OutputFormat.MPEGTS,
    )
    assert (ts.name, mp4.name) == ("a.ts", "b.ts")
    assert probe(str(ts)).frames == SECONDS * FPS


def test_mp4_segments_in_memory(source: Path) -> None:
    with Transcoder([profile(format=OutputFormat.MP4)]) as transcoder:
        result = transcoder.transcode(source)
    data = result.outputs[0].data
    assert boxes(data)[:2] == ["ftyp", "moov"]
    assert probe(data).frames == SECONDS * FPS


def test_mpeg_ts_cannot_carry_av1() -> None:
    with pytest.raises(TranscodeError, match="AV1 cannot go into MPEG-TS"):
        Transcoder([profile(codec=VideoCodec.AV1)], output=OutputFormat.MPEGTS)
