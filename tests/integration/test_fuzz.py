"""Hostile input for every sans-IO layer: only the layer's own error may come out.

Each layer is fed arbitrary bytes and inputs built to lie: valid framing around
garbage, lengths and counts that promise more than follows, limits at their edges.
Whatever happens, the layer returns a result or raises its own error
(`RTMPProtocolError` for handshake, chunking, AMF0 and commands; `MediaError` for
FLV bodies and codec headers; `BitstreamError` for the HLS conversions), holds no
more memory than its limits allow, and does work in proportion to its input.

The hypothesis tests here complement the per-module ones (arbitrary bytes into one
parser, byte flips in valid encodings); this file drives the layers with structured
lies and through one another, as a publisher reaches them.
"""

from __future__ import annotations

import contextlib
import struct
import tracemalloc
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lpms.buffer import Buffer
from lpms.errors import BitstreamError, MediaError, RTMPProtocolError
from lpms.media.bitreader import BitReader
from lpms.media.codecs.aac import adts_frame, parse_aac_config
from lpms.media.codecs.annexb import AnnexBConverter
from lpms.media.codecs.h264 import avc_config_from_annex_b
from lpms.media.codecs.nal import START_CODE, annex_b_nal_units
from lpms.media.flv import FLVDemuxer, tag_body
from lpms.media.packet import Codec, MediaPacket
from lpms.rtmp import amf0
from lpms.rtmp.amf0 import ECMAArray, TypedObject
from lpms.rtmp.chunk import ChunkReader, ChunkWriter, RTMPMessage
from lpms.rtmp.connection import ConnectionLimits
from lpms.rtmp.events import (
    Connected,
    MediaReceived,
    PlayEnded,
    PlayRequested,
    PublishEnded,
    PublishRequested,
)
from lpms.rtmp.handshake import HANDSHAKE_SIZE, ClientHandshake, ServerHandshake
from lpms.rtmp.messages import MessageType
from tests.unit.rtmp_client import server_connection

EVENT_TYPES = (Connected, MediaReceived, PlayEnded, PlayRequested, PublishEnded, PublishRequested)
# The most unparsed input a ChunkReader keeps once every whole message is taken: one
# incomplete chunk header (3-byte basic header, 11-byte type 0 header, 4-byte
# extended timestamp).
MAX_CHUNK_HEADER = 18

# Sized so the whole file runs in seconds; the sessions test, which reaches the most
# code, gets more. Runs with 20 times these counts found nothing further.
fuzz = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
light = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
thorough = settings(fuzz, max_examples=400)

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
# Values where off-by-one and width bugs live.
edge_u32 = st.sampled_from([0, 1, 2, 127, 128, 0xFFFF, 0xFFFFFE, 0xFFFFFF, 0x1000000])
edge_u32 |= st.sampled_from([0x7FFFFFFF, 0x80000000, 0xFFFFFFFF]) | u32


def split_points(data: bytes, sizes: list[int]) -> list[bytes]:
    """``data`` in pieces of the given sizes (cycled), so every boundary gets a turn."""
    pieces = []
    offset = 0
    index = 0
    while offset < len(data):
        size = sizes[index % len(sizes)] if sizes else len(data)
        pieces.append(data[offset : offset + size])
        offset += size
        index += 1
    return pieces


feed_sizes = st.lists(st.integers(1, 2000), max_size=6)

# AMF0 wire pieces (spec 2.5, 2.10, 2.12, 2.18), for building lies around.
OBJECT_END = b"\x00\x00\x09"


def amf_string(text: bytes) -> bytes:
    return len(text).to_bytes(2, "big") + text


containers = st.sampled_from(["object", "ecma", "strict", "typed"])


def nest(kinds: list[str], inner: bytes) -> bytes:
    """``inner`` wrapped in containers, outermost first, under empty property names
    (ordinary names, spec 2.5, that no string limit refuses); ECMA counts are lies."""
    for kind in reversed(kinds):
        if kind == "object":
            inner = b"\x03" + amf_string(b"") + inner + OBJECT_END
        elif kind == "ecma":
            inner = b"\x08\xff\xff\xff\xff" + amf_string(b"") + inner + OBJECT_END
        elif kind == "typed":
            inner = b"\x10" + amf_string(b"") + amf_string(b"") + inner + OBJECT_END
        else:
            inner = b"\x0a\x00\x00\x00\x01" + inner
    return inner


# -- handshake ---------------------------------------------------------------------------


@light
@given(
    c0=u8,
    c1=st.binary(min_size=HANDSHAKE_SIZE, max_size=HANDSHAKE_SIZE),
    c2=st.binary(min_size=HANDSHAKE_SIZE, max_size=HANDSHAKE_SIZE),
    after=st.binary(max_size=200),
    sizes=st.lists(st.integers(1, 4000), max_size=6),
)
def test_server_handshake_arbitrary_c0_c1_c2(
    c0: int, c1: bytes, c2: bytes, after: bytes, sizes: list[int]
) -> None:
    """Any version byte, any C1/C2 content, any split: refused at C0 or completed."""
    handshake = ServerHandshake(random_bytes=lambda n: b"\x5a" * n)
    sent = b""
    try:
        for piece in split_points(bytes((c0,)) + c1 + c2 + after, sizes):
            sent += handshake.receive_data(piece)
    except RTMPProtocolError:
        assert c0 != 3  # the message is checked for every version byte further down
        return
    assert c0 == 3
    assert handshake.complete
    assert sent[:1] == b"\x03"
    assert sent[1 + HANDSHAKE_SIZE :] == c1  # S2 echoes C1
    assert handshake.take_leftover() == after  # garbage after C2 is chunk data
    assert handshake.echo_matched is (c2[8:] == sent[9 : 1 + HANDSHAKE_SIZE])


@light
@given(
    s0=u8,
    rest=st.binary(min_size=2 * HANDSHAKE_SIZE, max_size=2 * HANDSHAKE_SIZE + 100),
    sizes=st.lists(st.integers(1, 4000), max_size=6),
)
def test_client_handshake_arbitrary_s0_s1_s2(s0: int, rest: bytes, sizes: list[int]) -> None:
    handshake = ClientHandshake()
    c2 = b""
    try:
        for piece in split_points(bytes((s0,)) + rest, sizes):
            c2 += handshake.receive_data(piece)
    except RTMPProtocolError:
        assert s0 != 3
        return
    assert handshake.complete
    assert c2 == rest[:HANDSHAKE_SIZE]
    assert handshake.take_leftover() == rest[2 * HANDSHAKE_SIZE :]


@pytest.mark.parametrize("version", [v for v in range(256) if v != 3])
def test_every_wrong_version_byte_is_refused_at_once(version: int) -> None:
    with pytest.raises(RTMPProtocolError, match=f"version {version} "):
        ServerHandshake().receive_data(bytes((version,)))
    with pytest.raises(RTMPProtocolError, match=f"version {version} "):
        server_connection().receive_data(bytes((version,)) + bytes(HANDSHAKE_SIZE), 0.0)


@light
@given(garbage=st.binary(min_size=1, max_size=3000), sizes=feed_sizes)
def test_garbage_before_or_instead_of_a_handshake(garbage: bytes, sizes: list[int]) -> None:
    """A connection fed garbage from its first byte refuses it or parses it as RTMP."""
    conn = server_connection(ConnectionLimits(max_message_size=4096))
    client = ClientHandshake()
    data = garbage + client.initial_data()
    with contextlib.suppress(RTMPProtocolError):
        for piece in split_points(data, sizes):
            events = conn.receive_data(piece, 0.0)
            assert all(isinstance(event, EVENT_TYPES) for event in events)
            assert conn.buffered_bytes <= conn.limits.max_partial_bytes + MAX_CHUNK_HEADER
            assert isinstance(conn.data_to_send(), bytes)


# -- RTMPConnection after a valid handshake ----------------------------------------------


class Peer:
    """A hostile client: our own chunk writer and message builders against a real server.

    The application side accepts every publish and play, so media reaches the FLV
    demuxer and goes back out to players.
    """

    def __init__(self, limits: ConnectionLimits) -> None:
        self.conn = server_connection(limits)
        self.writer = ChunkWriter()
        # The server's replies must always parse: its own output is never garbage.
        self.replies = ChunkReader(max_message_size=1 << 24, max_chunk_streams=16)
        self.received: list[RTMPMessage] = []
        self.playing: list[int] = []
        self.events: list[object] = []
        handshake = ClientHandshake()
        assert self.conn.receive_data(handshake.initial_data(), 0.0) == []
        c2 = handshake.receive_data(self.conn.data_to_send())
        assert self.conn.receive_data(c2, 0.0) == []

    def feed(self, data: bytes, sizes: list[int]) -> None:
        for piece in split_points(data, sizes):
            events = self.conn.receive_data(piece, 0.0)
            self._act_on(events)
            limits = self.conn.limits
            assert self.conn.buffered_bytes <= limits.max_partial_bytes + MAX_CHUNK_HEADER
            self._read_replies()

    def write(self, csid: int, message: RTMPMessage) -> bytes:
        return self.writer.write(csid, message)

    def _act_on(self, events: list[Any]) -> None:
        for event in events:
            assert isinstance(event, EVENT_TYPES)
            self.events.append(event)
            if isinstance(event, PublishRequested):
                self.conn.accept_publish(event.message_stream_id, 0.0)
            elif isinstance(event, PlayRequested):
                self.conn.accept_play(event.message_stream_id, 0.0)
                self.playing.append(event.message_stream_id)
            elif isinstance(event, MediaReceived):
                for msid in self.playing:
                    self.conn.send_media(msid, event.packet)

    def _read_replies(self) -> None:
        self.replies.feed(self.conn.data_to_send())
        while (message := self.replies.next_message()) is not None:
            self.received.append(message)
            if message.type_id == MessageType.SET_CHUNK_SIZE:
                self.replies.chunk_size = int.from_bytes(message.payload, "big")


def command(msid: int, *values: object) -> RTMPMessage:
    return RTMPMessage(MessageType.COMMAND_AMF0, 0, msid, amf0.encode(*values))


def opening(app: str = "live") -> list[tuple[int, RTMPMessage]]:
    """What FFmpeg sends to publish and play: connect, createStream, publish, play."""
    return [
        (3, command(0, "connect", 1.0, {"app": app, "tcUrl": f"rtmp://h/{app}"})),
        (3, command(0, "createStream", 2.0, None)),
        (3, command(0, "createStream", 3.0, None)),
        (8, command(1, "publish", 0.0, None, "cam", "live")),
        (8, command(2, "play", 0.0, None, "cam", -2000.0)),
    ]


# Real codec configurations to lie around: a 320x240 High profile avcC and an LC
# stereo 44.1 kHz AudioSpecificConfig (the bodies FFmpeg publishes).
AVC_RECORD = bytes.fromhex(
    "0164000dffe100196764000dacd941419f9e10000003001000000303c0f142996001000668ebe3cb22c0"
)
AAC_ASC = bytes.fromhex("1210")


def nal_units(length_size: int, units: list[tuple[int | None, bytes]]) -> bytes:
    """Length-prefixed NAL units; a claimed length (None: the true one) may lie."""
    mask = (1 << (8 * length_size)) - 1
    return b"".join(
        ((len(unit) if claimed is None else claimed) & mask).to_bytes(length_size, "big") + unit
        for claimed, unit in units
    )


lying_lengths = st.one_of(st.none(), st.integers(0, 0xFFFFFFFF), st.sampled_from([0, 1, 2]))
nal_bodies = st.one_of(
    st.binary(max_size=12),
    st.builds(
        lambda t, rest: bytes((t,)) + rest,
        st.sampled_from([0x65, 0x41, 0x67, 0x68, 0x09]),
        st.binary(max_size=10),
    ),
    st.builds(
        lambda t, rest: bytes((t << 1, 1)) + rest,
        st.sampled_from([1, 19, 32, 33, 34, 35, 39]),
        st.binary(max_size=10),
    ),
)
lying_nal_lists = st.lists(st.tuples(lying_lengths, nal_bodies), max_size=4)


@st.composite
def lying_avcc(draw: st.DrawFn) -> bytes:
    """An AVCDecoderConfigurationRecord whose counts and lengths may lie."""
    sps = draw(lying_nal_lists)
    pps = draw(lying_nal_lists)
    sps_count = draw(st.one_of(st.just(len(sps)), st.integers(0, 31)))
    pps_count = draw(st.one_of(st.just(len(pps)), u8))
    return b"".join(
        (
            bytes((draw(st.sampled_from([1, 1, 0, 2])),)),
            draw(st.binary(min_size=3, max_size=3)),
            bytes((0xFC | draw(st.integers(0, 3)),)),
            bytes((0xE0 | sps_count,)),
            nal_units(2, sps),
            bytes((pps_count,)),
            nal_units(2, pps),
            draw(st.binary(max_size=4)),
        )
    )


@st.composite
def lying_hvcc(draw: st.DrawFn) -> bytes:
    """An HEVCDecoderConfigurationRecord whose array and NAL unit counts may lie."""
    arrays = draw(
        st.lists(st.tuples(st.sampled_from([32, 33, 34, 39, 40, 7]), lying_nal_lists), max_size=4)
    )
    parts = [
        bytes((draw(st.sampled_from([1, 0, 2])),)),
        draw(st.binary(min_size=20, max_size=20)),
        bytes((0xFC | draw(st.integers(0, 3)),)),
        bytes((draw(st.one_of(st.just(len(arrays)), u8)),)),
    ]
    for nal_unit_type, units in arrays:
        parts.append(bytes((0x80 | nal_unit_type,)))
        parts.append(draw(st.one_of(st.just(len(units)), u16)).to_bytes(2, "big"))
        parts.append(nal_units(2, units))
    return b"".join(parts)


@st.composite
def lying_audio_specific_config(draw: st.DrawFn) -> bytes:
    """AudioSpecificConfig bits (14496-3 1.6.2.1) with any object type, rate index, layout."""
    fields = [(draw(st.integers(0, 31)), 5)]
    if fields[0][0] == 31:
        fields.append((draw(st.integers(0, 63)), 6))
    index = draw(st.integers(0, 15))
    fields.append((index, 4))
    if index == 15:
        fields.append((draw(st.integers(0, (1 << 24) - 1)), 24))
    fields.append((draw(st.integers(0, 15)), 4))
    fields.append((draw(st.integers(0, 255)), draw(st.integers(0, 8))))
    value, width = 0, 0
    for field_value, field_width in fields:
        value = value << field_width | (field_value & ((1 << field_width) - 1))
        width += field_width
    cut = draw(st.integers(0, (width + 7) // 8))
    padded = value << (-width % 8)
    return padded.to_bytes((width + 7) // 8, "big")[: max(cut, 1)]


@st.composite
def mutated(draw: st.DrawFn, record: bytes) -> bytes:
    """A real record, cut short or with a few bytes changed."""
    wire = bytearray(record)
    for _ in range(draw(st.integers(0, 3))):
        wire[draw(st.integers(0, len(wire) - 1))] = draw(u8)
    return bytes(wire[: draw(st.integers(0, len(wire)))])


composition_times = st.sampled_from(
    [b"\x00\x00\x00", b"\x00\x00\x28", b"\xff\xff\xff", b"\x80\x00\x00"]
)


@st.composite
def lying_video_bodies(draw: st.DrawFn) -> bytes:
    """VIDEODATA bodies with sound headers around lying records and frames."""
    length_size = draw(st.integers(1, 4))
    frame = nal_units(length_size, draw(lying_nal_lists))
    kind = draw(st.sampled_from(["avc_config", "avc_frame", "ex_config", "ex_frame", "modex"]))
    frame_type = draw(st.sampled_from([1, 2, 3, 4, 5]))
    if kind == "avc_config":
        record = draw(st.one_of(lying_avcc(), mutated(AVC_RECORD)))
        return bytes((frame_type << 4 | 7, 0)) + draw(composition_times) + record
    if kind == "avc_frame":
        return (
            bytes((frame_type << 4 | 7, draw(st.sampled_from([1, 2, 3]))))
            + draw(composition_times)
            + frame
        )
    fourcc = draw(st.sampled_from([b"avc1", b"hvc1", b"av01", b"vp09", b"vp08", b"\x00\x00\x00"]))
    first = 0x80 | frame_type << 4
    if kind == "ex_config":
        record = draw(st.one_of(lying_avcc(), lying_hvcc(), st.binary(max_size=40)))
        return bytes((first | 0,)) + fourcc + record
    if kind == "ex_frame":
        packet_type = draw(st.sampled_from([1, 3, 2, 4, 5, 6, 8, 15]))
        return bytes((first | packet_type,)) + fourcc + draw(composition_times) + frame
    # ModEx (E-RTMP v2): size byte(s), data, then the real packet type.
    entries = b"".join(
        bytes((draw(u8),)) + draw(st.binary(max_size=8)) + bytes((draw(u8),))
        for _ in range(draw(st.integers(1, 10)))
    )
    return bytes((first | 7,)) + entries + fourcc + frame


@st.composite
def lying_audio_bodies(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["aac_config", "aac_frame", "aac_other", "ex", "other"]))
    if kind == "aac_config":
        record = draw(st.one_of(lying_audio_specific_config(), mutated(AAC_ASC)))
        return b"\xaf\x00" + record
    if kind == "aac_frame":
        return b"\xaf\x01" + draw(st.binary(max_size=24))
    if kind == "aac_other":
        return bytes((0xA0 | draw(st.integers(0, 15)), draw(st.integers(2, 255))))
    if kind == "ex":
        return bytes((0x90 | draw(st.integers(0, 15)),)) + draw(st.binary(max_size=16))
    return bytes((draw(u8),)) + draw(st.binary(max_size=16))


def aggregate_of(tag_type: int, body: bytes) -> bytes:
    """One FLV tag and its PreviousTagSize, as an aggregate message carries it."""
    tag = bytes((tag_type,)) + len(body).to_bytes(3, "big") + bytes(7) + body
    return tag + len(tag).to_bytes(4, "big")


@st.composite
def flv_tags(draw: st.DrawFn) -> bytes:
    """One FLV tag for an aggregate message (spec 7.1.6), its sizes possibly lying."""
    tag_type = draw(st.sampled_from([8, 9, 18, 20, 22, 1, 4, 0]))
    body = draw(st.one_of(lying_video_bodies(), lying_audio_bodies(), st.binary(max_size=20)))
    size = draw(st.one_of(st.just(len(body)), st.integers(0, 0xFFFFFF)))
    timestamp = draw(st.sampled_from([0, 40, 0xFFFFFF])).to_bytes(3, "big")
    back = draw(st.one_of(st.just(len(body) + 11), u32)).to_bytes(4, "big")
    return (
        bytes((tag_type,)) + size.to_bytes(3, "big") + timestamp + b"\x00\x00\x00\x00" + body + back
    )


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.floats(),
    st.text(max_size=8),
    st.sampled_from([amf0.UNDEFINED, 2.0**64, -1.0, 1e308, float("inf")]),
)
command_args = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.dictionaries(
            st.sampled_from(["app", "tcUrl", "flashVer", "x", ""]), children, max_size=3
        ),
    ),
    max_leaves=8,
)
COMMAND_NAMES = ["connect", "createStream", "publish", "play", "closeStream", "deleteStream"]
COMMAND_NAMES += ["FCUnpublish", "getStreamLength", "releaseStream", "FCPublish", "onStatus", ""]
command_names = st.sampled_from(COMMAND_NAMES)
chunk_stream_ids = st.sampled_from([2, 3, 4, 5, 6, 7, 8, 63, 64, 319, 320, 65599])
message_stream_ids = st.sampled_from([0, 1, 2, 3, 0xFFFFFFFF])
timestamps = st.sampled_from([0, 40, 0xFFFFFE, 0xFFFFFF, 0x1000000, 0xFFFFFFFF]) | u32


@st.composite
def messages(draw: st.DrawFn) -> RTMPMessage:
    """Any message a hostile client could send through a well-behaved chunk writer.

    Media and data go mostly to message stream 1, which `opening` publishes on.
    """
    msid = draw(message_stream_ids)
    timestamp = draw(timestamps)
    kind = draw(st.sampled_from(MESSAGE_KINDS))
    if kind in ("data", "nested_data", "media", "aggregate"):
        msid = draw(st.sampled_from([1, 1, 1, msid]))
    if kind == "control":
        type_id = draw(st.sampled_from([1, 2, 3, 5, 6]))
        values = edge_u32 | st.sampled_from([1, 128, 4096, 65536, 1 << 24])  # chunk sizes
        payload = draw(st.one_of(values.map(lambda v: v.to_bytes(4, "big")), st.binary(max_size=6)))
    elif kind == "user_control":
        type_id = MessageType.USER_CONTROL
        payload = draw(u16).to_bytes(2, "big") + draw(st.binary(max_size=300))
    elif kind == "command":
        type_id = draw(st.sampled_from([MessageType.COMMAND_AMF0, MessageType.COMMAND_AMF3]))
        values = [
            draw(command_names),
            draw(command_args),
            *draw(st.lists(command_args, max_size=4)),
        ]
        prefix = b"\x00" if type_id == MessageType.COMMAND_AMF3 else b""
        payload = prefix + amf0.encode(*values)
    elif kind == "raw_command":
        type_id = draw(st.sampled_from([15, 17, 18, 20]))
        payload = draw(st.binary(max_size=64))
    elif kind == "data":
        type_id = draw(st.sampled_from([MessageType.DATA_AMF0, MessageType.DATA_AMF3]))
        prefix = b"\x00" if type_id == MessageType.DATA_AMF3 else b""
        values = [draw(st.sampled_from(["@setDataFrame", "onMetaData", "x"])), draw(command_args)]
        payload = prefix + amf0.encode(*values, ECMAArray(width=draw(scalars)))
    elif kind == "nested_data":
        type_id = MessageType.DATA_AMF0
        depth = draw(st.integers(0, 70))
        payload = amf0.encode("@setDataFrame", "onMetaData") + nest(
            draw(st.lists(containers, min_size=depth, max_size=depth)), b"\x05"
        )
    elif kind == "media":
        type_id = draw(st.sampled_from([MessageType.AUDIO, MessageType.VIDEO]))
        bodies = lying_audio_bodies() if type_id == MessageType.AUDIO else lying_video_bodies()
        payload = draw(st.one_of(bodies, st.binary(max_size=32)))
    elif kind == "aggregate":
        type_id = MessageType.AGGREGATE
        payload = b"".join(draw(st.lists(flv_tags(), max_size=4))) + draw(st.binary(max_size=8))
        for _ in range(draw(st.sampled_from([0, 0, 0, 1, 2, 1500]))):  # aggregates in aggregates
            payload = aggregate_of(MessageType.AGGREGATE, payload)
    else:
        type_id = draw(st.sampled_from([0, 7, 10, 16, 19, 21, 23, 255]))
        payload = draw(st.binary(max_size=16))
    return RTMPMessage(int(type_id), timestamp, msid, payload)


MESSAGE_KINDS = [
    *("control", "user_control", "command", "raw_command", "other"),
    *("data", "nested_data", "media", "media", "media", "aggregate", "aggregate"),
]


def basic_header(fmt: int, csid: int) -> bytes:
    if csid < 64:
        return bytes((fmt << 6 | csid,))
    if csid < 320:
        return bytes((fmt << 6, csid - 64))
    return bytes((fmt << 6 | 1, (csid - 64) & 0xFF, (csid - 64) >> 8))


@st.composite
def raw_chunks(draw: st.DrawFn) -> bytes:
    """A hand-built chunk: any header type on any chunk stream, lengths that may lie."""
    fmt = draw(st.integers(0, 3))
    csid = draw(st.one_of(chunk_stream_ids, st.integers(0, 65599)))
    header = basic_header(fmt, csid) if csid >= 2 else bytes((fmt << 6 | csid,))
    timestamp = draw(st.sampled_from([0, 1, 0xFFFFFF]))
    length = draw(st.one_of(st.integers(0, 300), st.sampled_from([0xFFFFFF, 8 << 20, 1 << 20])))
    if fmt < 3:
        header += timestamp.to_bytes(3, "big")
    if fmt < 2:
        header += length.to_bytes(3, "big") + bytes(
            (draw(st.sampled_from([1, 2, 4, 5, 8, 9, 20, 22])),)
        )
    if fmt == 0:
        header += struct.pack("<I", draw(message_stream_ids))
    if timestamp == 0xFFFFFF or draw(st.booleans()):
        header += draw(u32).to_bytes(4, "big")  # extended timestamp, or four stray bytes
    return header + draw(st.binary(max_size=40))


@st.composite
def steps(draw: st.DrawFn, hostile: bool = False) -> tuple[str, Any]:
    """A whole message through our writer, or (``hostile``) a cut one, a hand-built
    chunk or garbage, after which the server's idea of the chunk streams is no longer
    the writer's: such steps come at the end of a session, so most sessions get far."""
    kind = draw(st.sampled_from(["truncated", "raw", "garbage"])) if hostile else "message"
    if kind in ("message", "truncated"):
        return kind, (draw(chunk_stream_ids), draw(messages()), draw(st.floats(0, 1)))
    if kind == "raw":
        return kind, draw(raw_chunks())
    return kind, draw(st.binary(max_size=64))


def small_or_default(*small: int) -> st.SearchStrategy[int | None]:
    """Mostly the default (None), sometimes a small limit that hostile input then meets."""
    return st.sampled_from([None, None, None, *small])


@st.composite
def limits(draw: st.DrawFn) -> ConnectionLimits:
    """Default limits, each sometimes replaced by one at an edge."""
    chosen = {
        "max_message_size": draw(small_or_default(64, 4096)),
        "max_chunk_size": draw(small_or_default(1, 128, 0x7FFFFFFF)),
        "max_chunk_streams": draw(small_or_default(1, 4)),
        "max_message_streams": draw(small_or_default(1)),
        "max_amf_depth": draw(small_or_default(1, 4, 64)),
        "max_amf_string_length": draw(small_or_default(4)),
        "max_partial_bytes": draw(small_or_default(100)),
        "max_amf_values": draw(small_or_default(2, 8)),
        "max_aggregate_sub_messages": draw(small_or_default(1)),
    }
    partial = chosen["max_partial_bytes"]
    if partial is not None and (chosen["max_message_size"] or 8 << 20) > partial:
        chosen["max_message_size"] = partial  # a smaller cap on partials is refused
    return ConnectionLimits(**{name: value for name, value in chosen.items() if value is not None})


def run_session(peer: Peer, plan: list[tuple[str, Any]], sizes: list[int]) -> None:
    """Send each step; a Set Chunk Size the server takes is applied to our writer too."""
    for kind, arg in plan:
        if kind not in ("message", "truncated"):
            peer.feed(arg, sizes)
            continue
        csid, message, fraction = arg
        data = peer.write(csid, message)
        if kind == "truncated":
            data = data[: int(len(data) * fraction)]
        peer.feed(data, sizes)
        if kind == "message" and message.type_id == MessageType.SET_CHUNK_SIZE:
            size = int.from_bytes(message.payload[:4], "big") & 0x7FFFFFFF
            if len(message.payload) >= 4 and size:
                peer.writer.chunk_size = size


@thorough
@given(
    limits(),
    st.sampled_from([True, True, True, False]),
    st.lists(steps(), min_size=1, max_size=16),
    st.lists(steps(hostile=True), max_size=3),
    feed_sizes,
)
def test_connection_survives_hostile_sessions(
    connection_limits: ConnectionLimits,
    open_first: bool,
    plan: list[tuple[str, Any]],
    tail: list[tuple[str, Any]],
    sizes: list[int],
) -> None:
    peer = Peer(connection_limits)
    prelude = [("message", (csid, message, 1.0)) for csid, message in opening()]
    with contextlib.suppress(RTMPProtocolError):
        run_session(peer, (prelude if open_first else []) + plan + tail, sizes)


@fuzz
@given(limits(), st.binary(max_size=600), feed_sizes)
def test_connection_arbitrary_chunk_streams(
    connection_limits: ConnectionLimits, data: bytes, sizes: list[int]
) -> None:
    peer = Peer(connection_limits)
    with contextlib.suppress(RTMPProtocolError):
        peer.feed(data, sizes)


@fuzz
@given(
    st.sampled_from([MessageType.COMMAND_AMF0, MessageType.COMMAND_AMF3, MessageType.DATA_AMF0]),
    st.lists(st.binary(max_size=80), min_size=1, max_size=4),
    st.sampled_from([0, 1]),
)
def test_commands_with_arbitrary_amf0_bodies(
    type_id: MessageType, bodies: list[bytes], msid: int
) -> None:
    """After a real connect/createStream/publish, command and data bodies are random."""
    peer = Peer(ConnectionLimits())
    run_session(peer, [("message", (c, m, 1.0)) for c, m in opening()[:4]], [])
    with contextlib.suppress(RTMPProtocolError):
        for body in bodies:
            peer.feed(peer.write(3, RTMPMessage(int(type_id), 0, msid, body)), [])


media_bodies = st.one_of(
    lying_video_bodies().map(lambda body: (MessageType.VIDEO, body)),
    lying_audio_bodies().map(lambda body: (MessageType.AUDIO, body)),
)


@fuzz
@given(st.lists(media_bodies, max_size=8), st.booleans())
def test_publisher_media_that_lies_reaches_players_or_is_refused(
    bodies: list[tuple[MessageType, bytes]], as_aggregate: bool
) -> None:
    """Media that lies about its codec configuration: events or RTMPProtocolError."""
    peer = Peer(ConnectionLimits())
    run_session(peer, [("message", (c, m, 1.0)) for c, m in opening()], [])
    assert peer.playing == [2]
    with contextlib.suppress(RTMPProtocolError):
        for type_id, body in bodies:
            if as_aggregate:
                message = RTMPMessage(MessageType.AGGREGATE, 0, 1, aggregate_of(type_id, body))
            else:
                message = RTMPMessage(type_id, 0, 1, body)
            peer.feed(peer.write(6, message), [])


# -- hostile chunk streams, example by example --------------------------------------------


def connected_peer(connection_limits: ConnectionLimits | None = None) -> Peer:
    peer = Peer(connection_limits or ConnectionLimits())
    run_session(peer, [("message", (c, m, 1.0)) for c, m in opening()[:1]], [])
    return peer


def control(type_id: int, payload: bytes) -> RTMPMessage:
    return RTMPMessage(type_id, 0, 0, payload)


@pytest.mark.parametrize("size", [0, 0x80000000, 0x7FFFFFFF, 0xFFFFFFFF, (1 << 24) + 1])
def test_set_chunk_size_out_of_limits_is_refused(size: int) -> None:
    peer = connected_peer()
    with pytest.raises(RTMPProtocolError, match="max_chunk_size"):
        peer.feed(peer.write(2, control(MessageType.SET_CHUNK_SIZE, size.to_bytes(4, "big"))), [])


@pytest.mark.parametrize("size", [1, 0x7FFFFFFF])
def test_set_chunk_size_at_the_edges_within_limits(size: int) -> None:
    """Chunk size 1 (two bytes per payload byte) and 2^31-1 (one chunk per message)."""
    peer = connected_peer(ConnectionLimits(max_chunk_size=0x7FFFFFFF))
    peer.feed(peer.write(2, control(MessageType.SET_CHUNK_SIZE, size.to_bytes(4, "big"))), [])
    peer.writer.chunk_size = size
    peer.feed(peer.write(3, command(0, "createStream", 2.0, None)), [1])
    assert peer.conn.buffered_bytes == 0


def test_huge_claimed_message_allocates_nothing_up_front() -> None:
    """A header claiming 8 MiB with 10 bytes behind it holds 10 bytes, not 8 MiB."""
    peer = connected_peer(ConnectionLimits(max_chunk_size=0x7FFFFFFF))
    peer.feed(peer.write(2, control(MessageType.SET_CHUNK_SIZE, b"\x7f\xff\xff\xff")), [])
    claim = bytes(3) + (8 << 20).to_bytes(3, "big") + b"\x09" + bytes(4)
    tracemalloc.start()
    try:
        peer.conn.receive_data(basic_header(0, 10) + claim + bytes(10), 0.0)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20
    assert peer.conn.buffered_bytes == 10


def test_huge_claims_on_many_chunk_streams_hold_only_what_arrived() -> None:
    """50 chunk streams each claiming 8 MiB (400 MiB in all) hold their first chunks."""
    peer = connected_peer()
    claim = bytes(3) + (8 << 20).to_bytes(3, "big") + b"\x09" + bytes(4)
    tracemalloc.start()
    try:
        for csid in range(10, 60):
            peer.conn.receive_data(basic_header(0, csid) + claim + bytes(128), 0.0)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20
    assert peer.conn.buffered_bytes == 50 * 128


def test_partial_messages_across_chunk_streams_are_bounded() -> None:
    """Many chunk streams each holding part of a big message hit max_partial_bytes."""
    reader = ChunkReader(max_message_size=1000, max_partial_bytes=2500)
    reader.chunk_size = 900  # each message's first chunk ends where the next header starts
    header = bytes(3) + (1000).to_bytes(3, "big") + b"\x09" + bytes(4)
    for csid in (3, 4):
        reader.feed(basic_header(0, csid) + header + bytes(900))
        assert reader.next_message() is None
    assert reader.buffered_bytes == 1800
    reader.feed(basic_header(0, 5) + header + bytes(900))
    with pytest.raises(RTMPProtocolError, match="3 chunk streams hold 2700 bytes"):
        reader.next_message()


def test_whole_messages_do_not_count_against_the_partial_limit() -> None:
    reader = ChunkReader(max_message_size=1000, max_partial_bytes=1000)
    writer = ChunkWriter()
    for index in range(20):
        reader.feed(writer.write(3 + index % 5, RTMPMessage(9, index, 1, bytes(1000))))
        while reader.next_message() is not None:
            pass
    assert reader.buffered_bytes == 0


@pytest.mark.parametrize("fmt", [1, 2, 3])
def test_unknown_chunk_stream_without_a_type0_header(fmt: int) -> None:
    peer = connected_peer()
    with pytest.raises(RTMPProtocolError, match="must be type 0"):
        peer.feed(basic_header(fmt, 40) + bytes(11), [])


@pytest.mark.parametrize("csid", [0, 1, 2, 40, 65599, 0xFFFFFFFF])
def test_abort_for_a_chunk_stream_never_used(csid: int) -> None:
    peer = connected_peer()
    peer.feed(peer.write(2, control(MessageType.ABORT, csid.to_bytes(4, "big"))), [])
    peer.feed(peer.write(3, command(0, "createStream", 2.0, None)), [])
    assert peer.conn.buffered_bytes == 0


def test_window_ack_size_zero_sends_no_acknowledgements() -> None:
    peer = connected_peer()
    peer.feed(peer.write(2, control(MessageType.WINDOW_ACK_SIZE, bytes(4))), [])
    before = len(peer.received)
    peer.feed(peer.write(4, RTMPMessage(MessageType.USER_CONTROL, 0, 0, bytes(6000))), [7])
    assert peer.received[before:] == []


def test_window_ack_size_one_acknowledges_once_per_read() -> None:
    peer = connected_peer()
    peer.feed(peer.write(2, control(MessageType.WINDOW_ACK_SIZE, b"\x00\x00\x00\x01")), [])
    peer.conn.data_to_send()
    data = peer.write(4, RTMPMessage(MessageType.USER_CONTROL, 0, 0, bytes(600)))
    out = []
    for piece in split_points(data, [100]):
        peer.conn.receive_data(piece, 0.0)
        out.append(peer.conn.data_to_send())
    assert all(0 < len(reply) < 64 for reply in out)  # one Acknowledgement each, no more


def test_huge_user_control_message_is_read_and_dropped() -> None:
    peer = connected_peer()
    ping = (6).to_bytes(2, "big") + (99).to_bytes(4, "big") + bytes(1 << 20)
    peer.feed(peer.write(2, RTMPMessage(MessageType.USER_CONTROL, 0, 0, ping)), [65536])
    assert peer.conn.buffered_bytes == 0


def test_type3_chunk_starting_a_message_with_an_extended_timestamp() -> None:
    peer = connected_peer()
    extended = basic_header(0, 9) + b"\xff\xff\xff" + (6).to_bytes(3, "big") + b"\x04" + bytes(4)
    ping = (6).to_bytes(2, "big") + bytes(4)
    peer.feed(extended + (0x1000000).to_bytes(4, "big") + ping, [])
    # A type 3 chunk starting the next message carries its own extended delta.
    peer.feed(basic_header(3, 9) + (5).to_bytes(4, "big") + ping, [])
    assert peer.conn.buffered_bytes == 0


# -- aggregate messages -------------------------------------------------------------------


def test_nested_aggregates_are_refused_not_recursed() -> None:
    """An aggregate inside an aggregate, thousands deep, once raised RecursionError."""
    peer = connected_peer()
    body = aggregate_of(MessageType.VIDEO, b"\x17\x01\x00\x00\x00")
    for _ in range(5000):
        body = aggregate_of(MessageType.AGGREGATE, body)
    with pytest.raises(RTMPProtocolError, match="aggregate"):
        peer.feed(peer.write(6, RTMPMessage(MessageType.AGGREGATE, 0, 0, body)), [])


def test_aggregate_sub_messages_are_bounded() -> None:
    """An 8 MiB aggregate of tiny audio tags once made 466,000 packets in one call (3 s)."""
    peer = Peer(ConnectionLimits())
    run_session(peer, [("message", (c, m, 1.0)) for c, m in opening()[:4]], [])
    tag = aggregate_of(MessageType.AUDIO, b"\x2f\x01\x02")
    most = tag * peer.conn.limits.max_aggregate_sub_messages
    peer.feed(peer.write(6, RTMPMessage(MessageType.AGGREGATE, 0, 1, most)), [])
    media = [e for e in peer.events if isinstance(e, MediaReceived)]
    assert len(media) == peer.conn.limits.max_aggregate_sub_messages
    flood = tag * ((8 << 20) // len(tag) - 1)
    data = peer.write(6, RTMPMessage(MessageType.AGGREGATE, 0, 1, flood))
    with pytest.raises(RTMPProtocolError, match="max_aggregate_sub_messages"):
        peer.conn.receive_data(data, 0.0)


def test_command_of_a_million_values_is_refused_quickly() -> None:
    peer = connected_peer()
    body = amf0.encode("createStream", 2.0) + b"\x05" * (1 << 20)
    with pytest.raises(RTMPProtocolError, match="max_values"):
        peer.feed(peer.write(3, RTMPMessage(MessageType.COMMAND_AMF0, 0, 0, body)), [])


@pytest.mark.parametrize(
    "tag_type",
    [MessageType.SET_CHUNK_SIZE, MessageType.COMMAND_AMF0, MessageType.USER_CONTROL, 0, 255],
)
def test_aggregates_carry_only_flv_tags(tag_type: int) -> None:
    peer = connected_peer()
    payload = aggregate_of(tag_type, amf0.encode("createStream", 2.0, None))
    data = peer.write(6, RTMPMessage(MessageType.AGGREGATE, 0, 0, payload))
    with pytest.raises(RTMPProtocolError, match=f"sub-message of type {tag_type} "):
        peer.feed(data, [])


def test_data_message_as_deep_as_the_configured_limit_is_relayed() -> None:
    """max_amf_depth above the encoder's own depth limit once made relaying raise ValueError."""
    peer = Peer(ConnectionLimits(max_amf_depth=64))
    run_session(peer, [("message", (c, m, 1.0)) for c, m in opening()[:4]], [])
    deep = amf0.encode("onMetaData") + b"\x0a\x00\x00\x00\x01" * 40 + b"\x05"
    peer.feed(peer.write(5, RTMPMessage(MessageType.DATA_AMF0, 0, 1, deep)), [])
    (media,) = [e for e in peer.events if isinstance(e, MediaReceived)]
    assert media.packet.payload == deep
    assert media.packet.is_config


@light
@given(st.sampled_from([1, 8, 32, 33, 64, 100]), st.lists(containers, max_size=110), st.booleans())
def test_data_messages_nested_to_any_depth_under_any_depth_limit(
    max_depth: int, kinds: list[str], set_data_frame: bool
) -> None:
    """Metadata is refused past max_amf_depth and relayed as sent up to it."""
    peer = Peer(ConnectionLimits(max_amf_depth=max_depth))
    run_session(peer, [("message", (c, m, 1.0)) for c, m in opening()[:4]], [])
    metadata = amf0.encode("onMetaData") + nest(kinds, b"\x05")
    body = (amf0.encode("@setDataFrame") if set_data_frame else b"") + metadata
    data = peer.write(5, RTMPMessage(MessageType.DATA_AMF0, 0, 1, body))
    if len(kinds) > max_depth:
        with pytest.raises(RTMPProtocolError, match="nested deeper"):
            peer.feed(data, [])
        return
    peer.feed(data, [])
    (media,) = [e for e in peer.events if isinstance(e, MediaReceived)]
    assert media.packet.payload == metadata


def test_set_data_frame_is_stripped_without_re_encoding() -> None:
    peer = Peer(ConnectionLimits())
    run_session(peer, [("message", (c, m, 1.0)) for c, m in opening()[:4]], [])
    metadata = amf0.encode("onMetaData", ECMAArray(width=320.0, duration=0.0))
    body = amf0.encode("@setDataFrame") + metadata
    peer.feed(peer.write(5, RTMPMessage(MessageType.DATA_AMF0, 7, 1, body)), [])
    (media,) = [e for e in peer.events if isinstance(e, MediaReceived)]
    assert media.packet.payload == metadata
    assert media.packet.dts == 7


# -- AMF0 ----------------------------------------------------------------------------------

amf_tokens = st.one_of(
    st.integers(0, 0x13).map(lambda marker: bytes((marker,))),  # every marker, and past them
    st.just(OBJECT_END),
    st.binary(max_size=6).map(amf_string),
    st.sampled_from([b"\xff\xfe", b"\xc3\x28", b"\xed\xa0\x80"]).map(amf_string),  # bad UTF-8
    st.sampled_from([0, 1, 3, 0xFFFF]).map(lambda n: n.to_bytes(2, "big")),
    edge_u32.map(lambda n: n.to_bytes(4, "big")),  # counts and long lengths that lie
    st.floats().map(lambda x: struct.pack(">d", x)),
    st.binary(max_size=4),
)


def check_within_limits(
    value: Any, depth: int, max_depth: int, max_string: int, max_items: int
) -> None:
    """A decoded value honours the limits it was decoded under."""
    if isinstance(value, str):
        assert len(value.encode()) <= max_string
    elif isinstance(value, list):
        assert depth < max_depth
        assert len(value) <= max_items
        for item in value:
            check_within_limits(item, depth + 1, max_depth, max_string, max_items)
    elif isinstance(value, dict | TypedObject):
        assert depth < max_depth
        properties = value.properties if isinstance(value, TypedObject) else value
        assert len(properties) <= max_items
        for key, item in properties.items():
            assert len(key.encode()) <= max_string
            check_within_limits(item, depth + 1, max_depth, max_string, max_items)


def count_values(value: Any) -> int:
    """The value and everything in it (repeated property names counted once)."""
    if isinstance(value, list):
        return 1 + sum(count_values(item) for item in value)
    if isinstance(value, dict | TypedObject):
        properties = value.properties if isinstance(value, TypedObject) else value
        return 1 + sum(count_values(item) for item in properties.values())
    return 1


@fuzz
@given(
    st.lists(amf_tokens, max_size=40),
    st.integers(1, 6),
    st.integers(0, 8),
    st.integers(0, 6),
    st.integers(0, 12),
)
def test_amf0_token_soup_honours_the_limits(
    tokens: list[bytes], max_depth: int, max_string: int, max_items: int, max_values: int
) -> None:
    """Markers, lengths, counts and object ends in any order, under small limits."""
    wire = b"".join(tokens)
    try:
        values = amf0.decode_all(
            wire,
            max_depth=max_depth,
            max_string_length=max_string,
            max_items=max_items,
            max_values=max_values,
        )
    except RTMPProtocolError:
        return
    for value in values:
        check_within_limits(value, 0, max_depth, max_string, max_items)
    assert sum(count_values(value) for value in values) <= max_values
    # Whatever was accepted re-encodes to something that decodes to the same bytes.
    wire = amf0.encode(*values)
    assert amf0.encode(*amf0.decode_all(wire)) == wire


@fuzz
@given(st.lists(containers, min_size=1, max_size=80), st.integers(1, 40))
def test_amf0_nesting_is_refused_exactly_past_max_depth(kinds: list[str], max_depth: int) -> None:
    wire = nest(kinds, b"\x05")
    if len(kinds) > max_depth:
        with pytest.raises(RTMPProtocolError, match="nested deeper"):
            amf0.decode_all(wire, max_depth=max_depth)
    else:
        (value,) = amf0.decode_all(wire, max_depth=max_depth)
        check_within_limits(value, 0, max_depth, 1 << 20, 1 << 16)


@fuzz
@given(
    st.sampled_from(["string", "long_string", "xml", "key", "class_name"]),
    st.integers(0, 300),
    st.integers(0, 300),
    st.lists(containers, max_size=3),
)
def test_amf0_string_lengths_against_the_limit(
    where: str, length: int, limit: int, kinds: list[str]
) -> None:
    text = b"a" * length
    if where == "string":
        inner = b"\x02" + amf_string(text)
    elif where == "long_string":
        inner = b"\x0c" + length.to_bytes(4, "big") + text
    elif where == "xml":
        inner = b"\x0f" + length.to_bytes(4, "big") + text
    elif where == "key":
        inner = b"\x03" + amf_string(text) + b"\x05" + OBJECT_END
    else:
        inner = b"\x10" + amf_string(text) + OBJECT_END
    wire = nest(kinds, inner)
    if length > limit:
        with pytest.raises(RTMPProtocolError, match="over the limit"):
            amf0.decode_all(wire, max_string_length=limit)
    else:
        amf0.decode_all(wire, max_string_length=limit)


@pytest.mark.parametrize(
    ("wire", "reason"),
    [
        (b"\x07\x00\x01", "references"),
        (b"\x03" + amf_string(b"a") + b"\x07\x00\x00" + OBJECT_END, "references"),
        (b"\x0a\x00\x00\x00\x01\x11\x01", "AMF3"),
        (nest(["ecma", "strict", "object"], b"\x11\x06"), "AMF3"),
        (b"\x09", "object-end marker outside"),
        (b"\x0a\x00\x00\x00\x01\x09", "object-end marker outside"),
        (b"\x03" + amf_string(b"a") + b"\x09", "object-end marker after property name"),
        (b"\x08\x00\x00\x00\x05" + OBJECT_END[:2], "truncated"),
        (b"\x0a\xff\xff\xff\xff", "over the limit"),
        (b"\x0a\x00\x00\x10\x00\x05", "only 1 bytes follow"),
        (b"\x0c\xff\xff\xff\xff", "over the limit"),
        (b"\x12", "unknown AMF0 type marker 0x12"),
        (b"\xff", "unknown AMF0 type marker 0xff"),
        (b"\x04", "movieclip"),
        (b"\x0e", "recordset"),
        (b"\x0b\x00\x00\x00\x00\x00\x00\x00\x00\x00", "truncated"),
    ],
)
def test_amf0_hostile_values(wire: bytes, reason: str) -> None:
    with pytest.raises(RTMPProtocolError, match=reason):
        amf0.decode_all(wire)


@fuzz
@given(u32, st.lists(st.tuples(st.text(max_size=4), scalars), max_size=5), st.data())
def test_amf0_ecma_arrays_with_lying_counts_and_stray_object_ends(
    count: int, items: list[tuple[str, Any]], data: st.DataObject
) -> None:
    body = b"".join(amf_string(k.encode()) + amf0.encode(v) for k, v in items)
    wire = bytearray(b"\x08" + count.to_bytes(4, "big") + body + OBJECT_END)
    clean = bytes(wire)
    for _ in range(data.draw(st.integers(0, 2))):
        at = data.draw(st.integers(0, len(wire)))
        wire[at:at] = OBJECT_END if data.draw(st.booleans()) else b"\x09"
    try:
        values = amf0.decode_all(bytes(wire))
    except RTMPProtocolError:
        assert bytes(wire) != clean
        return
    if bytes(wire) == clean:
        assert isinstance(values[0], ECMAArray)
        assert len(values) == 1
        assert list(values[0]) == list(dict(items))  # keys in order, whatever the count said


def test_buffer_refuses_negative_and_oversized_reads() -> None:
    buf = Buffer(b"abc", RTMPProtocolError)
    for read in (lambda: buf.pull_view(-1), lambda: buf.pull_bytes(4), buf.pull_float64):
        with pytest.raises(RTMPProtocolError, match="truncated"):
            read()
    assert buf.pull_bytes(3) == b"abc"


# -- FLV tag bodies --------------------------------------------------------------------------


def demux_all(bodies: list[bytes], video: bool) -> list[MediaPacket]:
    demuxer = FLVDemuxer()
    demux = demuxer.demux_video if video else demuxer.demux_audio
    packets = []
    for body in bodies:
        try:
            packet = demux(0, body)
        except MediaError:
            continue
        if packet is not None:
            assert tag_body(packet) == body  # a relay resends what arrived
            packets.append(packet)
    return packets


def to_elementary_stream(packet: MediaPacket) -> bytes | None:
    """What the HLS segmenter does with a packet and the config it depends on."""
    config = packet.config
    if packet.is_config or config is None:
        return None
    if config.codec in (Codec.H264, Codec.HEVC):
        converter = AnnexBConverter.from_config(config.codec, config.extradata)
        return converter.convert(packet.payload, packet.keyframe)
    if config.codec is Codec.AAC:
        return adts_frame(config.extradata, packet.payload)
    return None


@fuzz
@given(st.lists(lying_video_bodies(), min_size=1, max_size=5))
def test_video_bodies_that_lie_about_their_configuration(bodies: list[bytes]) -> None:
    """avcC/hvcC records and frames that lie: MediaError from FLV, BitstreamError in HLS."""
    for packet in demux_all(bodies, video=True):
        if packet.config is not None:
            assert packet.config.width >= 0
            assert packet.config.height >= 0
        try:
            out = to_elementary_stream(packet)
        except BitstreamError:
            continue
        if out is not None:
            assert out.startswith(START_CODE)


@fuzz
@given(st.lists(lying_audio_bodies(), min_size=1, max_size=5))
def test_audio_bodies_that_lie_about_their_configuration(bodies: list[bytes]) -> None:
    for packet in demux_all(bodies, video=False):
        try:
            out = to_elementary_stream(packet)
        except BitstreamError:
            continue
        if out is not None:
            assert out[:2] == b"\xff\xf1"
            assert int.from_bytes(out[3:6], "big") >> 5 & 0x1FFF == len(out)


@pytest.mark.parametrize(
    "body",
    [
        b"\x17\x00\x00\x00\x00\x01\x64\x00\x0d\xff\xff",  # avcC claiming 31 SPS, no bytes
        b"\x17\x00\x00\x00\x00\x01\x64\x00\x0d\xff\xe1\xff\xff\x67",  # SPS of 65535 bytes
        b"\x17\x00\x00\x00\x00\x01",  # avcC cut after its version
        b"\x90hvc1\x01" + bytes(21) + b"\xff",  # hvcC promising 255 arrays
        b"\x90av01\x81\x00\x00\x00\x0a\xff\xff\xff\xff\xff\xff\xff\xff\xff",  # endless leb128
    ],
)
def test_sequence_headers_with_lying_records_still_relay(body: bytes) -> None:
    """A record nobody can read travels as it came, with its picture size left 0."""
    packet = FLVDemuxer().demux_video(0, body)
    assert packet is not None
    assert packet.config is not None
    assert (packet.config.width, packet.config.height) == (0, 0)
    assert tag_body(packet) == body
    if packet.codec in (Codec.H264, Codec.HEVC):
        with pytest.raises(BitstreamError):
            AnnexBConverter.from_config(packet.codec, packet.config.extradata)


# -- codec bitstream conversions -------------------------------------------------------------


@fuzz
@given(
    st.sampled_from([Codec.H264, Codec.HEVC]),
    st.data(),
    st.integers(1, 4),
    lying_nal_lists,
    st.booleans(),
)
def test_annex_b_conversion_of_lying_records_and_frames(
    codec: Codec,
    data: st.DataObject,
    length_size: int,
    units: list[tuple[int | None, bytes]],
    keyframe: bool,
) -> None:
    record = data.draw(lying_avcc() if codec is Codec.H264 else lying_hvcc())
    try:
        converter = AnnexBConverter.from_config(codec, record)
    except BitstreamError:
        return
    payload = nal_units(converter.length_size, units)
    try:
        out = converter.convert(payload, keyframe)
    except BitstreamError:
        return
    # Every NAL unit that went in comes out behind a start code.
    assert out.startswith(START_CODE)
    for claimed, unit in units:
        if unit and claimed is None:
            assert START_CODE + unit in out


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"\x00\x00\x10\x00\x65\x88", "runs past the end"),  # length far beyond the data
        (b"\xff\xff\xff\xff", "runs past the end"),
        (b"\x00\x00\x00\x00" * 3, "no NAL units"),  # zero-length NAL units only
        (b"\x00\x00", "truncated 4-byte NAL unit length"),
        (b"\x00\x00\x00\x01\x80", "invalid NAL unit header"),  # forbidden_zero_bit
    ],
)
def test_frames_that_lie_about_their_nal_units(payload: bytes, message: str) -> None:
    converter = AnnexBConverter.from_config(Codec.H264, AVC_RECORD)
    with pytest.raises(BitstreamError, match=message):
        converter.convert(payload, True)


@pytest.mark.parametrize(
    ("codec", "record"),
    [
        (Codec.H264, b"\x01\x64\x00\x0d\xff\xff"),  # 31 SPS claimed, none there
        (Codec.H264, b"\x01\x64\x00\x0d\xff\xe1\x00\x10\x67"),  # SPS length past the end
        (Codec.H264, b"\x01\x64\x00\x0d\xff\xe0\xff"),  # 255 PPS claimed, none there
        (Codec.HEVC, b"\x01" + bytes(20) + b"\x03\x01\xa1\xff\xff"),  # 65535 NAL units
        (Codec.HEVC, b"\x01" + bytes(20) + b"\x03\xff"),  # 255 arrays, none there
    ],
)
def test_records_that_lie_about_their_counts(codec: Codec, record: bytes) -> None:
    with pytest.raises(BitstreamError, match="truncated"):
        AnnexBConverter.from_config(codec, record)


@fuzz
@given(lying_audio_specific_config(), st.binary(min_size=1, max_size=40))
def test_adts_from_lying_audio_specific_configs(config: bytes, raw: bytes) -> None:
    with contextlib.suppress(MediaError):
        parse_aac_config(config)
    try:
        frame = adts_frame(config, raw)
    except BitstreamError:
        return
    assert frame[:2] == b"\xff\xf1"
    assert (frame[2] >> 2) & 0x0F <= 12  # a sampling_frequency_index ADTS defines
    assert frame[7:] == raw


@pytest.mark.parametrize("index", [13, 14])
def test_adts_refuses_reserved_sample_rate_indexes(index: int) -> None:
    config = ((2 << 11) | (index << 7) | (2 << 3)).to_bytes(2, "big")
    with pytest.raises(BitstreamError, match="reserved AAC samplingFrequencyIndex"):
        adts_frame(config, b"\x21")
    with pytest.raises(MediaError, match="reserved AAC samplingFrequencyIndex"):
        parse_aac_config(config)


annex_b_nal_units_in = st.tuples(
    st.sampled_from([b"\x00\x00\x01", b"\x00\x00\x00\x01", b""]),
    # SPS, PPS, IDR slice, and both with forbidden_zero_bit set
    st.sampled_from([b"\x67\x42\x00\x1e", b"\x68", b"\x65", b"\xe7\x42\x00\x1e", b"\x88"]),
    st.one_of(
        st.binary(max_size=12),
        # parameter sets at and past the 16-bit length field of an avcC record
        st.sampled_from([0xFFFF, 0x10000]).map(lambda size: b"\x11" * (size - 4)),
    ),
).map(b"".join)


@fuzz
@given(st.binary(max_size=8), st.lists(annex_b_nal_units_in, max_size=6))
def test_annex_b_parsing_never_raises(prefix: bytes, units: list[bytes]) -> None:
    """What an encoder writes, or garbage: NAL units found, an avcC built or None."""
    access_unit = prefix + b"".join(units)
    for unit in annex_b_nal_units(access_unit):
        assert unit
    record = avc_config_from_annex_b(access_unit)
    if record is not None:  # what it builds, our own converter reads
        assert len(AnnexBConverter.from_config(Codec.H264, record).parameter_sets) == 2


def test_avc_config_from_annex_b_skips_parameter_sets_too_long_for_avcc() -> None:
    """An SPS over 65535 bytes once raised OverflowError building the avcC length."""
    huge_sps = b"\x67\x42\x00\x1e" + b"\x11" * 70000
    access_unit = b"\x00\x00\x00\x01" + huge_sps + b"\x00\x00\x00\x01\x68\xce\x38\x80"
    assert avc_config_from_annex_b(access_unit) is None
    sps = b"\x67\x42\x00\x1e\x11"
    record = avc_config_from_annex_b(access_unit + b"\x00\x00\x01" + sps)
    assert record is not None
    assert AnnexBConverter.from_config(Codec.H264, record).parameter_sets == (
        sps,
        b"\x68\xce\x38\x80",
    )


# -- bit reader -------------------------------------------------------------------------------

# A random walk of reads over random bits, as a codec header parser does.
bit_ops = st.lists(
    st.tuples(st.sampled_from(["bits", "skip", "ue", "se", "flag"]), st.integers(-2, 80)),
    max_size=40,
)


@fuzz
@given(st.binary(max_size=32), bit_ops)
def test_bit_reader_random_walks_raise_only_media_error(
    data: bytes, ops: list[tuple[str, int]]
) -> None:
    bits = BitReader(data)
    reads: dict[str, Callable[[int], object]] = {
        "bits": bits.read_bits,
        "skip": bits.skip_bits,
        "ue": lambda n: bits.read_ue(max(n, 0)),
        "se": lambda _n: bits.read_se(),
        "flag": lambda _n: bits.read_flag(),
    }
    for name, count in ops:
        left = bits.bits_left
        try:
            value = reads[name](count)
        except MediaError:
            assert bits.bits_left <= left
            continue
        assert 0 <= bits.bits_left <= left
        if name == "bits":
            assert 0 <= value < 1 << count  # type: ignore[operator]


def test_bit_reader_exp_golomb_over_all_zero_bits_is_bounded() -> None:
    """A megabyte of zero bits is refused after 33 of them, not read to the end."""
    bits = BitReader(bytes(1 << 20))
    with pytest.raises(MediaError, match="leading zero bits"):
        bits.read_ue()
    assert bits.bits_left == (8 << 20) - 33
