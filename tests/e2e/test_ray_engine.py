"""The live ladder on Ray: FFmpeg publishes over RTMP, each stream's segments are
transcoded by its own Ray actor, and FFmpeg's HLS demuxer reads the renditions back.
Then the faults a cluster has: an actor killed, an actor stalled, the whole cluster
lost and back, and a cluster that is not there at start.

Ray runs for real: a cluster started with ``ray start --head`` as an operator would
(one per module, shared), or the private runtime of ``--ray-address local``. Every
socket any of it listens on is checked to be on the loopback interface.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import secrets
import select
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import av
import psutil
import pytest

from lpms import LPMS, HLSSettings, Settings, output_size, parse_profiles
from lpms.transcode.engines import Engine
from lpms.transcode.settings import TranscodeSettings
from tests.e2e.clients import CLIP_HEIGHT, CLIP_WIDTH
from tests.e2e.conftest import (
    ClipFile,
    LivePublisher,
    clip_file,
    decode_hls,
    publish,
    rtmp_url,
)
from tests.e2e.test_hls import fetch, http_url, wait_for_endlist

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"

pytestmark = pytest.mark.e2e

if not os.environ.get("LPMS_REQUIRE_RAY"):
    pytest.importorskip("ray", reason="the Ray engine's tests need lpms[ray]")

PROFILES = parse_profiles("P240p30fps16x9,P144p30fps16x9")
LOOPBACK = {"127.0.0.1", "::1", "::ffff:127.0.0.1"}
LONG_SIZE = (320, 180)
WINDOW = 200  # every segment of a test's stream stays listed, to be checked at its end
WITHIN = 120.0  # a busy 2-core machine starts Ray workers slowly; bounds, not paces


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


TOKEN = secrets.token_hex(32)
RAY_ENV = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": TOKEN}
"""Every cluster here has Ray's token authentication on, as `ray start` has by default;
the server is given the token as an operator would give it."""


@dataclass
class RayCluster:
    """A loopback Ray cluster of a head and worker nodes (`scripts/ray_cluster.py`), in
    a process group of its own so that stopping it stops every Ray process it started."""

    log: Path
    port: int = 0
    workers: int = 2
    process: subprocess.Popen[str] | None = None
    address: str = ""
    nodes: dict[str, int] = field(default_factory=dict)  # worker node id -> raylet pid

    def start(self, within: float = WITHIN) -> None:
        command = [
            sys.executable,
            str(SCRIPTS / "ray_cluster.py"),
            f"--workers={self.workers}",
            f"--port={self.port}",
            "--fast-failure-detection",
        ]
        with self.log.open("a") as err:
            self.process = subprocess.Popen(
                command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
                env={**os.environ, **RAY_ENV},
                start_new_session=True,
            )
        report = self._answer(within)
        self.address = report["address"]
        self.port = int(self.address.rpartition(":")[2])
        self.nodes = {n["id"]: n["raylet"] for n in report["workers"]}

    def _send(self, command: str, within: float = WITHIN) -> dict[str, Any]:
        assert self.process is not None
        assert self.process.stdin is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        return self._answer(within)

    def _answer(self, within: float) -> dict[str, Any]:
        assert self.process is not None
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], within)
        line = self.process.stdout.readline() if ready else ""
        if not line:
            raise AssertionError(f"the Ray cluster did not answer: {self.log.read_text()[-3000:]}")
        answer: dict[str, Any] = json.loads(line)
        assert "error" not in answer, answer
        return answer

    def node_of(self, worker_pid: int) -> str:
        """The worker node whose raylet started the process ``worker_pid``."""
        parent = psutil.Process(worker_pid).ppid()
        return next(node for node, raylet in self.nodes.items() if raylet == parent)

    def remove(self, node: str) -> None:
        """The node's machine lost: its raylet, object store and workers killed."""
        self._send(f"remove {node}")
        del self.nodes[node]

    def add(self) -> None:
        node = self._send("add")
        self.nodes[node["id"]] = node["raylet"]

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        with contextlib.suppress(OSError):
            assert process.stdin is not None
            process.stdin.close()  # the script shuts its cluster down
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=30)
        for proc in _group(process.pid):  # Ray's processes may outlive it by a moment
            with contextlib.suppress(psutil.Error):
                proc.kill()
        if process.poll() is None:
            process.kill()
            process.wait()


def _group(group: int) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) == group:
                found.append(proc)
        except (ProcessLookupError, psutil.Error):
            continue
    return found


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RayCluster]:
    cluster = RayCluster(tmp_path_factory.mktemp("ray") / "cluster.log")
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(autouse=True)
def ray_token(monkeypatch: pytest.MonkeyPatch) -> None:
    """The server's Ray driver (a child process) takes the token from its environment."""
    for name, value in RAY_ENV.items():
        monkeypatch.setenv(name, value)


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory: pytest.TempPathFactory) -> ClipFile:
    """Long enough to outlast any test that stops it (a bound, not a pace)."""
    return clip_file(tmp_path_factory, 200.0, size=LONG_SIZE)


def _settings(address: str, **ray: float) -> Settings:
    return Settings(
        hls=HLSSettings(window=WINDOW),
        transcode=TranscodeSettings(
            profiles=PROFILES,
            engine=Engine.RAY,
            ray_address=address,
            ray_late_after=ray.pop("late_after", 1.0),
            ray_connect_timeout=ray.pop("connect_timeout", 30.0),
            ray_retry_interval=ray.pop("retry_interval", 1.0),
        ),
    )


@pytest.fixture
async def ray_server(ray_cluster: RayCluster) -> AsyncIterator[LPMS]:
    server = LPMS(
        host="127.0.0.1", rtmp_port=0, http_port=0, settings=_settings(ray_cluster.address)
    )
    await server.start()
    try:
        yield server
    finally:
        await server.close()


# -- playing ------------------------------------------------------------------------------


async def test_a_ladder_on_ray_plays_frame_for_frame(ray_server: LPMS, clip: ClipFile) -> None:
    server = ray_server
    await publish(rtmp_url(server, "stream/ray"), clip)
    source = await wait_for_endlist(http_url(server, "stream/ray/source.m3u8"), within=WITHIN)
    for profile in PROFILES:
        url = http_url(server, f"stream/ray/{profile.name}.m3u8")
        playlist = await wait_for_endlist(url, within=WITHIN)
        assert [s.uri for s in playlist.segments] == [
            s.uri.replace("source", profile.name) for s in source.segments
        ]
        text = (await fetch(url))[2].decode()
        assert "#EXT-X-GAP" not in text, text
        decoded = await decode_hls(url)
        assert decoded.error is None
        assert decoded.video_size == output_size(profile, CLIP_WIDTH, CLIP_HEIGHT)
        assert len(decoded.video_pts) == len(clip.clip.of_kind("video"))
        assert decoded.audio_pts == []  # CMAF: video alone, the audio a rendition of its own
    audio = await decode_hls(http_url(server, "stream/ray/audio.m3u8"))
    assert len(audio.audio_pts) == len(clip.clip.of_kind("audio"))
    calls = server.metrics.value("lpms_transcode_engine_calls_total", engine="ray")
    assert calls == len(source.segments)
    assert server.metrics.value("lpms_transcode_engine_overhead_seconds_count", engine="ray") > 0


async def test_a_private_ray_runtime_listens_on_loopback_only(clip: ClipFile) -> None:
    """``--ray-address local``: Ray's own servers (GCS, raylet, object manager,
    workers, agents) bind the machine's primary address unless told; none may."""
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    server = LPMS(host="127.0.0.1", rtmp_port=0, http_port=0, settings=_settings("local"))
    await server.start()
    try:
        await publish(rtmp_url(server, "stream/private"), clip)
        name = PROFILES[0].name
        await wait_for_endlist(http_url(server, f"stream/private/{name}.m3u8"), within=WITHIN)
        listening = _listening_sockets(psutil.Process())
        assert any("raylet" in who or "gcs_server" in who for who, _ in listening), listening
        assert [(who, address) for who, address in listening if address not in LOOPBACK] == []
    finally:
        await server.close()
    # The driver and the private runtime it started stop with the server.
    left = [p for p in psutil.Process().children(recursive=True) if p.pid not in before]
    assert [p for p in left if _is_alive(p)] == []


def _listening_sockets(root: psutil.Process) -> list[tuple[str, str]]:
    found = []
    for proc in [root, *root.children(recursive=True)]:
        try:
            name = " ".join(proc.cmdline()[:2])
            for conn in proc.net_connections(kind="inet"):
                if conn.status == psutil.CONN_LISTEN:
                    found.append((name, conn.laddr.ip))
        except psutil.Error:
            continue
    return found


def _is_alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


# -- faults -------------------------------------------------------------------------------


@dataclass
class Listed:
    """A media playlist as a player reads it: each sequence number's URI or a gap,
    and its init section's (EXT-X-MAP) for CMAF."""

    sequence: list[int]
    gaps: set[int]
    uris: dict[int, str]
    ended: bool
    maps: dict[int, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> Listed:
        lines = text.splitlines()
        number = next(
            int(line.split(":", 1)[1])
            for line in lines
            if line.startswith("#EXT-X-MEDIA-SEQUENCE:")
        )
        listed = cls([], set(), {}, "#EXT-X-ENDLIST" in lines)
        gap = False
        init: str | None = None
        for line in lines:
            if line == "#EXT-X-GAP":
                gap = True
            elif line.startswith("#EXT-X-MAP:"):
                init = line.split('URI="', 1)[1].split('"', 1)[0]
            elif line and not line.startswith("#"):
                listed.sequence.append(number)
                listed.uris[number] = line
                if init is not None:
                    listed.maps[number] = init
                if gap:
                    listed.gaps.add(number)
                number, gap = number + 1, False
        return listed


async def _listed(server: LPMS, path: str) -> Listed | None:
    status, _, body = await fetch(http_url(server, path))
    return Listed.parse(body.decode()) if status == 200 else None


async def _until(wanted: str, check: Callable[[], Awaitable[bool]], within: float = WITHIN) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, f"no {wanted} within {within}s"
        await asyncio.sleep(0.25)


def _actor_processes() -> list[psutil.Process]:
    """Ray names a worker's process after the actor it hosts."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error):
            if " ".join(proc.info["cmdline"] or []).startswith("ray::SegmentActor"):
                found.append(proc)
    return found


def _first_frame(segment: bytes) -> tuple[bool, tuple[int, int], int]:
    """(first video frame is a keyframe, its size, frames decoded) of a TS segment."""
    with av.open(io.BytesIO(segment)) as container:
        frames = list(container.decode(video=0))
    assert frames, "a segment with no video"
    return frames[0].key_frame, (frames[0].width, frames[0].height), len(frames)


@pytest.mark.parametrize("fault", ["node", "worker", "stalled"])
async def test_a_lost_transcoder_costs_at_most_two_gaps_then_every_segment_plays(
    ray_cluster: RayCluster, long_clip: ClipFile, fault: str
) -> None:
    """The node holding a stream's actor is lost (its raylet and workers killed), the
    actor's worker process dies, or the worker hangs (SIGSTOP). Each costs the
    segments in flight, listed as gaps in every rendition, then a new actor on a live
    node takes the next segment, which starts on a keyframe, and the stream plays on
    to its end."""
    server = LPMS(
        host="127.0.0.1", rtmp_port=0, http_port=0, settings=_settings(ray_cluster.address)
    )
    await server.start()
    stream = f"stream/{fault}"
    names = [p.name for p in PROFILES]
    stalled: psutil.Process | None = None
    try:
        publisher = await LivePublisher.start(rtmp_url(server, stream), long_clip)
        try:

            async def transcoded(segments: int) -> bool:
                for name in names:
                    listed = await _listed(server, f"{stream}/{name}.m3u8")
                    if listed is None or len(listed.sequence) - len(listed.gaps) < segments:
                        return False
                return True

            await _until("first rendition segments", lambda: transcoded(1))
            before = await _listed(server, f"{stream}/{names[0]}.m3u8")
            assert before is not None
            assert not before.gaps
            actors = _actor_processes()
            assert len(actors) == 1, actors
            if fault == "node":
                ray_cluster.remove(ray_cluster.node_of(actors[0].pid))
            elif fault == "worker":
                actors[0].kill()
            else:
                stalled = actors[0]
                stalled.suspend()

            async def recovered() -> bool:
                for name in names:
                    listed = await _listed(server, f"{stream}/{name}.m3u8")
                    if listed is None or not listed.gaps:
                        return False
                    if sum(1 for s in listed.sequence if s > max(listed.gaps)) < 3:
                        return False
                return True

            await _until("a gap, then three segments", recovered)
        finally:
            await publisher.stop()
        source = await wait_for_endlist(http_url(server, f"{stream}/source.m3u8"), within=WITHIN)
        reason = {"node": "worker_lost", "worker": "worker_lost", "stalled": "late"}[fault]
        failures = server.metrics.value(
            "lpms_transcode_engine_failures_total", engine="ray", reason=reason
        )
        recreations = server.metrics.value("lpms_transcode_engine_recreations_total", engine="ray")
        listed_source = Listed.parse(
            (await fetch(http_url(server, f"{stream}/source.m3u8")))[2].decode()
        )
        assert not listed_source.gaps  # the source never noticed
        assert len(source.segments) == len(listed_source.sequence)
        for profile in PROFILES:
            path = f"{stream}/{profile.name}.m3u8"
            await wait_for_endlist(http_url(server, path), within=WITHIN)
            listed = await _listed(server, path)
            assert listed is not None
            assert listed.ended
            assert listed.sequence == listed_source.sequence  # in step: switchable
            assert 1 <= len(listed.gaps) <= 2, listed.gaps
            after = [s for s in listed.sequence if s > max(listed.gaps)]
            assert after, listed  # the stream played on after the fault
            for sequence in after:
                url = urljoin(http_url(server, path), listed.uris[sequence])
                status, _, body = await fetch(url)
                assert status == 200, (sequence, status)
                if sequence in listed.maps:  # CMAF: the init section first
                    init_url = urljoin(http_url(server, path), listed.maps[sequence])
                    body = (await fetch(init_url))[2] + body
                key, size, frames = await asyncio.to_thread(_first_frame, body)
                assert key, f"{profile.name} segment {sequence} does not start on a keyframe"
                assert size == output_size(profile, *LONG_SIZE)
                assert frames > 0
        assert failures >= 1
        assert recreations >= 1
    finally:
        if stalled is not None:
            with contextlib.suppress(psutil.Error):
                stalled.kill()  # replaced already: never left stopped
        await server.close()
        if fault == "node":
            ray_cluster.add()  # the next test has two workers again


async def test_ray_lost_and_back_gaps_the_renditions_and_never_the_source(
    long_clip: ClipFile, tmp_path: Path
) -> None:
    """The whole cluster goes away while a stream is live: RTMP and the source go on,
    the renditions gap and the logs and metrics say why; the cluster comes back on
    the same address and transcoding resumes by itself."""
    cluster = RayCluster(tmp_path / "cluster.log", workers=1)
    cluster.start()
    server = LPMS(
        host="127.0.0.1",
        rtmp_port=0,
        http_port=0,
        settings=_settings(cluster.address, connect_timeout=5.0, retry_interval=1.0),
    )
    stream = "stream/lost"
    name = PROFILES[0].name
    try:
        await server.start()
        publisher = await LivePublisher.start(rtmp_url(server, stream), long_clip)
        try:

            async def listed() -> Listed:
                found = await _listed(server, f"{stream}/{name}.m3u8")
                return found or Listed([], set(), {}, False)

            async def segments() -> bool:
                return len((await listed()).sequence) > 0

            await _until("a first rendition segment", segments)
            cluster.stop()

            async def gapped() -> bool:
                return bool((await listed()).gaps)

            await _until("a gap", gapped)
            unreachable = server.metrics.value(
                "lpms_transcode_engine_failures_total", engine="ray", reason="unreachable"
            )
            assert unreachable >= 1
            cluster.start()

            async def resumed() -> bool:
                now = await listed()
                return sum(1 for s in now.sequence if now.gaps and s > max(now.gaps)) >= 2

            await _until("segments after Ray came back", resumed)
            source = await _listed(server, f"{stream}/source.m3u8")
            assert source is not None
            assert not source.gaps
            assert server.streams.get(stream) is not None  # the publisher never noticed
        finally:
            await publisher.stop()
    finally:
        await server.close()
        cluster.stop()


def test_lpms_serve_with_ray_unreachable_is_one_line_and_exit_status_2() -> None:
    address = f"127.0.0.1:{_free_port()}"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "lpms",
            "serve",
            "--host",
            "127.0.0.1",
            "--rtmp-port",
            "0",
            "--http-port",
            "0",
            "--profiles",
            "P144p30fps16x9",
            "--transcode-engine",
            "ray",
            "--ray-address",
            address,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert address in lines[0]
    assert "Ray" in lines[0]
