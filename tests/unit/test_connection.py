"""The sans-IO server connection, driven the way FFmpeg's client drives it."""

from __future__ import annotations

import pytest

from lpms.errors import RTMPProtocolError
from lpms.media.packet import Codec, TrackKind
from lpms.rtmp import amf0
from lpms.rtmp.chunk import RTMPMessage
from lpms.rtmp.connection import ConnectionLimits, split_query
from lpms.rtmp.events import (
    Connected,
    MediaReceived,
    PlayEnded,
    PlayRequested,
    PublishEnded,
    PublishRequested,
)
from lpms.rtmp.messages import MessageType
from tests.unit.rtmp_client import AAC_CONFIG, AAC_FRAME, AVC_CONFIG, AVC_KEYFRAME, Client


def codes(commands: list[list[object]]) -> list[str]:
    return [c[-1]["code"] for c in commands if c[0] == "onStatus"]  # type: ignore[index]


def test_connect_gets_control_messages_and_success() -> None:
    client = Client()
    client.connect()
    replies = client.replies()
    types = [m.type_id for m in replies]
    assert MessageType.SET_CHUNK_SIZE in types
    assert MessageType.WINDOW_ACK_SIZE in types
    assert MessageType.SET_PEER_BANDWIDTH in types
    result = [amf0.decode_all(m.payload) for m in replies if m.type_id == MessageType.COMMAND_AMF0]
    assert result[0][0] == "_result"
    assert result[0][1] == 1.0
    assert result[0][3]["code"] == "NetConnection.Connect.Success"  # type: ignore[index]
    assert client.events == [
        Connected("stream", "rtmp://localhost/stream", "FMLE/3.0 (compatible; FMSc/1.0)")
    ]


def test_publish_flow_yields_packets_and_end() -> None:
    client = Client()
    client.connect("stream?token=abc")
    client.command(0, "releaseStream", 2.0, None, "test")
    client.command(0, "FCPublish", 3.0, None, "test")
    msid = client.create_stream()
    (request,) = client.command(msid, "publish", 0.0, None, "test?key=k", "live")
    assert request == PublishRequested(msid, "stream", "test", {"token": "abc", "key": "k"}, "live")
    client.conn.accept_publish(msid, 0.0)
    assert "NetStream.Publish.Start" in codes(client.commands())

    data = amf0.encode("@setDataFrame", "onMetaData", amf0.ECMAArray({"width": 320.0}))
    (meta,) = client.send(5, RTMPMessage(MessageType.DATA_AMF0, 0, msid, data))
    assert isinstance(meta, MediaReceived)
    assert meta.packet.kind is TrackKind.DATA
    assert amf0.decode_all(meta.packet.payload) == ["onMetaData", {"width": 320.0}]

    (config,) = client.send(6, RTMPMessage(MessageType.VIDEO, 0, msid, AVC_CONFIG))
    assert isinstance(config, MediaReceived)
    assert config.packet.is_config
    assert config.packet.codec is Codec.H264
    (frame,) = client.send(6, RTMPMessage(MessageType.VIDEO, 40, msid, AVC_KEYFRAME))
    assert isinstance(frame, MediaReceived)
    assert frame.packet.keyframe
    assert frame.packet.dts == 40
    client.send(4, RTMPMessage(MessageType.AUDIO, 0, msid, AAC_CONFIG))
    (aac,) = client.send(4, RTMPMessage(MessageType.AUDIO, 23, msid, AAC_FRAME))
    assert isinstance(aac, MediaReceived)
    assert aac.packet.codec is Codec.AAC

    assert client.command(0, "FCUnpublish", 5.0, None, "test") == [PublishEnded(msid)]
    assert client.command(0, "deleteStream", 6.0, None, float(msid)) == []


def test_media_before_publish_is_accepted_is_dropped() -> None:
    client = Client()
    client.connect()
    msid = client.create_stream()
    client.command(msid, "publish", 0.0, None, "test", "live")
    assert client.send(6, RTMPMessage(MessageType.VIDEO, 0, msid, AVC_CONFIG)) == []


def test_reject_publish_sends_error_status() -> None:
    client = Client()
    client.connect()
    msid = client.create_stream()
    client.command(msid, "publish", 0.0, None, "test", "live")
    client.conn.reject_publish(msid, "NetStream.Publish.BadName", "taken", 0.0)
    (status,) = [c for c in client.commands() if c[0] == "onStatus"]
    assert status[3] == {
        "level": "error",
        "code": "NetStream.Publish.BadName",
        "description": "taken",
    }


def test_play_flow_and_media_out() -> None:
    client = Client()
    client.connect()
    client.command(0, "getStreamLength", 3.0, None, "test")
    msid = client.create_stream()
    (request,) = client.command(msid, "play", 0.0, None, "test", -2000.0)
    assert request == PlayRequested(msid, "stream", "test", {})
    client.conn.accept_play(msid, 0.0)
    assert codes(client.commands())[:2] == ["NetStream.Play.Reset", "NetStream.Play.Start"]

    publisher = Client()
    publisher.connect()
    pmsid = publisher.create_stream()
    publisher.command(pmsid, "publish", 0.0, None, "test", "live")
    publisher.conn.accept_publish(pmsid, 0.0)
    (config,) = publisher.send(6, RTMPMessage(MessageType.VIDEO, 0, pmsid, AVC_CONFIG))
    (frame,) = publisher.send(6, RTMPMessage(MessageType.VIDEO, 40, pmsid, AVC_KEYFRAME))
    assert isinstance(config, MediaReceived)
    assert isinstance(frame, MediaReceived)
    client.conn.send_media(msid, config.packet)
    client.conn.send_media(msid, frame.packet.with_timestamps(0, 0))
    media = [m for m in client.replies() if m.type_id == MessageType.VIDEO]
    assert [m.payload for m in media] == [AVC_CONFIG, AVC_KEYFRAME]
    assert [m.message_stream_id for m in media] == [msid, msid]

    client.conn.end_play(msid, "done", 0.0)
    assert "NetStream.Play.UnpublishNotify" in codes(client.commands())
    assert client.command(msid, "closeStream", 0.0, None) == []  # already ended on our side
    assert client.conn.receive_data(b"", 0.0) == []


def test_close_stream_ends_play() -> None:
    client = Client()
    client.connect()
    msid = client.create_stream()
    client.command(msid, "play", 0.0, None, "test")
    client.conn.accept_play(msid, 0.0)
    assert client.command(msid, "closeStream", 0.0, None) == [PlayEnded(msid)]


def test_ping_is_answered() -> None:
    client = Client()
    client.connect()
    client.replies()
    ping = (6).to_bytes(2, "big") + (1234).to_bytes(4, "big")
    client.send(2, RTMPMessage(MessageType.USER_CONTROL, 0, 0, ping))
    (pong,) = client.replies()
    assert pong.payload == (7).to_bytes(2, "big") + (1234).to_bytes(4, "big")


def test_acknowledgement_after_window() -> None:
    client = Client()
    client.send(2, RTMPMessage(MessageType.WINDOW_ACK_SIZE, 0, 0, (100).to_bytes(4, "big")))
    client.connect()
    acks = [m for m in client.replies() if m.type_id == MessageType.ACKNOWLEDGEMENT]
    assert acks
    assert int.from_bytes(acks[0].payload, "big") >= 100


@pytest.mark.parametrize(
    "values",
    [
        ("publish", 0.0, None, "x"),  # before connect
        ("createStream", 2.0, None),  # before connect
    ],
)
def test_commands_before_connect_are_protocol_errors(values: tuple[object, ...]) -> None:
    client = Client()
    with pytest.raises(RTMPProtocolError):
        client.command(0, *values)


def test_publish_on_unknown_message_stream_is_an_error() -> None:
    client = Client()
    client.connect()
    with pytest.raises(RTMPProtocolError, match="never created"):
        client.command(7, "publish", 0.0, None, "x")


def test_message_stream_limit() -> None:
    client = Client(ConnectionLimits(max_message_streams=1))
    client.connect()
    client.create_stream()
    client.command(0, "createStream", 9.0, None)
    errors = [c for c in client.commands() if c[0] == "_error"]
    assert errors
    assert errors[0][1] == 9.0


def test_set_chunk_size_from_peer_is_applied_and_bounded() -> None:
    client = Client(ConnectionLimits(max_chunk_size=4096))
    client.send(2, RTMPMessage(MessageType.SET_CHUNK_SIZE, 0, 0, (4096).to_bytes(4, "big")))
    client.writer.chunk_size = 4096
    client.connect()  # parsed with the new chunk size
    assert client.conn.connected
    with pytest.raises(RTMPProtocolError):
        client.send(2, RTMPMessage(MessageType.SET_CHUNK_SIZE, 0, 0, (1 << 30).to_bytes(4, "big")))


def test_split_query() -> None:
    assert split_query("name") == ("name", {})
    assert split_query("name?a=1&b=") == ("name", {"a": "1", "b": ""})
