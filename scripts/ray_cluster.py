"""A multi-node Ray cluster on this machine's loopback interface, for tests and benches.

    python scripts/ray_cluster.py --workers 2 --cpus-per-worker 1

Every node is a real Ray node (its own raylet, object store and workers) made with
`ray.cluster_utils.Cluster`, all on 127.0.0.1: on Linux Ray binds the machine's
primary address unless ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` says this is one
machine, and ``ray start`` refuses to join a second node under that setting, so the
nodes are made here rather than by ``ray start``. The head has no CPUs by default:
actors and tasks land on the workers, which can be removed (a lost machine) without
losing the cluster.

Prints one JSON line once the cluster is up::

    {"address": "127.0.0.1:PORT", "head": NODE, "workers": [NODE, ...]}

where NODE is ``{"id": HEX, "raylet": PID}``. Then reads commands, one a line, on
stdin: ``remove ID`` (kills that worker node's processes, answers
``{"removed": ID}``), ``add`` (answers a NODE). End of input shuts the cluster down.
Run it in a process group of its own: killing the group stops every Ray process.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any


def _node(node: Any) -> dict[str, Any]:
    raylet = node.all_processes["raylet"][0].process
    return {"id": node.node_id, "raylet": raylet.pid}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--workers", type=int, default=2, help="worker nodes (default 2)")
    parser.add_argument("--cpus-per-worker", type=float, default=1, help="default 1")
    parser.add_argument("--head-cpus", type=float, default=0, help="default 0")
    parser.add_argument("--port", type=int, default=0, help="the head's GCS port (0: any)")
    parser.add_argument("--object-store-mb", type=int, default=128, help="per node (default 128)")
    parser.add_argument(
        "--fast-failure-detection",
        action="store_true",
        help="the head declares a silent node dead in about a second, not Ray's 30 s",
    )
    args = parser.parse_args(argv)
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # before Ray is imported
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    from ray.cluster_utils import Cluster

    store = args.object_store_mb * 2**20
    system: dict[str, Any] = {}
    if args.fast_failure_detection:
        system = {
            "health_check_initial_delay_ms": 0,
            "health_check_period_ms": 250,
            "health_check_timeout_ms": 250,
            "health_check_failure_threshold": 4,
        }
    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": args.head_cpus,
            "node_ip_address": "127.0.0.1",
            "object_store_memory": store,
            "include_dashboard": False,
            "gcs_server_port": args.port or None,
            "_system_config": system,
        },
    )
    worker_args = {
        "num_cpus": args.cpus_per_worker,
        "node_ip_address": "127.0.0.1",
        "object_store_memory": store,
    }
    workers = {}
    try:
        for _ in range(args.workers):
            node = cluster.add_node(**worker_args)
            workers[node.node_id] = node
        cluster.wait_for_nodes()
        report = {
            "address": cluster.address,
            "head": _node(cluster.head_node),
            "workers": [_node(n) for n in workers.values()],
        }
        print(json.dumps(report), flush=True)
        for line in sys.stdin:
            command, _, argument = line.strip().partition(" ")
            if command == "remove" and argument in workers:
                cluster.remove_node(workers.pop(argument), allow_graceful=False)
                print(json.dumps({"removed": argument}), flush=True)
            elif command == "add":
                node = cluster.add_node(**worker_args)
                workers[node.node_id] = node
                cluster.wait_for_nodes()
                print(json.dumps(_node(node)), flush=True)
            else:
                print(json.dumps({"error": f"unknown command {line.strip()!r}"}), flush=True)
    finally:
        cluster.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
