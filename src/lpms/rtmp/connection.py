"""The server side of one RTMP connection, sans-IO, and in charge of its own time.

Feed it bytes with `receive_data(data, now)`, act on the events it returns, and send
what `data_to_send` returns. It decides every timeout and budget itself (aioquic's
model): the owner asks `get_timer()` when to wake it, calls `handle_timer(now)` then,
and reads from the peer only while `read_allowed` says so.

It runs the handshake, chunking and the command exchange real clients (FFmpeg, OBS,
GStreamer/librtmp) wait for, and turns audio/video/data messages into
`MediaPacket`s. Decisions that belong to the application (may this
client publish or play this name?) come out as events and go back in as
``accept_*``/``reject_*`` calls.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import ClassVar
from urllib.parse import parse_qsl

from lpms.buffer import Buffer
from lpms.errors import MediaError, RTMPProtocolError
from lpms.media import flv
from lpms.media.packet import Codec, MediaPacket, TrackKind
from lpms.rtmp import amf0, messages
from lpms.rtmp.amf0 import AMF0Value
from lpms.rtmp.chunk import ChunkReader, ChunkWriter, RTMPMessage
from lpms.rtmp.events import (
    Connected,
    Event,
    MediaReceived,
    PlayEnded,
    PlayRequested,
    PublishEnded,
    PublishRequested,
)
from lpms.rtmp.handshake import ServerHandshake
from lpms.rtmp.messages import ChunkStreamID, MessageType, UserControlEvent
from lpms.rtmp.settings import ConnectionLimits, ListenerSettings

__all__ = ["ConnectionLimits", "RTMPConnection", "split_query"]

log = logging.getLogger(__name__)


class _Role(enum.Enum):
    IDLE = "idle"
    PUBLISHING = "publishing"
    PLAYING = "playing"


@dataclass(slots=True)
class _MessageStream:
    role: _Role = _Role.IDLE
    name: str = ""
    pending: bool = False


def split_query(text: str) -> tuple[str, dict[str, str]]:
    """``"name?key=v"`` -> ``("name", {"key": "v"})``; the query is for auth hooks."""
    base, sep, query = text.partition("?")
    if not sep:
        return text, {}
    return base, dict(parse_qsl(query, keep_blank_values=True))


_CommandHandler = Callable[["RTMPConnection", int, float, list[AMF0Value]], None]


# How often, in messages, the parse loop reads the CPU clock: cheap enough for a flood
# of empty messages, fine enough to stop within a few microseconds of the slice.
_CLOCK_EVERY = 16
# Plain ints, read once: an enum member looked up through its class costs more than
# the comparison, on every message.
_VIDEO_MESSAGE = int(MessageType.VIDEO)
_MEDIA_MESSAGES = frozenset({_VIDEO_MESSAGE, int(MessageType.AUDIO)})
# Each kind of packet's chunk stream and message type on the way out.
_OUTGOING = {
    TrackKind.VIDEO: (int(ChunkStreamID.VIDEO), int(MessageType.VIDEO)),
    TrackKind.AUDIO: (int(ChunkStreamID.AUDIO), int(MessageType.AUDIO)),
    TrackKind.DATA: (int(ChunkStreamID.DATA), int(MessageType.DATA_AMF0)),
}


class RTMPConnection:
    """One server-side RTMP connection: bytes and time in, events and bytes out.

    ``cpu_clock`` measures what parsing costs; tests pass a fake one. It is a wall
    clock by default (80 ns a read, where this thread's CPU clock is a system call of
    a microsecond): parsing runs on the loop's thread without waiting, so only a
    preemption in the middle of it counts time that was not spent, and a real
    client's parsing is too short a share of any second for those to add up.
    """

    def __init__(
        self,
        settings: ListenerSettings | None = None,
        *,
        now: float,
        cpu_clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.settings = settings = settings or ListenerSettings()
        self.limits = settings.connection
        self._handshake: ServerHandshake | None = ServerHandshake()
        self._reader = ChunkReader(
            max_message_size=self.limits.max_message_size,
            max_chunk_size=self.limits.max_chunk_size,
            max_chunk_streams=self.limits.max_chunk_streams,
            max_partial_bytes=self.limits.max_partial_bytes,
        )
        self._writer = ChunkWriter()
        self._out: list[bytes | memoryview] = []
        self._events: list[Event] = []
        self._streams: dict[int, _MessageStream] = {}
        self._next_stream_id = 1
        self._demuxers: dict[int, flv.FLVDemuxer] = {}
        self._peer_window = 0
        self._last_ack = 0
        self.app = ""
        self.app_query: dict[str, str] = {}
        self.tc_url = ""
        self.connected = False
        self.closed_reason: str | None = None
        # Time, as the owner tells it.
        self._now = now
        self._opened = now
        self._last_receive = now
        self._idle_since: float | None = now  # None while a stream is in use or asked for
        self._publishing = 0  # message streams publishing now
        self._pace_from = 0.0  # a publisher's reads are paced from then on
        self._paced_until: float | None = None
        # The parse budget: CPU spent in the current one-second window, and how many
        # windows running have used it all.
        self._cpu_clock = cpu_clock
        self._window_start = now
        self._window_spent = 0.0
        self._windows_over = 0
        self._throttled_until: float | None = None
        self._input_pending = False

    # -- input ---------------------------------------------------------------

    def receive_data(
        self, data: bytes | memoryview, now: float, *, more_waiting: bool = False
    ) -> list[Event]:
        """Take bytes from the peer at time ``now``; return what the application must
        act on. ``b""`` goes on parsing what an earlier call left (`input_pending`).

        ``more_waiting`` says the read filled the caller's buffer, so the kernel
        likely holds more: a paced publisher is then read again at once, not after
        ``read_interval``. Without it, pacing would cap a publisher at one buffer
        per interval (256 KiB per 0.2 s is 10 Mbit/s, below what a 4K stream sends).

        Raises `RTMPProtocolError` when the peer breaks the protocol or passes a
        limit; the caller then closes the connection (after sending `data_to_send`,
        which may hold a reason).
        """
        self._now = now
        if data:
            self._last_receive = now
        self._roll_window(now)
        if self._handshake is not None:
            self._out.append(self._handshake.receive_data(data))
            if not self._handshake.complete:
                return []
            data = self._handshake.take_leftover()
            self._handshake = None
            # Our chunk size is announced right away so the first replies are big.
            self._send_control(
                MessageType.SET_CHUNK_SIZE, messages.set_chunk_size(self.limits.out_chunk_size)
            )
            self._writer.chunk_size = self.limits.out_chunk_size
        if data:
            self._reader.feed(data)
            if (
                self._publishing
                and self.settings.read_interval > 0
                and now >= self._pace_from
                and not more_waiting
            ):
                self._paced_until = now + self.settings.read_interval
        if self._throttled_until is None:
            self._parse()
        else:
            self._input_pending = self._reader.unparsed_bytes > 0
        self._maybe_acknowledge()
        events, self._events = self._events, []
        return events

    def _parse(self) -> None:
        """Handle the messages buffered, for one slice of CPU at most: other
        connections get the event loop in between (`input_pending` says more is left).
        Past the window's budget the connection is throttled until the window ends."""
        settings = self.settings
        clock = self._cpu_clock
        started = clock()
        budget_left = settings.max_parse_cpu - self._window_spent
        stop_at = started + min(settings.parse_slice, budget_left)
        reader = self._reader
        unclocked = 0  # messages handled since the clock was last read
        pending = False
        try:
            handle_media = self._handle_media
            while batch := reader.read_messages(_CLOCK_EVERY):
                for message in batch:
                    if message.type_id in _MEDIA_MESSAGES:
                        handle_media(message)  # nearly every message: no dispatch
                    else:
                        self._handle_message(message)
                unclocked += len(batch)
                if unclocked >= _CLOCK_EVERY:
                    unclocked = 0
                    if clock() >= stop_at:
                        pending = reader.unparsed_bytes > 0
                        break
        finally:
            self._input_pending = pending
            self._window_spent += clock() - started
            if self._window_spent >= settings.max_parse_cpu:
                self._throttled_until = self._window_start + 1.0

    def _roll_window(self, now: float) -> None:
        """Start a new one-second parse window once the last is over, counting the
        windows running whose budget was used up; too many of them end the connection."""
        elapsed = now - self._window_start
        if elapsed < 1.0:
            return
        # A backlog still unparsed counts as a used-up budget: on a starved machine the
        # loop may not give a flood its whole budget, but a real client's bytes are
        # always parsed long before the next arrive.
        used_up = self._window_spent >= self.settings.max_parse_cpu or self._input_pending
        # An idle second between two busy ones breaks the run.
        self._windows_over = self._windows_over + 1 if used_up and elapsed < 2.0 else 0
        self._window_start, self._window_spent = now, 0.0
        self._throttled_until = None
        settings = self.settings
        if self._windows_over >= settings.max_parse_cpu_seconds:
            raise RTMPProtocolError(
                f"parsing its bytes took over {settings.max_parse_cpu:.0%} of a core for "
                f"{settings.max_parse_cpu_seconds} seconds",
                "max_parse_cpu",
            )

    # -- time ----------------------------------------------------------------

    @property
    def now(self) -> float:
        """The latest time the connection was given."""
        return self._now

    @property
    def paced(self) -> bool:
        """A publisher whose reads are paced now (see `ListenerSettings`): its owner
        may read it on a cadence of ``read_interval`` shared with other paced
        publishers, and ask `get_timer` for the other deadlines only."""
        return (
            self._publishing > 0
            and self.settings.read_interval > 0
            and self._now >= self._pace_from
        )

    def get_timer(self, *, pacing: bool = True) -> float | None:
        """When `handle_timer` must next be called (None: no timer needed); with
        ``pacing`` false, leaving out the end of a pacing pause (an owner that reads
        paced publishers on a cadence of its own).

        It may be called early or late; it only acts on what is due.
        """
        # Asked after every read: plain comparisons, no list to build.
        settings = self.settings
        when = self._throttled_until
        paced = self._paced_until
        if pacing and paced is not None and (when is None or paced < when):
            when = paced
        if self._idle_since is not None:
            idle = self._idle_since + settings.idle_timeout
            if when is None or idle < when:
                when = idle
        if self._handshake is not None:
            handshake = self._opened + settings.handshake_timeout
            if when is None or handshake < when:
                when = handshake
        if self._publishing:
            receive = self._last_receive + settings.receive_timeout
            if when is None or receive < when:
                when = receive
        return when

    def handle_timer(self, now: float) -> None:
        """Act on what is due at ``now``: end a throttle or a pacing pause, or raise
        `RTMPProtocolError` (labelled with the timeout's name) for a timeout."""
        self._now = now
        settings = self.settings
        if self._paced_until is not None and now >= self._paced_until:
            self._paced_until = None
        if self._throttled_until is not None and now >= self._throttled_until:
            self._roll_window(now)
        if self._handshake is not None and now >= self._opened + settings.handshake_timeout:
            raise RTMPProtocolError(
                f"no handshake within {settings.handshake_timeout:g}s", "handshake_timeout"
            )
        if self._idle_since is not None and now >= self._idle_since + settings.idle_timeout:
            raise RTMPProtocolError(
                f"neither publishing nor playing for {settings.idle_timeout:g}s", "idle_timeout"
            )
        if self._publishing and now >= self._last_receive + settings.receive_timeout:
            raise RTMPProtocolError(
                f"publisher sent nothing for {settings.receive_timeout:g}s", "receive_timeout"
            )

    @property
    def read_allowed(self) -> bool:
        """Whether the owner should read from the peer now: not while input is left to
        parse, a throttle or a pacing pause runs (`get_timer` says when they end)."""
        return (
            not self._input_pending and self._throttled_until is None and self._paced_until is None
        )

    @property
    def input_pending(self) -> bool:
        """Bytes are left to parse: call ``receive_data(b"", now)`` soon, unless
        throttled (then after `handle_timer` ends the throttle)."""
        return self._input_pending

    @property
    def throttled(self) -> bool:
        return self._throttled_until is not None

    def data_to_send(self) -> bytes:
        """Bytes to write to the peer now (empty when there is nothing)."""
        if not self._out:
            return b""
        out = b"".join(self._out)
        self._out.clear()
        return out

    @property
    def handshake_complete(self) -> bool:
        return self._handshake is None

    @property
    def buffered_bytes(self) -> int:
        """Bytes held for partial messages; the I/O layer may bound it."""
        return self._reader.buffered_bytes

    def _streams_changed(self, now: float) -> None:
        """Keep the idle clock and the publisher count in step with the streams."""
        self._now = now
        streams = self._streams.values()
        self._publishing = sum(1 for s in streams if s.role is _Role.PUBLISHING)
        in_use = any(s.role is not _Role.IDLE or s.pending for s in streams)
        if in_use:
            self._idle_since = None
        elif self._idle_since is None:
            self._idle_since = now

    # -- application decisions -------------------------------------------------

    def accept_publish(self, message_stream_id: int, now: float) -> None:
        stream = self._stream(message_stream_id)
        stream.role, stream.pending = _Role.PUBLISHING, False
        self._streams_changed(now)
        self._pace_from = now + self.settings.read_pacing_after
        self._last_receive = now  # the receive timeout counts from the publish's start
        self._demuxers[message_stream_id] = flv.FLVDemuxer()
        self._send_user_control(UserControlEvent.STREAM_BEGIN, message_stream_id)
        self._send_status(
            message_stream_id, "NetStream.Publish.Start", f"{stream.name} is now published."
        )

    def reject_publish(self, message_stream_id: int, code: str, reason: str, now: float) -> None:
        """Refuse with ``code`` (``NetStream.Publish.BadName``/``Unauthorized``)."""
        stream = self._stream(message_stream_id)
        stream.role, stream.pending = _Role.IDLE, False
        self._streams_changed(now)
        self._send_status(message_stream_id, code, reason, error=True)

    def accept_play(self, message_stream_id: int, now: float) -> None:
        stream = self._stream(message_stream_id)
        stream.role, stream.pending = _Role.PLAYING, False
        self._streams_changed(now)
        name = stream.name
        self._send_user_control(UserControlEvent.STREAM_IS_RECORDED, message_stream_id)
        self._send_user_control(UserControlEvent.STREAM_BEGIN, message_stream_id)
        self._send_status(
            message_stream_id, "NetStream.Play.Reset", f"Playing and resetting {name}."
        )
        self._send_status(message_stream_id, "NetStream.Play.Start", f"Started playing {name}.")
        self._send_data(message_stream_id, messages.sample_access())
        self._send_data(message_stream_id, messages.data_start())

    def reject_play(self, message_stream_id: int, code: str, reason: str, now: float) -> None:
        """Refuse with ``code`` (``NetStream.Play.StreamNotFound``, ``...Failed``)."""
        stream = self._stream(message_stream_id)
        stream.role, stream.pending = _Role.IDLE, False
        self._streams_changed(now)
        self._send_status(message_stream_id, code, reason, error=True)

    def end_play(self, message_stream_id: int, reason: str, now: float) -> None:
        """Tell a player its stream is over: Stream EOF, then UnpublishNotify."""
        stream = self._stream(message_stream_id)
        stream.role, stream.pending = _Role.IDLE, False
        self._streams_changed(now)
        self._send_user_control(UserControlEvent.STREAM_EOF, message_stream_id)
        self._send_status(message_stream_id, "NetStream.Play.UnpublishNotify", reason)
        self._send_status(message_stream_id, "NetStream.Play.Stop", reason)

    def send_media(
        self, message_stream_id: int, packet: MediaPacket, timestamp: int | None = None
    ) -> None:
        """Queue one packet for a player.

        ``timestamp`` is the player's own decode time for it when it differs from
        ``packet.dts`` (players start near zero); taking it here rather than as a
        rebased copy of the packet saves an object per packet per player.
        """
        csid, type_id = _OUTGOING[packet.kind]
        if timestamp is None:
            timestamp = packet.dts
        self._writer.write_body(
            self._out,
            csid,
            type_id,
            timestamp,
            message_stream_id,
            flv.tag_header(packet),
            packet.payload,
        )

    # -- message handling --------------------------------------------------

    def _handle_message(self, message: RTMPMessage) -> None:
        type_id = message.type_id
        if type_id == MessageType.VIDEO or type_id == MessageType.AUDIO:
            self._handle_media(message)
        elif type_id == MessageType.COMMAND_AMF0:
            self._handle_command(message, message.payload)
        elif type_id == MessageType.COMMAND_AMF3:
            # An AMF3 command is AMF0 after one format byte, as long as no value
            # switches to AMF3 (amf0 refuses that switch with a clear error).
            self._handle_command(message, message.payload[1:])
        elif type_id == MessageType.DATA_AMF0:
            self._handle_data(message, message.payload)
        elif type_id == MessageType.DATA_AMF3:
            self._handle_data(message, message.payload[1:])
        elif type_id == MessageType.AGGREGATE:
            self._handle_aggregate(message)
        else:
            self._handle_control(message)

    def _handle_control(self, message: RTMPMessage) -> None:
        payload = message.payload
        type_id = message.type_id
        if type_id == MessageType.SET_CHUNK_SIZE:
            size = _uint32(payload, "Set Chunk Size") & 0x7FFFFFFF
            self._reader.chunk_size = size  # validated against the limit there
        elif type_id == MessageType.ABORT:
            self._reader.abort(_uint32(payload, "Abort"))
        elif type_id == MessageType.WINDOW_ACK_SIZE:
            self._peer_window = _uint32(payload, "Window Acknowledgement Size")
        elif type_id == MessageType.USER_CONTROL:
            self._handle_user_control(payload)
        # Acknowledgement, Set Peer Bandwidth and shared objects need no answer.

    def _handle_user_control(self, payload: bytes) -> None:
        if len(payload) < 6:
            return
        event = int.from_bytes(payload[:2], "big")
        if event == UserControlEvent.PING_REQUEST:
            self._send_user_control(
                UserControlEvent.PING_RESPONSE, int.from_bytes(payload[2:6], "big")
            )

    def _maybe_acknowledge(self) -> None:
        # Spec 5.4.3: acknowledge once a window's worth of bytes has arrived.
        received = self._reader.bytes_received
        if self._peer_window and received - self._last_ack >= self._peer_window:
            self._last_ack = received
            self._send_control(MessageType.ACKNOWLEDGEMENT, messages.acknowledgement(received))

    def _decode_amf(self, payload: bytes | memoryview) -> list[AMF0Value]:
        return amf0.decode_all(
            payload,
            max_depth=self.limits.max_amf_depth,
            max_string_length=self.limits.max_amf_string_length,
            max_values=self.limits.max_amf_values,
        )

    def _handle_command(self, message: RTMPMessage, payload: bytes | memoryview) -> None:
        values = self._decode_amf(payload)
        if len(values) < 2 or not isinstance(values[0], str):
            raise RTMPProtocolError("command message without a name and transaction ID")
        name = values[0]
        transaction_id = values[1] if isinstance(values[1], float) else 0.0
        args = values[2:]
        handler = self._COMMANDS.get(name)
        if handler is None:
            log.debug("ignoring RTMP command %r", name)
            return
        handler(self, message.message_stream_id, transaction_id, args)

    def _on_connect(self, _msid: int, transaction_id: float, args: list[AMF0Value]) -> None:
        if self.connected:
            raise RTMPProtocolError("connect sent twice on one connection")
        params = args[0] if args and isinstance(args[0], dict) else {}
        app = params.get("app")
        if not isinstance(app, str) or not app.strip("/"):
            self._out_command(
                0,
                messages.command_error(
                    transaction_id, "NetConnection.Connect.Rejected", "connect needs an app name"
                ),
            )
            raise RTMPProtocolError("connect without an app name")
        self.app, self.app_query = split_query(app.strip("/"))
        tc_url = params.get("tcUrl")
        self.tc_url = tc_url if isinstance(tc_url, str) else ""
        flash_version = params.get("flashVer") or params.get("flashver")
        self.connected = True
        self._send_control(
            MessageType.WINDOW_ACK_SIZE, messages.window_ack_size(self.limits.window_ack_size)
        )
        self._send_control(
            MessageType.SET_PEER_BANDWIDTH,
            messages.set_peer_bandwidth(
                self.limits.window_ack_size, messages.PeerBandwidthLimit.DYNAMIC
            ),
        )
        # We answer in AMF0 whatever objectEncoding the client asked for; every client
        # we know copes, and AMF3 values are refused when they arrive.
        self._out_command(0, messages.connect_result(transaction_id, 0.0))
        self._events.append(
            Connected(
                self.app, self.tc_url, flash_version if isinstance(flash_version, str) else ""
            )
        )

    def _on_create_stream(self, _msid: int, transaction_id: float, _args: list[AMF0Value]) -> None:
        self._require_connected("createStream")
        if len(self._streams) >= self.limits.max_message_streams:
            self._out_command(
                0,
                messages.command_error(
                    transaction_id,
                    "NetConnection.Call.Failed",
                    "too many streams on one connection",
                ),
            )
            return
        stream_id = self._next_stream_id
        self._next_stream_id += 1
        self._streams[stream_id] = _MessageStream()
        self._out_command(0, messages.command_result(transaction_id, float(stream_id)))

    def _on_publish(self, msid: int, _transaction_id: float, args: list[AMF0Value]) -> None:
        self._require_connected("publish")
        stream = self._stream(msid)
        raw_name = _string_arg(args, 1)
        publish_type = _string_arg(args, 2) or "live"
        if stream.role is not _Role.IDLE or stream.pending:
            raise RTMPProtocolError(f"publish on stream {msid}, which is already in use")
        name, query = split_query(raw_name)
        if not name:
            self._send_status(
                msid, "NetStream.Publish.BadName", "publish needs a stream name", error=True
            )
            return
        stream.name, stream.pending = name, True
        self._streams_changed(self._now)
        self._events.append(
            PublishRequested(msid, self.app, name, {**self.app_query, **query}, publish_type)
        )

    def _on_play(self, msid: int, _transaction_id: float, args: list[AMF0Value]) -> None:
        self._require_connected("play")
        stream = self._stream(msid)
        if stream.role is not _Role.IDLE or stream.pending:
            raise RTMPProtocolError(f"play on stream {msid}, which is already in use")
        name, query = split_query(_string_arg(args, 1))
        if not name:
            self._send_status(
                msid, "NetStream.Play.StreamNotFound", "play needs a stream name", error=True
            )
            return
        stream.name, stream.pending = name, True
        self._streams_changed(self._now)
        self._events.append(PlayRequested(msid, self.app, name, {**self.app_query, **query}))

    def _on_end_stream(self, msid: int, _transaction_id: float, _args: list[AMF0Value]) -> None:
        """closeStream: arrives on the message stream it closes."""
        self._end_stream(msid)

    def _on_delete_stream(self, _msid: int, _transaction_id: float, args: list[AMF0Value]) -> None:
        """deleteStream: names the message stream in its argument."""
        target = args[1] if len(args) > 1 and isinstance(args[1], float) else 0.0
        if target > 0 and target.is_integer():
            self._end_stream(int(target))
            self._streams.pop(int(target), None)
            self._streams_changed(self._now)

    def _on_fc_unpublish(self, _msid: int, _transaction_id: float, args: list[AMF0Value]) -> None:
        name, _ = split_query(_string_arg(args, 1))
        for msid, stream in self._streams.items():
            if stream.role is _Role.PUBLISHING and stream.name == name:
                self._end_stream(msid)

    def _on_get_stream_length(
        self, _msid: int, transaction_id: float, _args: list[AMF0Value]
    ) -> None:
        # Live streams have no length; FFmpeg asks before playing and accepts 0.
        self._out_command(0, messages.command_result(transaction_id, 0.0))

    def _on_ignored_with_result(
        self, _msid: int, transaction_id: float, _args: list[AMF0Value]
    ) -> None:
        # releaseStream / FCPublish: clients send them out of habit; answering keeps
        # their transaction tables clean.
        if transaction_id:
            self._out_command(0, messages.command_result(transaction_id, amf0.UNDEFINED))

    def _end_stream(self, msid: int) -> None:
        stream = self._streams.get(msid)
        if stream is None:
            return
        if stream.role is _Role.PUBLISHING:
            self._events.append(PublishEnded(msid))
            self._demuxers.pop(msid, None)
        elif stream.role is _Role.PLAYING:
            self._events.append(PlayEnded(msid))
        stream.role, stream.pending = _Role.IDLE, False
        self._streams_changed(self._now)

    _COMMANDS: ClassVar[dict[str, _CommandHandler]] = {
        "connect": _on_connect,
        "createStream": _on_create_stream,
        "publish": _on_publish,
        "play": _on_play,
        "closeStream": _on_end_stream,
        "deleteStream": _on_delete_stream,
        "FCUnpublish": _on_fc_unpublish,
        "getStreamLength": _on_get_stream_length,
        "releaseStream": _on_ignored_with_result,
        "FCPublish": _on_ignored_with_result,
    }

    def _handle_data(self, message: RTMPMessage, payload: bytes) -> None:
        msid = message.message_stream_id
        if not self._is_publishing(msid):
            return
        values = self._decode_amf(payload)
        if values and values[0] == "@setDataFrame":
            # Players want the data frame itself (``onMetaData`` + properties), as an
            # FLV file holds it. It is cut from the bytes as sent, not re-encoded, so
            # it relays exactly and whatever the decoder took (max_amf_depth) goes out.
            values = values[1:]
            payload = payload[_first_value_size(payload) :]
        if not values or not isinstance(values[0], str):
            return
        packet = MediaPacket(
            kind=TrackKind.DATA,
            codec=Codec.AMF0,
            dts=message.timestamp,
            pts=message.timestamp,
            keyframe=False,
            payload=payload,
            is_config=values[0] == "onMetaData",
        )
        self._events.append(MediaReceived(msid, packet))

    def _handle_media(self, message: RTMPMessage) -> None:
        msid = message.message_stream_id
        demuxer = self._demuxers.get(msid)
        if demuxer is None:
            return  # media before publish was accepted, or after it ended: dropped
        try:
            if message.type_id == _VIDEO_MESSAGE:
                packet = demuxer.demux_video(message.timestamp, message.payload)
            else:
                packet = demuxer.demux_audio(message.timestamp, message.payload)
        except MediaError as exc:
            raise RTMPProtocolError(f"bad media from publisher: {exc}") from exc
        if packet is not None:
            self._events.append(MediaReceived(msid, packet))

    def _handle_aggregate(self, message: RTMPMessage) -> None:
        """Aggregate messages (type 22) hold FLV tags back to back (spec 7.1.6)."""
        payload = message.payload
        first_timestamp: int | None = None
        for tag_type, timestamp, body in _aggregate_sub_messages(
            payload, self.limits.max_aggregate_sub_messages
        ):
            if first_timestamp is None:
                first_timestamp = timestamp
            # Sub-message times are relative to the first one, which the aggregate's
            # own timestamp replaces.
            sub_timestamp = (message.timestamp + timestamp - first_timestamp) & 0xFFFFFFFF
            self._handle_message(
                RTMPMessage(tag_type, sub_timestamp, message.message_stream_id, body)
            )

    # -- helpers -------------------------------------------------------------

    def _require_connected(self, command: str) -> None:
        if not self.connected:
            raise RTMPProtocolError(f"{command} before connect")

    def _stream(self, msid: int) -> _MessageStream:
        stream = self._streams.get(msid)
        if stream is None:
            raise RTMPProtocolError(f"message stream {msid} was never created")
        return stream

    def _is_publishing(self, msid: int) -> bool:
        stream = self._streams.get(msid)
        return stream is not None and stream.role is _Role.PUBLISHING

    def _send_control(self, type_id: MessageType, payload: bytes) -> None:
        message = RTMPMessage(int(type_id), 0, 0, payload)
        self._out.append(self._writer.write(ChunkStreamID.PROTOCOL_CONTROL, message))

    def _send_user_control(self, event: UserControlEvent, value: int) -> None:
        self._send_control(MessageType.USER_CONTROL, messages.user_control(event, value))

    def _out_command(self, msid: int, payload: bytes) -> None:
        message = RTMPMessage(int(MessageType.COMMAND_AMF0), 0, msid, payload)
        self._out.append(self._writer.write(ChunkStreamID.COMMAND, message))

    def _send_status(self, msid: int, code: str, description: str, *, error: bool = False) -> None:
        self._out_command(msid, messages.on_status(code, description, error=error))

    def _send_data(self, msid: int, payload: bytes) -> None:
        message = RTMPMessage(int(MessageType.DATA_AMF0), 0, msid, payload)
        self._out.append(self._writer.write(ChunkStreamID.DATA, message))


_AGGREGATE_SUB_MESSAGE_TYPES = frozenset(
    {MessageType.AUDIO, MessageType.VIDEO, MessageType.DATA_AMF0}
)


def _aggregate_sub_messages(
    payload: bytes, max_sub_messages: int
) -> Iterator[tuple[int, int, bytes]]:
    """(type, timestamp, body) of each FLV tag in an aggregate message's body.

    FLV tags are audio, video or script data, so that is all a sub-message may be: an
    aggregate inside an aggregate would nest as deep as the bytes allow, and a command
    or control message has no business hiding in one.
    """
    offset = 0
    count = 0
    while offset + 11 <= len(payload):
        count += 1
        if count > max_sub_messages:
            raise RTMPProtocolError(
                f"aggregate message with more than {max_sub_messages} sub-messages "
                "(max_aggregate_sub_messages)"
            )
        tag_type = payload[offset]
        if tag_type not in _AGGREGATE_SUB_MESSAGE_TYPES:
            raise RTMPProtocolError(
                f"aggregate message holds a sub-message of type {tag_type} at offset "
                f"{offset}; only audio (8), video (9) and data (18) may be aggregated "
                "(spec 7.1.6)"
            )
        size = int.from_bytes(payload[offset + 1 : offset + 4], "big")
        timestamp = int.from_bytes(payload[offset + 4 : offset + 7], "big") | (
            payload[offset + 7] << 24
        )
        body_start = offset + 11
        body_end = body_start + size
        if body_end + 4 > len(payload):
            raise RTMPProtocolError("aggregate message with a sub-message past its end")
        yield tag_type, timestamp, payload[body_start:body_end]
        offset = body_end + 4  # skip PreviousTagSize


def _first_value_size(payload: bytes) -> int:
    """Bytes taken by the first AMF0 value of a body already known to decode."""
    buf = Buffer(payload, RTMPProtocolError)
    amf0.decode_value(buf)
    return buf.position


def _uint32(payload: bytes, what: str) -> int:
    if len(payload) < 4:
        raise RTMPProtocolError(f"{what} message shorter than 4 bytes")
    return int.from_bytes(payload[:4], "big")


def _string_arg(args: list[AMF0Value], index: int) -> str:
    value = args[index] if len(args) > index else None
    return value if isinstance(value, str) else ""
