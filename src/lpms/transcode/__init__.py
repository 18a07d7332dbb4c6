"""Transcoding: video profiles, and the per-stream `Transcoder` that makes renditions."""

from lpms.transcode.accel import Accel, check_accel
from lpms.transcode.profiles import (
    DEFAULT_PRESET,
    GOP,
    INTRA_ONLY,
    PRESETS,
    GOPFrames,
    GOPSeconds,
    H264Profile,
    ProfileError,
    VideoCodec,
    VideoProfile,
    output_size,
    parse_gop,
    parse_profiles,
    profile_by_name,
    profile_from_mapping,
    profiles_from_json,
    profiles_from_toml,
)
from lpms.transcode.rendition import RenditionOutput
from lpms.transcode.session import Transcoder, TranscodeResult

__all__ = [
    "DEFAULT_PRESET",
    "GOP",
    "INTRA_ONLY",
    "PRESETS",
    "Accel",
    "GOPFrames",
    "GOPSeconds",
    "H264Profile",
    "ProfileError",
    "RenditionOutput",
    "TranscodeResult",
    "Transcoder",
    "VideoCodec",
    "VideoProfile",
    "check_accel",
    "output_size",
    "parse_gop",
    "parse_profiles",
    "profile_by_name",
    "profile_from_mapping",
    "profiles_from_json",
    "profiles_from_toml",
]
