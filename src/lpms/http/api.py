"""The JSON API under ``/api/``: live streams and their measured tracks, the server,
kicking a publisher or a player, and the OpenAPI description of all of it.

Reading is open, as a status page is. Kicking changes what others see, so it needs
``Authorization: Bearer TOKEN`` when ``Settings.auth.api_token`` is set, and without
a token it is allowed from loopback clients only. Every error is JSON,
``{"error": {"status": 404, "reason": "..."}}``, unknown ``/api/`` paths included.
"""

from __future__ import annotations

import hmac
import ipaddress
import time
from typing import TYPE_CHECKING, Any

from aiohttp import web

from lpms.http.openapi import OPENAPI
from lpms.media.packet import CodecConfig
from lpms.media.stream import Stream, Subscription

if TYPE_CHECKING:
    from lpms.server import LPMS

SERVER_KEY = web.AppKey("server", object)


def add_api_routes(app: web.Application, server: LPMS) -> None:
    app[SERVER_KEY] = server
    app.router.add_get("/api/server", server_info)
    app.router.add_get("/api/streams", list_streams)
    app.router.add_get("/api/openapi.json", openapi)
    app.router.add_delete("/api/players/{player_id}", kick_player)
    app.router.add_get("/api/streams/{stream_id:.+}", get_stream)
    app.router.add_delete("/api/streams/{stream_id:.+}", kick_publisher)
    app.router.add_route("*", "/api/{tail:.*}", not_found)


def error(status: int, reason: str) -> web.Response:
    return web.json_response({"error": {"status": status, "reason": reason}}, status=status)


def _server(request: web.Request) -> LPMS:
    return request.app[SERVER_KEY]  # type: ignore[return-value]


# -- reading -------------------------------------------------------------------------


async def server_info(request: web.Request) -> web.Response:
    server = _server(request)
    settings = server.settings
    return web.json_response(
        {
            "version": _version(),
            "uptime_s": round(time.monotonic() - server.started_at, 3),
            "rtmp_port": server.rtmp_port,
            "http_port": server.http_port,
            "rtmps_port": server.rtmps_port,
            "https_port": server.https_port,
            "streams": len(server.streams),
            "hls": {
                "enabled": settings.hls.enabled,
                "segment_duration": settings.hls.segment_duration,
                "window": settings.hls.window,
                "record": settings.hls.record,
            },
            "transcode": {
                "profiles": [p.name for p in settings.transcode.profiles],
                "accel": settings.transcode.accel.value,
            },
            "auth": {
                "publish_key": settings.auth.publish_key is not None,
                "hook": settings.auth.url is not None or server.auth.callback is not None,
            },
            "limits": {
                "max_streams": settings.max_streams,
                "max_players_per_stream": settings.max_players_per_stream,
                "max_connections": settings.max_connections,
                "max_connections_per_ip": settings.max_connections_per_ip,
            },
        }
    )


async def list_streams(request: web.Request) -> web.Response:
    server = _server(request)
    return web.json_response(
        {"streams": [stream_summary(server, s, request.host) for s in server.streams]}
    )


async def get_stream(request: web.Request) -> web.Response:
    server = _server(request)
    stream = server.streams.get(request.match_info["stream_id"])
    if stream is None:
        return error(404, f"no live stream {request.match_info['stream_id']}")
    summary = stream_summary(server, stream, request.host)
    summary["player_list"] = [_player(s) for s in stream.players]
    return web.json_response(summary)


async def openapi(request: web.Request) -> web.Response:
    document = dict(OPENAPI)
    document["info"] = {**OPENAPI["info"], "version": _version()}
    return web.json_response(document)


async def not_found(request: web.Request) -> web.Response:
    return error(404, f"no such API resource: {request.method} {request.path}")


def stream_summary(server: LPMS, stream: Stream, host: str) -> dict[str, Any]:
    """What the API says about one live stream (the status page shows all of it)."""
    app, _, name = stream.id.rpartition("/")
    rtmp_host = _hostname(host)
    servers = {
        scheme: f"{scheme}://{rtmp_host}:{port}/{app}"
        for scheme, port in (("rtmp", server.rtmp_port), ("rtmps", server.rtmps_port))
        if port is not None
    }
    urls = {scheme: f"{base}/{name}" for scheme, base in servers.items()}
    return {
        "id": stream.id,
        "app": app,
        "name": name,
        "uptime_s": round(time.monotonic() - stream.started_at, 3),
        "publisher": {"protocol": stream.publisher_protocol, "address": stream.publisher_address},
        "tracks": _tracks(stream),
        "renditions": _renditions(server, stream.id),
        "players": server.sessions.player_counts(stream),
        "bytes_in": stream.bytes_in,
        "bytes_out": stream.bytes_out + server.hls_bytes_out.get(stream.id, 0),
        "dropped_packets": stream.dropped_packets,
        "urls": {
            **urls,
            "hls": f"/{stream.id}.m3u8",
            "flv": f"/{stream.id}.flv",
            "obs_server": servers.get("rtmp") or servers.get("rtmps"),
            "obs_key": name,
        },
    }


def _tracks(stream: Stream) -> list[dict[str, Any]]:
    tracks: list[dict[str, Any]] = []
    video = stream.video_config.config if stream.video_config is not None else None
    if stream.has_video and video is not None:
        tracks.append(
            {
                "kind": "video",
                "codec": video.codec.value,
                "width": video.width or None,
                "height": video.height or None,
                "fps": round(stream.video_meter.rate, 2),
                "bitrate": stream.video_meter.bitrate,
            }
        )
    audio: CodecConfig | None = (
        stream.audio_config.config if stream.audio_config is not None else None
    )
    if stream.has_audio and audio is not None:
        tracks.append(
            {
                "kind": "audio",
                "codec": audio.codec.value,
                "sample_rate": audio.sample_rate or None,
                "channels": audio.channels or None,
                "bitrate": stream.audio_meter.bitrate,
            }
        )
    return tracks


def _renditions(server: LPMS, stream_id: str) -> list[dict[str, Any]]:
    hls = server.hls.get(stream_id)
    if hls is None:
        return []
    out = []
    for name, rendition in hls.renditions.items():
        last = rendition.last_segment
        video = last.video if last is not None else None
        out.append(
            {
                "name": name,
                "width": video.width if video is not None else None,
                "height": video.height if video is not None else None,
                "bandwidth": rendition.peak_bitrate,
                "average_bandwidth": rendition.average_bitrate,
                "playlist": f"/{stream_id}/{name}.m3u8",
            }
        )
    return out


def _player(subscription: Subscription) -> dict[str, Any]:
    return {
        "id": subscription.id,
        "protocol": subscription.protocol,
        "address": subscription.peer,
        "connected_s": round(time.monotonic() - subscription.created_at, 3),
        "dropped_packets": subscription.dropped,
    }


# -- kicking ---------------------------------------------------------------------------


def _may_change(request: web.Request) -> web.Response | None:
    """None when this client may kick, else the error to answer."""
    token = _server(request).settings.auth.api_token
    if token is not None:
        given = request.headers.get("Authorization", "")
        expected = f"Bearer {token}"
        if hmac.compare_digest(given.encode(), expected.encode()):
            return None
        return error(401, "this needs Authorization: Bearer <api_token>")
    try:
        loopback = ipaddress.ip_address(request.remote or "").is_loopback
    except ValueError:
        loopback = False
    if loopback:
        return None
    return error(403, "without an api_token, streams and players can be kicked from loopback only")


async def kick_publisher(request: web.Request) -> web.Response:
    refused = _may_change(request)
    if refused is not None:
        return refused
    stream_id = request.match_info["stream_id"]
    stream = _server(request).streams.get(stream_id)
    if stream is None:
        return error(404, f"no live stream {stream_id}")
    if not stream.kick():
        return error(409, f"stream {stream_id} has no publisher lpms can disconnect")
    kicked = {"stream": stream_id, "publisher": stream.publisher_address}
    return web.json_response({"kicked": kicked})


async def kick_player(request: web.Request) -> web.Response:
    refused = _may_change(request)
    if refused is not None:
        return refused
    text = request.match_info["player_id"]
    if not text.isdigit():
        return error(400, f"a player ID is a number, not {text!r}")
    player_id = int(text)
    for stream in _server(request).streams:
        for subscription in stream.players:
            if subscription.id == player_id and subscription.kick():
                return web.json_response({"kicked": {"stream": stream.id, **_player(subscription)}})
    return error(
        404, f"no player {player_id} (HLS viewers cannot be kicked: they hold no connection)"
    )


def _hostname(host: str) -> str:
    """The host part of a Host header (``[::1]:8000`` -> ``[::1]``)."""
    if host.startswith("["):
        return host.split("]", 1)[0] + "]"
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host or "localhost"


def _version() -> str:
    from lpms import __version__

    return __version__
