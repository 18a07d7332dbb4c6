"""A scripted RTMP client against the real sans-IO server connection, on a fake clock:
the loop's time and the CPU time parsing costs are both moved by the test alone, so
timeouts and parse budgets are tested in microseconds, the same way on an idle
machine as on a busy one."""

from __future__ import annotations

import dataclasses

from lpms.rtmp import amf0
from lpms.rtmp.chunk import ChunkReader, ChunkWriter, RTMPMessage
from lpms.rtmp.connection import RTMPConnection
from lpms.rtmp.handshake import ClientHandshake
from lpms.rtmp.messages import MessageType
from lpms.rtmp.settings import ConnectionLimits, ListenerSettings


class FakeClock:
    """``now`` is the event loop's time; every read of `cpu` costs ``cpu_per_read``."""

    def __init__(self, now: float = 0.0, cpu_per_read: float = 0.0) -> None:
        self.now = now
        self.cpu_per_read = cpu_per_read
        self.cpu_spent = 0.0

    def cpu(self) -> float:
        self.cpu_spent += self.cpu_per_read
        return self.cpu_spent


def server_connection(
    limits: ConnectionLimits | None = None,
    settings: ListenerSettings | None = None,
    clock: FakeClock | None = None,
) -> RTMPConnection:
    """A connection at time 0 whose parsing costs nothing unless ``clock`` says so."""
    settings = settings or ListenerSettings()
    if limits is not None:
        settings = dataclasses.replace(settings, connection=limits)
    clock = clock or FakeClock()
    return RTMPConnection(settings, now=clock.now, cpu_clock=clock.cpu)


# An AVC sequence header (320x240 High profile SPS/PPS) and a keyframe NALU.
AVC_CONFIG = bytes.fromhex(
    "17000000000164000dffe100196764000dacd941419f9e10000003001000000303c0f142996001000668ebe3cb22c0"
)
AVC_KEYFRAME = bytes.fromhex("1701000000") + b"\x00\x00\x00\x05\x65\x88\x84\x00\x10"
AAC_CONFIG = bytes.fromhex("af001210")
AAC_FRAME = bytes.fromhex("af01") + b"\x21\x10\x04"


class Client:
    """A scripted RTMP client: our chunk writer and AMF0 encoder, a real server object."""

    def __init__(
        self,
        limits: ConnectionLimits | None = None,
        settings: ListenerSettings | None = None,
        clock: FakeClock | None = None,
    ) -> None:
        self.clock = clock = clock or FakeClock()
        self.conn = server_connection(limits, settings, clock)
        self.writer = ChunkWriter()
        self.reader = ChunkReader()
        self.events: list[object] = []
        handshake = ClientHandshake()
        reply = self.conn.receive_data(handshake.initial_data(), self.clock.now)
        assert reply == []
        c2 = handshake.receive_data(self.conn.data_to_send())
        assert handshake.complete
        self.conn.receive_data(c2, self.clock.now)
        assert self.conn.handshake_complete

    def send(self, csid: int, message: RTMPMessage) -> list[object]:
        events = list(self.conn.receive_data(self.writer.write(csid, message), self.clock.now))
        self.events += events
        return events

    def command(self, msid: int, *values: object) -> list[object]:
        return self.send(3, RTMPMessage(MessageType.COMMAND_AMF0, 0, msid, amf0.encode(*values)))

    def replies(self) -> list[RTMPMessage]:
        self.reader.feed(self.conn.data_to_send())
        out = []
        while (message := self.reader.next_message()) is not None:
            if message.type_id == MessageType.SET_CHUNK_SIZE:
                self.reader.chunk_size = int.from_bytes(message.payload, "big")
            out.append(message)
        return out

    def commands(self) -> list[list[object]]:
        return [
            amf0.decode_all(m.payload)
            for m in self.replies()
            if m.type_id in (MessageType.COMMAND_AMF0, MessageType.DATA_AMF0)
        ]

    def connect(self, app: str = "stream") -> None:
        self.command(
            0,
            "connect",
            1.0,
            {
                "app": app,
                "tcUrl": f"rtmp://localhost/{app}",
                "flashVer": "FMLE/3.0 (compatible; FMSc/1.0)",
            },
        )

    def create_stream(self) -> int:
        self.command(0, "createStream", 42.0, None)
        results = [c for c in self.commands() if c[0] == "_result" and c[1] == 42.0]
        return int(results[0][3])  # type: ignore[arg-type]
