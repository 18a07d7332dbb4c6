"""HTTP side of the server (aiohttp, same event loop as RTMP): the JSON API, the
Prometheus metrics and the status page; `lpms.http.hls` adds the HLS routes."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from lpms.http.api import add_api_routes
from lpms.http.status import add_status_routes
from lpms.metrics import CONTENT_TYPE, Metrics

if TYPE_CHECKING:
    from lpms.server import LPMS

METRICS_KEY = web.AppKey("metrics", Metrics)


async def metrics(request: web.Request) -> web.Response:
    body = request.app[METRICS_KEY].render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


def make_app(server: LPMS, max_body_bytes: int) -> web.Application:
    app = web.Application(client_max_size=max_body_bytes)
    app[METRICS_KEY] = server.metrics
    app.router.add_get("/metrics", metrics)
    add_api_routes(app, server)
    add_status_routes(app)
    return app
