"""What crosses the wire between the server and a remote transcoder.

A remote engine (Ray) runs `Transcoder` in another process, perhaps on another
machine, with another build of lpms. Neither side may depend on the other's Python
objects, so a ladder goes out as LPMS's JSON profile fields and a result comes back
as a dict of plain values (str, int, float, bool, bytes, lists, dicts) stamped with
`WIRE_VERSION`. Both ends check the version and every field, so a mismatch is one
clear error rather than a pickled object that half works.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Any

from lpms.errors import TranscodeError
from lpms.transcode.profiles import VideoProfile, profile_from_mapping, profile_to_mapping
from lpms.transcode.rendition import RenditionOutput
from lpms.transcode.session import TranscodeResult

if TYPE_CHECKING:
    from lpms.transcode.chunks import Chunk

WIRE_VERSION = 1
"""Bumped whenever a field is added, removed or changes meaning."""

_OUTPUT_FIELDS: Mapping[str, type | tuple[type, ...]] = {
    "profile": str,
    "data": bytes,
    "size": int,
    "frames": int,
    "keyframes": int,
    "width": int,
    "height": int,
    "duration": (int, float),
    "video_bytes": int,
    "first_keyframe": bool,
    "decoder_config": (bytes, type(None)),
    "busy_seconds": (int, float),
}
_RESULT_FIELDS: Mapping[str, type | tuple[type, ...]] = {
    "version": int,
    "index": int,
    "decoded_frames": int,
    "decoded_pixels": int,
    "duration": (int, float),
    "elapsed": (int, float),
    "skipped_packets": int,
    "outputs": list,
}


def ladder_to_wire(profiles: Sequence[VideoProfile]) -> dict[str, Any]:
    """The ladder a remote session is made with."""
    return {"version": WIRE_VERSION, "profiles": [profile_to_mapping(p) for p in profiles]}


def ladder_from_wire(message: Mapping[str, Any]) -> tuple[VideoProfile, ...]:
    if not isinstance(message, Mapping):
        raise TranscodeError(f"wire ladder: a mapping expected, not {type(message).__name__}")
    _check_version(message, "ladder")
    entries = message.get("profiles")
    if not isinstance(entries, list) or not entries:
        raise TranscodeError("wire ladder: 'profiles' must be a non-empty list")
    for i, entry in enumerate(entries):
        if not isinstance(entry, Mapping):
            raise TranscodeError(
                f"wire ladder profiles[{i}]: a mapping expected, not {type(entry).__name__}"
            )
    return tuple(
        profile_from_mapping(entry, f"wire ladder profiles[{i}]") for i, entry in enumerate(entries)
    )


@dataclass(frozen=True, slots=True)
class ChunkRequest:
    """A chunk of a file as a worker receives it (`lpms.transcode.chunks`)."""

    profiles: tuple[VideoProfile, ...]
    accel: str
    index: int
    data: bytes
    shift: Fraction
    framerate: Fraction | None
    first: Fraction | None
    end: Fraction | None


def chunk_to_wire(profiles: Sequence[VideoProfile], accel: str, chunk: Chunk) -> dict[str, Any]:
    """A chunk to transcode through ``profiles``; fractions go as [numerator,
    denominator] pairs."""
    return {
        "version": WIRE_VERSION,
        "ladder": ladder_to_wire(profiles),
        "accel": accel,
        "index": chunk.index,
        "data": chunk.data,
        "shift": _fraction_to_wire(chunk.shift),
        "framerate": _maybe_fraction_to_wire(chunk.framerate),
        "first": _maybe_fraction_to_wire(chunk.first),
        "end": _maybe_fraction_to_wire(chunk.end),
    }


def chunk_from_wire(message: object) -> ChunkRequest:
    if not isinstance(message, Mapping):
        raise TranscodeError(f"wire chunk: a mapping expected, not {type(message).__name__}")
    _check_version(message, "chunk")
    _check_fields(
        message,
        {"ladder": Mapping, "accel": str, "index": int, "data": bytes, "shift": list},
        "wire chunk",
    )
    return ChunkRequest(
        profiles=ladder_from_wire(message["ladder"]),
        accel=message["accel"],
        index=message["index"],
        data=message["data"],
        shift=_fraction_from_wire(message["shift"], "shift"),
        framerate=_maybe_fraction_from_wire(message, "framerate"),
        first=_maybe_fraction_from_wire(message, "first"),
        end=_maybe_fraction_from_wire(message, "end"),
    )


def _fraction_to_wire(value: Fraction) -> list[int]:
    return [value.numerator, value.denominator]


def _maybe_fraction_to_wire(value: Fraction | None) -> list[int] | None:
    return None if value is None else _fraction_to_wire(value)


def _maybe_fraction_from_wire(message: Mapping[str, Any], name: str) -> Fraction | None:
    if name not in message:
        raise TranscodeError(f"wire chunk: field {name!r} is missing")
    value = message[name]
    return None if value is None else _fraction_from_wire(value, name)


def _fraction_from_wire(value: object, name: str) -> Fraction:
    if (
        not isinstance(value, list)
        or len(value) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)
        or value[1] <= 0
    ):
        raise TranscodeError(f"wire chunk: {name!r} must be [numerator, denominator > 0]")
    return Fraction(value[0], value[1])


def result_to_wire(result: TranscodeResult) -> dict[str, Any]:
    return {
        "version": WIRE_VERSION,
        "index": result.index,
        "decoded_frames": result.decoded_frames,
        "decoded_pixels": result.decoded_pixels,
        "duration": result.duration,
        "elapsed": result.elapsed,
        "skipped_packets": result.skipped_packets,
        "outputs": [
            {
                "profile": output.profile.name,
                "data": bytes(output.data),
                "size": output.size,
                "frames": output.frames,
                "keyframes": output.keyframes,
                "width": output.width,
                "height": output.height,
                "duration": output.duration,
                "video_bytes": output.video_bytes,
                "first_keyframe": output.first_keyframe,
                "decoder_config": output.decoder_config,
                "busy_seconds": output.busy_seconds,
            }
            for output in result.outputs
        ],
    }


def result_from_wire(message: object, profiles: Sequence[VideoProfile]) -> TranscodeResult:
    """The result for ``profiles`` (the ladder the session was made with, in its
    order); `TranscodeError` when the message is not such a result."""
    if not isinstance(message, Mapping):
        raise TranscodeError(f"wire result must be a mapping, got {type(message).__name__}")
    _check_version(message, "result")
    _check_fields(message, _RESULT_FIELDS, "wire result")
    outputs = message["outputs"]
    if len(outputs) != len(profiles):
        raise TranscodeError(
            f"wire result has {len(outputs)} outputs for a ladder of {len(profiles)}"
        )
    made = []
    for profile, output in zip(profiles, outputs, strict=True):
        if not isinstance(output, Mapping):
            raise TranscodeError("wire result: every output must be a mapping")
        _check_fields(output, _OUTPUT_FIELDS, f"wire output {profile.name}")
        if output["profile"] != profile.name:
            raise TranscodeError(
                f"wire result lists {output['profile']!r} where the ladder has {profile.name!r}"
            )
        fields = {key: output[key] for key in _OUTPUT_FIELDS if key != "profile"}
        made.append(RenditionOutput(profile=profile, **fields))
    return TranscodeResult(
        index=message["index"],
        decoded_frames=message["decoded_frames"],
        decoded_pixels=message["decoded_pixels"],
        duration=_seconds(message, "duration"),
        elapsed=_seconds(message, "elapsed"),
        outputs=tuple(made),
        skipped_packets=message["skipped_packets"],
    )


def _seconds(message: Mapping[str, Any], name: str) -> float:
    try:
        value = float(message[name])
    except OverflowError:
        value = math.inf
    if not math.isfinite(value) or value < 0:
        raise TranscodeError(f"wire result: {name!r} must be a finite number of seconds")
    return value


def _check_version(message: Mapping[str, Any], what: str) -> None:
    version = message.get("version")
    if version != WIRE_VERSION:
        raise TranscodeError(
            f"wire {what} is version {version!r}, this lpms speaks version {WIRE_VERSION}: "
            "run the same lpms release on the server and every transcoding node"
        )


def _check_fields(
    message: Mapping[str, Any], fields: Mapping[str, type | tuple[type, ...]], what: str
) -> None:
    for key, kind in fields.items():
        if key not in message:
            raise TranscodeError(f"{what}: field {key!r} is missing")
        value = message[key]
        numeric = kind is int or kind == (int, float)
        if not isinstance(value, kind) or (numeric and isinstance(value, bool)):
            raise TranscodeError(f"{what}: field {key!r} has the wrong type {type(value).__name__}")
