"""``lpms transcode --engine ray``: a file's chunks as Ray tasks across a cluster.

Each chunk (`lpms.transcode.chunks`) is one task running `run_chunk`, plain values
in and out (`lpms.transcode.wire`). A task asks Ray for one CPU (and, with
``--accel nvidia``, its ladder's share of a GPU), so Ray spreads the chunks over
every node; a task whose worker process or node dies is run again elsewhere by Ray
itself (`TASK_RETRIES`). Unlike the server's live engine (`engines.ray`), this
driver is the command's own process: a command may block on Ray, a server may not.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future
from typing import Any

from lpms.errors import TranscodeError
from lpms.transcode.chunks import Chunk, run_chunk
from lpms.transcode.engines.ray_runtime import RayUnavailable, connect
from lpms.transcode.profiles import TS_CODECS, OutputFormat, VideoProfile
from lpms.transcode.session import TranscodeResult
from lpms.transcode.settings import Accel
from lpms.transcode.wire import chunk_to_wire, result_from_wire

TASK_RETRIES = 3
"""Times Ray runs a chunk again after its worker or node died."""

TASKS_PER_CPU = 2
"""Chunks kept in flight per CPU of the cluster: one working, one waiting, so no CPU
idles while the next chunk is cut and sent."""


class RayChunkRunner:
    """A `ChunkRunner` on the Ray cluster at ``address`` (``local``: a private runtime
    on this machine). Close it to disconnect (and stop a private runtime)."""

    def __init__(
        self,
        address: str,
        profiles: Sequence[VideoProfile],
        accel: Accel | str,
        *,
        connect_timeout: float = 30.0,
    ) -> None:
        self.address = address
        self.profiles = tuple(profiles)
        self.accel = Accel.parse(accel)
        for profile in self.profiles:  # refused here, before Ray starts, not by a worker
            if profile.codec not in TS_CODECS:
                raise TranscodeError(
                    f"{profile.name}: --engine ray joins the chunks as MPEG-TS, which "
                    f"cannot carry {profile.codec.value}; transcode it with --engine local "
                    "(fragmented MP4)"
                )
            if profile.format not in (None, OutputFormat.MPEGTS):
                raise TranscodeError(
                    f"{profile.name}: --engine ray joins the chunks as MPEG-TS, not "
                    f"{profile.format.value}; transcode it with --engine local"
                )
        self._ray = connect(address, timeout=connect_timeout)
        try:
            resources = self._ray.cluster_resources()
            self.cpus = int(resources.get("CPU", 0))
            self.nodes = sum(1 for node in self._ray.nodes() if node.get("Alive"))
            if self.cpus < 1:
                raise RayUnavailable(f"the Ray cluster at {address} has no CPU to transcode on")
            options: dict[str, Any] = {"num_cpus": 1, "max_retries": TASK_RETRIES}
            if self.accel is Accel.NVIDIA:
                if resources.get("GPU", 0) <= 0:
                    raise RayUnavailable(f"the Ray cluster at {address} has no GPU for nvidia")
                options["num_gpus"] = 1
            self._task = self._ray.remote(**options)(run_chunk)
        except BaseException:
            self._ray.shutdown()
            raise
        self.slots = max(2, TASKS_PER_CPU * self.cpus)

    def submit(self, chunk: Chunk) -> Future[TranscodeResult]:
        ref = self._task.remote(chunk_to_wire(self.profiles, self.accel.value, chunk))
        result: Future[TranscodeResult] = Future()
        result.set_running_or_notify_cancel()
        ref.future().add_done_callback(lambda answer: self._answer(answer, result))
        return result

    def _answer(self, answer: Future[Any], result: Future[TranscodeResult]) -> None:
        """Runs on a thread of Ray's: turns its answer into a result or one error."""
        try:
            message = answer.result()
            if isinstance(message, dict) and "error" in message:
                raise TranscodeError(str(message["error"]))
            result.set_result(result_from_wire(message, self.profiles))
        except TranscodeError as exc:
            result.set_exception(exc)
        except Exception as exc:  # Ray's own (a task lost past its retries, ...): all one
            result.set_exception(TranscodeError(f"Ray at {self.address}: {_first_line(exc)}"))

    def close(self) -> None:
        self._ray.shutdown()


def _first_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0][:300]
