"""Conformance matrix: what real encoders send reaches real players frame for frame.

Each publisher (the ffmpeg CLI stream-copying files libx264 encoded with different
GOPs, profiles, rates and tracks; GStreamer's rtmp2sink sending what x264enc and
voaacenc made) publishes once to a fresh server while every player is connected:
FFmpeg's RTMP client (ffmpeg CLI), librtmp (rtmpdump), GStreamer's rtmp2src, and,
once the stream is over, FFmpeg's HLS demuxer on the finished playlist. Each
player's frames are compared with the published file's by payload checksum (see
`tests.e2e.conformance`): every video frame from the first keyframe on, every audio
frame from the first video frame on, in order, none twice.

Joining at the start is made certain rather than raced: the ``got_stream`` callback
holds the publish (the encoder waits for NetStream.Publish.Start and sends no media
before it) until every RTMP player is subscribed, and HLS segmenting begins as the
publish is accepted. Nothing waits a fixed time; every wait watches for an event
and is bounded, and every client is killed if it outlives its bound.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio

from lpms import LPMS, RTMPRequest, Settings, Stream
from tests.e2e.conformance import (
    FFMPEG,
    RTMPDUMP,
    Child,
    Fingerprints,
    Requirement,
    delivery_problems,
    fingerprint,
    fingerprint_url,
    gst,
    require,
    run_to_end,
)

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

CLIP_S = 5  # every clip's length: three HLS segments at a 2 s GOP
MAKE_CLIP_WITHIN = 120.0  # encoding a clip, on a busy 2-core machine
# A client connecting: the publisher, then each player. Under the RTMP listener's
# idle_timeout (30 s), which the held publisher is subject to.
JOIN_WITHIN = 20.0
FINISH_WITHIN = CLIP_S + 60.0  # a real-time publish or play, from its start
ENDLIST_WITHIN = 30.0
HLS_READ_WITHIN = 60.0

FFMPEG_QUIET = ("-hide_banner", "-nostdin", "-loglevel", "error")
TESTSRC = "testsrc2=size=320x240:rate={fps}"
SINE = "sine=frequency=440:sample_rate={rate}"


# -- the clips, made by the encoders themselves -------------------------------------


@dataclass(frozen=True)
class Clip:
    """A file an encoder writes (``command(path)``); ``gop_s`` is the keyframe
    interval it must have, checked before it is published."""

    id: str
    command: Callable[[Path], list[str]]
    needs: tuple[Requirement, ...]
    gop_s: float | None


def ffmpeg_clip(
    *, fps: int | None = 30, audio_rate: int | None = 44100, video: Sequence[str] = ()
) -> Callable[[Path], list[str]]:
    """An ffmpeg command encoding CLIP_S seconds of test pattern (libx264, ``video``
    options) and tone (AAC at ``audio_rate``) into FLV; None leaves a track out."""

    def command(path: Path) -> list[str]:
        argv = ["ffmpeg", *FFMPEG_QUIET, "-y"]
        if fps is not None:
            argv += ["-f", "lavfi", "-i", TESTSRC.format(fps=fps)]
        if audio_rate is not None:
            argv += ["-f", "lavfi", "-i", SINE.format(rate=audio_rate)]
        argv += ["-t", str(CLIP_S)]
        if fps is not None:
            argv += ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-b:v", "400k", *video]
        if audio_rate is not None:
            argv += ["-c:a", "aac", "-b:a", "96k", "-ar", str(audio_rate)]
        return [*argv, "-f", "flv", str(path)]

    return command


def _gop(frames: int) -> list[str]:
    """Keyframes every ``frames`` frames exactly: no scene-cut or early keyframes."""
    return ["-g", str(frames), "-keyint_min", str(frames), "-sc_threshold", "0"]


def gst_clip(path: Path) -> list[str]:
    """GStreamer's own encoders: x264enc (its defaults: B-frames, an access unit
    delimiter in every frame) and voaacenc, muxed by flvmux."""
    video_buffers = CLIP_S * 30
    audio_buffers = CLIP_S * 44100 // 1024
    return [
        "gst-launch-1.0", "-q", "-e",
        "videotestsrc", f"num-buffers={video_buffers}", "pattern=smpte", "!",
        "video/x-raw,width=320,height=240,framerate=30/1", "!",
        "x264enc", "key-int-max=60", "bframes=2", "speed-preset=ultrafast", "bitrate=400", "!",
        "h264parse", "!", "queue", "!", "mux.video",
        "audiotestsrc", f"num-buffers={audio_buffers}", "samplesperbuffer=1024", "!",
        "audio/x-raw,rate=44100,channels=2", "!", "voaacenc", "!", "aacparse", "!",
        "queue", "!", "mux.audio",
        "flvmux", "name=mux", "!", "filesink", f"location={path}",
    ]  # fmt: skip


GST_ENCODE = gst(
    ("videotestsrc", "gstreamer1.0-plugins-base"),
    ("audiotestsrc", "gstreamer1.0-plugins-base"),
    ("x264enc", "gstreamer1.0-plugins-ugly"),
    ("voaacenc", "gstreamer1.0-plugins-bad"),
    ("h264parse", "gstreamer1.0-plugins-bad"),
    ("aacparse", "gstreamer1.0-plugins-good"),
    ("flvmux", "gstreamer1.0-plugins-good"),
    ("filesink", "gstreamer1.0-tools"),
)

CLIPS = {
    clip.id: clip
    for clip in (
        # (a) 2 s closed GOPs with B-frames, AAC 44.1 kHz
        Clip("gop2s-bframes", ffmpeg_clip(video=[*_gop(60), "-bf", "2", "-flags", "+cgop",
                                                 "-preset", "ultrafast"]), (FFMPEG,), 2.0),
        # (b) 1 s GOPs at 60 fps, AAC 48 kHz
        Clip("gop1s-60fps-48k", ffmpeg_clip(fps=60, audio_rate=48000,
                                            video=[*_gop(60), "-preset", "ultrafast"]),
             (FFMPEG,), 1.0),
        # (c) baseline profile, -tune zerolatency (no B-frames, no lookahead), 25 fps
        Clip("baseline-zerolatency-25fps", ffmpeg_clip(fps=25, video=[
            "-profile:v", "baseline", "-tune", "zerolatency", "-preset", "veryfast", *_gop(50)]),
             (FFMPEG,), 2.0),
        # (d) audio only
        Clip("audio-only", ffmpeg_clip(fps=None), (FFMPEG,), None),
        # (e) video only
        Clip("video-only", ffmpeg_clip(audio_rate=None, video=[*_gop(60), "-preset", "ultrafast"]),
             (FFMPEG,), 2.0),
        Clip("x264enc-voaacenc", gst_clip, GST_ENCODE, None),
    )
}  # fmt: skip


class ClipStore:
    """Clips made once per session, on first use, so a missing encoder only skips
    the publishers that need it."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._made: dict[str, tuple[Path, Fingerprints]] = {}

    async def get(self, clip: Clip) -> tuple[Path, Fingerprints]:
        if clip.id not in self._made:
            path = self.directory / f"{clip.id}.flv"
            await run_to_end(f"encoding {clip.id}", clip.command(path), MAKE_CLIP_WITHIN)
            published = fingerprint(str(path))
            _check_clip(clip, published)
            self._made[clip.id] = (path, published)
        return self._made[clip.id]


def _check_clip(clip: Clip, published: Fingerprints) -> None:
    """The matrix covers what it says it covers: the encoder made the GOP asked for."""
    assert published.error is None, published.error
    assert published.video or published.audio, f"{clip.id}: an empty clip"
    if published.video:
        assert published.video[0][2], f"{clip.id} does not start on a keyframe"
    if clip.gop_s is not None:
        keyframes = [dts for _, dts, key in published.video if key]
        gaps = [b - a for a, b in itertools.pairwise(keyframes)]
        assert len(keyframes) >= 2, f"{clip.id}: {len(keyframes)} keyframes"
        assert all(abs(gap - clip.gop_s * 1000) <= 50 for gap in gaps), (clip.id, keyframes)


@pytest.fixture(scope="session")
def clips(tmp_path_factory: pytest.TempPathFactory) -> ClipStore:
    return ClipStore(tmp_path_factory.mktemp("conformance-clips"))


# -- publishers and players ---------------------------------------------------------


@dataclass(frozen=True)
class Publisher:
    id: str
    clip: Clip
    needs: tuple[Requirement, ...]
    command: Callable[[str, Path], list[str]]  # (RTMP URL, clip) -> argv


def ffmpeg_publish(url: str, path: Path) -> list[str]:
    return ["ffmpeg", *FFMPEG_QUIET, "-re", "-i", str(path), "-c", "copy", "-f", "flv", url]


def gst_publish(url: str, path: Path) -> list[str]:
    """flvdemux's tracks remuxed by flvmux (as a live encoder's pipeline ends) and
    sent by rtmp2sink; the sink paces buffers by their timestamps, as -re does."""
    return [
        "gst-launch-1.0", "-q",
        "filesrc", f"location={path}", "!", "flvdemux", "name=demux",
        "demux.video", "!", "queue", "!", "mux.video",
        "demux.audio", "!", "queue", "!", "mux.audio",
        "flvmux", "name=mux", "streamable=true", "!",
        "rtmp2sink", f"location={url}", f"timeout={int(JOIN_WITHIN * 2)}",
    ]  # fmt: skip


GST_PUBLISH = gst(
    ("filesrc", "gstreamer1.0-tools"),
    ("flvdemux", "gstreamer1.0-plugins-good"),
    ("flvmux", "gstreamer1.0-plugins-good"),
    ("rtmp2sink", "gstreamer1.0-plugins-bad"),
)

PUBLISHERS = [
    *(
        Publisher(f"ffmpeg-{clip_id}", CLIPS[clip_id], (FFMPEG,), ffmpeg_publish)
        for clip_id in (
            "gop2s-bframes",
            "gop1s-60fps-48k",
            "baseline-zerolatency-25fps",
            "audio-only",
            "video-only",
        )
    ),
    Publisher("gstreamer-rtmp2sink", CLIPS["x264enc-voaacenc"], GST_PUBLISH, gst_publish),
]


@dataclass(frozen=True)
class Player:
    """An RTMP player writing what it receives as FLV (``command(url, path)``).

    ``may_lose_final``: GStreamer's rtmp2src hands messages to its streaming thread
    through a one-buffer slot, and when the stream ends (StreamEOF, or the
    connection closing) its task clears that slot on the way out
    (``gst_buffer_replace (&self->message, NULL)`` in gstrtmp2src.c), so the last
    message often never reaches its pipeline, whoever the server is. That one
    frame, at the very end, is the client's loss; anything else is the server's.
    """

    id: str
    needs: tuple[Requirement, ...]
    command: Callable[[str, Path], list[str]]
    may_lose_final: bool = False


RTMP_PLAYERS = {
    player.id: player
    for player in (
        Player(
            "ffmpeg",
            (FFMPEG,),
            lambda url, out: ["ffmpeg", *FFMPEG_QUIET, "-y", "-i", url, "-c", "copy",
                              "-f", "flv", str(out)],
        ),
        Player(
            "rtmpdump",
            (RTMPDUMP,),
            lambda url, out: ["rtmpdump", "-q", "-r", url, "--live",
                              "-m", str(int(JOIN_WITHIN * 2)), "-o", str(out)],
        ),
        Player(
            "gstreamer-rtmp2src",
            gst(("rtmp2src", "gstreamer1.0-plugins-bad"), ("filesink", "gstreamer1.0-tools")),
            lambda url, out: ["gst-launch-1.0", "-q", "rtmp2src", f"location={url}",
                              f"timeout={int(JOIN_WITHIN * 2)}", "!", "filesink",
                              f"location={out}"],
            may_lose_final=True,
        ),
    )
}  # fmt: skip
HLS_PLAYER = "ffmpeg-hls"
PLAYERS = [*RTMP_PLAYERS, HLS_PLAYER]


# -- one publish, every player ------------------------------------------------------


@dataclass
class Delivery:
    """One publish: what was sent, and what each player got (or how it failed)."""

    publisher: Publisher
    published: Fingerprints
    received: dict[str, Fingerprints] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)


class PlayerGate:
    """``got_stream``: holds the publish, with the stream already in the registry,
    until ``players`` RTMP players are subscribed to it, so each sees the first frame."""

    def __init__(self, players: int) -> None:
        self.players = players
        self.stream: Stream | None = None
        self.watched: list[Child] = []
        self.problem: str | None = None

    async def got_stream(self, request: RTMPRequest, stream: Stream) -> bool:
        self.stream = stream
        loop = asyncio.get_running_loop()
        deadline = loop.time() + JOIN_WITHIN
        while len(stream.players) < self.players:
            gone = [child.name for child in self.watched if child.exited]
            if gone or loop.time() > deadline:
                self.problem = (
                    f"{len(stream.players)} of {self.players} players joined "
                    f"(exited early: {gone or 'none'})"
                )
                return False
            await asyncio.sleep(0.02)
        return True


async def wait_until(predicate: Callable[[], bool], within: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"{what}: not within {within:g}s")
        await asyncio.sleep(0.02)


async def wait_for_endlist(url: str) -> None:
    """Until the playlist is complete (the publisher left and its last segment is in)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + ENDLIST_WITHIN
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        while loop.time() < deadline:
            async with session.get(url) as response:
                if response.status == 200 and "#EXT-X-ENDLIST" in await response.text():
                    return
            await asyncio.sleep(0.05)
    raise AssertionError(f"{url} has no EXT-X-ENDLIST within {ENDLIST_WITHIN:g}s")


async def deliver(publisher: Publisher, clips: ClipStore, workdir: Path) -> Delivery:
    """Publish the publisher's clip once to a fresh server, with every available
    RTMP player joined before its first frame; then read the finished HLS."""
    clip_path, published = await clips.get(publisher.clip)
    delivery = Delivery(publisher, published)
    players = [p for p in RTMP_PLAYERS.values() if not any(n.missing() for n in p.needs)]
    gate = PlayerGate(len(players))
    server = LPMS(
        host="127.0.0.1", rtmp_port=0, http_port=0, settings=Settings(workdir=str(workdir))
    )
    server.handle_rtmp_publish(got_stream=gate.got_stream)
    await server.start()
    name = publisher.id
    url = f"rtmp://127.0.0.1:{server.rtmp_port}/stream/{name}"
    children: dict[str, Child] = {}
    try:
        sender = await Child.start(f"publisher {name}", publisher.command(url, clip_path))
        gate.watched.append(sender)
        await wait_until(
            lambda: gate.stream is not None or sender.exited, JOIN_WITHIN, f"{name} publishing"
        )
        if gate.stream is None:  # it left before asking to publish: say why
            stderr = await sender.finish(FINISH_WITHIN)
            raise AssertionError(f"publisher {name} exited before publishing: {stderr}")
        for player in players:
            out = workdir / f"{player.id}.flv"
            children[player.id] = child = await Child.start(player.id, player.command(url, out))
            gate.watched.append(child)
        try:
            await sender.finish(FINISH_WITHIN)
        except AssertionError as failure:
            raise AssertionError(f"{failure}; gate: {gate.problem}") from None
        for player_id, child in children.items():
            try:
                await child.finish(FINISH_WITHIN)
            except AssertionError as failure:
                delivery.failures[player_id] = str(failure)
                continue
            delivery.received[player_id] = fingerprint(str(workdir / f"{player_id}.flv"))
        hls_url = f"http://127.0.0.1:{server.http_port}/stream/{name}.m3u8"
        try:
            # The master playlist never ends; the source's media playlist does (the
            # audio rendition's, for an audio-only stream).
            track = "audio" if publisher.clip.id == "audio-only" else "source"
            await wait_for_endlist(hls_url.replace(".m3u8", f"/{track}.m3u8"))
            delivery.received[HLS_PLAYER] = await fingerprint_url(
                hls_url, workdir / "hls.json", HLS_READ_WITHIN
            )
        except AssertionError as failure:
            delivery.failures[HLS_PLAYER] = str(failure)
    finally:
        for child in [*children.values(), *gate.watched]:
            await child.kill()
        await server.close()
    return delivery


@pytest_asyncio.fixture(
    scope="module", loop_scope="module", params=PUBLISHERS, ids=[p.id for p in PUBLISHERS]
)
async def delivery(
    request: pytest.FixtureRequest, clips: ClipStore, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Delivery]:
    publisher: Publisher = request.param
    require((*publisher.clip.needs, *publisher.needs), f"publisher {publisher.id}")
    yield await deliver(publisher, clips, tmp_path_factory.mktemp(publisher.id))


@pytest.mark.parametrize("player", PLAYERS)
async def test_player_gets_every_frame(delivery: Delivery, player: str) -> None:
    """Every frame from the first keyframe on, in order, once: over RTMP to a
    player that joined at the start, and in the finished HLS playlist."""
    if player in RTMP_PLAYERS:
        require(RTMP_PLAYERS[player].needs, f"player {player}")
    assert player not in delivery.failures, delivery.failures[player]
    received = delivery.received[player]
    published = delivery.published
    may_lose_final = player in RTMP_PLAYERS and RTMP_PLAYERS[player].may_lose_final
    problems = delivery_problems(published, received, may_lose_final=may_lose_final)
    assert not problems, f"{delivery.publisher.id} -> {player}: " + "; ".join(problems)
    assert received.video_codec == published.video_codec
    assert received.audio_codec == published.audio_codec
