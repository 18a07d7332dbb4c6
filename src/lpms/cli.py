"""The ``lpms`` command."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from lpms import __version__
from lpms.auth import AuthSettings
from lpms.config import DEFAULT_HOST, DEFAULT_HTTP_PORT, DEFAULT_RTMP_PORT, Settings
from lpms.errors import LPMSError
from lpms.hls.store import HLSSettings
from lpms.transcode.accel import Accel, check_accel
from lpms.transcode.live import TranscodeSettings
from lpms.transcode.probe import probe
from lpms.transcode.profiles import (
    PRESETS,
    VideoProfile,
    format_bitrate,
    format_framerate,
    parse_profiles,
    profiles_from_json,
    profiles_from_toml,
)
from lpms.transcode.session import Transcoder

LOG_LEVELS = ("debug", "info", "warning", "error")

log = logging.getLogger("lpms")


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
    serve.add_argument(
        "--profiles",
        default="",
        help="transcode every live stream into these renditions, e.g. "
        "P360p30fps16x9,P240p30fps16x9 (names from `lpms profiles`, or a JSON/TOML file; "
        "default: none, the source only)",
    )
    serve.add_argument(
        "--accel",
        choices=[a.value for a in Accel],
        default=Accel.SOFTWARE.value,
        help="transcoding hardware for --profiles: software (default) or nvidia",
    )
    auth = AuthSettings()
    serve.add_argument(
        "--auth-url",
        help="POST JSON {action, app, name, query, client_ip, protocol} here before every "
        "publish and play; a 2xx answer allows (default: no hook)",
    )
    serve.add_argument(
        "--auth-timeout",
        type=_number_in(float, 0.1, 60.0),
        default=auth.timeout,
        help=f"seconds the auth hook has to answer (default {auth.timeout:g})",
    )
    serve.add_argument(
        "--publish-key",
        help="publishers must give this key, as ?key=KEY or as a NAME_KEY suffix "
        "(default: none needed)",
    )
    serve.add_argument("--log-level", choices=LOG_LEVELS, default="info", help="default info")
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


def _transcode_settings(profiles: str, accel: str) -> TranscodeSettings:
    """Profiles for the live ladder, checked (and the accel tried) before serving."""
    if not profiles:
        return TranscodeSettings()
    chosen = _load_profiles(profiles)
    hardware = Accel.parse(accel)
    for profile in chosen:
        check_accel(hardware, profile.codec)
    return TranscodeSettings(profiles=chosen, accel=hardware)


def print_table(rows: Sequence[Sequence[str]], out: TextIO | None = None) -> None:
    """Rows as left-aligned columns, the first row a header (on stdout by default,
    looked up at call time so redirection takes effect)."""
    out = out or sys.stdout
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    for row in rows:
        cells = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        print("  ".join(cells).rstrip(), file=out)


def _load_profiles(text: str) -> tuple[VideoProfile, ...]:
    path = Path(text)
    if path.suffix.lower() in (".json", ".toml") and path.is_file():
        content = path.read_text()
        if path.suffix.lower() == ".json":
            return profiles_from_json(content)
        return profiles_from_toml(content)
    return parse_profiles(text)


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
        profiles = _load_profiles(args.profiles)
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
    configure_logging(args.log_level)
    if args.command == "profiles":
        return print_profiles()
    if args.command == "transcode":
        return run_transcode(args)
    if args.command == "probe":
        return run_probe(args)
    if args.command == "serve":
        if args.record and not args.workdir:
            build_parser().error("--record needs --workdir DIR")
        try:
            transcode = _transcode_settings(args.profiles, args.accel)
        except LPMSError as exc:
            build_parser().error(str(exc))
        hls = HLSSettings(
            enabled=not args.no_hls,
            segment_duration=args.segment_duration,
            window=args.hls_window,
            record=args.record,
        )
        if args.publish_key is not None and not args.publish_key:
            build_parser().error("--publish-key must not be empty")
        auth = AuthSettings(
            url=args.auth_url, timeout=args.auth_timeout, publish_key=args.publish_key
        )
        settings = Settings(
            auth=auth,
            host=args.host,
            rtmp_port=args.rtmp_port,
            http_port=args.http_port,
            workdir=args.workdir,
            hls=hls,
            transcode=transcode,
        )
        try:
            asyncio.run(_serve(settings))
        except OSError as exc:
            log.error("cannot start server: %s", exc)
            return 1
    return 0
