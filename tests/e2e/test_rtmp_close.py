"""How lpms ends an RTMP connection: the peer gets every byte sent before the end,
even when it keeps sending (acknowledgements, pings) while lpms closes.

A socket closed with bytes from the peer still arriving answers with a reset, and
the reset makes the peer's kernel throw away what it had received but not read:
FFmpeg players lost the last packets of a stream this way (bench/soak.py found it).
The client here is scripted with our chunk writer, because it must keep writing at
the moment the server closes, which no real player does on cue."""

from __future__ import annotations

import asyncio

import pytest

from lpms import LPMS, ListenerSettings, Settings
from lpms.rtmp import amf0
from lpms.rtmp.chunk import ChunkReader, ChunkWriter, RTMPMessage
from lpms.rtmp.handshake import HANDSHAKE_SIZE, ClientHandshake
from lpms.rtmp.messages import MessageType, UserControlEvent, acknowledgement
from tests.e2e.clients import make_clip
from tests.flv_file import flv_packets

pytestmark = pytest.mark.e2e


def command(writer: ChunkWriter, *values: object, msid: int = 0) -> bytes:
    return writer.write(3, RTMPMessage(MessageType.COMMAND_AMF0, 0, msid, amf0.encode(*values)))


@pytest.mark.parametrize(
    "server", [Settings(rtmp=ListenerSettings(read_interval=0))], indirect=True
)
async def test_a_player_that_keeps_sending_gets_the_whole_end_of_the_stream(
    server: LPMS,
) -> None:
    packets = flv_packets(make_clip(2.0, gop_frames=30).flv)
    stream = server.streams.create("stream/linger")
    for packet in packets:
        stream.write(packet)  # configs and a GOP cache for the player to start from

    reader, writer = await asyncio.open_connection("127.0.0.1", server.rtmp_port)
    handshake = ClientHandshake()
    writer.write(handshake.initial_data())
    writer.write(handshake.receive_data(await reader.readexactly(1 + 2 * HANDSHAKE_SIZE)))
    chunks = ChunkWriter()
    writer.write(command(chunks, "connect", 1.0, {"app": "stream"}))
    writer.write(command(chunks, "createStream", 2.0, None))
    writer.write(command(chunks, "play", 3.0, None, "linger", msid=1))

    async def chatter() -> None:
        """Acknowledgements, as fast as the socket takes them, until it breaks."""
        count = 0
        try:
            while True:
                count += 1
                writer.write(chunks.write(2, RTMPMessage(3, 0, 0, acknowledgement(count))))
                await writer.drain()
                await asyncio.sleep(0.001)
        except (ConnectionError, RuntimeError):
            return

    async def end_soon() -> None:
        await asyncio.sleep(0.5)
        for packet in packets[-200:]:
            stream.write(packet.with_timestamps(packet.dts + 10_000, packet.pts + 10_000))
        stream.end()
        server.streams.remove(stream)

    talking = asyncio.create_task(chatter())
    ending = asyncio.create_task(end_soon())
    incoming = ChunkReader()
    received: list[RTMPMessage] = []
    try:
        async with asyncio.timeout(15):
            while data := await reader.read(65536):
                incoming.feed(data)
                while (message := incoming.next_message()) is not None:
                    if message.type_id == MessageType.SET_CHUNK_SIZE:
                        incoming.chunk_size = int.from_bytes(message.payload, "big")
                    received.append(message)
    finally:
        talking.cancel()
        await ending
        writer.close()

    eof = [
        m
        for m in received
        if m.type_id == MessageType.USER_CONTROL
        and int.from_bytes(m.payload[:2], "big") == UserControlEvent.STREAM_EOF
    ]
    assert eof, "the player never got Stream EOF: the end of the stream was lost"
    statuses = [
        amf0.decode_all(m.payload)[-1]["code"]  # type: ignore[index]
        for m in received
        if m.type_id == MessageType.COMMAND_AMF0 and amf0.decode_all(m.payload)[0] == "onStatus"
    ]
    assert statuses[-1] == "NetStream.Play.Stop"
    media = [m for m in received if m.type_id in (MessageType.AUDIO, MessageType.VIDEO)]
    assert len(media) >= 200  # the 200 written at the end, after the cached GOP
