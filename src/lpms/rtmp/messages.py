"""RTMP message type IDs, protocol control messages and command replies.

Builders here return payloads only; `ChunkWriter` frames them. Message and event
numbers follow Adobe's RTMP specification (sections 5.4, 6.2 and 7.1).
"""

from __future__ import annotations

import enum
import struct

from lpms.rtmp import amf0
from lpms.rtmp.amf0 import AMF0Value, ECMAArray

_U32 = struct.Struct(">I")
_U16_U32 = struct.Struct(">HI")
_U32_U8 = struct.Struct(">IB")


class MessageType(enum.IntEnum):
    """Message type IDs (RTMP spec 5.4 and 7.1)."""

    SET_CHUNK_SIZE = 1
    ABORT = 2
    ACKNOWLEDGEMENT = 3
    USER_CONTROL = 4
    WINDOW_ACK_SIZE = 5
    SET_PEER_BANDWIDTH = 6
    AUDIO = 8
    VIDEO = 9
    DATA_AMF3 = 15
    SHARED_OBJECT_AMF3 = 16
    COMMAND_AMF3 = 17
    DATA_AMF0 = 18
    SHARED_OBJECT_AMF0 = 19
    COMMAND_AMF0 = 20
    AGGREGATE = 22


class UserControlEvent(enum.IntEnum):
    """User Control Message event types (RTMP spec 7.1.7)."""

    STREAM_BEGIN = 0
    STREAM_EOF = 1
    STREAM_DRY = 2
    SET_BUFFER_LENGTH = 3
    STREAM_IS_RECORDED = 4
    PING_REQUEST = 6
    PING_RESPONSE = 7


class ChunkStreamID(enum.IntEnum):
    """Chunk stream IDs lpms sends on; the same split nginx-rtmp and FMS use."""

    PROTOCOL_CONTROL = 2
    COMMAND = 3
    DATA = 5
    AUDIO = 6
    VIDEO = 7


class PeerBandwidthLimit(enum.IntEnum):
    HARD = 0
    SOFT = 1
    DYNAMIC = 2


def set_chunk_size(size: int) -> bytes:
    # The top bit must be zero (spec 5.4.1).
    return _U32.pack(size & 0x7FFFFFFF)


def acknowledgement(sequence_number: int) -> bytes:
    return _U32.pack(sequence_number & 0xFFFFFFFF)


def window_ack_size(size: int) -> bytes:
    return _U32.pack(size)


def set_peer_bandwidth(size: int, limit: PeerBandwidthLimit) -> bytes:
    return _U32_U8.pack(size, limit)


def user_control(event: UserControlEvent, value: int) -> bytes:
    return _U16_U32.pack(event, value & 0xFFFFFFFF)


def status_info(level: str, code: str, description: str) -> dict[str, object]:
    """The info object of an ``onStatus`` or ``_result`` (NetStream/NetConnection)."""
    return {"level": level, "code": code, "description": description}


def on_status(code: str, description: str, *, error: bool = False) -> bytes:
    """An ``onStatus`` command; clients act on ``code`` and show ``description``."""
    level = "error" if error else "status"
    return amf0.encode("onStatus", 0.0, None, status_info(level, code, description))


def connect_result(transaction_id: float, object_encoding: float) -> bytes:
    properties = {"fmsVer": "FMS/3,0,1,123", "capabilities": 31.0, "mode": 1.0}
    info = status_info("status", "NetConnection.Connect.Success", "Connection succeeded.")
    info["objectEncoding"] = object_encoding
    return amf0.encode("_result", transaction_id, properties, info)


def command_result(transaction_id: float, *values: object) -> bytes:
    return amf0.encode("_result", transaction_id, None, *values)


def command_error(transaction_id: float, code: str, description: str) -> bytes:
    return amf0.encode("_error", transaction_id, None, status_info("error", code, description))


def sample_access() -> bytes:
    """``|RtmpSampleAccess``: lets Flash-era players read the media (sent on play)."""
    return amf0.encode("|RtmpSampleAccess", True, True)


def data_start() -> bytes:
    return amf0.encode("onStatus", status_info("status", "NetStream.Data.Start", "Data start."))


def metadata_body(properties: dict[str, AMF0Value]) -> bytes:
    """An ``onMetaData`` data message as players expect it (without ``@setDataFrame``)."""
    return amf0.encode("onMetaData", ECMAArray(properties))
