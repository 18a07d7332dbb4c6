"""The ``lpms`` command."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn, TextIO

from lpms import __version__
from lpms.errors import LPMSError, TranscodeError
from lpms.logs import configure_logging
from lpms.transcode.accel import check_accel
from lpms.transcode.chunks import DEFAULT_CHUNK_SECONDS, DEFAULT_CHUNK_TIMEOUT
from lpms.transcode.engines import Engine
from lpms.transcode.output_options import AudioMode, VideoMode, parse_assignments
from lpms.transcode.probe import probe
from lpms.transcode.profiles import (
    PRESETS,
    OutputFormat,
    VideoProfile,
    format_bitrate,
    format_framerate,
    load_profiles,
)
from lpms.transcode.session import Transcoder, TranscodeResult, output_container, output_name
from lpms.transcode.settings import Accel

log = logging.getLogger("lpms")

SERVE_HELP = "run the standalone server"


class _Parser(argparse.ArgumentParser):
    """A usage error is one line on stderr, and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def build_parser(serve_options: bool = True) -> argparse.ArgumentParser:
    """The ``lpms`` parser; without ``serve_options`` ``lpms serve`` gets none of its
    flags, so commands that do not serve start without loading the settings tree."""
    parser = _Parser(prog="lpms", description="Live media server: RTMP in, RTMP and HLS out.")
    parser.add_argument("--version", action="version", version=f"lpms {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    if serve_options:
        from lpms.serve import add_serve_parser  # the settings: not for transcode or probe

        add_serve_parser(commands, SERVE_HELP)
    else:
        commands.add_parser("serve", help=SERVE_HELP)
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
        "transcode",
        help="transcode a file or segment into one output per profile",
        description="Transcode INPUT into one output per profile; several INPUTs are "
        "joined, one after the other, into the same outputs. --from/--to keep only "
        "that stretch (LPMS's From/To).",
    )
    transcode.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="a media file, segment or URL; several are joined in the order given",
    )
    transcode.add_argument(
        "--from",
        dest="clip_from",
        type=_seconds,
        metavar="S",
        help="start the outputs at the first video frame at or after S seconds (from the "
        "first frame; a keyframe), audio at its first frame starting at or after S",
    )
    transcode.add_argument(
        "--to",
        dest="clip_to",
        type=_seconds,
        metavar="S",
        help="end the outputs before S seconds (video frames and audio frames starting "
        "before S are kept)",
    )
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
        "--outdir", default=".", help="where OUTDIR/PROFILE.ts (or .mp4) go (default: here)"
    )
    transcode.add_argument(
        "--format",
        choices=[f.value for f in OutputFormat],
        help="every output's container, over the profiles' own format: mpegts, mp4 (its "
        "index at the front) or fmp4 (fragmented); default: each profile's format, else "
        "mpegts for H.264 and HEVC, fmp4 for VP9 and AV1",
    )
    transcode.add_argument(
        "--video",
        choices=[m.value for m in VideoMode],
        help="every output's video (LPMS's VideoEncoder): encode (the default), copy (the "
        "source's packets remuxed; the profile's size does not apply) or drop (audio only)",
    )
    transcode.add_argument(
        "--audio",
        choices=[m.value for m in AudioMode],
        help="every output's audio (LPMS's AudioEncoder): copy (the source's packets), aac, "
        "opus (encoded once) or drop; default: each profile's audio, else AAC and MP3 "
        "copied and other audio encoded to AAC",
    )
    transcode.add_argument(
        "--muxer",
        help="every output's FFmpeg muxer by name (matroska, mov, mpegts...), over --format",
    )
    transcode.add_argument(
        "--muxer-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an option for the muxer (movflags=+faststart, mpegts_service_id=7); repeatable",
    )
    transcode.add_argument(
        "--metadata",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a metadata tag written into every output (title=Show); repeatable",
    )
    transcode.add_argument(
        "--engine",
        choices=[e.value for e in Engine],
        default=Engine.LOCAL.value,
        help="local (default: this machine) or ray (keyframe-cut chunks across a Ray "
        "cluster, joined into the same outputs)",
    )
    transcode.add_argument(
        "--ray-address",
        help="with --engine ray: the cluster's HOST:PORT, or local for a private Ray "
        "runtime (default: $RAY_ADDRESS, else local)",
    )
    transcode.add_argument(
        "--chunk-seconds",
        type=_positive_seconds,
        help=f"with --engine ray: chunk length, cut at the first keyframe after it "
        f"(default {DEFAULT_CHUNK_SECONDS:g})",
    )
    transcode.add_argument(
        "--chunk-timeout",
        type=_positive_seconds,
        help=f"with --engine ray: seconds a chunk may take once those before it are done "
        f"(default {DEFAULT_CHUNK_TIMEOUT:g})",
    )
    transcode.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar on stderr (default: when stderr is a terminal)",
    )
    transcode.set_defaults(log_level="warning")


def _seconds(text: str) -> float:
    """A number of seconds; whether it is a usable one, the transcoder says (exit 1)."""
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None


def _positive_seconds(text: str) -> float:
    value = _seconds(text)
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds: {text!r}")
    return value


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
    chosen = OutputFormat(args.format) if args.format else None
    try:
        profiles = with_output_options(load_profiles(args.profiles), args)
        show_progress = sys.stderr.isatty() if args.progress is None else args.progress
        bar = ProgressBar(sys.stderr) if show_progress else None
        try:
            if args.engine == Engine.RAY.value:
                result = _transcode_on_ray(args, profiles, bar)
            else:
                with Transcoder(profiles, accel=args.accel, output=chosen) as transcoder:
                    result = transcoder.transcode_files(
                        args.inputs,
                        args.outdir,
                        progress=bar,
                        start=args.clip_from,
                        end=args.clip_to,
                    )
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
        container = output_container(output.profile, chosen)
        rows.append(
            (
                output.profile.name,
                f"{output.width}x{output.height}",
                str(output.frames),
                f"{output.framerate:.2f}",
                _kbps(output.bitrate),
                f"{output.size / 1e6:.2f} MB",
                f"{result.speed:.2f}x",
                str(Path(args.outdir) / output_name(output.profile, container)),
            )
        )
    print_table(rows)
    return 0


def with_output_options(
    profiles: Sequence[VideoProfile], args: argparse.Namespace
) -> tuple[VideoProfile, ...]:
    """The profiles with the command line's per-output options over their own."""
    changes: dict[str, object] = {}
    if args.video:
        changes["video"] = VideoMode(args.video)
    if args.audio:
        changes["audio"] = AudioMode(args.audio)
    if args.muxer:
        changes["muxer"] = args.muxer
    if args.muxer_option:
        changes["muxer_options"] = parse_assignments(args.muxer_option, "--muxer-option")
    if args.metadata:
        changes["metadata"] = parse_assignments(args.metadata, "--metadata")
    if args.engine == Engine.RAY.value and changes:
        raise TranscodeError("--engine ray joins MPEG-TS chunks: no per-output options")
    return tuple(dataclasses.replace(p, **changes) for p in profiles)  # type: ignore[arg-type]


def _transcode_on_ray(
    args: argparse.Namespace, profiles: Sequence[VideoProfile], bar: ProgressBar | None
) -> TranscodeResult:
    """``--engine ray``: the file's chunks as tasks on the cluster, joined here."""
    if args.format not in (None, OutputFormat.MPEGTS.value):
        raise TranscodeError(f"--engine ray joins the chunks as MPEG-TS, not {args.format}")
    from lpms.transcode.chunks import ChunkedFile, transcode_in_chunks
    from lpms.transcode.engines.ray_chunks import RayChunkRunner

    address = args.ray_address or os.environ.get("RAY_ADDRESS", "").strip() or "local"
    accel = Accel.parse(args.accel)
    for profile in profiles:  # refused here, not by every worker
        check_accel(accel, profile.codec)
    runner = RayChunkRunner(address, profiles, accel)
    seconds = args.chunk_seconds or DEFAULT_CHUNK_SECONDS

    def planned(chunked: ChunkedFile) -> None:
        print(
            f"{chunked.count} chunk(s) of about {seconds:g} s on Ray at {address}: "
            f"{runner.nodes} node(s), {runner.cpus} CPU(s)"
        )

    try:
        return transcode_in_chunks(
            args.inputs[0],
            args.outdir,
            [p.name for p in profiles],
            runner,
            seconds=seconds,
            progress=bar,
            on_plan=planned,
            chunk_timeout=args.chunk_timeout or DEFAULT_CHUNK_TIMEOUT,
        )
    finally:
        runner.close()


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
    argv = sys.argv[1:] if argv is None else list(argv)
    command = next((arg for arg in argv if not arg.startswith("-")), None)
    args = build_parser(serve_options=command in (None, "serve")).parse_args(argv)
    if args.command == "serve":
        from lpms.serve import run_serve

        return run_serve(args)
    configure_logging(args.log_level)
    if args.command == "profiles":
        return print_profiles()
    if args.command == "transcode":
        if args.engine != Engine.RAY.value:
            ray_only = ("ray_address", "chunk_seconds", "chunk_timeout")
            given = [f"--{name.replace('_', '-')}" for name in ray_only if getattr(args, name)]
            if given:
                print(f"lpms transcode: {', '.join(given)} needs --engine ray", file=sys.stderr)
                return 2
        elif len(args.inputs) > 1 or args.clip_from is not None or args.clip_to is not None:
            print(
                "lpms transcode: several inputs, --from and --to need --engine local",
                file=sys.stderr,
            )
            return 2
        return run_transcode(args)
    if args.command == "probe":
        return run_probe(args)
    return 0
