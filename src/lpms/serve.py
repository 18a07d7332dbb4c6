"""The ``lpms serve`` command: its flags, each a setting, and running the server.

Kept apart from `lpms.cli` so that ``lpms transcode`` and ``lpms probe`` start without
loading the settings tree (the server's modules and their defaults).
"""

from __future__ import annotations

import argparse
import asyncio
import enum
import logging
import os
import signal
import sys
from collections.abc import Callable
from typing import Any

from lpms.config import (
    EVENT_LOOPS,
    LOG_FORMATS,
    LOG_LEVELS,
    Settings,
    load,
    to_toml,
)
from lpms.errors import ConfigError, LPMSError
from lpms.hls.settings import HLSFormat
from lpms.logs import configure_logging
from lpms.transcode.engines import Engine
from lpms.transcode.muxing import hls_renditions
from lpms.transcode.output_options import VideoMode
from lpms.transcode.profiles import TS_CODECS, OutputFormat
from lpms.transcode.session import check_output
from lpms.transcode.settings import Accel

log = logging.getLogger("lpms")

DEFAULTS = Settings()


def _default(path: str) -> str:
    """A setting's default as ``--help`` shows it."""
    value: Any = DEFAULTS
    for name in path.split("."):
        value = getattr(value, name)
    if value is None or value == ():
        return "none"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, enum.Enum):
        return str(value.value)
    return str(value)


def _number_in(kind: type[float] | type[int], low: float, high: float) -> Any:
    def parse(text: str) -> float | int:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be {low:g} to {high:g}, got {text}")
        return value

    return parse


# The `lpms serve` flags that set a setting: option, the setting's dotted path (the
# flag's dest, so parsed flags are `load_settings` overrides as they stand), help,
# and argparse options. Their argparse default is SUPPRESS: a flag not given must
# not override the file or the environment.
_SETTING_FLAGS: tuple[tuple[str, str, str, dict[str, Any]], ...] = (
    (
        "--host",
        "host",
        f"address to listen on (default {_default('host')})",
        {"metavar": "ADDRESS"},
    ),
    (
        "--rtmp-port",
        "rtmp_port",
        f"RTMP port, or off (default {_default('rtmp_port')})",
        {"metavar": "PORT"},
    ),
    (
        "--http-port",
        "http_port",
        f"HTTP port, or off (default {_default('http_port')})",
        {"metavar": "PORT"},
    ),
    (
        "--tls-cert",
        "tls.cert",
        "PEM certificate chain: with --tls-key, RTMPS and HTTPS besides RTMP and HTTP; "
        "read again on SIGHUP (default: none, no TLS)",
        {"metavar": "FILE"},
    ),
    (
        "--tls-key",
        "tls.key",
        "the certificate's PEM private key, unencrypted (default: none)",
        {"metavar": "FILE"},
    ),
    (
        "--rtmps-port",
        "tls.rtmps_port",
        f"RTMPS port, or off (default {_default('tls.rtmps_port')})",
        {"metavar": "PORT"},
    ),
    (
        "--https-port",
        "tls.https_port",
        f"HTTPS port, or off (default {_default('tls.https_port')})",
        {"metavar": "PORT"},
    ),
    (
        "--segment-duration",
        "hls.segment_duration",
        f"HLS target segment length in seconds (default {_default('hls.segment_duration')})",
        {"type": _number_in(float, 0.5, 60.0), "metavar": "SECONDS"},
    ),
    (
        "--hls-format",
        "hls.format",
        "HLS segments: fmp4 (CMAF: low-latency HLS and DASH from the same files, every "
        f"codec) or ts (MPEG-TS, classic HLS) (default {_default('hls.format')})",
        {"choices": [f.value for f in HLSFormat]},
    ),
    (
        "--no-low-latency",
        "hls.low_latency",
        "fMP4 HLS without LL-HLS parts (whole segments only)",
        {"action": "store_const", "const": False},
    ),
    (
        "--part-duration",
        "hls.part_duration",
        f"LL-HLS part length in seconds, at most (default {_default('hls.part_duration')})",
        {"type": _number_in(float, 0.1, 60.0), "metavar": "SECONDS"},
    ),
    (
        "--hls-window",
        "hls.window",
        f"segments in a live HLS playlist (default {_default('hls.window')})",
        {"type": _number_in(int, 1, 1000), "metavar": "SEGMENTS"},
    ),
    (
        "--workdir",
        "workdir",
        "directory for recordings (needed by --record) and live HLS segments "
        "(default: a private temporary directory)",
        {"metavar": "DIR"},
    ),
    (
        "--record",
        "hls.record",
        "keep every stream on disk under --workdir as an HLS playlist that plays later",
        {"action": "store_const", "const": True},
    ),
    (
        "--no-hls",
        "hls.enabled",
        "RTMP only: no HLS output",
        {"action": "store_const", "const": False},
    ),
    (
        "--profiles",
        "transcode.profiles",
        "transcode every live stream into these renditions, e.g. "
        "P360p30fps16x9,P240p30fps16x9 (names from `lpms profiles`, or a JSON/TOML file; "
        "default: none, the source only)",
        {"metavar": "LIST"},
    ),
    (
        "--accel",
        "transcode.accel",
        "transcoding hardware for --profiles: software or nvidia "
        f"(default {_default('transcode.accel')})",
        {"choices": [a.value for a in Accel]},
    ),
    (
        "--transcode-engine",
        "transcode.engine",
        "where --profiles are transcoded: local (threads of this process) or ray (an "
        f"actor per stream on a Ray cluster; needs lpms[ray]) (default "
        f"{_default('transcode.engine')})",
        {"choices": [e.value for e in Engine]},
    ),
    (
        "--ray-address",
        "transcode.ray_address",
        "the Ray cluster for --transcode-engine ray: the head's HOST:PORT, or local for a "
        "private Ray runtime on this machine (default: $RAY_ADDRESS, else local)",
        {"metavar": "ADDR"},
    ),
    (
        "--auth-url",
        "auth.url",
        "POST JSON {action, app, name, query, client_ip, protocol} here before every "
        "publish and play; a 2xx answer allows (default: no hook)",
        {},
    ),
    (
        "--auth-timeout",
        "auth.timeout",
        f"seconds the auth hook has to answer (default {_default('auth.timeout')})",
        {"type": _number_in(float, 0.1, 60.0), "metavar": "SECONDS"},
    ),
    (
        "--publish-key",
        "auth.publish_key",
        "publishers must give this key, as ?key=KEY or as a NAME_KEY suffix (default: none needed)",
        {},
    ),
    (
        "--webhook-url",
        "webhook.url",
        "POST the server's events (publishes, plays, segments) here as JSON (default: none)",
        {},
    ),
    (
        "--event-loop",
        "event_loop",
        f"asyncio, uvloop, or auto: uvloop where installed (default {_default('event_loop')})",
        {"choices": EVENT_LOOPS},
    ),
    ("--log-level", "log.level", f"default {_default('log.level')}", {"choices": LOG_LEVELS}),
    (
        "--log-format",
        "log.format",
        f"text, or json: one object per line (default {_default('log.format')})",
        {"choices": LOG_FORMATS},
    ),
)
FLAGS = {path: option for option, path, _, _ in _SETTING_FLAGS}
"""Each `lpms serve` flag, by the dotted path of the setting it sets."""


def _add_setting_flags(serve: argparse.ArgumentParser) -> None:
    for option, path, help, options in _SETTING_FLAGS:
        if "action" not in options and "choices" not in options:
            options = {"metavar": path.rsplit(".", 1)[-1].upper(), **options}
        serve.add_argument(option, dest=path, default=argparse.SUPPRESS, help=help, **options)


def add_serve_parser(commands: Any, help: str) -> None:
    """``lpms serve`` and a flag for each setting that has one; ``help`` is the line
    ``lpms --help`` shows (the command line's, so this module needs nothing of it)."""
    serve = commands.add_parser(
        "serve",
        help=help,
        description="Run the standalone server. Every setting has a default, can come from "
        "a TOML file (--config), from LPMS_* environment variables, and from these "
        "flags, each overriding the one before; --print-config shows the result.",
    )
    serve.add_argument(
        "--config",
        metavar="FILE",
        help="read settings from this TOML file (see lpms.example.toml); "
        "LPMS_* variables and flags override it",
    )
    serve.add_argument(
        "--print-config",
        action="store_true",
        help="print the effective configuration as TOML (--config reads it back) and exit; "
        "it includes any publish key",
    )
    _add_setting_flags(serve)


def run_serve(args: argparse.Namespace) -> int:
    """``lpms serve``: the effective settings (defaults < --config FILE < LPMS_* <
    flags), printed with --print-config, else served until SIGINT or SIGTERM. An
    invalid setting is one line on stderr and exit status 2."""
    flags = {path: value for path, value in vars(args).items() if path in FLAGS}
    try:
        loaded = load(Settings, path=args.config, env=os.environ, overrides=flags, sources=FLAGS)
        settings = loaded.settings
        _check_serve_settings(settings)
        if args.print_config:
            header = "The effective configuration: defaults < --config FILE < LPMS_* < flags."
            print(to_toml(settings, origins=loaded.origins, header=header), end="")
            return 0
        _check_outputs(settings)
        loop_factory = event_loop_factory(settings.event_loop)
    except LPMSError as exc:
        print(f"lpms serve: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log.level, settings.log.format)
    try:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            runner.run(_serve(settings))
    except OSError as exc:
        log.error("cannot start server: %s", exc)
        return 1
    except LPMSError as exc:  # what start needs is missing: Ray unreachable, a TLS key
        print(f"lpms serve: {exc}", file=sys.stderr)
        return 2
    return 0


def event_loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """How to make the loop `lpms serve` runs on (None: asyncio's own)."""
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise ConfigError(
                "event_loop is uvloop, but uvloop is not installed: pip install 'lpms[uvloop]'"
            ) from None
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def _check_outputs(settings: Settings) -> None:
    """Each rendition's output as a stream's ladder will make it, tried before serving:
    accelerator, container, muxer and its options, encoder and its options."""
    container = OutputFormat.of_renditions(settings.hls.format)
    for profile in hls_renditions(settings.transcode.profiles, container):
        check_output(profile, container, settings.transcode.accel)


def _check_serve_settings(settings: Settings) -> None:
    """What `lpms serve` needs beyond each setting being valid (a Python application
    may give `LPMS` its workdir apart from the settings)."""
    if settings.hls.record and settings.workdir is None:
        raise ConfigError(
            "hls.record needs a workdir: give --workdir DIR, LPMS_WORKDIR or workdir in the "
            "config file"
        )
    for profile in settings.transcode.profiles:
        if profile.video is VideoMode.DROP:
            raise ConfigError(
                f"transcode.profiles: {profile.name} has video drop: an audio-only output, "
                "which a live ladder's renditions cannot be (lpms transcode makes them)"
            )
    if settings.hls.format is HLSFormat.TS:
        for profile in settings.transcode.profiles:
            if profile.codec not in TS_CODECS and profile.video is VideoMode.ENCODE:
                raise ConfigError(
                    f"transcode.profiles: {profile.name} is {profile.codec.value}, which "
                    "MPEG-TS cannot carry: use hls.format fmp4 (--hls-format fmp4, the default)"
                )


async def _serve(settings: Settings) -> None:
    from lpms.server import LPMS  # here: `lpms transcode` and `probe` need no HTTP stack

    server = LPMS(settings=settings)
    loop = asyncio.get_running_loop()
    closing: list[asyncio.Task[None]] = []

    def stop(signum: int) -> None:
        """The first SIGINT/SIGTERM shuts down cleanly (playlists ended, recordings
        flushed, clients closed); a second one exits at once."""
        name = signal.Signals(signum).name
        if closing:
            log.warning("%s again: exiting without finishing the shutdown", name)
            os._exit(1)
        log.info("%s: shutting down (send it again to exit at once)", name)
        closing.append(loop.create_task(server.close()))

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop, signum)
    loop.add_signal_handler(signal.SIGHUP, server.reload_tls)
    await server.serve()
