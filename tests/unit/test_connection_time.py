"""Timeouts, read pacing and the parse budget of the sans-IO connection, on a fake
clock: the connection decides them all from the times it is given, so each is
checked to the microsecond without sleeping."""

from __future__ import annotations

import pytest

from lpms.errors import RTMPProtocolError
from lpms.rtmp.chunk import ChunkWriter, RTMPMessage
from lpms.rtmp.events import MediaReceived
from lpms.rtmp.messages import MessageType
from lpms.rtmp.settings import ListenerSettings
from tests.unit.rtmp_client import AVC_CONFIG, AVC_KEYFRAME, Client, FakeClock, server_connection

SETTINGS = ListenerSettings(
    handshake_timeout=10.0,
    idle_timeout=30.0,
    receive_timeout=20.0,
    read_interval=0.2,
    read_pacing_after=3.0,
    max_parse_cpu=0.25,
    max_parse_cpu_seconds=3,
    parse_slice=0.005,
)
PING = (6).to_bytes(2, "big") + (1234).to_bytes(4, "big")


def publishing(clock: FakeClock, settings: ListenerSettings = SETTINGS) -> tuple[Client, int]:
    client = Client(settings=settings, clock=clock)
    client.connect()
    msid = client.create_stream()
    client.command(msid, "publish", 0.0, None, "test", "live")
    client.conn.accept_publish(msid, clock.now)
    client.replies()
    return client, msid


def expect_close(client: Client, now: float, label: str) -> None:
    with pytest.raises(RTMPProtocolError) as caught:
        client.conn.handle_timer(now)
    assert caught.value.label == label


def pings(count: int) -> bytes:
    """``count`` Ping Requests on one chunk stream: each is answered, so the replies
    count the messages parsed."""
    writer = ChunkWriter()
    message = RTMPMessage(MessageType.USER_CONTROL, 0, 0, PING)
    return b"".join(writer.write(2, message) for _ in range(count))


def pongs(client: Client) -> int:
    return sum(1 for m in client.replies() if m.type_id == MessageType.USER_CONTROL)


# -- timeouts ----------------------------------------------------------------------------


def test_a_handshake_not_finished_in_time_is_closed_then_and_not_before() -> None:
    conn = server_connection(settings=SETTINGS)
    conn.receive_data(b"\x03", 1.0)  # half a C0C1
    assert conn.get_timer() == 10.0
    conn.handle_timer(9.999)
    with pytest.raises(RTMPProtocolError, match="no handshake within 10s") as caught:
        conn.handle_timer(10.0)
    assert caught.value.label == "handshake_timeout"


def test_a_connection_that_neither_publishes_nor_plays_is_closed_after_idle_timeout() -> None:
    clock = FakeClock(now=0.0)
    client = Client(settings=SETTINGS, clock=clock)
    clock.now = 5.0
    client.connect()  # talking is not using a stream: the idle clock runs from the start
    assert client.conn.get_timer() == 30.0
    client.conn.handle_timer(29.0)
    expect_close(client, 30.0, "idle_timeout")


def test_a_request_awaiting_the_application_is_not_idle() -> None:
    clock = FakeClock()
    client = Client(settings=SETTINGS, clock=clock)
    client.connect()
    msid = client.create_stream()
    client.command(msid, "play", 0.0, None, "test")
    assert client.conn.get_timer() is None
    client.conn.handle_timer(1000.0)  # an auth hook may take its time
    client.conn.reject_play(msid, "NetStream.Play.Failed", "no", 1000.0)
    assert client.conn.get_timer() == 1030.0


def test_a_player_is_never_idle_and_the_idle_clock_starts_when_it_stops() -> None:
    clock = FakeClock()
    client = Client(settings=SETTINGS, clock=clock)
    client.connect()
    msid = client.create_stream()
    client.command(msid, "play", 0.0, None, "test")
    client.conn.accept_play(msid, 1.0)
    assert client.conn.get_timer() is None
    client.conn.handle_timer(500.0)
    client.conn.end_play(msid, "stream ended", 500.0)
    assert client.conn.get_timer() == 530.0
    expect_close(client, 530.0, "idle_timeout")


def test_a_publisher_that_goes_quiet_is_closed_after_receive_timeout() -> None:
    clock = FakeClock(now=2.0)
    client, msid = publishing(clock)
    assert client.conn.get_timer() == 22.0
    clock.now = 10.0
    client.send(6, RTMPMessage(MessageType.VIDEO, 0, msid, AVC_CONFIG))
    client.conn.handle_timer(22.0)  # an early wake-up: the deadline moved on
    assert client.conn.get_timer() == 30.0
    with pytest.raises(RTMPProtocolError, match="sent nothing for 20s") as caught:
        client.conn.handle_timer(30.0)
    assert caught.value.label == "receive_timeout"


def test_continuing_to_parse_is_not_receiving() -> None:
    clock = FakeClock()
    client, _ = publishing(clock)
    client.conn.receive_data(b"", 15.0)
    assert client.conn.get_timer() == 20.0


# -- read pacing -------------------------------------------------------------------------


def test_a_publishers_reads_are_paced_once_the_publish_is_old_enough() -> None:
    clock = FakeClock()
    client, msid = publishing(clock)
    clock.now = 1.0
    client.send(6, RTMPMessage(MessageType.VIDEO, 0, msid, AVC_CONFIG))
    assert client.conn.read_allowed  # its first seconds: every byte is awaited
    clock.now = 3.5
    client.send(6, RTMPMessage(MessageType.VIDEO, 40, msid, AVC_KEYFRAME))
    assert not client.conn.read_allowed
    assert client.conn.get_timer() == pytest.approx(3.7)
    client.conn.handle_timer(3.6)
    assert not client.conn.read_allowed
    client.conn.handle_timer(3.7)
    assert client.conn.read_allowed


def test_a_paced_publisher_can_be_read_on_a_shared_cadence() -> None:
    """`paced` tells the owner it may read the publisher on a tick of its own, and
    `get_timer(pacing=False)` then names only the other deadlines."""
    clock = FakeClock()
    client, msid = publishing(clock)
    assert not client.conn.paced  # its first seconds: read as bytes arrive
    clock.now = 3.5
    client.send(6, RTMPMessage(MessageType.VIDEO, 0, msid, AVC_CONFIG))
    assert client.conn.paced
    assert client.conn.get_timer() == pytest.approx(3.7)
    assert client.conn.get_timer(pacing=False) == pytest.approx(3.5 + SETTINGS.receive_timeout)
    client.conn.handle_timer(3.7)  # the tick's own time: due again exactly then
    assert client.conn.read_allowed
    client.command(msid, "deleteStream", 0.0, None, float(msid))
    assert not client.conn.paced  # a connection that stopped publishing is read as usual


def test_a_read_that_filled_the_buffer_is_followed_at_once() -> None:
    """A publisher sending more than one buffer per interval (a 4K stream: 256 KiB
    per 0.2 s is only 10 Mbit/s) must not be held to that: its reads go on while
    they fill the buffer, and pacing resumes with the first that does not."""
    clock = FakeClock()
    client, msid = publishing(clock)
    clock.now = 5.0
    frame = client.writer.write(6, RTMPMessage(MessageType.VIDEO, 0, msid, AVC_CONFIG))
    client.conn.receive_data(frame, clock.now, more_waiting=True)
    assert client.conn.read_allowed
    assert client.conn.get_timer() != pytest.approx(5.2)
    frame = client.writer.write(6, RTMPMessage(MessageType.VIDEO, 40, msid, AVC_KEYFRAME))
    client.conn.receive_data(frame, clock.now)
    assert not client.conn.read_allowed
    assert client.conn.get_timer() == pytest.approx(5.2)


def test_reads_are_never_paced_with_read_interval_zero() -> None:
    clock = FakeClock()
    settings = ListenerSettings(read_interval=0.0, read_pacing_after=0.0)
    client, msid = publishing(clock, settings)
    clock.now = 10.0
    client.send(6, RTMPMessage(MessageType.VIDEO, 0, msid, AVC_CONFIG))
    assert client.conn.read_allowed


# -- the parse budget --------------------------------------------------------------------


def test_parsing_stops_after_a_slice_and_goes_on_when_asked() -> None:
    clock = FakeClock(cpu_per_read=0.001)  # each clock read: a millisecond of parsing
    client = Client(settings=SETTINGS, clock=clock)
    client.replies()
    client.conn.receive_data(pings(1000), 0.0)
    first = pongs(client)
    assert 0 < first < 200  # about five milliseconds' worth
    assert client.conn.input_pending
    assert not client.conn.read_allowed  # nothing more is read until this is parsed
    total, calls = first, 1
    while client.conn.input_pending:
        client.conn.receive_data(b"", 0.0)
        total += pongs(client)
        calls += 1
    assert total == 1000  # every message, none twice, within the second's budget
    assert calls > 5
    assert not client.conn.throttled
    assert client.conn.read_allowed


def test_a_connection_over_its_budget_is_throttled_until_the_second_is_over() -> None:
    clock = FakeClock(cpu_per_read=0.01)
    client = Client(settings=SETTINGS, clock=clock)
    client.replies()
    conn = client.conn
    conn.receive_data(pings(100_000), 0.2)
    while conn.input_pending and not conn.throttled:
        conn.receive_data(b"", 0.3)
    assert conn.throttled
    assert not conn.read_allowed
    parsed = pongs(client)
    assert conn.get_timer() == 1.0  # the end of the window that started at 0
    conn.receive_data(b"", 0.5)  # asked to go on while throttled: it waits
    assert pongs(client) == 0
    conn.handle_timer(1.0)
    assert not conn.throttled
    conn.receive_data(b"", 1.0)
    assert pongs(client) > 0
    assert parsed > 0


def busy_second(client: Client, start: float) -> None:
    """Parse from ``start`` until the second's budget is spent, then end the second."""
    conn = client.conn
    conn.receive_data(b"", start)
    while conn.input_pending and not conn.throttled:
        conn.receive_data(b"", start + 0.5)
    assert conn.throttled
    assert conn.get_timer() == pytest.approx(start + 1.0)
    client.replies()


def test_a_connection_throttled_seconds_running_is_closed() -> None:
    client = Client(settings=SETTINGS, clock=FakeClock(cpu_per_read=0.01))
    client.conn.receive_data(pings(200_000), 0.0)
    busy_second(client, 0.0)
    client.conn.handle_timer(1.0)
    busy_second(client, 1.0)
    client.conn.handle_timer(2.0)
    busy_second(client, 2.0)
    with pytest.raises(RTMPProtocolError, match="over 25% of a core for 3 seconds") as caught:
        client.conn.handle_timer(3.0)
    assert caught.value.label == "max_parse_cpu"


def test_a_second_under_budget_starts_the_count_again() -> None:
    client = Client(settings=SETTINGS, clock=FakeClock(cpu_per_read=0.01))
    conn = client.conn
    conn.receive_data(pings(200), 0.0)
    busy_second(client, 0.0)
    conn.handle_timer(1.0)
    while conn.input_pending:  # the rest of the burst fits in this second's budget
        conn.receive_data(b"", 1.5)
    assert not conn.throttled
    conn.receive_data(pings(100_000), 2.0)  # a second burst, long this time
    busy_second(client, 2.0)
    conn.handle_timer(3.0)
    busy_second(client, 3.0)
    conn.handle_timer(4.0)  # three seconds over budget, but not running
    busy_second(client, 4.0)
    with pytest.raises(RTMPProtocolError, match="3 seconds"):
        conn.handle_timer(5.0)


def test_a_flood_the_loop_cannot_keep_up_with_is_closed_though_under_budget() -> None:
    """On a starved machine the loop hands the flood fewer slices than its budget
    allows; a backlog left at every second's end still marks it as a flood."""
    client = Client(settings=SETTINGS, clock=FakeClock(cpu_per_read=0.001))
    conn = client.conn
    conn.receive_data(pings(200_000), 0.0)
    for second in range(3):
        for step in range(10):  # ten slices a second: 50 ms, far under 250
            conn.receive_data(b"", second + step / 10)
        assert conn.input_pending
        assert not conn.throttled
    with pytest.raises(RTMPProtocolError, match="3 seconds") as caught:
        conn.receive_data(b"", 3.0)
    assert caught.value.label == "max_parse_cpu"


def test_a_real_publisher_costs_nothing_near_the_budget() -> None:
    clock = FakeClock(cpu_per_read=1e-6)
    client, msid = publishing(clock)
    for frame in range(300):  # ten seconds at 30 fps
        clock.now = frame / 30
        events = client.send(6, RTMPMessage(MessageType.VIDEO, frame * 33, msid, AVC_KEYFRAME))
        assert [type(e) for e in events] == [MediaReceived]
        assert not client.conn.throttled
        assert not client.conn.input_pending
