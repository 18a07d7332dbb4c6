"""The ``lpms`` command."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence
from typing import Any

from lpms import __version__
from lpms.config import DEFAULT_HOST, DEFAULT_HTTP_PORT, DEFAULT_RTMP_PORT, Settings
from lpms.hls.store import HLSSettings
from lpms.server import LPMS
from lpms.transcode.profiles import PRESETS, format_bitrate, format_framerate

LOG_LEVELS = ("debug", "info", "warning", "error")


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port must be 0-65535, got {port}")
    return port


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lpms", description="Live media server: RTMP in, RTMP and HLS out."
    )
    parser.add_argument("--version", action="version", version=f"lpms {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the standalone server")
    serve.add_argument(
        "--host", default=DEFAULT_HOST, help=f"address to listen on (default {DEFAULT_HOST})"
    )
    serve.add_argument(
        "--rtmp-port",
        type=_port,
        default=DEFAULT_RTMP_PORT,
        help=f"RTMP port (default {DEFAULT_RTMP_PORT})",
    )
    serve.add_argument(
        "--http-port",
        type=_port,
        default=DEFAULT_HTTP_PORT,
        help=f"HTTP port (default {DEFAULT_HTTP_PORT})",
    )
    hls = HLSSettings()
    serve.add_argument(
        "--segment-duration",
        type=_number_in(float, 0.5, 60.0),
        default=hls.segment_duration,
        help=f"HLS target segment length in seconds (default {hls.segment_duration:g})",
    )
    serve.add_argument(
        "--hls-window",
        type=_number_in(int, 1, 1000),
        default=hls.window,
        help=f"segments in a live HLS playlist (default {hls.window})",
    )
    serve.add_argument(
        "--workdir", help="directory for recordings (needed by --record; default: none)"
    )
    serve.add_argument(
        "--record",
        action="store_true",
        help="keep every stream on disk under --workdir as an HLS playlist that plays later",
    )
    serve.add_argument("--no-hls", action="store_true", help="RTMP only: no HLS output")
    serve.add_argument("--log-level", choices=LOG_LEVELS, default="info", help="default info")
    profiles = commands.add_parser("profiles", help="list the built-in video profiles")
    profiles.set_defaults(log_level="warning")
    return parser


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


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )


async def _serve(settings: Settings) -> None:
    server = LPMS(settings=settings)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, lambda: loop.create_task(server.close()))
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
    widths = [max(len(row[column]) for row in rows) for column in range(len(header))]
    for row in rows:
        cells = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        print("  ".join(cells).rstrip())
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.log_level)
    if args.command == "profiles":
        return print_profiles()
    if args.command == "serve":
        if args.record and not args.workdir:
            build_parser().error("--record needs --workdir DIR")
        hls = HLSSettings(
            enabled=not args.no_hls,
            segment_duration=args.segment_duration,
            window=args.hls_window,
            record=args.record,
        )
        settings = Settings(
            host=args.host,
            rtmp_port=args.rtmp_port,
            http_port=args.http_port,
            workdir=args.workdir,
            hls=hls,
        )
        try:
            asyncio.run(_serve(settings))
        except OSError as exc:
            logging.getLogger("lpms").error("cannot start server: %s", exc)
            return 1
    return 0
