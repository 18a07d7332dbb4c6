"""Graceful shutdown of `lpms serve`: a signal during a live publish leaves a complete,
playable HLS recording that ends with EXT-X-ENDLIST, and the process exits promptly."""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import m3u8
import pytest

from tests.e2e.conftest import ClipFile, decode_hls, publish

pytestmark = pytest.mark.e2e

EXIT_WITHIN_S = 10.0
STARTUP_WITHIN_S = 20.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def wait_until(check: object, within: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while loop.time() < deadline:
        if check():  # type: ignore[operator]
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{what} not within {within}s")


async def listening(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return False
    writer.close()
    return True


@asynccontextmanager
async def serving(*flags: str) -> AsyncIterator[tuple[asyncio.subprocess.Process, int, int]]:
    """`lpms serve` on free loopback ports with ``flags``, once it listens for RTMP:
    the process (stderr piped) and its RTMP and HTTP ports; killed on the way out if
    the test did not stop it."""
    rtmp_port, http_port = free_port(), free_port()
    server = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "lpms", "serve", "--host", "127.0.0.1"),
        *("--rtmp-port", str(rtmp_port), "--http-port", str(http_port)),
        *flags,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + STARTUP_WITHIN_S
        while not await listening(rtmp_port):
            assert loop.time() < deadline, "lpms serve did not start listening"
            assert server.returncode is None, "lpms serve exited at start"
            await asyncio.sleep(0.1)
        yield server, rtmp_port, http_port
    finally:
        if server.returncode is None:
            server.kill()
            await server.wait()


async def stop(server: asyncio.subprocess.Process, signum: signal.Signals) -> str:
    """Send ``signum`` and wait (bounded) for the server to exit; what it logged."""
    server.send_signal(signum)
    _, stderr = await asyncio.wait_for(server.communicate(), EXIT_WITHIN_S)
    return stderr.decode()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_signal_during_publish_leaves_a_complete_recording(
    tmp_path: Path, clip12: ClipFile, signum: signal.Signals
) -> None:
    async with serving("--record", "--workdir", str(tmp_path)) as (server, rtmp_port, _):
        loop = asyncio.get_running_loop()
        publisher = asyncio.create_task(
            publish(f"rtmp://127.0.0.1:{rtmp_port}/stream/shut", clip12)
        )
        top = tmp_path / "stream" / "shut.m3u8"  # the master playlist, written at the end
        playlist = tmp_path / "stream" / "shut" / "source.m3u8"

        def two_segments() -> bool:
            return playlist.is_file() and playlist.read_text().count("#EXTINF") >= 2

        await wait_until(two_segments, 15, "two recorded segments")
        started = loop.time()
        log = await stop(server, signum)
        took = loop.time() - started
    assert server.returncode == 0, log
    assert took < EXIT_WITHIN_S
    assert f"{signum.name}: shutting down" in log
    assert "server stopped" in log
    # The publisher is disconnected (FFmpeg reports the cut as an error), not left hanging.
    done, _ = await asyncio.wait([publisher], timeout=15)
    assert publisher in done
    publisher.exception()  # retrieved: the cut-off is expected

    recorded = m3u8.load(str(playlist))
    assert recorded.is_endlist
    assert recorded.segments, "no segments recorded"
    for segment in recorded.segments:
        assert (playlist.parent / segment.uri).is_file(), segment.uri
    recorded_seconds = sum(s.duration for s in recorded.segments)
    assert recorded_seconds >= 4.0  # at least the two segments seen before the signal
    assert top.is_file()
    decoded = await decode_hls(str(top))
    assert decoded.error is None
    assert decoded.warnings == []
    assert decoded.video_keyframes
    assert decoded.video_keyframes[0]
    # Every frame the playlist promises is there: 30 fps over its listed duration.
    assert len(decoded.video_pts) == pytest.approx(recorded_seconds * 30, abs=2)
