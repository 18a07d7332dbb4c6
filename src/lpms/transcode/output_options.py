"""Per-output options, LPMS's ``TranscodeOptions`` beside the profile: what becomes of
the source's video and audio, which muxer writes the output, with which options and
metadata tags.

LPMS (``ffmpeg/ffmpeg.go``) gives each output a ``VideoEncoder`` and an
``AudioEncoder`` (``ComponentOptions``: a name, ``"copy"`` or ``"drop"`` or an
encoder), a ``Muxer`` (a name and its options) and ``Metadata``. Here they are a
profile's `VideoMode` (``video``), `AudioMode` (``audio``), ``muxer``,
``muxer_options`` and ``metadata``. No PyAV here: the muxer's own checks live in
`lpms.transcode.muxing`.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import TypeVar

from lpms.errors import LPMSError

MAX_MUXER_OPTIONS = 64
MAX_METADATA_TAGS = 64
MAX_OPTION_LENGTH = 1000

_MUXER_PATTERN = re.compile(r"[a-z0-9_]{1,32}")
_KEY_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]*")


class OutputOptionError(LPMSError, ValueError):
    """A per-output option (video, audio, muxer, its options, metadata) is not valid."""


class VideoMode(enum.Enum):
    """What an output does with the source's video (LPMS's ``VideoEncoder`` name)."""

    ENCODE = "encode"  # the profile's encoder (LPMS: an encoder's name)
    COPY = "copy"  # the source's packets as they are, timestamps kept
    DROP = "drop"  # no video: an audio-only output

    @classmethod
    def parse(cls, text: str) -> VideoMode:
        """``encode``, ``copy`` or ``drop``, any case; empty is ``encode``."""
        return _parse(cls, text, cls.ENCODE, "video")


class AudioMode(enum.Enum):
    """What an output does with the source's audio (LPMS's ``AudioEncoder`` name).
    A profile's ``audio`` None is lpms's default: AAC and MP3 copied, anything else
    encoded to AAC."""

    COPY = "copy"  # the source's packets, whatever their codec
    AAC = "aac"  # decoded and encoded to AAC
    OPUS = "opus"  # decoded and encoded to Opus (libopus)
    DROP = "drop"  # no audio

    @property
    def encoder(self) -> str | None:
        """The FFmpeg encoder this mode encodes with; None for copy and drop."""
        return {AudioMode.AAC: "aac", AudioMode.OPUS: "libopus"}.get(self)

    @classmethod
    def parse(cls, text: str) -> AudioMode | None:
        """``copy``, ``aac``, ``opus`` or ``drop``, any case; empty is None (default)."""
        if not text.strip():
            return None
        return _parse(cls, text, None, "audio")


_E = TypeVar("_E", bound=enum.Enum)


def _parse(kind: type[_E], text: str, empty: _E | None, what: str) -> _E:
    key = text.strip().lower()
    if not key and empty is not None:
        return empty
    for member in kind:
        if member.value == key:
            return member
    known = ", ".join(m.value for m in kind)
    raise OutputOptionError(f"unknown {what} mode {text!r}; choose one of {known}")


def checked_muxer(name: object) -> str | None:
    """A muxer's name as FFmpeg spells it (``matroska``, ``mov``, ``mpegts``) or None."""
    if name is None or name == "":
        return None
    if not isinstance(name, str) or not _MUXER_PATTERN.fullmatch(name):
        raise OutputOptionError(f"muxer must be an FFmpeg muxer's name like 'mp4', got {name!r}")
    return name


def checked_strings(values: object, what: str, limit: int) -> Mapping[str, str]:
    """A read-only copy of muxer options or metadata tags: names and string values."""
    if not isinstance(values, Mapping):
        raise OutputOptionError(f"{what} must be a mapping of strings, got {values!r}")
    if len(values) > limit:
        raise OutputOptionError(f"more than {limit} {what}")
    checked: dict[str, str] = {}
    for key, value in values.items():
        if not isinstance(key, str) or not _KEY_PATTERN.fullmatch(key):
            raise OutputOptionError(f"{what}: a name must be a word like 'movflags', got {key!r}")
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise OutputOptionError(f"{what}: {key} must be a string or number, got {value!r}")
        text = str(value)
        if len(text) > MAX_OPTION_LENGTH or "\0" in text:
            raise OutputOptionError(f"{what}: {key} is too long or holds a NUL")
        checked[key] = text
    return MappingProxyType(checked)


def parse_assignments(items: list[str], what: str) -> dict[str, str]:
    """``KEY=VALUE`` strings (a command line's) as a mapping."""
    parsed: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise OutputOptionError(f"{what} must look like KEY=VALUE, got {item!r}")
        parsed[key] = value
    return parsed
