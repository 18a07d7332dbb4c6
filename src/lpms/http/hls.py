"""HLS over HTTP: playlists and segments, with the headers players and CDNs need.

URLs (every URI inside a playlist is relative, so any prefix or host works):

- ``/APP/NAME.m3u8`` (or ``/APP/NAME_hls.m3u8``): the master playlist when the
  stream has renditions, else the source's media playlist;
- ``/APP/NAME/RENDITION.m3u8``: one rendition's media playlist;
- ``/APP/NAME/RENDITION/N.ts``: a segment: a file, sent with sendfile; from memory
  only while its file is being written (or when writing it failed).

An application can answer any of these itself (`LPMS.handle_hls_play`); what it
leaves unanswered (None) falls through to the server's own store, and then to
recordings on disk. Nothing here maps a URL to a file path without checking every
component and that the resolved file stays inside the recording directory.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from lpms.callbacks import MaybeAwaitable, call
from lpms.hls.store import HLSStore, HLSStream, safe_relative_path

PLAYLIST_TYPE = "application/vnd.apple.mpegurl"
SEGMENT_TYPE = "video/mp2t"
LIVE_PLAYLIST_CACHE = "no-cache"
ENDED_PLAYLIST_CACHE = "public, max-age=60"
SEGMENT_CACHE = "public, max-age=86400, immutable"
CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, HEAD, OPTIONS",
    "Access-Control-Allow-Headers": "Range",
    "Access-Control-Expose-Headers": "Content-Length, Content-Range, Accept-Ranges",
}
ALIAS_SUFFIX = "_hls"
_SEGMENT_NAME = re.compile(r"(0|[1-9][0-9]{0,17})\.ts")
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


@dataclass(frozen=True, slots=True)
class HLSRequest:
    """An HLS request as the application's callbacks see it."""

    path: str  # the URL path without its leading slash: "stream/test.m3u8"
    query: dict[str, str] = field(default_factory=dict)
    client_ip: str = ""


GetPlaylist = Callable[[HLSRequest], MaybeAwaitable[str | None]]
GetSegment = Callable[[HLSRequest], MaybeAwaitable[bytes | None]]
Authorize = Callable[[HLSRequest], Awaitable[str | None]]
"""None allows an HLS request; a reason refuses it with 403."""
Served = Callable[[HLSRequest, int], None]
"""Told of each playlist or segment served, with its size in bytes."""


def stream_path(path: str) -> tuple[str, str]:
    """(APP, NAME) of the stream an HLS path belongs to: its first two components,
    without ``.m3u8`` and the ``_hls`` alias (``stream/test/source/7.ts`` and
    ``stream/test_hls.m3u8`` are both ``stream``, ``test``)."""
    app, _, rest = path.partition("/")
    name = rest.split("/", 1)[0]
    if "/" not in rest:
        name = name.removesuffix(".m3u8").removesuffix(ALIAS_SUFFIX)
    return app, name


@dataclass(slots=True)
class HLSHandlers:
    """The application's overrides (LPMS's HandleHLSPlay); None means the default."""

    get_master_playlist: GetPlaylist | None = None
    get_media_playlist: GetPlaylist | None = None
    get_segment: GetSegment | None = None


class HLSRoutes:
    """aiohttp handlers over an `HLSStore`."""

    def __init__(
        self,
        store: HLSStore,
        handlers: HLSHandlers,
        authorize: Authorize | None = None,
        on_served: Served | None = None,
    ) -> None:
        self.store = store
        self.handlers = handlers
        self.authorize = authorize
        self.on_served = on_served

    def add_to(self, app: web.Application) -> None:
        app.router.add_route("OPTIONS", "/{path:.+\\.(?:m3u8|ts)}", self.preflight)
        app.router.add_get("/{path:.+\\.m3u8}", self.playlist)
        app.router.add_get("/{path:.+\\.ts}", self.segment)

    async def preflight(self, request: web.Request) -> web.Response:
        return web.Response(status=204, headers=CORS_HEADERS)

    # -- playlists ---------------------------------------------------------------

    async def _check(self, hls_request: HLSRequest) -> None:
        if self.authorize is None:
            return
        refused = await self.authorize(hls_request)
        if refused is not None:
            raise web.HTTPForbidden(text=f"{refused}\n", headers=CORS_HEADERS)

    async def playlist(self, request: web.Request) -> web.StreamResponse:
        path = request.match_info["path"]
        hls_request = _hls_request(request, path)
        await self._check(hls_request)
        return self._served(hls_request, await self._playlist(request, path, hls_request))

    async def segment(self, request: web.Request) -> web.StreamResponse:
        path = request.match_info["path"]
        hls_request = _hls_request(request, path)
        await self._check(hls_request)
        return self._served(hls_request, await self._segment_response(request, path, hls_request))

    def _served(self, hls_request: HLSRequest, response: web.StreamResponse) -> web.StreamResponse:
        if self.on_served is not None and response.status in (200, 206):
            self.on_served(hls_request, _body_size(response))
        return response

    async def _playlist(
        self, request: web.Request, path: str, hls_request: HLSRequest
    ) -> web.StreamResponse:
        for callback in (self.handlers.get_master_playlist, self.handlers.get_media_playlist):
            if callback is not None:
                text = await call(callback, hls_request)
                if text is not None:
                    return _playlist_response(request, text, live=True)
        found = self._live_playlist(path[: -len(".m3u8")])
        if found is not None:
            text, live = found
            return _playlist_response(request, text, live=live)
        return self._recorded(request, path, PLAYLIST_TYPE, ENDED_PLAYLIST_CACHE)

    def _live_playlist(self, name: str) -> tuple[str, bool] | None:
        """(text, live) for ``APP/NAME``, its ``_hls`` alias, or ``APP/NAME/RENDITION``."""
        hls = self.store.get(name)
        if hls is None and name.endswith(ALIAS_SUFFIX):
            hls = self.store.get(name[: -len(ALIAS_SUFFIX)])
        if hls is not None:
            text = hls.top_playlist()
            return None if text is None else (text, hls.live)
        stream_id, _, rendition_name = name.rpartition("/")
        hls = self.store.get(stream_id)
        rendition = hls.renditions.get(rendition_name) if hls is not None else None
        if hls is None or rendition is None or rendition.last_segment is None:
            return None
        # Served at APP/NAME/RENDITION.m3u8, its segments at APP/NAME/RENDITION/N.ts.
        return rendition.media_playlist(f"{rendition_name}/"), not rendition.ended

    # -- segments ----------------------------------------------------------------

    async def _segment_response(
        self, request: web.Request, path: str, hls_request: HLSRequest
    ) -> web.StreamResponse:
        if self.handlers.get_segment is not None:
            data = await call(self.handlers.get_segment, hls_request)
            if data is not None:
                return _bytes_response(request, data, SEGMENT_TYPE, SEGMENT_CACHE)
        found = self._segment(path)
        if isinstance(found, Path) and "Range" in request.headers:
            found = await _read(found)  # ranges answered as they always were (below)
        if isinstance(found, bytes):
            return _bytes_response(request, found, SEGMENT_TYPE, SEGMENT_CACHE)
        if isinstance(found, Path) and found.is_file():
            return _file_response(found, SEGMENT_TYPE, SEGMENT_CACHE)
        return self._recorded(request, path, SEGMENT_TYPE, SEGMENT_CACHE)

    def _segment(self, path: str) -> bytes | Path | None:
        prefix, _, file_name = path.rpartition("/")
        stream_id, _, rendition_name = prefix.rpartition("/")
        match = _SEGMENT_NAME.fullmatch(file_name)
        hls: HLSStream | None = self.store.get(stream_id)
        if match is None or hls is None:
            return None
        rendition = hls.renditions.get(rendition_name)
        if rendition is None:
            return None
        sequence = int(match.group(1))
        return rendition.segment(sequence) or rendition.recorded_segment(sequence)

    # -- recordings ----------------------------------------------------------------

    def _recorded(
        self, request: web.Request, path: str, content_type: str, cache: str
    ) -> web.StreamResponse:
        """A file under the recording directory, or 404."""
        file = self._recording_file(path)
        if file is None:
            raise web.HTTPNotFound(
                text=f"no such stream or segment: /{path}\n", headers=CORS_HEADERS
            )
        return _file_response(file, content_type, cache)

    def _recording_file(self, path: str) -> Path | None:
        root = self.store.workdir
        relative = safe_relative_path(path)
        if root is None or relative is None:
            return None
        try:
            root = root.resolve(strict=True)
            file = (root / relative).resolve(strict=True)
        except OSError:
            return None
        # resolve() followed any symlink: the target must still be inside the root.
        if not file.is_relative_to(root) or not file.is_file():
            return None
        return file


class _RecordingResponse(web.FileResponse):
    """A file from the recordings, with its size known for the byte counters."""

    def __init__(self, file: Path, headers: dict[str, str]) -> None:
        super().__init__(file, headers=headers)
        try:
            self.file_size = file.stat().st_size
        except OSError:
            self.file_size = 0


def _body_size(response: web.StreamResponse) -> int:
    if isinstance(response, _RecordingResponse):
        return response.file_size  # served whole or, for a range, in part: an estimate
    body = response.body if isinstance(response, web.Response) else None
    return len(body) if isinstance(body, bytes | bytearray) else 0


async def _read(file: Path) -> bytes | None:
    """A live segment's bytes, read off the loop, for a range request: aiohttp's
    FileResponse answers some ranges (several, other units) with 416 where a whole
    200 is what players have always had here. Players seldom ask for ranges of
    segments; every other request is sent with sendfile."""
    try:
        return await asyncio.get_running_loop().run_in_executor(None, file.read_bytes)
    except OSError:
        return None  # deleted as it slid out: a 404, as for any segment gone


def _hls_request(request: web.Request, path: str) -> HLSRequest:
    return HLSRequest(path, dict(request.query), request.remote or "")


def _playlist_response(request: web.Request, text: str, *, live: bool) -> web.StreamResponse:
    cache = LIVE_PLAYLIST_CACHE if live else ENDED_PLAYLIST_CACHE
    return _bytes_response(request, text.encode(), PLAYLIST_TYPE, cache)


def _file_response(file: Path, content_type: str, cache: str) -> web.FileResponse:
    # aiohttp's FileResponse answers HEAD and byte ranges itself.
    headers = {"Content-Type": content_type, "Cache-Control": cache, **CORS_HEADERS}
    return _RecordingResponse(file, headers)


def _bytes_response(
    request: web.Request, data: bytes, content_type: str, cache: str
) -> web.Response:
    headers = {"Cache-Control": cache, "Accept-Ranges": "bytes", **CORS_HEADERS}
    header = request.headers.get("Range")
    if header is None or _RANGE.fullmatch(header.strip()) is None:
        # No range, or one we do not serve (other units, several ranges): the whole
        # body, as RFC 9110 14.2 allows.
        return web.Response(body=data, content_type=content_type, headers=headers)
    span = parse_range(header, len(data))
    if span is None:
        headers["Content-Range"] = f"bytes */{len(data)}"
        raise web.HTTPRequestRangeNotSatisfiable(headers=headers)
    start, end = span
    headers["Content-Range"] = f"bytes {start}-{end - 1}/{len(data)}"
    return web.Response(
        status=206, body=data[start:end], content_type=content_type, headers=headers
    )


def parse_range(header: str, size: int) -> tuple[int, int] | None:
    """``(start, end)`` (end exclusive) for a single byte range, or None when it is
    not one or cannot be satisfied (RFC 9110 14.1.2)."""
    match = _RANGE.fullmatch(header.strip())
    if match is None or size == 0:
        return None
    first, last = match.groups()
    if not first:
        if not last or int(last) == 0:
            return None
        return max(size - int(last), 0), size  # the last N bytes
    start = int(first)
    end = min(int(last) + 1, size) if last else size
    if start >= size or end <= start:
        return None
    return start, end
