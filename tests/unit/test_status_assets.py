"""The status page's files (lpms/http/static) and the routes that serve them
(lpms/http/status.py), through aiohttp's test client: no server, no browser."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from lpms.http import status
from lpms.http.status import STATIC_FILES, add_status_routes, read_static

ROOT = Path(__file__).resolve().parents[2]
STATIC = ROOT / "src" / "lpms" / "http" / "static"
NODE_HLS_JS = ROOT / "tests" / "e2e" / "browser" / "node_modules" / "hls.js"


@pytest.fixture
async def client() -> AsyncIterator[TestClient[web.Request, web.Application]]:
    app = web.Application()
    add_status_routes(app)
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


# -- the vendored hls.js ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("vendored", "upstream"),
    [("vendor/hls.min.js", "dist/hls.min.js"), ("vendor/hls.js-LICENSE", "LICENSE")],
)
def test_vendored_hls_js_is_the_pinned_npm_package(vendored: str, upstream: str) -> None:
    """An upgrade of the pin in tests/e2e/browser/package-lock.json must be copied
    into lpms/http/static/vendor too (cp node_modules/hls.js/dist/hls.min.js ...)."""
    source = NODE_HLS_JS / upstream
    if not source.is_file():
        pytest.skip(f"hls.js is not installed at {NODE_HLS_JS}: make browser-deps")
    assert read_static(vendored) == source.read_bytes(), (
        f"src/lpms/http/static/{vendored} differs from {source}: copy it over"
    )


def test_every_static_file_is_in_the_package_and_served() -> None:
    on_disk = {
        path.relative_to(STATIC).as_posix()
        for path in STATIC.rglob("*")
        if path.is_file() and path.name != status.PAGE_FILE
    }
    assert on_disk == set(STATIC_FILES)


# -- the page's own rules --------------------------------------------------------------


def test_page_loads_nothing_from_another_origin() -> None:
    for name in (status.PAGE_FILE, "status.css", "status.js"):
        text = read_static(name).decode()
        # A URL with a scheme or a protocol-relative one, outside an SVG namespace.
        text = text.replace('xmlns="http://www.w3.org/2000/svg"', "")
        assert not re.search(r"(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text, re.I), name
        assert "@import" not in text, name
        assert "@font-face" not in text, name


def test_page_script_never_writes_markup() -> None:
    script = read_static("status.js").decode()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in script


def test_page_links_only_served_assets() -> None:
    page = read_static(status.PAGE_FILE).decode()
    linked = set(re.findall(r'"/static/([^"?]+)"', page))
    assert linked == {"favicon.svg", "status.css", "status.js", "vendor/hls.min.js"}
    assert linked <= set(STATIC_FILES)


# -- serving ---------------------------------------------------------------------------


async def test_page_is_html_with_versioned_asset_links(
    client: TestClient[web.Request, web.Application],
) -> None:
    response = await client.get("/")
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    assert response.headers["Cache-Control"] == "no-cache"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    page = await response.text()
    for name in ("status.css", "status.js", "vendor/hls.min.js", "favicon.svg"):
        version = status.make_asset(read_static(name), "").version
        assert f'"/static/{name}?v={version}"' in page


@pytest.mark.parametrize("name", sorted(STATIC_FILES))
async def test_each_asset_with_its_content_type(
    client: TestClient[web.Request, web.Application], name: str
) -> None:
    response = await client.get(f"/static/{name}")
    assert response.status == 200
    assert response.headers["Content-Type"] == STATIC_FILES[name]
    assert response.headers["Cache-Control"] == "no-cache"
    assert await response.read() == (STATIC / name).read_bytes()


async def test_current_version_is_cached_for_good(
    client: TestClient[web.Request, web.Application],
) -> None:
    version = status.make_asset(read_static("status.js"), "").version
    response = await client.get(f"/static/status.js?v={version}")
    assert response.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    stale = await client.get("/static/status.js?v=000000000000")
    assert stale.headers["Cache-Control"] == "no-cache"


async def test_etag_revalidates(client: TestClient[web.Request, web.Application]) -> None:
    first = await client.get("/static/status.css")
    etag = first.headers["ETag"]
    again = await client.get("/static/status.css", headers={"If-None-Match": f'"x", {etag}'})
    assert again.status == 304
    assert await again.read() == b""
    page = await client.get(
        "/", headers={"If-None-Match": "W/" + (await client.get("/")).headers["ETag"]}
    )
    assert page.status == 304
    changed = await client.get("/static/status.css", headers={"If-None-Match": '"other"'})
    assert changed.status == 200


async def test_head_has_no_body(client: TestClient[web.Request, web.Application]) -> None:
    response = await client.head("/static/vendor/hls.min.js")
    assert response.status == 200
    assert int(response.headers["Content-Length"]) == len(read_static("vendor/hls.min.js"))


@pytest.mark.parametrize(
    "path",
    [
        "/static/",
        "/static/index.html",
        "/static/missing.js",
        "/static/vendor/",
        "/static/vendor/hls.min.js.map",
        "/static/status.js/",
        "/static/../status.py",
        "/static/%2e%2e/status.py",
        "/static/..%2fstatus.py",
        "/static/vendor/..%2f..%2fstatus.py",
        "/static/./status.js%00",
        "/static//etc/passwd",
        "/static/%2Fetc%2Fpasswd",
        "/static/STATUS.JS",
    ],
)
async def test_anything_else_is_404(
    client: TestClient[web.Request, web.Application], path: str
) -> None:
    response = await client.get(path)
    assert response.status == 404
