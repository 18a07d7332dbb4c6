"""HTTP side of the server (aiohttp, same event loop as RTMP).

For now: a plain status page and a JSON list of live streams. HLS playlists and
segments, metrics and the player page hang off this app as they land.
"""

from __future__ import annotations

import time

from aiohttp import web

from lpms.media.registry import StreamRegistry
from lpms.media.stream import Stream
from lpms.metrics import CONTENT_TYPE, Metrics

REGISTRY_KEY = web.AppKey("registry", StreamRegistry)
METRICS_KEY = web.AppKey("metrics", Metrics)


def stream_summary(stream: Stream) -> dict[str, object]:
    """What the API says about one live stream."""
    return {
        "id": stream.id,
        "uptime_s": round(time.monotonic() - stream.started_at, 3),
        "has_video": stream.has_video,
        "has_audio": stream.has_audio,
        "subscribers": stream.subscriber_count,
        "packets_in": stream.packets_in,
        "bytes_in": stream.bytes_in,
    }


async def index(request: web.Request) -> web.Response:
    registry: StreamRegistry = request.app[REGISTRY_KEY]
    streams = list(registry)
    lines = ["lpms", "", f"{len(streams)} live stream(s)"]
    lines += [f"  {s.id}  players={s.subscriber_count}" for s in streams]
    return web.Response(text="\n".join(lines) + "\n")


async def api_streams(request: web.Request) -> web.Response:
    registry: StreamRegistry = request.app[REGISTRY_KEY]
    return web.json_response({"streams": [stream_summary(s) for s in registry]})


async def metrics(request: web.Request) -> web.Response:
    body = request.app[METRICS_KEY].render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


def make_app(
    registry: StreamRegistry, server_metrics: Metrics, max_body_bytes: int
) -> web.Application:
    app = web.Application(client_max_size=max_body_bytes)
    app[REGISTRY_KEY] = registry
    app[METRICS_KEY] = server_metrics
    app.router.add_get("/", index)
    app.router.add_get("/api/streams", api_streams)
    app.router.add_get("/metrics", metrics)
    return app
