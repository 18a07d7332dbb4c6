"""Real RTMP clients for end-to-end tests: FFmpeg's own RTMP code, through PyAV.

Nothing here speaks RTMP itself. A clip is encoded once into an in-memory FLV and
read back, so its packets are exactly the FLV tag payloads FFmpeg's muxer puts on
the wire; publishing copies those packets to the server in real time, and players
demux what the server sends with FFmpeg's FLV demuxer.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import av

CLIP_WIDTH = 320
CLIP_HEIGHT = 240
CLIP_FPS = 30


@dataclass(frozen=True)
class ClipPacket:
    kind: str  # "video" or "audio"
    dts_ms: int
    pts_ms: int
    keyframe: bool
    payload: bytes


@dataclass
class Clip:
    """An encoded clip: its FLV bytes (for stream copy) and its packets in order."""

    flv: bytes
    packets: list[ClipPacket]

    def of_kind(self, kind: str) -> list[ClipPacket]:
        return [p for p in self.packets if p.kind == kind]


def make_clip(
    seconds: float,
    *,
    gop_frames: int = 60,
    audio: bool = True,
    video: bool = True,
    size: tuple[int, int] = (CLIP_WIDTH, CLIP_HEIGHT),
    lossless: bool = False,
    video_codec: str = "libx264",
    audio_codec: str = "aac",
) -> Clip:
    """Encode ``seconds`` of test pattern (H.264) and tone (AAC) into FLV;
    ``lossless`` for the bitrate of a 4K camera (tens of Mbit/s) at a small cost.
    ``video_codec="libx265"`` or ``audio_codec="libopus"``: FFmpeg 8's FLV muxer
    writes those as Enhanced RTMP (FourCC) tags, as OBS 30 sends them."""
    buffer = io.BytesIO()
    out = av.open(buffer, "w", format="flv")
    sources = []
    if video:
        vsrc = av.open(
            f"testsrc2=size={size[0]}x{size[1]}:rate={CLIP_FPS}:duration={seconds}",
            format="lavfi",
        )
        vout = out.add_stream(video_codec, rate=CLIP_FPS)
        vout.width, vout.height, vout.pix_fmt = size[0], size[1], "yuv420p"
        if video_codec == "libx265":
            keyint = f"keyint={gop_frames}:min-keyint={gop_frames}:scenecut=0"
            vout.options = {"preset": "ultrafast", "x265-params": f"log-level=error:{keyint}"}
        else:
            vout.options = {
                "preset": "ultrafast",
                "g": str(gop_frames),
                "keyint_min": str(gop_frames),
                "sc_threshold": "0",
                "bf": "2",
            }
        if lossless:
            vout.options["qp"] = "0"
        else:
            vout.bit_rate = 400_000
        sources.append((vsrc, vout))
    if audio:
        rate = 48000 if audio_codec == "libopus" else 44100  # Opus has no 44.1 kHz
        asrc = av.open(f"sine=frequency=440:sample_rate={rate}:duration={seconds}", format="lavfi")
        aout = out.add_stream(audio_codec, rate=rate)
        aout.bit_rate = 96_000
        sources.append((asrc, aout))
    encoded = []
    for src, stream in sources:
        for frame in src.decode(src.streams[0]):
            if stream.type == "video":
                # lavfi marks every frame as I; left so, x264 would make each an IDR.
                frame.pict_type = av.video.frame.PictureType.NONE
            encoded.extend(stream.encode(frame))
        encoded.extend(stream.encode(None))
        src.close()
    # Mux in decode order across tracks, as a live encoder would send them.
    encoded.sort(
        key=lambda p: (float(p.dts * p.stream.codec_context.time_base), p.stream.type != "video")
    )
    for packet in encoded:
        out.mux(packet)
    out.close()
    data = buffer.getvalue()
    return Clip(data, read_packets(io.BytesIO(data)).packets)


@dataclass
class Received:
    """What a player got."""

    packets: list[ClipPacket] = field(default_factory=list)
    video_size: tuple[int, int] | None = None
    error: str | None = None

    def of_kind(self, kind: str) -> list[ClipPacket]:
        return [p for p in self.packets if p.kind == kind]

    def to_plain(self) -> dict[str, object]:
        """Plain types only, so another process can unpickle it."""
        return {
            "packets": [(p.kind, p.dts_ms, p.pts_ms, p.keyframe, p.payload) for p in self.packets],
            "video_size": self.video_size,
            "error": self.error,
        }

    @classmethod
    def from_plain(cls, plain: dict[str, Any]) -> Received:
        return cls([ClipPacket(*p) for p in plain["packets"]], plain["video_size"], plain["error"])


def _ms(value: int | None, time_base: Fraction | None) -> int:
    if value is None or time_base is None:
        return -1
    return round(value * time_base * 1000)


def read_packets(source: str | io.BytesIO, *, timeout: float = 10.0) -> Received:
    """Demux every packet from a file or URL (an RTMP URL plays the stream)."""
    received = Received()
    try:
        container = av.open(
            source, "r", format="flv" if not isinstance(source, str) else None, timeout=timeout
        )
    except av.FFmpegError as exc:
        received.error = str(exc)
        return received
    try:
        if container.streams.video:
            ctx = container.streams.video[0].codec_context
            received.video_size = (ctx.width, ctx.height)
        for packet in container.demux():
            if packet.size == 0 or packet.stream.type not in ("video", "audio"):
                continue
            received.packets.append(
                ClipPacket(
                    kind=packet.stream.type,
                    dts_ms=_ms(packet.dts, packet.time_base),
                    pts_ms=_ms(packet.pts, packet.time_base),
                    keyframe=packet.is_keyframe,
                    payload=bytes(packet),
                )
            )
    except av.FFmpegError as exc:
        received.error = str(exc)
    finally:
        container.close()
    return received


def publish(
    url: str,
    clip: Clip,
    *,
    realtime: bool = True,
    stop_after_s: float | None = None,
    timings: dict[str, float] | None = None,
) -> int:
    """Stream-copy ``clip`` to ``url`` as FFmpeg does, paced in real time.

    Returns the number of packets sent; ``timings["connected_in"]`` is how long
    FFmpeg took to connect (TCP, handshake, connect, publish). Raises
    `av.FFmpegError` if the server refuses the publish.
    """
    src = av.open(io.BytesIO(clip.flv), "r", format="flv")
    connecting = time.monotonic()
    out = av.open(url, "w", format="flv", timeout=10.0)
    sent = 0
    try:
        mapping = {}
        for stream in src.streams:
            if stream.type in ("video", "audio"):
                mapping[stream.index] = out.add_stream_from_template(stream)
        start = time.monotonic()
        for packet in src.demux():
            if packet.dts is None or packet.stream.index not in mapping:
                continue
            at = float(packet.dts * packet.time_base)
            if stop_after_s is not None and at >= stop_after_s:
                break
            if realtime:
                delay = at - (time.monotonic() - start)
                if delay > 0:
                    time.sleep(delay)
            packet.stream = mapping[packet.stream.index]
            out.mux(packet)  # the first one connects: FFmpeg opens the URL lazily
            if timings is not None and not sent:
                timings["connected_in"] = time.monotonic() - connecting
            sent += 1
    finally:
        src.close()
        out.close()
    return sent


@dataclass
class Decoded:
    """What FFmpeg's HLS demuxer and decoders made of a playlist."""

    video_pts: list[float] = field(default_factory=list)  # seconds, in decode order
    video_keyframes: list[bool] = field(default_factory=list)
    audio_pts: list[float] = field(default_factory=list)
    audio_samples: int = 0
    video_size: tuple[int, int] | None = None
    warnings: list[str] = field(default_factory=list)  # FFmpeg's log, warning and worse
    error: str | None = None

    def to_plain(self) -> dict[str, object]:
        return dict(self.__dict__)

    @classmethod
    def from_plain(cls, plain: dict[str, Any]) -> Decoded:
        return cls(**plain)


def decode_hls(url: str, *, timeout: float = 10.0) -> Decoded:
    """Decode every frame of an HLS playlist (or any URL) with FFmpeg, noting its
    complaints."""
    decoded = Decoded()
    # PyAV passes FFmpeg's log on only when a level is set.
    av.logging.set_level(av.logging.WARNING)
    with av.logging.Capture() as logs:
        try:
            container = av.open(url, "r", timeout=timeout)
        except av.FFmpegError as exc:
            decoded.error = str(exc)
            return decoded
        try:
            streams = [s for s in container.streams if s.type in ("video", "audio")]
            for packet in container.demux(*streams):
                for frame in packet.decode():
                    if frame.pts is None or frame.time_base is None:
                        decoded.warnings.append(f"{packet.stream.type} frame without a pts")
                        continue
                    at = float(frame.pts * frame.time_base)
                    if packet.stream.type == "video":
                        decoded.video_pts.append(at)
                        decoded.video_keyframes.append(frame.key_frame)
                        decoded.video_size = (frame.width, frame.height)
                    else:
                        decoded.audio_pts.append(at)
                        decoded.audio_samples += frame.samples
        except av.FFmpegError as exc:
            decoded.error = str(exc)
        finally:
            container.close()
    decoded.warnings += [
        f"{name}: {message.strip()}" for level, name, message in logs if level <= av.logging.WARNING
    ]
    return decoded


def churn(base_url: str, clip: Clip, cycles: int, play_after_s: float = 0.15) -> dict[str, int]:
    """``cycles`` times: publish ``clip`` in real time to ``base_url-N`` on a thread
    while a player plays it to the end. Counts of what went through, for the churn
    test (which watches the server's tasks, descriptors and memory)."""
    import threading

    totals = {"cycles": 0, "published": 0, "played": 0, "publish_errors": 0, "play_errors": 0}
    for cycle in range(cycles):
        url = f"{base_url}-{cycle}"
        sent: list[int] = []

        def publisher(url: str = url, sent: list[int] = sent) -> None:
            try:
                sent.append(publish(url, clip))
            except av.FFmpegError:
                sent.append(-1)

        thread = threading.Thread(target=publisher)
        thread.start()
        time.sleep(play_after_s)
        received = read_packets(url)
        thread.join(30)
        totals["cycles"] += 1
        if not sent or sent[0] < 0:
            totals["publish_errors"] += 1
        else:
            totals["published"] += sent[0]
        if received.error is not None or not received.packets:
            totals["play_errors"] += 1
        totals["played"] += len(received.packets)
    return totals


# -- running the clients in their own processes ---------------------------------
#
# PyAV holds the GIL while FFmpeg connects to an RTMP server, so a client in the
# test process would freeze the server's event loop. Each client runs as
# ``python -m tests.e2e.clients ...`` instead.


def _main(argv: list[str]) -> int:
    import pickle
    import sys

    command, url = argv[0], argv[1]
    if command == "publish":
        with open(argv[2], "rb") as clip_file:
            clip = Clip(clip_file.read(), [])
        timings: dict[str, float] = {}
        try:
            sent = publish(url, clip, realtime="--fast" not in argv, timings=timings)
        except av.FFmpegError as exc:
            print(f"publish failed: {exc}", file=sys.stderr)
            return 1
        print(sent, timings["connected_in"])
        return 0
    if command == "play":
        received = read_packets(url)
        with open(argv[2], "wb") as out:
            pickle.dump(received.to_plain(), out)
        return 0
    if command == "churn":
        import json

        with open(argv[2], "rb") as clip_file:
            clip = Clip(clip_file.read(), [])
        print(json.dumps(churn(url, clip, int(argv[3]))))
        return 0
    if command == "hls":
        decoded = decode_hls(url)
        with open(argv[2], "wb") as out:
            pickle.dump(decoded.to_plain(), out)
        return 0
    print(f"unknown command {command}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    import sys

    sys.exit(_main(sys.argv[1:]))
