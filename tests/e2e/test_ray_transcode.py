"""``lpms transcode --engine ray`` on a real loopback Ray cluster of a head and two
worker nodes: the file's chunks run as Ray tasks across the nodes, and the joined
outputs are frame for frame what ``--engine local`` makes; a node lost while its
chunks run costs a retry elsewhere, not a frame. Every socket the command's Ray
runtime opens is checked to be on loopback.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from lpms import output_size, parse_profiles
from tests.e2e.test_ray_engine import (
    LOOPBACK,
    RAY_ENV,
    RayCluster,
    _is_alive,
    _listening_sockets,
)
from tests.media import (
    Part,
    audio_packets,
    make_clip,
    probe,
    thumbnail_difference,
    thumbnails,
)

pytestmark = pytest.mark.e2e

if not os.environ.get("LPMS_REQUIRE_RAY"):
    pytest.importorskip("ray", reason="the Ray engine's tests need lpms[ray]")

PROFILES = "P240p30fps16x9,P144p30fps16x9"
NAMES = PROFILES.split(",")
SIZE = (320, 180)
WITHIN = 300.0  # a whole run on a busy 2-core machine: a bound, not a pace


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RayCluster]:
    cluster = RayCluster(tmp_path_factory.mktemp("ray") / "cluster.log")
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@dataclass(frozen=True)
class Clip:
    path: Path
    local: Path  # `lpms transcode --engine local`'s outputs


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Clip:
    """An MP4 with open GOPs (leading pictures at every keyframe), B-frames and AAC:
    the hardest file to cut that lpms cuts."""
    root = tmp_path_factory.mktemp("clip")
    path = root / "in.mp4"
    path.write_bytes(
        make_clip(
            Part(*SIZE, 12.0),
            fps=30,
            gop_frames=30,
            container="mp4",
            b_frames=2,
            open_gop=True,
        )
    )
    done = lpms("transcode", str(path), "--profiles", PROFILES, "--outdir", str(root / "local"))
    assert done.returncode == 0, done.stderr
    return Clip(path, root / "local")


def lpms(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lpms", *args],
        capture_output=True,
        text=True,
        timeout=WITHIN,
        env={**os.environ, **RAY_ENV},
    )


def on_ray(clip: Clip, outdir: Path, address: str, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "lpms", "transcode", str(clip.path), "--profiles", PROFILES,
        "--engine", "ray", "--ray-address", address, "--outdir", str(outdir), *extra,
    ]  # fmt: skip


def assert_frame_exact(clip: Clip, outdir: Path) -> None:
    for name in NAMES:
        local, ray = str(clip.local / f"{name}.ts"), str(outdir / f"{name}.ts")
        expected, got = probe(local), probe(ray)
        assert got.errors == []
        assert got.frames == expected.frames == 360
        assert got.video_pts == expected.video_pts
        assert got.keyframe_pts == expected.keyframe_pts
        assert set(got.video_sizes) == {output_size(parse_profiles(name)[0], *SIZE)}
        assert audio_packets(ray) == audio_packets(local)
        whole, joined = thumbnails(local), thumbnails(ray)
        assert max(thumbnail_difference(whole[pts], joined[pts]) for pts in whole) < 1.5


def test_chunks_on_a_cluster_join_frame_for_frame_into_the_local_outputs(
    ray_cluster: RayCluster, clip: Clip, tmp_path: Path
) -> None:
    command = on_ray(clip, tmp_path, ray_cluster.address, "--chunk-seconds", "2")
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=WITHIN, env={**os.environ, **RAY_ENV}
    )
    assert done.returncode == 0, done.stderr
    assert f"6 chunk(s) of about 2 s on Ray at {ray_cluster.address}: 3 node(s)" in done.stdout
    for name in NAMES:
        row = next(line for line in done.stdout.splitlines() if line.startswith(name))
        assert " 360 " in row  # frames, as --engine local reports
    assert_frame_exact(clip, tmp_path)


def _chunk_workers(cluster: RayCluster) -> dict[str, list[psutil.Process]]:
    """Worker processes running a chunk now, by worker node (Ray names a worker's
    process after the task it runs)."""
    found: dict[str, list[psutil.Process]] = {}
    for proc in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error, StopIteration):
            if " ".join(proc.info["cmdline"] or []).startswith("ray::run_chunk"):
                found.setdefault(cluster.node_of(proc.pid), []).append(proc)
    return found


def test_a_node_lost_mid_file_costs_a_retry_not_a_frame(
    ray_cluster: RayCluster, clip: Clip, tmp_path: Path
) -> None:
    """A worker node is lost (raylet, object store, workers killed) while it runs a
    chunk: Ray runs that chunk again on the node left, and the outputs are whole."""
    command = on_ray(clip, tmp_path, ray_cluster.address, "--chunk-seconds", "1")
    with (tmp_path / "err").open("w") as err:
        process = subprocess.Popen(
            command,
            stdout=subprocess.DEVNULL,
            stderr=err,
            text=True,
            env={**os.environ, **RAY_ENV},
        )
    removed = None
    try:
        deadline = time.monotonic() + WITHIN
        while removed is None and process.poll() is None:
            assert time.monotonic() < deadline, "no chunk ever ran on a worker node"
            working = _chunk_workers(ray_cluster)
            if working:
                removed = next(iter(working))
                ray_cluster.remove(removed)
            else:
                time.sleep(0.05)
        process.wait(timeout=WITHIN)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if removed is not None:
            ray_cluster.add()  # the next test has two workers again
    assert removed is not None, "the run ended before a node could be lost"
    assert process.returncode == 0, (tmp_path / "err").read_text()
    assert_frame_exact(clip, tmp_path)


def test_a_private_ray_runtime_listens_on_loopback_only_and_stops(
    clip: Clip, tmp_path: Path
) -> None:
    """``--ray-address local`` starts Ray on this machine for the one command: its
    servers stay on loopback, and none of its processes outlives the command."""
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    process = subprocess.Popen(
        on_ray(clip, tmp_path, "local", "--chunk-seconds", "1"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **RAY_ENV},
    )
    listening: list[tuple[str, str]] = []
    try:
        deadline = time.monotonic() + WITHIN
        while process.poll() is None and time.monotonic() < deadline:
            sockets = _listening_sockets(psutil.Process(process.pid))
            if any("raylet" in who for who, _ in sockets):
                listening = sockets
                break
            time.sleep(0.1)
        _, err = process.communicate(timeout=WITHIN)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, err
    assert listening, "Ray's raylet was never seen listening"
    assert [(who, address) for who, address in listening if address not in LOOPBACK] == []
    left = [p for p in psutil.Process().children(recursive=True) if p.pid not in before]
    assert [p for p in left if _is_alive(p)] == []
    assert_frame_exact(clip, tmp_path)
