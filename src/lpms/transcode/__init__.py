"""Transcoding: video profiles, and the per-stream `Transcoder` that makes renditions.

The names below are imported on first use (PEP 562), so importing a light module of
this package (`profiles`, `settings`) does not load PyAV.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lpms.lazy import lazy_getattr

_EXPORTS: dict[str, str] = {
    "Accel": "lpms.transcode.settings",
    "check_accel": "lpms.transcode.accel",
    "RenditionOutput": "lpms.transcode.rendition",
    "TranscodeResult": "lpms.transcode.session",
    "Transcoder": "lpms.transcode.session",
    **{
        name: "lpms.transcode.profiles"
        for name in (
            "DEFAULT_PRESET",
            "GOP",
            "INTRA_ONLY",
            "PRESETS",
            "GOPFrames",
            "GOPSeconds",
            "H264Profile",
            "OutputFormat",
            "ProfileError",
            "VideoCodec",
            "VideoProfile",
            "output_size",
            "parse_gop",
            "parse_profiles",
            "profile_by_name",
            "profile_from_mapping",
            "profiles_from_json",
            "profiles_from_toml",
        )
    },
}

__all__ = [
    "DEFAULT_PRESET",
    "GOP",
    "INTRA_ONLY",
    "PRESETS",
    "Accel",
    "GOPFrames",
    "GOPSeconds",
    "H264Profile",
    "OutputFormat",
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

if TYPE_CHECKING:
    from lpms.transcode.accel import check_accel
    from lpms.transcode.profiles import (
        DEFAULT_PRESET,
        GOP,
        INTRA_ONLY,
        PRESETS,
        GOPFrames,
        GOPSeconds,
        H264Profile,
        OutputFormat,
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
    from lpms.transcode.settings import Accel


__getattr__ = lazy_getattr(__name__, _EXPORTS, globals())
