"""Connecting to Ray: a cluster at ``HOST:PORT``, or a private runtime on this machine.

Shared by the Ray engine's driver process and ``lpms transcode --engine ray``. Ray
is imported here and nowhere above, only once it is asked for (``lpms[ray]``).
A private runtime (``local``) is kept on the loopback interface: on Linux Ray binds
its servers to the machine's primary address unless
``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` tells it this is a one-machine cluster, and
that must be set before Ray is first imported. ``address="local"`` always starts a
new runtime, never joining the leftover session files of a killed one.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from typing import Any

from lpms.errors import LPMSError

LOCAL = "local"
# Segments and results are a few MB at most; Ray's default would reserve 30 % of RAM.
LOCAL_OBJECT_STORE = 256 * 2**20
_QUIET = {
    "RAY_USAGE_STATS_ENABLED": "0",  # no reporting home: lpms runs offline too
    "RAY_DEDUP_LOGS": "0",
}


class RayUnavailable(LPMSError):
    """Ray is not installed, or the cluster cannot be reached."""


def gcs_endpoint(address: str) -> tuple[str, int]:
    """``HOST:PORT`` (or ``[V6]:PORT``, with an optional ``ray://``) as a pair."""
    text = address.removeprefix("ray://")
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise RayUnavailable(
            f"Ray address {address!r} is not HOST:PORT (the head's GCS address) or 'local'"
        )
    return host, int(port)


def check_reachable(address: str, timeout: float) -> None:
    """A TCP connection to the cluster's head, so an address with nothing behind it
    is one clear error at once (Ray itself retries for minutes)."""
    host, port = gcs_endpoint(address)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise RayUnavailable(f"cannot reach Ray at {address}: {reason}") from None


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _token_available() -> bool:
    """Ray's token, where Ray looks for it: ``$RAY_AUTH_TOKEN``, the file
    ``$RAY_AUTH_TOKEN_PATH``, or ``~/.ray/auth_token``."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return True
    path = os.environ.get("RAY_AUTH_TOKEN_PATH") or os.path.expanduser("~/.ray/auth_token")
    return os.path.isfile(path)


def connect(address: str, *, timeout: float, num_cpus: int | None = None) -> Any:
    """``ray``, initialized for ``address`` (``local``: a private runtime on
    127.0.0.1 with ``num_cpus``, default all)."""
    loopback = address == LOCAL
    if address != LOCAL:
        check_reachable(address, timeout)
        loopback = _is_loopback(gcs_endpoint(address)[0])
    for name, value in _QUIET.items():
        os.environ.setdefault(name, value)
    if loopback:
        os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    if address != LOCAL and "RAY_AUTH_MODE" not in os.environ and _token_available():
        # Ray sends its token only to a cluster it found itself, never to one named
        # by address; a cluster started by `ray start` has token auth on by default.
        os.environ["RAY_AUTH_MODE"] = "token"
    # Without this a driver that loses the head for a minute exits its process.
    os.environ.setdefault("RAY_gcs_rpc_server_reconnect_timeout_s", str(max(5, int(timeout))))
    try:
        import ray
    except ImportError:
        raise RayUnavailable("the Ray engine needs Ray: pip install 'lpms[ray]'") from None
    options: dict[str, Any] = {
        "log_to_driver": False,
        "include_dashboard": False,
        "configure_logging": True,
        "logging_level": "warning",
    }
    try:
        if address == LOCAL:
            ray.init(
                address=LOCAL,
                num_cpus=num_cpus,
                object_store_memory=LOCAL_OBJECT_STORE,
                _node_ip_address="127.0.0.1",
                **options,
            )
        else:
            options.pop("include_dashboard")
            if loopback and not address.startswith("ray://"):
                # This machine's node of a loopback cluster is found by 127.0.0.1.
                options["_node_ip_address"] = "127.0.0.1"
            ray.init(address=address, **options)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise RayUnavailable(f"cannot connect to Ray at {address}: {exc}") from None
    return ray
