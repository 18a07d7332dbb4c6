"""The ``lpms`` command."""

from __future__ import annotations

import argparse
import asyncio
import enum
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn, TextIO

from lpms import __version__
from lpms.config import (
    LOG_FORMATS,
    LOG_LEVELS,
    Settings,
    load,
    load_profiles,
    to_toml,
)
from lpms.errors import ConfigError, LPMSError
from lpms.logs import configure_logging
from lpms.transcode.accel import Accel, check_accel
from lpms.transcode.probe import probe
from lpms.transcode.profiles import PRESETS, format_bitrate, format_framerate
from lpms.transcode.session import Transcoder

log = logging.getLogger("lpms")

DEFAULTS = Settings()


class _Parser(argparse.ArgumentParser):
    """A usage error is one line on stderr, and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


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
        f"RTMP port (default {_default('rtmp_port')})",
        {"metavar": "PORT"},
    ),
    (
        "--http-port",
        "http_port",
        f"HTTP port (default {_default('http_port')})",
        {"metavar": "PORT"},
    ),
    (
        "--segment-duration",
        "hls.segment_duration",
        f"HLS target segment length in seconds (default {_default('hls.segment_duration')})",
        {"type": _number_in(float, 0.5, 60.0), "metavar": "SECONDS"},
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
        "directory for recordings (needed by --record; default: none)",
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


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="lpms", description="Live media server: RTMP in, RTMP and HLS out.")
    parser.add_argument("--version", action="version", version=f"lpms {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser(
        "serve",
        help="run the standalone server",
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
    profiles = commands.add_parser("profiles", help="list the built-in video profiles")
    profiles.set_defaults(log_level="warning")
    _add_transcode_parser(commands)
    probe = commands.add_parser("probe", help="codec, size, rate, duration, bitrate of a file")
    probe.add_argument("input", help="a media file or URL")
    probe.add_argument("--json", action="store_true", help="print JSON instead of a table")
    probe.set_defaults(log_level="warning")
    return parser


def _add_transcode_parser(commands: Any) -> None:
    transcode = commands.add_parser(
        "transcode", help="transcode a file or segment into one output per profile"
    )
    transcode.add_argument("input", help="a media file, segment or URL")
    transcode.add_argument(
        "--profiles",
        required=True,
        help="preset names (P360p30fps16x9,P240p30fps16x9; see `lpms profiles`) "
        "or a JSON/TOML file describing profiles",
    )
    transcode.add_argument(
        "--accel",
        choices=[a.value for a in Accel],
        default=Accel.SOFTWARE.value,
        help="software (default) or nvidia (NVDEC/NVENC)",
    )
    transcode.add_argument(
        "--outdir", default=".", help="where OUTDIR/PROFILE.ts go (default: here)"
    )
    transcode.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar on stderr (default: when stderr is a terminal)",
    )
    transcode.set_defaults(log_level="warning")


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
        for profile in settings.transcode.profiles:  # the accel is tried before serving
            check_accel(settings.transcode.accel, profile.codec)
    except LPMSError as exc:
        print(f"lpms serve: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log.level, settings.log.format)
    try:
        asyncio.run(_serve(settings))
    except OSError as exc:
        log.error("cannot start server: %s", exc)
        return 1
    return 0


def _check_serve_settings(settings: Settings) -> None:
    """What `lpms serve` needs beyond each setting being valid (a Python application
    may give `LPMS` its workdir apart from the settings)."""
    if settings.hls.record and settings.workdir is None:
        raise ConfigError(
            "hls.record needs a workdir: give --workdir DIR, LPMS_WORKDIR or workdir in the "
            "config file"
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
    await server.serve()


def print_profiles() -> int:
    """The ``lpms profiles`` table: LPMS's preset profiles, one a line."""
    header = ("NAME", "RESOLUTION", "BITRATE", "FPS", "CODEC")
    rows = [header] + [
        (
            profile.name,
            profile.resolution,
            format_bitrate(profile.bitrate),
            format_framerate(profile.framerate),
            profile.codec.value,
        )
        for profile in PRESETS.values()
    ]
    print_table(rows)
    return 0


def print_table(rows: Sequence[Sequence[str]], out: TextIO | None = None) -> None:
    """Rows as left-aligned columns, the first row a header (on stdout by default,
    looked up at call time so redirection takes effect)."""
    out = out or sys.stdout
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    for row in rows:
        cells = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        print("  ".join(cells).rstrip(), file=out)


class ProgressBar:
    """A one-line bar on a terminal, redrawn at most every 0.2 s."""

    WIDTH = 30

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self._last = 0.0
        self._drawn = False
        self._total = 0.0

    def __call__(self, done: float, total: float, *, force: bool = False) -> None:
        now = time.monotonic()
        if now - self._last < 0.2 and not force:
            return
        self._last = now
        self._drawn = True
        self._total = total
        if total > 0:
            share = min(1.0, max(0.0, done / total))
            bar = "#" * round(share * self.WIDTH)
            line = f"[{bar:<{self.WIDTH}}] {share:6.1%} {done:7.1f}/{total:.1f} s"
        else:
            line = f"{done:7.1f} s"
        self.out.write("\r" + line)
        self.out.flush()

    def finish(self) -> None:
        if self._drawn:
            if self._total > 0:
                self(self._total, self._total, force=True)
            self.out.write("\n")
            self.out.flush()


def run_transcode(args: argparse.Namespace) -> int:
    """``lpms transcode``: the file through every profile, then a summary table."""
    try:
        profiles = load_profiles(args.profiles)
        show_progress = sys.stderr.isatty() if args.progress is None else args.progress
        bar = ProgressBar(sys.stderr) if show_progress else None
        with Transcoder(profiles, accel=args.accel) as transcoder:
            try:
                result = transcoder.transcode_file(args.input, args.outdir, progress=bar)
            finally:
                if bar is not None:
                    bar.finish()
    except (LPMSError, OSError) as exc:
        print(f"lpms transcode: {exc}", file=sys.stderr)
        return 1
    print(
        f"decoded {result.decoded_frames} frames, {result.duration:.2f} s of video, "
        f"in {result.elapsed:.2f} s ({result.speed:.2f}x real time)"
    )
    rows = [("PROFILE", "RESOLUTION", "FRAMES", "FPS", "BITRATE", "SIZE", "SPEED", "OUTPUT")]
    for output in result.outputs:
        rows.append(
            (
                output.profile.name,
                f"{output.width}x{output.height}",
                str(output.frames),
                f"{output.framerate:.2f}",
                _kbps(output.bitrate),
                f"{output.size / 1e6:.2f} MB",
                f"{result.speed:.2f}x",
                str(Path(args.outdir) / f"{output.profile.name}.ts"),
            )
        )
    print_table(rows)
    return 0


def _kbps(bitrate: int) -> str:
    return f"{bitrate / 1000:.0f} kb/s"


def run_probe(args: argparse.Namespace) -> int:
    """``lpms probe``: one line for the container, one per track."""
    try:
        info = probe(args.input)
    except LPMSError as exc:
        print(f"lpms probe: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(info.as_dict(), indent=2))
        return 0
    duration = f"{info.duration:.3f} s" if info.duration is not None else "unknown"
    bitrate = _kbps(info.bitrate) if info.bitrate else "unknown"
    print(f"{info.source}: {info.format}, duration {duration}, bitrate {bitrate}")
    rows = [("TRACK", "TYPE", "CODEC", "PROFILE", "DETAILS", "BITRATE")]
    for track in info.tracks:
        if track.kind == "video":
            rate = f" {track.framerate:g} fps" if track.framerate else ""
            details = f"{track.width}x{track.height}{rate}"
        elif track.kind == "audio":
            details = f"{track.sample_rate} Hz, {track.channels} ch"
        else:
            details = ""
        rows.append(
            (
                str(track.index),
                track.kind,
                track.codec,
                track.profile or "",
                details,
                _kbps(track.bitrate) if track.bitrate else "",
            )
        )
    print_table(rows)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        return run_serve(args)
    configure_logging(args.log_level)
    if args.command == "profiles":
        return print_profiles()
    if args.command == "transcode":
        return run_transcode(args)
    if args.command == "probe":
        return run_probe(args)
    return 0
