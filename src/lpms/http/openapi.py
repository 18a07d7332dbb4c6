"""The OpenAPI 3.1 description of ``/api/``, served at ``/api/openapi.json``.

Kept beside the handlers (lpms/http/api.py) and checked against them by the tests:
every documented path answers, and every answer has the documented fields.
"""

from __future__ import annotations

from typing import Any

_ERROR = {"$ref": "#/components/schemas/Error"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    reasons = {
        400: "The request is malformed",
        401: "An api_token is set and the request did not carry it",
        403: "No api_token is set and the client is not on loopback",
        404: "No such stream, player or resource",
        409: "The stream has no publisher lpms can disconnect",
    }
    return {str(status): _json(_ERROR, reasons[status]) for status in statuses}


_STREAM_ID = {
    "name": "stream_id",
    "in": "path",
    "required": True,
    "description": "The stream's ID, APP/NAME (slashes as they are, not escaped)",
    "schema": {"type": "string", "example": "stream/test"},
}

_INTEGER_OR_NULL = {"type": ["integer", "null"]}

OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "lpms API",
        "description": "Live streams, their measured tracks and players, and the server. "
        "Reading is open; kicking needs `Authorization: Bearer <api_token>` when "
        "`auth.api_token` is set, and is allowed from loopback only otherwise.",
        "version": "0",
    },
    "paths": {
        "/api/server": {
            "get": {
                "summary": "The server: version, uptime, ports, settings that matter",
                "operationId": "getServer",
                "responses": {"200": _json({"$ref": "#/components/schemas/Server"}, "The server")},
            }
        },
        "/api/streams": {
            "get": {
                "summary": "Every live stream",
                "operationId": "listStreams",
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["streams"],
                            "properties": {
                                "streams": {
                                    "type": "array",
                                    "items": {"$ref": "#/components/schemas/Stream"},
                                }
                            },
                        },
                        "The live streams",
                    )
                },
            }
        },
        "/api/streams/{stream_id}": {
            "parameters": [_STREAM_ID],
            "get": {
                "summary": "One live stream, with its players of every protocol",
                "operationId": "getStream",
                "responses": {
                    "200": _json({"$ref": "#/components/schemas/StreamDetails"}, "The stream"),
                    **_errors(404),
                },
            },
            "delete": {
                "summary": "Disconnect the stream's publisher (the stream ends)",
                "operationId": "kickPublisher",
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["kicked"],
                            "properties": {
                                "kicked": {
                                    "type": "object",
                                    "required": ["stream", "publisher"],
                                    "properties": {
                                        "stream": {"type": "string"},
                                        "publisher": {"type": "string"},
                                    },
                                }
                            },
                        },
                        "The publisher was disconnected",
                    ),
                    **_errors(401, 403, 404, 409),
                },
            },
        },
        "/api/players/{player_id}": {
            "parameters": [
                {
                    "name": "player_id",
                    "in": "path",
                    "required": True,
                    "description": "A player's `id` from GET /api/streams/{stream_id}",
                    "schema": {"type": "integer"},
                }
            ],
            "delete": {
                "summary": "Disconnect one player (HLS viewers hold no connection to cut)",
                "operationId": "kickPlayer",
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["kicked"],
                            "properties": {"kicked": {"$ref": "#/components/schemas/Player"}},
                        },
                        "The player was disconnected",
                    ),
                    **_errors(400, 401, 403, 404),
                },
            },
        },
        "/api/openapi.json": {
            "get": {
                "summary": "This document",
                "operationId": "getOpenAPI",
                "responses": {"200": {"description": "OpenAPI 3.1"}},
            }
        },
    },
    "components": {
        "schemas": {
            "Error": {
                "type": "object",
                "required": ["error"],
                "properties": {
                    "error": {
                        "type": "object",
                        "required": ["status", "reason"],
                        "properties": {
                            "status": {"type": "integer"},
                            "reason": {"type": "string"},
                        },
                    }
                },
            },
            "Server": {
                "type": "object",
                "required": ["version", "uptime_s", "rtmp_port", "http_port", "streams"],
                "properties": {
                    "version": {"type": "string"},
                    "uptime_s": {"type": "number"},
                    "rtmp_port": {"type": ["integer", "null"], "description": "null: off"},
                    "http_port": {"type": ["integer", "null"], "description": "null: off"},
                    "rtmps_port": {
                        "type": ["integer", "null"],
                        "description": "null: off, or no TLS certificate",
                    },
                    "https_port": {
                        "type": ["integer", "null"],
                        "description": "null: off, or no TLS certificate",
                    },
                    "streams": {"type": "integer", "description": "Live streams"},
                    "hls": {"type": "object"},
                    "transcode": {"type": "object"},
                    "auth": {"type": "object"},
                    "limits": {"type": "object"},
                },
            },
            "Track": {
                "type": "object",
                "required": ["kind", "codec", "bitrate"],
                "properties": {
                    "kind": {"enum": ["video", "audio"]},
                    "codec": {"type": "string", "example": "h264"},
                    "width": _INTEGER_OR_NULL,
                    "height": _INTEGER_OR_NULL,
                    "fps": {"type": "number", "description": "Over the last 5 s"},
                    "sample_rate": _INTEGER_OR_NULL,
                    "channels": _INTEGER_OR_NULL,
                    "bitrate": {
                        "type": "integer",
                        "description": "Bits per second of payload over the last 5 s",
                    },
                },
            },
            "Rendition": {
                "type": "object",
                "required": ["name", "playlist"],
                "properties": {
                    "name": {"type": "string", "description": "source, or a profile's name"},
                    "width": _INTEGER_OR_NULL,
                    "height": _INTEGER_OR_NULL,
                    "bandwidth": {"type": "integer"},
                    "average_bandwidth": {"type": "integer"},
                    "playlist": {"type": "string"},
                },
            },
            "Stream": {
                "type": "object",
                "required": [
                    "id",
                    "uptime_s",
                    "publisher",
                    "tracks",
                    "renditions",
                    "players",
                    "bytes_in",
                    "bytes_out",
                    "urls",
                ],
                "properties": {
                    "id": {"type": "string"},
                    "app": {"type": "string"},
                    "name": {"type": "string"},
                    "uptime_s": {"type": "number"},
                    "publisher": {
                        "type": "object",
                        "properties": {
                            "protocol": {"type": "string"},
                            "address": {"type": "string"},
                        },
                    },
                    "tracks": {"type": "array", "items": {"$ref": "#/components/schemas/Track"}},
                    "renditions": {
                        "type": "array",
                        "items": {"$ref": "#/components/schemas/Rendition"},
                    },
                    "players": {
                        "type": "object",
                        "description": "Players by protocol; every protocol is listed",
                        "properties": {
                            "rtmp": {"type": "integer"},
                            "rtmps": {"type": "integer"},
                            "http-flv": {"type": "integer"},
                            "ws-flv": {"type": "integer"},
                            "hls": {
                                "type": "integer",
                                "description": "Client IPs that fetched the stream in the "
                                "last 30 s",
                            },
                        },
                    },
                    "bytes_in": {"type": "integer"},
                    "bytes_out": {"type": "integer"},
                    "dropped_packets": {"type": "integer"},
                    "urls": {
                        "type": "object",
                        "properties": {
                            "rtmp": {"type": "string", "description": "absent: RTMP is off"},
                            "rtmps": {"type": "string", "description": "absent: no RTMPS"},
                            "hls": {"type": "string"},
                            "flv": {
                                "type": "string",
                                "description": "HTTP-FLV; WebSocket-FLV at the same path",
                            },
                            "obs_server": {
                                "type": ["string", "null"],
                                "description": "RTMP's, else RTMPS's",
                            },
                            "obs_key": {"type": "string"},
                        },
                    },
                },
            },
            "StreamDetails": {
                "allOf": [
                    {"$ref": "#/components/schemas/Stream"},
                    {
                        "type": "object",
                        "properties": {
                            "player_list": {
                                "type": "array",
                                "items": {"$ref": "#/components/schemas/Player"},
                            }
                        },
                    },
                ]
            },
            "Player": {
                "type": "object",
                "required": ["id", "protocol", "address"],
                "properties": {
                    "id": {"type": "integer"},
                    "protocol": {
                        "type": "string",
                        "enum": ["rtmp", "rtmps", "http-flv", "ws-flv"],
                    },
                    "address": {"type": "string"},
                    "connected_s": {"type": "number"},
                    "dropped_packets": {"type": "integer"},
                    "stream": {"type": "string"},
                },
            },
        }
    },
}
