"""Real encoders and players for the conformance matrix (test_conformance.py).

Every client here is a program we did not write: the ffmpeg CLI, GStreamer's
``gst-launch-1.0``, librtmp's ``rtmpdump``. What each one sends or receives is
reduced to *fingerprints*: per track, the MD5 of each frame's payload in the
order it was demuxed. Payloads are first brought to one form, because a
container may carry the same frame differently: H.264 as length-prefixed NAL
units (FLV) or Annex B with access unit delimiters and repeated parameter sets
(MPEG-TS), AAC raw (FLV) or behind an ADTS header (MPEG-TS). What is left is
the coded slice data and SEI, which no relay may change.

Reading a URL with PyAV holds the GIL while FFmpeg connects, which would freeze
the server's event loop in the test process, so URLs are read by running this
module: ``python -m tests.e2e.conformance SOURCE OUT.json``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import av
import pytest

# H.264 NAL unit types a muxer may add, drop or repeat (ITU-T H.264 table 7-1):
# SPS, PPS, access unit delimiter, end of sequence, end of stream, filler data.
CONTAINER_NAL_TYPES = frozenset({7, 8, 9, 10, 11, 12})


@dataclass
class Fingerprints:
    """Per track, one entry per frame in demux order: (MD5 of its normalized
    payload, decode timestamp in ms, keyframe flag)."""

    video: list[tuple[str, int, bool]] = field(default_factory=list)
    audio: list[tuple[str, int, bool]] = field(default_factory=list)
    video_codec: str | None = None
    audio_codec: str | None = None
    error: str | None = None

    def to_json(self) -> str:
        return json.dumps(self.__dict__)

    @classmethod
    def from_json(cls, text: str) -> Fingerprints:
        plain = json.loads(text)
        plain["video"] = [tuple(entry) for entry in plain["video"]]
        plain["audio"] = [tuple(entry) for entry in plain["audio"]]
        return cls(**plain)


def _annex_b_units(data: bytes) -> list[bytes]:
    """NAL units between start codes; trailing zero bytes belong to the next start code."""
    units = []
    start = data.find(b"\x00\x00\x01")
    while start >= 0:
        begin = start + 3
        end = data.find(b"\x00\x00\x01", begin)
        unit = data[begin : len(data) if end < 0 else end]
        units.append(unit.rstrip(b"\x00"))
        start = end
    return [unit for unit in units if unit]


def _length_prefixed_units(data: bytes, length_size: int) -> list[bytes]:
    units, offset = [], 0
    while offset + length_size <= len(data):
        length = int.from_bytes(data[offset : offset + length_size], "big")
        offset += length_size
        units.append(data[offset : offset + length])
        offset += length
    if offset != len(data):
        raise ValueError(f"NAL unit lengths overrun a {len(data)}-byte frame")
    return units


def _avcc_length_size(extradata: bytes | None) -> int | None:
    """The NAL length size of an avcC record (ISO/IEC 14496-15 5.3.3.1), or None
    for Annex B extradata (or none at all)."""
    if extradata and len(extradata) >= 5 and extradata[0] == 1:
        return (extradata[4] & 0x03) + 1
    return None


def normalize_h264(payload: bytes, length_size: int | None) -> bytes:
    """The frame's NAL units without the container's own, each length-prefixed."""
    if length_size is None:
        units = _annex_b_units(payload)
    else:
        units = _length_prefixed_units(payload, length_size)
    kept = [unit for unit in units if unit and unit[0] & 0x1F not in CONTAINER_NAL_TYPES]
    return b"".join(len(unit).to_bytes(4, "big") + unit for unit in kept)


def normalize_aac(payload: bytes) -> bytes:
    """The raw AAC frame: an ADTS header (ISO/IEC 13818-7 6.2), if any, taken off."""
    if len(payload) >= 7 and payload[0] == 0xFF and payload[1] & 0xF6 == 0xF0:
        protection_absent = payload[1] & 0x01
        return payload[7 if protection_absent else 9 :]
    return payload


def fingerprint(source: str, *, timeout: float = 10.0) -> Fingerprints:
    """Demux every audio and video packet of a file or URL (stream copy, no decoding)."""
    result = Fingerprints()
    try:
        container = av.open(source, "r", timeout=timeout)
    except av.FFmpegError as exc:
        result.error = f"cannot open {source}: {exc}"
        return result
    try:
        streams = [s for s in container.streams if s.type in ("video", "audio")]
        for stream in streams:
            if stream.type == "video":
                result.video_codec = stream.codec_context.name
            else:
                result.audio_codec = stream.codec_context.name
        for packet in container.demux(*streams):
            if packet.size == 0:
                continue
            payload = bytes(packet)
            dts = -1 if packet.dts is None else round(float(packet.dts * packet.time_base) * 1000)
            if packet.stream.type == "video":
                # FLV carries an avcC record; MPEG-TS carries none (or Annex B).
                size = _avcc_length_size(packet.stream.codec_context.extradata)
                digest = hashlib.md5(normalize_h264(payload, size)).hexdigest()
                result.video.append((digest, dts, packet.is_keyframe))
            else:
                digest = hashlib.md5(normalize_aac(payload)).hexdigest()
                result.audio.append((digest, dts, packet.is_keyframe))
    except (av.FFmpegError, ValueError) as exc:
        result.error = f"reading {source}: {exc}"
    finally:
        container.close()
    return result


# -- what the clients need ---------------------------------------------------------

REQUIRE_ENV = "LPMS_REQUIRE_CONFORMANCE"


@dataclass(frozen=True)
class Program:
    """A command on PATH, and the Debian package that installs it."""

    name: str
    package: str

    def missing(self) -> bool:
        return shutil.which(self.name) is None


@dataclass(frozen=True)
class GstElement:
    """A GStreamer element, and the Debian package whose plugin provides it."""

    name: str
    package: str

    def missing(self) -> bool:
        return not _gst_element_exists(self.name)


Requirement = Program | GstElement

FFMPEG = Program("ffmpeg", "ffmpeg")
RTMPDUMP = Program("rtmpdump", "rtmpdump")
GST_LAUNCH = Program("gst-launch-1.0", "gstreamer1.0-tools")
GST_INSPECT = Program("gst-inspect-1.0", "gstreamer1.0-tools")


def gst(*elements: tuple[str, str]) -> tuple[Requirement, ...]:
    """gst-launch plus the given (element, Debian package) pairs."""
    return (GST_LAUNCH, GST_INSPECT, *(GstElement(name, package) for name, package in elements))


@cache
def _gst_element_exists(name: str) -> bool:
    if GST_INSPECT.missing():
        return False
    try:
        done = subprocess.run(
            [GST_INSPECT.name, "--exists", name], capture_output=True, timeout=60, check=False
        )
    except subprocess.TimeoutExpired:
        return False
    return done.returncode == 0


def require(needs: Sequence[Requirement], what: str) -> None:
    """Skip (or, with LPMS_REQUIRE_CONFORMANCE=1 as in CI, fail) when a client is missing,
    naming the Debian packages that would bring it."""
    missing = [need for need in needs if need.missing()]
    if not missing:
        return
    names = ", ".join(need.name for need in missing)
    packages = " ".join(sorted({need.package for need in missing}))
    message = f"{what} needs {names}: apt-get install {packages}"
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{message} ({REQUIRE_ENV}=1)")
    pytest.skip(message)


# -- child processes ----------------------------------------------------------------


class Child:
    """A client process whose life is bounded: its stderr is read as it runs (so it
    never blocks on a full pipe), `finish` waits for it with a timeout, and `kill`
    ends it whatever state it is in."""

    def __init__(self, name: str, process: asyncio.subprocess.Process) -> None:
        self.name = name
        self.process = process
        self._output = asyncio.ensure_future(process.communicate())

    @classmethod
    async def start(cls, name: str, argv: Sequence[str]) -> Child:
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        return cls(name, process)

    @property
    def exited(self) -> bool:
        return self._output.done()

    async def finish(self, within: float) -> str:
        """Its stderr once it exits with status 0; AssertionError if it fails or
        outlives ``within`` seconds (then it is killed)."""
        try:
            _, err = await asyncio.wait_for(asyncio.shield(self._output), within)
        except TimeoutError:
            await self.kill()
            raise AssertionError(f"{self.name} did not finish within {within:g}s") from None
        stderr = err.decode(errors="replace").strip()
        if self.process.returncode != 0:
            raise AssertionError(f"{self.name} exited with {self.process.returncode}: {stderr}")
        return stderr

    async def kill(self) -> None:
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
        await asyncio.wait_for(asyncio.shield(self._output), 10)


async def run_to_end(name: str, argv: Sequence[str], within: float) -> str:
    """Run a command to completion (bounded); its stderr."""
    child = await Child.start(name, argv)
    try:
        return await child.finish(within)
    finally:
        await child.kill()


async def fingerprint_url(url: str, out: Path, within: float) -> Fingerprints:
    """`fingerprint` in a child process, for URLs (see the module docstring)."""
    argv = [sys.executable, "-m", "tests.e2e.conformance", url, str(out)]
    await run_to_end(f"fingerprint {url}", argv, within)
    return load_fingerprints(out)


def load_fingerprints(path: Path) -> Fingerprints:
    return Fingerprints.from_json(path.read_text())


# -- frame-exact delivery -----------------------------------------------------------


def delivery_problems(
    published: Fingerprints, received: Fingerprints, *, may_lose_final: bool = False
) -> list[str]:
    """How ``received`` (by a player that joined before the first frame) falls short
    of ``published``: empty when every video frame from the first keyframe on, and
    every audio frame from the first video frame on, came in order and once each.

    Audio before the first video frame may come or not (a server may start a
    stream at its first keyframe), but only as an unbroken run up to it.
    ``may_lose_final`` allows one frame missing at the very end of one track, for a
    player known to drop the last message it has buffered when it sees the stream
    end (GStreamer's rtmp2src; see test_conformance.py).
    """
    if received.error is not None:
        return [received.error]
    problems = []
    video = [digest for digest, _, _ in published.video]
    first_key = next((i for i, (_, _, key) in enumerate(published.video) if key), len(video))
    expected_video = video[first_key:]
    audio = [digest for digest, _, _ in published.audio]
    if published.video:
        start_dts = published.video[first_key][1]
        must_from = next(
            (i for i, (_, dts, _) in enumerate(published.audio) if dts >= start_dts), len(audio)
        )
    else:
        must_from = 0
    lost_final = 0
    for kind, expected, got, optional_head in (
        ("video", expected_video, [d for d, _, _ in received.video], 0),
        ("audio", audio, [d for d, _, _ in received.audio], must_from),
    ):
        matched = _suffix_match(expected, got, optional_head)
        if matched is None and may_lose_final and expected:
            matched = _suffix_match(expected[:-1], got, optional_head)
            lost_final += matched is not None
        if matched is None:
            problems.append(f"{kind}: {_difference(expected, got)}")
    if lost_final > 1:
        problems.append("lost the final frame of more than one track")
    return problems


def _suffix_match(expected: list[str], got: list[str], optional_head: int) -> int | None:
    """Where ``got`` starts in ``expected`` if it is all of ``expected`` from some
    index at most ``optional_head`` on; else None."""
    start = len(expected) - len(got)
    if 0 <= start <= optional_head and expected[start:] == got:
        return start
    return None


def _difference(expected: list[str], got: list[str]) -> str:
    """A short account of how two frame lists differ, for an assertion message."""
    first = next(
        (i for i, (a, b) in enumerate(zip(expected, got, strict=False)) if a != b),
        min(len(expected), len(got)),
    )
    known = set(expected)
    foreign = sum(digest not in known for digest in got)
    repeated = len(got) - len(set(got)) - (len(expected) - len(set(expected)))
    return (
        f"published {len(expected)} frames, got {len(got)}; first difference at frame {first}; "
        f"{foreign} frames not in the published stream, {max(repeated, 0)} extra repeats"
    )


def _main(argv: list[str]) -> int:
    source, out = argv
    Path(out).write_text(fingerprint(source).to_json())
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
