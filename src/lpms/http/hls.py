"""HLS and DASH over HTTP: playlists, MPDs, segments, parts and init segments, with
the headers players and CDNs need.

URLs (every URI inside a playlist or MPD is relative, so any prefix or host works):

- ``/APP/NAME.m3u8`` (or ``/APP/NAME_hls.m3u8``): the master playlist (for MPEG-TS
  without renditions, the source's media playlist);
- ``/APP/NAME/RENDITION.m3u8``: one rendition's media playlist; for LL-HLS it takes
  ``_HLS_msn``/``_HLS_part`` (blocking reload: answered once that part exists, 400
  for one too far ahead, 503 after three target durations) and ``_HLS_skip=YES``
  (a delta update);
- ``/APP/NAME/RENDITION/N.ts``: an MPEG-TS segment; ``/APP/NAME/RENDITION/EPOCH/N.m4s``,
  ``.../EPOCH/N.P.m4s`` and ``.../EPOCH/init-K.mp4``: a CMAF segment, part and init
  segment (a request for the part a preload hint names waits for it);
- ``/APP/NAME.mpd``: DASH over the same CMAF segments.

Caching: segments, parts and init segments never change content (the epoch in their
path is new at every publish that starts a stream afresh), so they are cached for a
year, immutable; one that does not exist yet is a 404 nobody may store. Playlists
and MPDs carry an ETag (and Last-Modified) and are answered 304 when unchanged; a
live one is fresh for a second, a blocking reload's answer (its query in the cache
key) for six target durations (RFC 8216bis appendix B.1).

An application can answer playlists and segments itself (`LPMS.handle_hls_play`);
what it leaves unanswered (None) falls through to the server's own store, and then
to recordings on disk. Nothing here maps a URL to a file path without checking every
component and that the resolved file stays inside the recording directory.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from email.utils import formatdate
from pathlib import Path

from aiohttp import web

from lpms.callbacks import MaybeAwaitable, call
from lpms.dash.mpd import DASHSource, render_mpd
from lpms.hls.rendition import FilePart, Rendition
from lpms.hls.settings import HLSFormat
from lpms.hls.store import AUDIO, HLSStore, HLSStream, safe_relative_path

PLAYLIST_TYPE = "application/vnd.apple.mpegurl"
MPD_TYPE = "application/dash+xml"
SEGMENT_TYPE = "video/mp2t"
FMP4_TYPE = "video/mp4"
LIVE_PLAYLIST_CACHE = "public, max-age=1"
ENDED_PLAYLIST_CACHE = "public, max-age=60"
SEGMENT_CACHE = "public, max-age=31536000, immutable"
NOT_YET_CACHE = "no-store"
BLOCKING_CACHED_TARGETS = 6  # a blocking reload's answer: six target durations (B.1)
BLOCKING_TIMEOUT_TARGETS = 3  # answered 503 past three target durations (6.2.5.2)
CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, HEAD, OPTIONS",
    "Access-Control-Allow-Headers": "Range, If-None-Match, If-Modified-Since",
    "Access-Control-Expose-Headers": "Content-Length, Content-Range, Accept-Ranges, ETag, Date",
}
NOT_YET_HEADERS = {"Cache-Control": NOT_YET_CACHE, **CORS_HEADERS}  # what may come later
ALIAS_SUFFIX = "_hls"
_NUMBER = r"(0|[1-9][0-9]{0,17})"
_SEGMENT_NAME = re.compile(rf"{_NUMBER}\.ts")
_CMAF_NAME = re.compile(rf"{_NUMBER}(?:\.{_NUMBER})?\.m4s")
_INIT_NAME = re.compile(rf"init-{_NUMBER}\.mp4")
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")
_QUERY_NUMBER = re.compile(r"0|[1-9][0-9]{0,17}")


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
    without ``.m3u8``/``.mpd`` and the ``_hls`` alias (``stream/test/source/7.ts``
    and ``stream/test_hls.m3u8`` are both ``stream``, ``test``)."""
    app, _, rest = path.partition("/")
    name = rest.split("/", 1)[0]
    if "/" not in rest:
        name = name.removesuffix(".m3u8").removesuffix(".mpd").removesuffix(ALIAS_SUFFIX)
    return app, name


@dataclass(slots=True)
class HLSHandlers:
    """The application's overrides (LPMS's HandleHLSPlay); None means the default."""

    get_master_playlist: GetPlaylist | None = None
    get_media_playlist: GetPlaylist | None = None
    get_segment: GetSegment | None = None


@dataclass(frozen=True, slots=True)
class _Blocking:
    """A playlist request's LL-HLS query (RFC 8216bis 6.2.5)."""

    msn: int | None
    part: int | None
    skip: bool


class _BadRequest(Exception):
    pass


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
        app.router.add_route("OPTIONS", "/{path:.+\\.(?:m3u8|ts|m4s|mp4|mpd)}", self.preflight)
        app.router.add_get("/{path:.+\\.m3u8}", self.playlist)
        app.router.add_get("/{path:.+\\.mpd}", self.mpd)
        app.router.add_get("/{path:.+\\.(?:ts|m4s|mp4)}", self.segment)

    async def preflight(self, request: web.Request) -> web.Response:
        return web.Response(status=204, headers=CORS_HEADERS)

    async def _check(self, hls_request: HLSRequest) -> None:
        if self.authorize is None:
            return
        refused = await self.authorize(hls_request)
        if refused is not None:
            raise web.HTTPForbidden(text=f"{refused}\n", headers=CORS_HEADERS)

    def _served(self, hls_request: HLSRequest, response: web.StreamResponse) -> web.StreamResponse:
        if self.on_served is not None and response.status in (200, 206):
            self.on_served(hls_request, _body_size(response))
        return response

    # -- playlists ---------------------------------------------------------------

    async def playlist(self, request: web.Request) -> web.StreamResponse:
        path = request.match_info["path"]
        hls_request = _hls_request(request, path)
        await self._check(hls_request)
        return self._served(hls_request, await self._playlist(request, path, hls_request))

    async def _playlist(
        self, request: web.Request, path: str, hls_request: HLSRequest
    ) -> web.StreamResponse:
        for callback in (self.handlers.get_master_playlist, self.handlers.get_media_playlist):
            if callback is not None:
                text = await call(callback, hls_request)
                if text is not None:
                    return _text_response(request, text, PLAYLIST_TYPE, LIVE_PLAYLIST_CACHE)
        name = path[: -len(".m3u8")]
        hls = self._stream(name)
        if hls is not None:
            text = hls.top_playlist()
            if text is not None:
                cache = LIVE_PLAYLIST_CACHE if hls.live else ENDED_PLAYLIST_CACHE
                return _text_response(request, text, PLAYLIST_TYPE, cache)
        else:
            found = await self._media_playlist(request, name)
            if found is not None:
                return found
        return self._recorded(request, path, PLAYLIST_TYPE, ENDED_PLAYLIST_CACHE)

    def _stream(self, name: str) -> HLSStream | None:
        """The stream served at ``APP/NAME`` or its ``_hls`` alias."""
        hls = self.store.get(name)
        if hls is None and name.endswith(ALIAS_SUFFIX):
            hls = self.store.get(name[: -len(ALIAS_SUFFIX)])
        return hls

    async def _media_playlist(self, request: web.Request, name: str) -> web.StreamResponse | None:
        """``APP/NAME/RENDITION``'s playlist, held for a blocking reload."""
        stream_id, _, rendition_name = name.rpartition("/")
        hls = self.store.get(stream_id)
        rendition = hls.renditions.get(rendition_name) if hls is not None else None
        if hls is None or rendition is None:
            return None
        try:
            blocking = _blocking_query(request)
        except _BadRequest as exc:
            raise web.HTTPBadRequest(text=f"{exc}\n", headers=CORS_HEADERS) from None
        held = rendition.part_target is not None and not rendition.ended
        if held and blocking.msn is not None:
            await self._hold(rendition, blocking.msn, blocking.part)
        text = hls.media_playlist(rendition_name, skip=blocking.skip and held)
        if text is None:
            return None
        if not hls.live or rendition.ended:
            cache = ENDED_PLAYLIST_CACHE
        elif held and blocking.msn is not None:
            cache = f"public, max-age={BLOCKING_CACHED_TARGETS * rendition.target_duration}"
        else:
            cache = LIVE_PLAYLIST_CACHE
        return _text_response(request, text, PLAYLIST_TYPE, cache, rendition.modified)

    async def _hold(self, rendition: Rendition, msn: int, part: int | None) -> None:
        """Wait until ``rendition`` holds segment ``msn`` (part ``part``), or answer
        400 for one too far ahead and 503 once three target durations have passed."""
        last_msn = rendition.next_sequence - 1
        open_msn, open_parts = rendition.next_part()
        part_target = rendition.part_target or 1.0
        advance_limit = 3 / part_target if part_target < 1 else 3  # 6.2.5.2
        ahead = msn > last_msn + 2
        if part is not None and msn >= open_msn:
            parts_ahead = (
                part
                - open_parts
                + (msn - open_msn) * round(rendition.settings.segment_duration / part_target)
            )
            ahead = ahead or parts_ahead > advance_limit
        if ahead:
            raise web.HTTPBadRequest(
                text=f"_HLS_msn={msn} _HLS_part={part} is too far ahead of the playlist\n",
                headers=CORS_HEADERS,
            )
        if not await _wait_for(rendition, lambda: rendition.has(msn, part)):
            raise web.HTTPServiceUnavailable(
                text="the playlist did not get that part in time\n", headers=NOT_YET_HEADERS
            )

    # -- DASH ----------------------------------------------------------------------

    async def mpd(self, request: web.Request) -> web.StreamResponse:
        path = request.match_info["path"]
        hls_request = _hls_request(request, path)
        await self._check(hls_request)
        hls = self._stream(path[: -len(".mpd")])
        text = None
        if hls is not None and hls.container is HLSFormat.FMP4:
            videos = [r for name, r in hls.renditions.items() if name != AUDIO]
            source = DASHSource(
                name=hls.name,
                videos=[r for r in videos if r.timing],
                audio=hls.renditions.get(AUDIO),
                timelines=hls.timelines,
                segment_duration=hls.settings.segment_duration,
                ended=not hls.live,
            )
            text = render_mpd(source, time.time())
        if text is None:
            raise web.HTTPNotFound(
                text=f"no such DASH stream: /{path}\n",
                headers=NOT_YET_HEADERS,
            )
        cache = LIVE_PLAYLIST_CACHE if hls is not None and hls.live else ENDED_PLAYLIST_CACHE
        return self._served(hls_request, _text_response(request, text, MPD_TYPE, cache))

    # -- segments, parts, init segments ----------------------------------------------

    async def segment(self, request: web.Request) -> web.StreamResponse:
        path = request.match_info["path"]
        hls_request = _hls_request(request, path)
        await self._check(hls_request)
        return self._served(hls_request, await self._segment_response(request, path, hls_request))

    async def _segment_response(
        self, request: web.Request, path: str, hls_request: HLSRequest
    ) -> web.StreamResponse:
        content_type = SEGMENT_TYPE if path.endswith(".ts") else FMP4_TYPE
        if self.handlers.get_segment is not None:
            data = await call(self.handlers.get_segment, hls_request)
            if data is not None:
                return _bytes_response(request, data, content_type, SEGMENT_CACHE)
        found = await self._media(path)
        if isinstance(found, tuple):
            found = await _read_part(found)
        elif isinstance(found, Path) and "Range" in request.headers:
            found = await _read(found)  # ranges answered as they always were (below)
        if isinstance(found, bytes):
            return _bytes_response(request, found, content_type, SEGMENT_CACHE)
        if isinstance(found, Path) and found.is_file():
            return _file_response(found, content_type, SEGMENT_CACHE)
        return self._recorded(request, path, content_type, SEGMENT_CACHE)

    async def _media(self, path: str) -> bytes | Path | FilePart | None:
        """A segment, part or init segment of a live (or recently ended) stream."""
        prefix, _, file_name = path.rpartition("/")
        rendition = self._rendition_at(prefix)
        if rendition is not None:  # APP/NAME/RENDITION/N.ts
            match = _SEGMENT_NAME.fullmatch(file_name)
            if match is None or rendition.container is not HLSFormat.TS:
                return None
            sequence = int(match.group(1))
            return rendition.segment(sequence) or rendition.recorded_segment(sequence)
        prefix, _, epoch = prefix.rpartition("/")
        rendition = self._rendition_at(prefix)
        if rendition is None or rendition.container is not HLSFormat.FMP4:
            return None
        if epoch != rendition.epoch:
            return None  # another publish's: only a recording can have it
        init = _INIT_NAME.fullmatch(file_name)
        if init is not None:
            return rendition.init(int(init.group(1)))
        match = _CMAF_NAME.fullmatch(file_name)
        if match is None:
            return None
        sequence = int(match.group(1))
        if match.group(2) is None:
            return rendition.segment(sequence) or rendition.recorded_segment(sequence)
        index = int(match.group(2))
        if rendition.part(sequence, index) is None and rendition.next_part() == (sequence, index):
            # The part a preload hint names is answered as soon as it is complete
            # (RFC 8216bis 6.2.6); after three target durations, a 404 nobody stores.
            await _wait_for(rendition, lambda: rendition.part(sequence, index) is not None)
        return rendition.part(sequence, index)

    def _rendition_at(self, prefix: str) -> Rendition | None:
        stream_id, _, rendition_name = prefix.rpartition("/")
        hls: HLSStream | None = self.store.get(stream_id)
        return hls.renditions.get(rendition_name) if hls is not None else None

    # -- recordings ----------------------------------------------------------------

    def _recorded(
        self, request: web.Request, path: str, content_type: str, cache: str
    ) -> web.StreamResponse:
        """A file under the recording directory, or 404 (not stored: it may be a
        segment or part still to come)."""
        file = self._recording_file(path)
        if file is None:
            raise web.HTTPNotFound(
                text=f"no such stream or segment: /{path}\n",
                headers=NOT_YET_HEADERS,
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


async def _wait_for(rendition: Rendition, ready: Callable[[], bool]) -> bool:
    """Wait on the rendition's changes (a future, no task) until ``ready()`` or its
    end; False once three target durations have passed without."""
    deadline = time.monotonic() + BLOCKING_TIMEOUT_TARGETS * rendition.target_duration
    while not ready() and not rendition.ended:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        try:
            async with asyncio.timeout(remaining):
                await rendition.changed()
        except TimeoutError:
            continue
    return True


def _blocking_query(request: web.Request) -> _Blocking:
    """``_HLS_msn``, ``_HLS_part`` and ``_HLS_skip``, checked (RFC 8216bis 6.2.5)."""
    query = request.query
    msn = _query_number(query.get("_HLS_msn"), "_HLS_msn")
    part = _query_number(query.get("_HLS_part"), "_HLS_part")
    if part is not None and msn is None:
        raise _BadRequest("_HLS_part needs _HLS_msn")
    skip = query.get("_HLS_skip") in ("YES", "v2")
    return _Blocking(msn, part, skip)


def _query_number(value: str | None, name: str) -> int | None:
    if value is None:
        return None
    if _QUERY_NUMBER.fullmatch(value) is None:
        raise _BadRequest(f"{name} must be a whole number, not {value!r}")
    return int(value)


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


async def _read_part(place: FilePart) -> bytes | None:
    """A part of a segment already on disk: its slice of the file, read off the loop."""
    file, offset, size = place

    def read() -> bytes:
        with file.open("rb") as handle:
            return os.pread(handle.fileno(), size, offset)

    try:
        data = await asyncio.get_running_loop().run_in_executor(None, read)
    except OSError:
        return None
    return data if len(data) == size else None


def _hls_request(request: web.Request, path: str) -> HLSRequest:
    return HLSRequest(path, dict(request.query), request.remote or "")


def _text_response(
    request: web.Request,
    text: str,
    content_type: str,
    cache: str,
    modified: float | None = None,
) -> web.StreamResponse:
    """A playlist or MPD, with an ETag of its content: 304 when the player has it."""
    body = text.encode()
    etag = '"' + hashlib.blake2b(body, digest_size=12).hexdigest() + '"'
    headers = {"ETag": etag, "Cache-Control": cache, **CORS_HEADERS}
    if modified is not None:
        headers["Last-Modified"] = formatdate(modified, usegmt=True)
    if etag in _etags(request.headers.get("If-None-Match", "")):
        return web.Response(status=304, headers=headers)
    return _bytes_response(request, body, content_type, cache, extra=headers)


def _etags(header: str) -> set[str]:
    return {tag.strip().removeprefix("W/") for tag in header.split(",") if tag.strip()}


def _file_response(file: Path, content_type: str, cache: str) -> web.FileResponse:
    # aiohttp's FileResponse answers HEAD and byte ranges itself.
    headers = {"Content-Type": content_type, "Cache-Control": cache, **CORS_HEADERS}
    return _RecordingResponse(file, headers)


def _bytes_response(
    request: web.Request,
    data: bytes,
    content_type: str,
    cache: str,
    extra: dict[str, str] | None = None,
) -> web.Response:
    headers = {"Cache-Control": cache, "Accept-Ranges": "bytes", **CORS_HEADERS, **(extra or {})}
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
