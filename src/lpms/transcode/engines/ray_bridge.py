"""The Ray engine's driver: a child process of the server that holds the Ray
connection and one actor per live stream.

Kept out of the server's process on purpose: a Ray driver that loses its cluster
may block or exit its whole process, and the server must keep relaying and
cutting the source whatever Ray does. The server starts this as ``python -m
lpms.transcode.engines.ray_bridge FD`` and talks over the socket FD with
`multiprocessing.connection` messages of plain values (tuples of str, int, float,
bytes and dicts; `lpms.transcode.wire` for ladders and results):

server -> driver: ``("start", options)``, ``("open", key, ladder, accel, resources, output)``,
``("segment", key, call, data)``, ``("reset", key)``, ``("close", key)``, ``("stop",)``.
driver -> server: ``("ready", info)`` or ``("failed", message)``; then
``("opened", key, recreated)``, ``("done", call, result, info)``,
``("error", call, reason, message)``. End of file on either side ends it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import sys
import threading
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from lpms.errors import LPMSError
from lpms.transcode.engines import FailureReason
from lpms.transcode.engines.ray_runtime import RayUnavailable, connect

log = logging.getLogger("lpms.ray")

RESTART_BACKOFF = 0.25
"""Seconds before a session whose actor could not start is tried again, doubling
with each failure in a row up to `RESTART_BACKOFF_MAX`."""
RESTART_BACKOFF_MAX = 5.0


class SegmentActor:
    """A warm `Transcoder` for one stream, living in a Ray worker."""

    def __init__(
        self,
        ladder: dict[str, Any],
        accel: str,
        output: str = "mpegts",
        caps: dict[str, Any] | None = None,
    ) -> None:
        """``caps``: `TranscodeCaps` as a dict (None: the defaults)."""
        from lpms.transcode.muxing import hls_renditions
        from lpms.transcode.rendition import OutputContainer
        from lpms.transcode.session import Transcoder
        from lpms.transcode.wire import ladder_from_wire

        container = OutputContainer(output)
        self._transcoder = Transcoder(
            hls_renditions(ladder_from_wire(ladder), container),
            accel=accel,
            output=container,
            **(caps or {}),
        )

    def close(self) -> None:
        """Stop the session's encoder threads. Ray ends an actor's process anyway; an
        actor made in this process (tests) has threads to give back."""
        self._transcoder.close()

    def ready(self) -> dict[str, Any]:
        import ray

        return {"pid": os.getpid(), "node": ray.get_runtime_context().get_node_id()}

    def transcode(self, data: bytes) -> dict[str, Any]:
        """The wire result, or ``{"error": message}`` for a segment that cannot be
        transcoded (the session goes on with the next one)."""
        from lpms.transcode.wire import result_to_wire

        try:
            return result_to_wire(self._transcoder.transcode(data))
        except LPMSError as exc:
            return {"error": str(exc)}


@dataclass
class _Session:
    ladder: dict[str, Any]
    accel: str
    resources: dict[str, float]
    output: str = "mpegts"
    caps: dict[str, Any] | None = None
    actor: Any = None
    made: int = 0
    failed_starts: int = 0  # in a row: a dead node may be offered again until Ray knows


class _Driver:
    """Runs every Ray call on one thread (this process's main thread).

    Ray completes futures on its own threads, and a Ray call made from one of those
    (a new actor made as a lost one is reported) may never complete; so completion
    callbacks only answer the server and queue work here. The server's messages
    come through the same queue, read by a thread of their own.
    """

    def __init__(self, conn: Connection, ray: Any) -> None:
        self.conn = conn
        self.ray = ray
        self.sessions: dict[str, _Session] = {}
        self._work: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self._send_lock = threading.Lock()
        self._actor_class = ray.remote(max_restarts=0, max_task_retries=0)(SegmentActor)
        self._system_errors = (ray.exceptions.RaySystemError, ray.exceptions.GetTimeoutError)
        self._lost_errors = (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError)

    def send(self, *message: object) -> None:
        with self._send_lock:
            try:
                self.conn.send(message)
            except OSError:
                os._exit(0)  # the server is gone: so is this driver (and a private Ray)

    def _read(self) -> None:
        while True:
            try:
                message = self.conn.recv()
            except (EOFError, OSError):
                self._work.put(("stop",))
                return
            self._work.put(message)

    def run(self) -> None:
        threading.Thread(target=self._read, name="lpms-ray-server", daemon=True).start()
        while True:
            kind, *args = self._work.get()
            if kind == "stop":
                return
            getattr(self, f"_on_{kind}")(*args)

    def _on_open(
        self,
        key: str,
        ladder: dict[str, Any],
        accel: str,
        resources: dict[str, float],
        output: str = "mpegts",
        caps: dict[str, Any] | None = None,
    ) -> None:
        self.sessions[key] = _Session(ladder, accel, resources, output, caps)
        self._make_actor(key)

    def _make_actor(self, key: str) -> None:
        session = self.sessions[key]
        options = {k: v for k, v in session.resources.items() if v > 0}
        session.actor = self._actor_class.options(**options).remote(
            session.ladder, session.accel, session.output, session.caps
        )
        session.made += 1
        recreated = session.made > 1
        actor = session.actor

        def ready(future: Any) -> None:
            try:
                info = future.result()
            except Exception as exc:  # its node died, or it could not be placed
                self._work.put(("lost", key, actor, f"the session could not start: {exc}", True))
                return
            self._work.put(("started", key, actor))
            self.send("opened", key, recreated, info)

        actor.ready.remote().future().add_done_callback(ready)

    def _on_started(self, key: str, actor: Any) -> None:
        session = self.sessions.get(key)
        if session is not None and session.actor is actor:
            session.failed_starts = 0

    def _on_lost(self, key: str, actor: Any, why: str, starting: bool = False) -> None:
        session = self.sessions.get(key)
        if session is None or session.actor is not actor:
            return  # closed, or replaced already
        log.warning("Ray session of %s lost: %s", key, _first_line(why))
        self._kill(session)
        if not starting:
            self._make_actor(key)
            return
        # Placed on a node Ray has not yet found dead: try again, backing off.
        session.failed_starts += 1
        delay = min(RESTART_BACKOFF_MAX, RESTART_BACKOFF * 2 ** (session.failed_starts - 1))
        timer = threading.Timer(delay, self._work.put, args=(("remake", key, session),))
        timer.daemon = True
        timer.start()

    def _on_remake(self, key: str, session: _Session) -> None:
        if self.sessions.get(key) is session and session.actor is None:
            self._make_actor(key)

    def _kill(self, session: _Session) -> None:
        if session.actor is not None:
            with contextlib.suppress(Exception):  # already gone
                self.ray.kill(session.actor, no_restart=True)
            session.actor = None

    def _on_segment(self, key: str, call: int, data: bytes) -> None:
        session = self.sessions.get(key)
        if session is None or session.actor is None:
            self.send("error", call, FailureReason.WORKER_LOST.value, "no session for the stream")
            return
        actor = session.actor
        ref = actor.transcode.remote(data)

        def done(future: Any) -> None:
            try:
                result = future.result()
            except self._lost_errors as exc:
                self.send("error", call, FailureReason.WORKER_LOST.value, _first_line(exc))
                self._work.put(("lost", key, actor, _first_line(exc)))
                return
            except self._system_errors as exc:
                self.send("error", call, FailureReason.UNREACHABLE.value, _first_line(exc))
                return
            except Exception as exc:
                self.send("error", call, FailureReason.ERROR.value, _first_line(exc))
                return
            if "error" in result:
                self.send("error", call, FailureReason.ERROR.value, str(result["error"]))
            else:
                self.send("done", call, result)

        ref.future().add_done_callback(done)

    def _on_reset(self, key: str) -> None:
        session = self.sessions.get(key)
        if session is not None:
            self._kill(session)
            self._make_actor(key)

    def _on_close(self, key: str) -> None:
        session = self.sessions.pop(key, None)
        if session is not None:
            self._kill(session)


def _first_line(error: BaseException | str) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0][:300]


def main(argv: list[str]) -> int:
    conn = Connection(int(argv[1]))
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    try:
        kind, options = conn.recv()
    except (EOFError, OSError):
        return 0
    assert kind == "start"
    try:
        ray = connect(options["address"], timeout=options["timeout"], num_cpus=options["num_cpus"])
    except RayUnavailable as exc:
        conn.send(("failed", str(exc)))
        return 2
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    conn.send(("ready", {"nodes": len(nodes), "resources": ray.cluster_resources()}))
    driver = _Driver(conn, ray)
    try:
        driver.run()
    finally:
        for session in list(driver.sessions.values()):
            driver._kill(session)
        ray.shutdown()
    return 0


if __name__ == "__main__":
    # Run as -m, this file is __main__; the actor class must come from the module's
    # real name, which Ray's workers import.
    from lpms.transcode.engines import ray_bridge

    sys.exit(ray_bridge.main(sys.argv))
