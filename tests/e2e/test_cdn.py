"""A CDN in front of lpms: Debian's nginx as a caching reverse proxy (``proxy_cache``,
as the README shows), and hls.js in low-latency mode playing through it. What a CDN
needs from the origin is checked through the cache itself: segments, parts and init
segments are kept (a second request is a hit), a 404 for a segment still to come is
never kept, and blocking playlist reloads, their query in the cache key, are answered
fresh."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin

import m3u8
import pytest

from lpms import LPMS, HLSSettings, Settings
from tests.e2e.conformance import REQUIRE_ENV
from tests.e2e.conftest import ClipFile, LivePublisher, play_in_browser, rtmp_url, serving
from tests.e2e.test_hls import fetch

pytestmark = pytest.mark.e2e

NGINX_CANDIDATES = ("/usr/sbin/nginx", "/usr/local/sbin/nginx")
WITHIN = 30.0


def find_nginx() -> str:
    path = shutil.which("nginx") or next((p for p in NGINX_CANDIDATES if Path(p).is_file()), None)
    if path is None:
        message = "the CDN test needs nginx: apt-get install nginx"
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{message} ({REQUIRE_ENV}=1)")
        pytest.skip(message)
    return path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def nginx_conf(run_dir: Path, port: int, origin: int) -> str:
    """The proxy the README describes, on loopback, with its files under ``run_dir``."""
    temp = run_dir / "temp"
    temp_paths = "".join(
        f"    {kind}_temp_path {temp / kind};\n"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    user = "user root;\n" if os.geteuid() == 0 else ""
    return f"""daemon off;
master_process on;
worker_processes 1;
{user}error_log {run_dir / "error.log"} warn;
pid {run_dir / "nginx.pid"};
events {{ worker_connections 256; }}
http {{
    access_log off;
{temp_paths}    proxy_cache_path {run_dir / "cache"} levels=1:2 keys_zone=lpms:10m max_size=1g
                     inactive=10m use_temp_path=off;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://127.0.0.1:{origin};
            proxy_http_version 1.1;
            proxy_cache lpms;
            proxy_cache_lock on;
            proxy_cache_lock_timeout 10s;
            proxy_cache_revalidate on;
            proxy_read_timeout 30s;
            add_header X-Cache $upstream_cache_status always;
        }}
    }}
}}
"""


@dataclass
class Proxy:
    url: str


@contextlib.contextmanager
def nginx_in_front(run_dir: Path, origin: int) -> Iterator[Proxy]:
    nginx = find_nginx()
    port = free_port()
    (run_dir / "temp").mkdir(parents=True)
    (run_dir / "cache").mkdir()
    conf = run_dir / "nginx.conf"
    conf.write_text(nginx_conf(run_dir, port, origin))
    process = subprocess.Popen(
        [nginx, "-p", str(run_dir), "-c", str(conf), "-e", str(run_dir / "error.log")],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        yield Proxy(f"http://127.0.0.1:{port}")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


async def until_listening(url: str) -> None:
    host, port = url.removeprefix("http://").split(":")
    deadline = asyncio.get_running_loop().time() + WITHIN
    while True:
        try:
            _, writer = await asyncio.open_connection(host, int(port))
        except OSError:
            assert asyncio.get_running_loop().time() < deadline, "nginx did not listen"
            await asyncio.sleep(0.05)
            continue
        writer.close()
        return


@pytest.fixture
async def origin(tmp_path: Path) -> AsyncIterator[LPMS]:
    settings = Settings(hls=HLSSettings(window=20), workdir=str(tmp_path / "work"))
    async with serving(settings) as server:
        yield server


def cache_status(headers: dict[str, str]) -> str:
    return next((v for k, v in headers.items() if k.lower() == "x-cache"), "")


async def playlist_with_segment(url: str) -> m3u8.M3U8:
    deadline = asyncio.get_running_loop().time() + WITHIN
    while asyncio.get_running_loop().time() < deadline:
        status, _, body = await fetch(url)
        if status == 200:
            playlist = m3u8.loads(body.decode())
            if any(s.uri for s in playlist.segments):
                return playlist
        await asyncio.sleep(0.1)
    raise AssertionError(f"{url} listed no segment within {WITHIN}s")


async def test_a_caching_proxy_keeps_media_not_404s_and_hls_js_plays_through_it(
    origin: LPMS, long_clip: ClipFile, tmp_path: Path
) -> None:
    publisher = await LivePublisher.start(rtmp_url(origin, "stream/cdn"), long_clip)
    try:
        with nginx_in_front(tmp_path / "nginx", origin.http_port) as proxy:
            await until_listening(proxy.url)
            media_url = f"{proxy.url}/stream/cdn/source.m3u8"
            playlist = await playlist_with_segment(media_url)
            segment = next(s for s in playlist.segments if s.uri)
            # Segments, parts and init segments: fetched once from lpms, then from the cache.
            for uri in (segment.uri, segment.parts[0].uri, segment.init_section.uri):
                url = urljoin(media_url, uri)
                first, _, body = await fetch(url)
                second, headers, again = await fetch(url)
                assert (first, second) == (200, 200)
                assert again == body
                assert cache_status(headers) == "HIT", uri
            # A segment still to come: a 404 the cache must not keep.
            epoch = segment.uri.split("/")[1]
            future = urljoin(media_url, f"source/{epoch}/{playlist.media_sequence + 9}.m4s")
            for _ in range(2):
                status, headers, _ = await fetch(future)
                assert status == 404
                assert cache_status(headers) != "HIT"
            # A blocking reload through the cache: held by lpms, answered with the part.
            latest = m3u8.loads((await fetch(media_url))[2].decode())
            hint = latest.preload_hint.uri.rsplit("/", 1)[1]
            sequence, index = (int(x) for x in hint.split(".")[:2])
            status, _, body = await fetch(f"{media_url}?_HLS_msn={sequence}&_HLS_part={index}")
            assert status == 200
            assert (
                f"{sequence}.{index}.m4s" in body.decode()
                or f"{sequence + 1}.0.m4s" in body.decode()
            )
            # And a player, in low-latency mode, through the proxy.
            report = await play_in_browser(
                f"{proxy.url}/stream/cdn.m3u8", seconds=10.0, low_latency=True
            )
            assert not report.fatal_errors, report.describe()
            assert report.advanced >= 5.0, report.describe()
    finally:
        await publisher.stop()
