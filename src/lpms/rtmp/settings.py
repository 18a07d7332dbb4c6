"""RTMP settings: what one connection may make the server hold, and the timeouts,
budgets and batching of the listener.

Kept apart from `connection` and `listener` so `lpms.config` can read and check them
without importing asyncio or the protocol code.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lpms.validate import at_least, positive


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """Per-connection limits on what a peer may make us hold."""

    max_message_size: int = 8 << 20
    max_chunk_size: int = 1 << 24
    max_chunk_streams: int = 64
    # Unfinished messages on all chunk streams together (chunk.DEFAULT_MAX_PARTIAL_BYTES).
    max_partial_bytes: int = 16 << 20
    max_message_streams: int = 8
    max_amf_depth: int = 32
    max_amf_string_length: int = 1 << 16
    # Values in one command or data body (amf0.DEFAULT_MAX_VALUES): bounds decode work.
    max_amf_values: int = 1 << 17
    # Sub-messages in one aggregate message; each becomes a packet, all in one call.
    max_aggregate_sub_messages: int = 4096
    out_chunk_size: int = 4096
    window_ack_size: int = 2_500_000

    def __post_init__(self) -> None:
        at_least(
            1,
            max_message_size=self.max_message_size,
            max_chunk_size=self.max_chunk_size,
            max_chunk_streams=self.max_chunk_streams,
            max_message_streams=self.max_message_streams,
            max_amf_depth=self.max_amf_depth,
            max_amf_string_length=self.max_amf_string_length,
            max_amf_values=self.max_amf_values,
            max_aggregate_sub_messages=self.max_aggregate_sub_messages,
            window_ack_size=self.window_ack_size,
        )
        at_least(128, out_chunk_size=self.out_chunk_size)  # RTMP's own default size
        if self.max_partial_bytes < self.max_message_size:
            raise ValueError(
                f"max_partial_bytes ({self.max_partial_bytes}) must be at least "
                f"max_message_size ({self.max_message_size}), or the largest messages "
                "could never arrive"
            )


@dataclass(frozen=True, slots=True)
class ListenerSettings:
    """Timeouts, budgets, buffers and batching for RTMP connections (seconds, bytes).

    The timeouts, the parse budget and read pacing are decided by the sans-IO
    `RTMPConnection` itself; the listener only passes it the time.

    ``read_interval`` trades up to that much relay latency for far fewer wake-ups
    and system calls: a publisher's socket is read at most once per interval (the
    kernel buffers what arrives meanwhile), so each read hands the players a batch
    of packets that they get in one write. SRS's "merged read" makes the same trade.
    At RTMP's usual bitrates 0.2 s cuts the server's CPU per stream by more than
    half (bench/ingest.py); SRS merges 350 ms by default. 0 reads as soon as data
    is there. Pacing starts once a publish is ``read_pacing_after`` seconds old: at
    a stream's start, its first players and its first HLS segment are waiting on
    every byte. A read that fills the listener's buffer is followed at once, so a
    publisher sending more than a buffer per interval is never held back by it.
    Low-latency HLS caps the interval at a third of a part (`HLSSettings.
    max_read_interval`): the server reads publishers at least that often.

    Parsing is fair: one connection parses for at most ``parse_slice`` seconds of
    CPU before the others get the event loop, and one whose bytes take more than
    ``max_parse_cpu`` of a core within a second is throttled (not read) until that
    second is over, so a flood of tiny chunks never holds up other clients'
    handshakes or media. One throttled ``max_parse_cpu_seconds`` seconds running is
    closed: no client of ours needs 1 % of a core.
    """

    handshake_timeout: float = 10.0
    idle_timeout: float = 30.0
    receive_timeout: float = 30.0
    write_buffer_high: int = 4 << 20
    # Connections the kernel may hold for accept(); asyncio's default of 100 makes a
    # burst of clients wait for SYN-ACK retransmits (seconds). nginx uses 511.
    backlog: int = 1024
    # After lpms ends a connection (stream over, refusal, error) it reads and drops
    # what the peer still sends for up to this long, so the last bytes arrive.
    linger_timeout: float = 2.0
    # A connection whose bytes take more than this share of a core to parse within a
    # second is not read again until that second is over; one throttled for this
    # many seconds running is closed.
    max_parse_cpu: float = 0.25
    max_parse_cpu_seconds: int = 3
    # Seconds one connection parses in one go before the other connections get a turn.
    parse_slice: float = 0.005
    read_interval: float = 0.2
    read_pacing_after: float = 3.0
    connection: ConnectionLimits = field(default_factory=ConnectionLimits)

    def __post_init__(self) -> None:
        positive(
            handshake_timeout=self.handshake_timeout,
            idle_timeout=self.idle_timeout,
            receive_timeout=self.receive_timeout,
            max_parse_cpu=self.max_parse_cpu,
            parse_slice=self.parse_slice,
        )
        at_least(
            1,
            write_buffer_high=self.write_buffer_high,
            backlog=self.backlog,
            max_parse_cpu_seconds=self.max_parse_cpu_seconds,
        )
        at_least(
            0,
            linger_timeout=self.linger_timeout,
            read_interval=self.read_interval,
            read_pacing_after=self.read_pacing_after,
        )
        if self.max_parse_cpu >= 1:
            raise ValueError(
                f"max_parse_cpu is a share of one core's second and must be below 1, "
                f"got {self.max_parse_cpu}"
            )
