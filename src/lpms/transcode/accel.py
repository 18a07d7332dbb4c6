"""Where transcoding runs: on the CPU (``software``) or on an NVIDIA GPU (``nvidia``).

An accel names the encoder for each output codec and the decoder options. Asking
for a GPU that is not there must fail before any media flows, with a reason a
person can act on, so `check_accel` opens a tiny encoder once and turns FFmpeg's
error into a `TranscodeError`.
"""

from __future__ import annotations

import functools
from fractions import Fraction

import av
from av.codec.hwaccel import HWAccel

from lpms.errors import TranscodeError
from lpms.transcode.profiles import VideoCodec
from lpms.transcode.settings import Accel

_ENCODERS: dict[Accel, dict[VideoCodec, str]] = {
    Accel.SOFTWARE: {
        VideoCodec.H264: "libx264",
        VideoCodec.HEVC: "libx265",
        VideoCodec.VP9: "libvpx-vp9",
        VideoCodec.AV1: "libsvtav1",
    },
    Accel.NVIDIA: {
        VideoCodec.H264: "h264_nvenc",
        VideoCodec.HEVC: "hevc_nvenc",
        VideoCodec.AV1: "av1_nvenc",
    },
}

# x264/x265 preset names to NVENC's p1 (fastest) .. p7 (slowest).
_NVENC_PRESETS = {
    "ultrafast": "p1",
    "superfast": "p1",
    "veryfast": "p2",
    "faster": "p3",
    "fast": "p3",
    "medium": "p4",
    "slow": "p5",
    "slower": "p6",
    "veryslow": "p7",
    "placebo": "p7",
}


def encoder_name(codec: VideoCodec, accel: Accel) -> str:
    """FFmpeg's encoder for ``codec`` on ``accel``."""
    name = _ENCODERS[accel].get(codec)
    if name is None:
        raise TranscodeError(f"no {codec.value} encoder for the {accel.value} accel")
    return name


def encoder_preset(accel: Accel, preset: str) -> str:
    """The encoder's ``preset`` option for a profile's (x264-style) preset."""
    if accel is Accel.NVIDIA:
        return _NVENC_PRESETS.get(preset, preset)
    return preset


def decoder_hwaccel(accel: Accel) -> HWAccel | None:
    """NVDEC for the nvidia accel (no silent fall back to the CPU); None in software."""
    if accel is Accel.NVIDIA:
        return HWAccel(device_type="cuda", allow_software_fallback=False)
    return None


@functools.cache
def check_accel(accel: Accel, codec: VideoCodec = VideoCodec.H264) -> None:
    """Raise `TranscodeError` unless ``accel`` can encode ``codec`` on this machine."""
    name = encoder_name(codec, accel)
    if name not in av.codecs_available:
        raise TranscodeError(f"this FFmpeg build has no {name} encoder ({accel.value} accel)")
    if accel is Accel.SOFTWARE:
        return
    probe = av.CodecContext.create(name, "w")
    assert isinstance(probe, av.VideoCodecContext)
    probe.width, probe.height, probe.pix_fmt = 256, 144, "yuv420p"
    probe.time_base = Fraction(1, 30)
    try:
        probe.open()
    except av.FFmpegError as exc:
        raise TranscodeError(
            f"the {accel.value} accel needs an NVIDIA GPU and its driver, and {name} "
            f"could not start here ({exc.strerror}); use --accel software"
        ) from None
