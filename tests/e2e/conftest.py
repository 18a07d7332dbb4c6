"""Fixtures that run the real server on loopback, on ports the OS picks, and drive
it with FFmpeg's RTMP client in child processes."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import pickle
import sys
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from lpms import LPMS, Settings, Stream
from tests.e2e.browser import BrowserUnavailable, PlaybackReport, play_hls
from tests.e2e.clients import Clip, Decoded, Received, make_clip

CLIENT_TIMEOUT = 60.0
_counter = itertools.count()


@dataclass
class ClipFile:
    clip: Clip
    path: Path


def clip_file(tmp_path_factory: pytest.TempPathFactory, seconds: float, **options: Any) -> ClipFile:
    """A clip encoded once (`make_clip`), also written as an FLV file for publishers."""
    clip = make_clip(seconds, **options)
    path = tmp_path_factory.mktemp("clips") / "clip.flv"
    path.write_bytes(clip.flv)
    return ClipFile(clip, path)


@pytest.fixture(scope="session")
def clip(tmp_path_factory: pytest.TempPathFactory) -> ClipFile:
    """Six seconds of H.264 (keyframe every 2 s, B-frames) and AAC, as an FLV file."""
    return clip_file(tmp_path_factory, 6.0)


@pytest.fixture(scope="session")
def clip12(tmp_path_factory: pytest.TempPathFactory) -> ClipFile:
    """12 s of H.264 (keyframe every 2 s) and AAC."""
    return clip_file(tmp_path_factory, 12.0)


@pytest.fixture(scope="session")
def long_clip(tmp_path_factory: pytest.TempPathFactory) -> ClipFile:
    """Two minutes, for a `LivePublisher`: longer than any test needs (a bound, not a
    pace)."""
    return clip_file(tmp_path_factory, 120.0)


@contextlib.asynccontextmanager
async def serving(settings: Settings | None = None) -> AsyncIterator[LPMS]:
    """The server with ``settings`` on loopback, on ports the OS picks, closed after."""
    lpms = LPMS(host="127.0.0.1", rtmp_port=0, http_port=0, settings=settings or Settings())
    await lpms.start()
    try:
        yield lpms
    finally:
        await lpms.close()


@pytest.fixture
async def server(request: pytest.FixtureRequest) -> AsyncIterator[LPMS]:
    """The server on its defaults; ``indirect`` parametrization passes `Settings`."""
    async with serving(getattr(request, "param", None)) as lpms:
        yield lpms


async def play_in_browser(url: str, **options: Any) -> PlaybackReport:
    """`play_hls`; without Chromium or the players the test is skipped, or fails
    where LPMS_REQUIRE_BROWSER is set (as .ci/run sets it)."""
    try:
        return await play_hls(url, **options)
    except BrowserUnavailable as exc:
        if os.environ.get("LPMS_REQUIRE_BROWSER"):
            raise AssertionError(f"the browser test cannot run: {exc}") from exc
        pytest.skip(str(exc))


def rtmp_url(server: LPMS, path: str) -> str:
    return f"rtmp://127.0.0.1:{server.rtmp_port}/{path}"


async def run_client_process(*command: str) -> tuple[int, str, str]:
    """Run a client program to its end (within `CLIENT_TIMEOUT`): its exit status,
    standard output and standard error."""
    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), CLIENT_TIMEOUT)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise AssertionError(f"{command} did not finish within {CLIENT_TIMEOUT}s") from None
    return process.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace")


async def _client(*args: str) -> tuple[int, str, str]:
    return await run_client_process(sys.executable, "-m", "tests.e2e.clients", *args)


async def publish(url: str, clip: ClipFile, *, realtime: bool = True) -> int:
    """Publish the clip with FFmpeg; the number of packets sent (AssertionError if refused)."""
    sent, _ = await publish_timed(url, clip, realtime=realtime)
    return sent


async def publish_timed(url: str, clip: ClipFile, *, realtime: bool = True) -> tuple[int, float]:
    """`publish`, and the seconds FFmpeg took to connect and start publishing."""
    args = ["publish", url, str(clip.path)] + ([] if realtime else ["--fast"])
    code, out, err = await _client(*args)
    if code != 0:
        raise PublishRefused(err.strip())
    sent, connected_in = out.split()
    return int(sent), float(connected_in)


class PublishRefused(Exception):
    pass


class LivePublisher:
    """An FFmpeg publisher that goes on until the test stops it, as a person's encoder
    does: a test whose checks take longer on a busy machine never outlives its stream.
    The clip should be far longer than the test needs (it is a bound, not a pace)."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    @classmethod
    async def start(cls, url: str, clip: ClipFile) -> LivePublisher:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.e2e.clients",
            "publish",
            url,
            str(clip.path),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        return cls(process)

    async def stop(self) -> None:
        """The publisher quits (its connection closes, as when OBS stops streaming)."""
        if self.process.returncode is None:
            self.process.kill()
        await asyncio.wait_for(self.process.wait(), CLIENT_TIMEOUT)


def start_publish(url: str, clip: ClipFile) -> asyncio.Task[int]:
    return asyncio.create_task(publish(url, clip))


async def play(url: str) -> Received:
    """Play ``url`` with FFmpeg until the stream ends; what it received."""
    out_path = Path(tempfile.gettempdir()) / f"lpms-play-{next(_counter)}-{id(url)}.pickle"
    try:
        code, _, err = await _client("play", url, str(out_path))
        assert code == 0, err
        return Received.from_plain(pickle.loads(out_path.read_bytes()))
    finally:
        out_path.unlink(missing_ok=True)


async def decode_hls(url: str) -> Decoded:
    """Decode an HLS URL with FFmpeg in a child process; what it made of it."""
    out_path = Path(tempfile.gettempdir()) / f"lpms-hls-{next(_counter)}-{id(url)}.pickle"
    try:
        code, _, err = await _client("hls", url, str(out_path))
        assert code == 0, err
        return Decoded.from_plain(pickle.loads(out_path.read_bytes()))
    finally:
        out_path.unlink(missing_ok=True)


async def wait_for_stream(server: LPMS, stream_id: str, within: float = 15.0) -> Stream:
    """Poll until ``stream_id`` is live with video (bounded)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while loop.time() < deadline:
        stream = server.streams.get(stream_id)
        if stream is not None and stream.video_config is not None:
            return stream
        await asyncio.sleep(0.02)
    raise AssertionError(f"stream {stream_id} did not go live within {within}s")
