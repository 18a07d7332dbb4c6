"""The status page at ``/`` and its assets at ``/static/NAME``.

The page (``static/index.html``, ``status.css``, ``status.js``) and hls.js
(``static/vendor/hls.min.js``, copied from the npm package that
``tests/e2e/browser/package-lock.json`` pins) are package data, read once through
`importlib.resources`, so an installed lpms needs no network and no CDN.

Only the files in `STATIC_FILES` are served: the route matches those names and no
other, and a name is looked up in that table, never joined to a path, so no request
can reach another file. The page links each
asset with ``?v=`` and the first 12 hex digits of its SHA-256; a request carrying the
current digest is cached for a year (``immutable``), anything else must revalidate
(``no-cache``, with an ``ETag``), so an upgraded server never meets stale assets.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources

from aiohttp import web

PACKAGE = "lpms.http"
STATIC_DIR = "static"
PAGE_FILE = "index.html"
STATIC_PREFIX = "/static/"

STATIC_FILES: dict[str, str] = {
    "status.css": "text/css; charset=utf-8",
    "status.js": "text/javascript; charset=utf-8",
    "favicon.svg": "image/svg+xml",
    "vendor/hls.min.js": "text/javascript; charset=utf-8",
    "vendor/hls.js-LICENSE": "text/plain; charset=utf-8",
}
"""Every asset ``/static/`` serves, with its Content-Type."""

PAGE_CONTENT_TYPE = "text/html; charset=utf-8"
VERSION_LENGTH = 12  # hex digits of the SHA-256 in ``?v=``
VERSIONED_CACHE = "public, max-age=31536000, immutable"
REVALIDATE_CACHE = "no-cache"

# The page loads only its own assets, the API and the HLS it plays; hls.js feeds the
# <video> through a blob: URL (Media Source Extensions) and runs its demuxer in a
# blob: worker.
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "media-src 'self' blob:",
        "worker-src 'self' blob:",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)
COMMON_HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin"}


@dataclass(frozen=True, slots=True)
class Asset:
    """One file as it is served."""

    body: bytes
    content_type: str
    version: str  # the first VERSION_LENGTH hex digits of the body's SHA-256

    @property
    def etag(self) -> str:
        return f'"{self.version}"'


def read_static(name: str) -> bytes:
    """A file under ``lpms/http/static`` (``name`` uses ``/`` between folders)."""
    resource = resources.files(PACKAGE).joinpath(STATIC_DIR)
    for part in name.split("/"):
        resource = resource.joinpath(part)
    return resource.read_bytes()


def make_asset(body: bytes, content_type: str) -> Asset:
    return Asset(body, content_type, hashlib.sha256(body).hexdigest()[:VERSION_LENGTH])


def load_assets() -> dict[str, Asset]:
    return {name: make_asset(read_static(name), kind) for name, kind in STATIC_FILES.items()}


def versioned_page(page: bytes, assets: dict[str, Asset]) -> bytes:
    """The page with each ``"/static/NAME"`` it links given ``?v=VERSION``."""
    for name, asset in assets.items():
        link = f'"{STATIC_PREFIX}{name}"'.encode()
        page = page.replace(link, f'"{STATIC_PREFIX}{name}?v={asset.version}"'.encode())
    return page


class StatusRoutes:
    """aiohttp handlers for the page and its assets, all held in memory."""

    def __init__(self) -> None:
        self.assets = load_assets()
        self.page = make_asset(
            versioned_page(read_static(PAGE_FILE), self.assets), PAGE_CONTENT_TYPE
        )

    def add_to(self, app: web.Application) -> None:
        app.router.add_get("/", self.index)
        # Only the known names match, so that anything else under /static/ (such as
        # the HLS of a stream published as static/NAME) is left to other routes.
        names = "|".join(re.escape(name) for name in self.assets)
        app.router.add_get(STATIC_PREFIX + "{name:(?:" + names + ")}", self.static)

    async def index(self, request: web.Request) -> web.Response:
        headers = {"Content-Security-Policy": CONTENT_SECURITY_POLICY}
        return _respond(request, self.page, REVALIDATE_CACHE, headers)

    async def static(self, request: web.Request) -> web.Response:
        asset = self.assets.get(request.match_info["name"])
        if asset is None:
            raise web.HTTPNotFound(text="no such file\n", headers=COMMON_HEADERS)
        current = request.query.get("v") == asset.version
        return _respond(request, asset, VERSIONED_CACHE if current else REVALIDATE_CACHE)


def _respond(
    request: web.Request, asset: Asset, cache: str, extra: dict[str, str] | None = None
) -> web.Response:
    headers = {**COMMON_HEADERS, "Cache-Control": cache, "ETag": asset.etag, **(extra or {})}
    tags = _etags(request.headers.get("If-None-Match", ""))
    if asset.etag in tags or "*" in tags:
        return web.Response(status=304, headers=headers)
    return web.Response(body=asset.body, headers={**headers, "Content-Type": asset.content_type})


def _etags(header: str) -> set[str]:
    """The entity tags of an ``If-None-Match`` header (RFC 9110 §13.1.2); weak
    tags compare as strong ones, as that section allows for this header."""
    return {tag.strip().removeprefix("W/") for tag in header.split(",")}


def add_status_routes(app: web.Application) -> None:
    """``GET /`` (the status page) and ``GET /static/NAME`` (its assets)."""
    StatusRoutes().add_to(app)
