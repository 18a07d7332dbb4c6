"""Log lines: ``key=value`` fields in text, one JSON object per record for shippers."""

from __future__ import annotations

import json
import logging
import signal
import socket
import subprocess
import sys
import time

import pytest

from lpms.logs import TEXT_FORMAT, JSONFormatter, log_event


@pytest.fixture
def captured() -> tuple[logging.Logger, list[logging.LogRecord]]:
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger = logging.getLogger("lpms.test-logs")
    logger.handlers[:] = [Keep()]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger, records


def test_text_lines_carry_key_value_fields(
    captured: tuple[logging.Logger, list[logging.LogRecord]],
) -> None:
    logger, records = captured
    log_event(
        logger,
        logging.WARNING,
        "connection closed",
        peer="127.0.0.1:5000",
        stream="stream/test",
        reason="idle_timeout",
        detail="neither publishing nor playing for 30s",
        empty="",
        ratio=0.5,
        missing=None,
    )
    (record,) = records
    line = logging.Formatter(TEXT_FORMAT).format(record)
    assert line.endswith(
        "lpms.test-logs: connection closed peer=127.0.0.1:5000 stream=stream/test "
        'reason=idle_timeout detail="neither publishing nor playing for 30s" empty="" ratio=0.5'
    )
    assert record.filename == "test_logs.py"  # the caller, not lpms/logs.py


def test_json_lines_are_one_object_with_the_fields(
    captured: tuple[logging.Logger, list[logging.LogRecord]],
) -> None:
    logger, records = captured
    log_event(logger, logging.INFO, "publish ended", stream="stream/a b", bytes=1234, ok=True)
    logger.info("plain %s", "message")
    try:
        raise ValueError("boom")
    except ValueError:
        logger.exception("it failed")
    formatter = JSONFormatter()
    event, plain, failure = (json.loads(formatter.format(r)) for r in records)
    assert event["message"] == "publish ended"
    assert (event["stream"], event["bytes"], event["ok"]) == ("stream/a b", 1234, True)
    assert (event["level"], event["logger"]) == ("info", "lpms.test-logs")
    assert event["time"].endswith("+00:00")
    assert plain["message"] == "plain message"
    assert "ValueError: boom" in failure["exception"]


def test_nothing_is_built_below_the_level(
    captured: tuple[logging.Logger, list[logging.LogRecord]],
) -> None:
    logger, records = captured
    log_event(logger, logging.DEBUG, "chatty", value=object())
    assert records == []


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_serve_with_json_logs_writes_only_json_lines() -> None:
    command = [sys.executable, "-m", "lpms", "serve", "--host", "127.0.0.1", "--log-format"]
    command += ["json", "--rtmp-port", str(free_port()), "--http-port", str(free_port())]
    server = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    try:
        assert server.stderr is not None
        first = server.stderr.readline()  # "listening": it is up
        server.send_signal(signal.SIGTERM)
        _, rest = server.communicate(timeout=20)
    finally:
        if server.poll() is None:
            server.kill()
            time.sleep(0.1)
    lines = [json.loads(line) for line in [first, *rest.splitlines()] if line.strip()]
    messages = [line["message"] for line in lines]
    assert messages[0].startswith("listening")
    assert "server stopped" in messages
    assert server.returncode == 0
