"""Screenshots of the status page with a live stream playing, for the README.

    .venv/bin/python -m tests.e2e.screenshot            # docs/status-page.png (+ -phone)
    .venv/bin/python -m tests.e2e.screenshot --out /tmp/shots --scheme dark

Starts lpms on loopback (ports the OS picks) with one transcoding profile, publishes
a 1280x720 test pattern with FFmpeg (tests/e2e/clients.py), opens ``/`` in headless
Chromium (tests/e2e/browser.py) and, once the video has played a few seconds,
captures a desktop viewport (1280x800) and a whole phone-width page (390 px wide).
The end-to-end test (tests/e2e/test_status_page.py) takes a screenshot of its own
into its temporary directory, so running the tests never rewrites these.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import tempfile
from dataclasses import dataclass
from pathlib import Path

import av

from lpms import LPMS, Settings, TranscodeSettings, parse_profiles
from tests.e2e.browser import DESKTOP, PHONE, DevToolsPage, Viewport, open_page
from tests.e2e.conftest import (
    CLIENT_TIMEOUT,
    ClipFile,
    PublishRefused,
    publish,
    rtmp_url,
    wait_for_stream,
)

DOCS = Path(__file__).resolve().parents[2] / "docs"
STREAM_ID = "stream/studio"
PROFILES = "P360p30fps16x9"
SHOT_CLIP_S = 40.0
SHOT_SIZE = (1280, 720)
SHOT_FPS = 30
SHOT_BITRATE = 2_500_000
PLAYED_S = 4.0  # video seconds played before a screenshot
READY_WITHIN_S = 30.0
# Chromium hides a playing video's controls this long after the last input.
CONTROLS_FADE_S = 3.5

VIDEO_TIME = "document.querySelector('.card video')?.currentTime ?? 0"


@dataclass(frozen=True, slots=True)
class Shot:
    name: str
    viewport: Viewport
    full_page: bool


SHOTS = (Shot("status-page.png", DESKTOP, False), Shot("status-page-phone.png", PHONE, True))


def make_hd_clip(path: Path, seconds: float = SHOT_CLIP_S) -> ClipFile:
    """A 1280x720 test pattern (H.264, 2.5 Mb/s) with a tone (AAC), as FLV."""
    buffer = io.BytesIO()
    out = av.open(buffer, "w", format="flv")
    width, height = SHOT_SIZE
    video_in = av.open(
        f"testsrc2=size={width}x{height}:rate={SHOT_FPS}:duration={seconds}", format="lavfi"
    )
    audio_in = av.open(f"sine=frequency=440:sample_rate=48000:duration={seconds}", format="lavfi")
    video = out.add_stream("libx264", rate=SHOT_FPS)
    video.width, video.height, video.pix_fmt = width, height, "yuv420p"
    video.bit_rate = SHOT_BITRATE
    video.options = {"preset": "veryfast", "g": str(2 * SHOT_FPS), "sc_threshold": "0"}
    audio = out.add_stream("aac", rate=48000)
    audio.bit_rate = 128_000
    packets = []
    for frame in video_in.decode(video=0):
        # lavfi marks every frame as I; left so, x264 would make each an IDR.
        frame.pict_type = av.video.frame.PictureType.NONE
        packets.extend(video.encode(frame))
    packets.extend(video.encode(None))
    for sound in audio_in.decode(audio=0):
        packets.extend(audio.encode(sound))
    packets.extend(audio.encode(None))
    video_in.close()
    audio_in.close()
    packets.sort(key=lambda p: (float(p.dts * p.stream.codec_context.time_base), p.stream.type))
    for packet in packets:
        out.mux(packet)
    out.close()
    path.write_bytes(buffer.getvalue())
    return ClipFile(clip=None, path=path)  # type: ignore[arg-type]  # publish needs the path only


async def wait_until_playing(page: DevToolsPage, seconds: float = PLAYED_S) -> None:
    """Until the first card's video has played ``seconds`` (bounded)."""
    await page.wait_for(f"({VIDEO_TIME}) >= {seconds}", READY_WITHIN_S)


async def capture(
    url: str, out_dir: Path, *, color_scheme: str | None = None, shots: tuple[Shot, ...] = SHOTS
) -> list[Path]:
    """Each shot of the page at ``url`` (a stream playing on it), written to ``out_dir``."""
    written = []
    for shot in shots:
        async with open_page(url, viewport=shot.viewport, color_scheme=color_scheme) as page:
            await wait_until_playing(page)
            await asyncio.sleep(CONTROLS_FADE_S)
            png = await page.screenshot(full_page=shot.full_page)
            if page.errors:
                raise AssertionError(f"the page logged errors\n{page.describe()}")
        path = out_dir / shot.name
        path.write_bytes(png)
        written.append(path)
    return written


async def main(out_dir: Path, color_scheme: str | None) -> list[Path]:
    settings = Settings(transcode=TranscodeSettings(profiles=parse_profiles(PROFILES)))
    server = LPMS(host="127.0.0.1", rtmp_port=0, http_port=0, settings=settings)
    with tempfile.TemporaryDirectory(prefix="lpms-shot-") as scratch:
        clip = make_hd_clip(Path(scratch) / "hd.flv")
        await server.start()
        publisher = asyncio.create_task(publish(rtmp_url(server, STREAM_ID), clip))
        try:
            await wait_for_stream(server, STREAM_ID)
            url = f"http://127.0.0.1:{server.http_port}/"
            return await capture(url, out_dir, color_scheme=color_scheme)
        finally:
            # Closing the server ends the publish; the publisher's process then exits
            # (with an error, as its stream was cut), within its own timeout.
            await server.close()
            with contextlib.suppress(PublishRefused):
                await asyncio.wait_for(publisher, CLIENT_TIMEOUT)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DOCS, help="folder for the PNGs (docs/)")
    parser.add_argument(
        "--scheme", choices=("light", "dark"), help="prefers-color-scheme (default: Chromium's)"
    )
    return parser.parse_args()


if __name__ == "__main__":
    args = parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for written in asyncio.run(main(args.out, args.scheme)):
        print(written)
