"""TLS with clients we did not write: the ffmpeg command line tool publishes and plays
over ``rtmps://`` with a self-signed certificate (Debian's FFmpeg does not verify it),
FFmpeg and hls.js in Chromium play HLS over ``https://``, and a SIGHUP to ``lpms
serve`` puts a new certificate in use while an RTMPS publish goes on."""

from __future__ import annotations

import asyncio
import shutil
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest

from lpms import LPMS, Settings, TLSSettings
from tests.certs import CertificateFiles, make_certificate, served_fingerprint
from tests.e2e.clients import CLIP_HEIGHT, CLIP_WIDTH, read_packets
from tests.e2e.conftest import (
    CLIENT_TIMEOUT,
    ClipFile,
    play_in_browser,
    run_client_process,
    serving,
    wait_for_stream,
)
from tests.e2e.test_shutdown import free_port, stop
from tests.e2e.test_shutdown import serving as serving_cli

pytestmark = pytest.mark.e2e

PLAYLIST_WITHIN_S = 20.0
RELOAD_WITHIN_S = 10.0
PLAY_S = 5.0
MIN_ADVANCE_S = 1.5
HLS_FRAMES = 60  # two segments' worth at 30 fps

T = TypeVar("T")


@pytest.fixture
def certificate(tmp_path: Path) -> CertificateFiles:
    return make_certificate(tmp_path)


@pytest.fixture
def ffmpeg() -> str:
    found = shutil.which("ffmpeg")
    if found is None:
        pytest.skip("the ffmpeg command is not installed (apt-get install ffmpeg)")
    return found


@asynccontextmanager
async def tls_server(certificate: CertificateFiles, **settings: Any) -> AsyncIterator[LPMS]:
    tls = TLSSettings(
        cert=str(certificate.cert), key=str(certificate.key), rtmps_port=0, https_port=0
    )
    async with serving(Settings(tls=tls, **settings)) as server:
        yield server


async def run_ffmpeg(ffmpeg: str, *args: str) -> str:
    """Run the ffmpeg command to its end; its standard output (AssertionError if it fails)."""
    quiet = ("-hide_banner", "-nostdin", "-loglevel", "error")
    code, out, err = await run_client_process(ffmpeg, *quiet, *args)
    assert code == 0, f"ffmpeg {args}: {err}"
    return out


@asynccontextmanager
async def ffmpeg_publishing(ffmpeg: str, url: str, clip: ClipFile) -> AsyncIterator[Any]:
    """The ffmpeg command publishing `clip` to `url` in real time (stream copy) until
    the block ends; yields its process."""
    process = await asyncio.create_subprocess_exec(
        ffmpeg,
        *("-hide_banner", "-nostdin", "-loglevel", "error", "-re", "-i", str(clip.path)),
        *("-c", "copy", "-f", "flv", url),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        yield process
    finally:
        if process.returncode is None:
            process.kill()
        await asyncio.wait_for(process.wait(), CLIENT_TIMEOUT)


def insecure_session() -> aiohttp.ClientSession:
    """An HTTP client that takes the tests' self-signed certificates."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(ssl=False), timeout=aiohttp.ClientTimeout(total=5)
    )


async def eventually(
    probe: Callable[[], Awaitable[T | None]], what: str, within: float = RELOAD_WITHIN_S
) -> T:
    """Call ``probe`` until it returns something other than None (bounded)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while (found := await probe()) is None:
        assert loop.time() < deadline, f"{what}: not within {within}s"
        await asyncio.sleep(0.1)
    return found


async def wait_for_segments(url: str, count: int) -> None:
    """Until the media playlist at ``url`` lists ``count`` segments (bounded)."""
    async with insecure_session() as session:

        async def listed() -> bool | None:
            try:
                async with session.get(url) as response:
                    text = await response.text()
            except (aiohttp.ClientError, TimeoutError):
                return None
            return True if text.count("#EXTINF") >= count else None

        await eventually(listed, f"{count} segments in {url}", PLAYLIST_WITHIN_S)


async def test_ffmpeg_publishes_and_plays_over_rtmps(
    ffmpeg: str, certificate: CertificateFiles, clip12: ClipFile, tmp_path: Path
) -> None:
    played = tmp_path / "played.flv"
    async with tls_server(certificate) as server:
        url = f"rtmps://127.0.0.1:{server.rtmps_port}/stream/secure"
        async with ffmpeg_publishing(ffmpeg, url, clip12) as publisher:
            stream = await wait_for_stream(server, "stream/secure")
            assert stream.publisher_protocol == "rtmps"
            async with insecure_session() as session:
                api = f"https://127.0.0.1:{server.https_port}/api/streams/stream/secure"
                async with session.get(api) as response:
                    summary = await response.json()
            assert summary["urls"]["rtmps"] == url
            # The player copies what it gets into a file, until the stream ends.
            await run_ffmpeg(ffmpeg, "-i", url, "-c", "copy", "-f", "flv", str(played))
            assert await asyncio.wait_for(publisher.wait(), CLIENT_TIMEOUT) == 0
        value = server.metrics.value

    received = read_packets(str(played))
    assert received.error is None
    assert received.video_size == (CLIP_WIDTH, CLIP_HEIGHT)
    clip_video = [p.payload for p in clip12.clip.of_kind("video")]
    video = [p.payload for p in received.of_kind("video")]
    assert len(video) >= 60, "the player got less than two seconds of video"
    assert video == clip_video[clip_video.index(video[0]) :]
    assert value("lpms_publishes_total", protocol="rtmps") == 1
    assert value("lpms_plays_total", protocol="rtmps") == 1
    assert value("lpms_connections_total", protocol="rtmps") == 2
    assert value("lpms_received_bytes_total", protocol="rtmps") > 100_000
    assert value("lpms_connections_total", protocol="rtmp") == 0


@asynccontextmanager
async def live_over_tls(
    ffmpeg: str, certificate: CertificateFiles, clip: ClipFile, stream_id: str
) -> AsyncIterator[str]:
    """A server with TLS, the ffmpeg command publishing `clip` to it over RTMPS; yields
    the stream's HTTPS URL (without .m3u8) once its playlist lists two segments."""
    async with tls_server(certificate) as server:
        publish_url = f"rtmps://127.0.0.1:{server.rtmps_port}/{stream_id}"
        base = f"https://127.0.0.1:{server.https_port}/{stream_id}"
        async with ffmpeg_publishing(ffmpeg, publish_url, clip):
            await wait_for_segments(f"{base}/source.m3u8", 2)
            yield base


async def test_ffmpeg_plays_hls_over_https(
    ffmpeg: str, certificate: CertificateFiles, long_clip: ClipFile
) -> None:
    async with live_over_tls(ffmpeg, certificate, long_clip, "stream/hlss") as base:
        frames = await run_ffmpeg(
            ffmpeg,
            *("-i", f"{base}.m3u8", "-map", "0:v:0", "-frames:v", str(HLS_FRAMES)),
            *("-f", "framemd5", "-"),
        )
    decoded = [line for line in frames.splitlines() if line and not line.startswith("#")]
    assert len(decoded) == HLS_FRAMES


async def test_http_flv_and_websocket_flv_play_over_tls(
    ffmpeg: str, certificate: CertificateFiles, long_clip: ClipFile
) -> None:
    async with live_over_tls(ffmpeg, certificate, long_clip, "stream/flvs") as base:
        frames = await run_ffmpeg(
            ffmpeg,
            *("-i", f"{base}.flv", "-map", "0:v:0", "-frames:v", str(HLS_FRAMES)),
            *("-f", "framemd5", "-"),
        )
        data = bytearray()
        async with (
            insecure_session() as session,
            session.ws_connect(f"wss{base.removeprefix('https')}.flv") as websocket,
        ):
            while len(data) < 64 << 10:
                data += await websocket.receive_bytes(timeout=10)
    decoded = [line for line in frames.splitlines() if line and not line.startswith("#")]
    assert len(decoded) == HLS_FRAMES
    assert data.startswith(b"FLV\x01")


async def test_hls_js_plays_over_https_in_chromium(
    ffmpeg: str, certificate: CertificateFiles, long_clip: ClipFile
) -> None:
    async with live_over_tls(ffmpeg, certificate, long_clip, "stream/browser") as base:
        report = await play_in_browser(
            f"{base}.m3u8", seconds=PLAY_S, chromium_flags=("--ignore-certificate-errors",)
        )
    assert report.samples, report.describe()
    assert report.fatal_errors == [], report.describe()
    assert report.advanced >= MIN_ADVANCE_S, report.describe()
    assert report.video_size == (CLIP_WIDTH, CLIP_HEIGHT), report.describe()


async def stream_bytes_in(session: aiohttp.ClientSession, url: str) -> int | None:
    """What the API says the stream received; None while it is not live."""
    async with session.get(url) as response:
        if response.status == 404:
            return None
        assert response.status == 200, await response.text()
        summary = await response.json()
    assert summary["publisher"]["protocol"] == "rtmps"
    return int(summary["bytes_in"])


async def bytes_over(
    session: aiohttp.ClientSession, url: str, floor: int, within: float = RELOAD_WITHIN_S
) -> int:
    """The stream's bytes_in once it is over ``floor`` (0: once it is live; above: its
    publish goes on, never interrupted)."""

    async def probe() -> int | None:
        bytes_in = await stream_bytes_in(session, url)
        assert bytes_in is not None or floor == 0, "the stream is no longer live"
        return bytes_in if bytes_in is not None and bytes_in > floor else None

    return await eventually(probe, f"bytes_in of {url} over {floor}", within)


async def fingerprint_is(port: int, expected: str, within: float = RELOAD_WITHIN_S) -> None:
    async def probe() -> bool | None:
        return True if await served_fingerprint(port) == expected else None

    await eventually(probe, f"certificate {expected} on port {port}", within)


async def metrics_say(session: aiohttp.ClientSession, url: str, line: str) -> None:
    async def probe() -> bool | None:
        async with session.get(url) as response:
            return True if line in (await response.text()).splitlines() else None

    await eventually(probe, f"{line} in {url}")


@pytest.mark.timeout(180)
@pytest.mark.parametrize("event_loop", ["asyncio", "uvloop"])
async def test_sighup_puts_a_new_certificate_in_use_while_a_publish_goes_on(
    ffmpeg: str,
    tmp_path: Path,
    certificate: CertificateFiles,
    long_clip: ClipFile,
    event_loop: str,
) -> None:
    pytest.importorskip(event_loop)
    fresh = make_certificate(tmp_path, "fresh")
    rtmps_port, https_port = free_port(), free_port()
    flags = ("--event-loop", event_loop)
    flags += ("--tls-cert", str(certificate.cert), "--tls-key", str(certificate.key))
    flags += ("--rtmps-port", str(rtmps_port), "--https-port", str(https_port))
    async with serving_cli(*flags) as (server, _, _):
        await fingerprint_is(https_port, certificate.fingerprint, within=20.0)
        publish_url = f"rtmps://127.0.0.1:{rtmps_port}/stream/reload"
        api = f"https://127.0.0.1:{https_port}/api/streams/stream/reload"
        metrics = f"https://127.0.0.1:{https_port}/metrics"
        async with (
            ffmpeg_publishing(ffmpeg, publish_url, long_clip) as publisher,
            insecure_session() as session,
        ):
            before = await bytes_over(session, api, 0, within=20.0)

            shutil.copy(fresh.cert, certificate.cert)
            shutil.copy(fresh.key, certificate.key)
            server.send_signal(signal.SIGHUP)
            await fingerprint_is(https_port, fresh.fingerprint)
            assert await served_fingerprint(rtmps_port) == fresh.fingerprint
            after = await bytes_over(session, api, before)

            certificate.key.write_text("not a key\n")  # a bad file: the new one stays
            server.send_signal(signal.SIGHUP)
            await metrics_say(session, metrics, 'lpms_tls_reloads_total{result="failed"} 1.0')
            assert await served_fingerprint(https_port) == fresh.fingerprint
            await bytes_over(session, api, after)
            assert publisher.returncode is None, "the publisher was cut off"
            log = await stop(server, signal.SIGTERM)
    assert server.returncode == 0, log
    assert "TLS certificate reloaded" in log
    assert "TLS reload failed, old certificate kept" in log
    assert f"rtmps://127.0.0.1:{rtmps_port}" in log
    assert f"(event loop: {event_loop})" in log


async def test_a_bad_certificate_stops_lpms_serve_with_one_clear_line(
    certificate: CertificateFiles, tmp_path: Path
) -> None:
    other = make_certificate(tmp_path, "other")
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "lpms", "serve"),
        *("--host", "127.0.0.1", "--rtmp-port", "0", "--http-port", "0"),
        *("--rtmps-port", "0", "--https-port", "0"),
        *("--tls-cert", str(certificate.cert), "--tls-key", str(other.key)),
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(process.communicate(), CLIENT_TIMEOUT)
    assert process.returncode == 2
    assert err.decode() == (
        f"lpms serve: TLS key {other.key} does not belong to the certificate {certificate.cert}\n"
    )
