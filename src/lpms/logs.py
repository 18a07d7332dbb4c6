"""Log lines an operator can grep and a shipper can parse.

Events that matter (a publish starting or ending, a refusal, a connection closed for
a reason) are logged with `log_event`: a short message and ``key=value`` fields,
``publish started stream=stream/test peer=127.0.0.1:50312``. In text format that is
the line; with ``--log-format json`` (`JSONFormatter`) each record is one JSON object
with the message and the fields as keys, for Loki, Elasticsearch, CloudWatch and the
like. Other records (from lpms's own modules or libraries) come out as their message
in either format.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
FIELDS_ATTRIBUTE = "lpms_fields"
EVENT_ATTRIBUTE = "lpms_event"


class _Line:
    """The text of an event, rendered only if a handler emits it."""

    __slots__ = ("fields", "message")

    def __init__(self, message: str, fields: dict[str, Any]) -> None:
        self.message = message
        self.fields = fields

    def __str__(self) -> str:
        parts = [self.message]
        parts += [f"{key}={_text(value)}" for key, value in self.fields.items()]
        return " ".join(parts)


def _text(value: object) -> str:
    """A value as it goes after ``key=``: quoted when it has spaces, quotes or is empty."""
    text = f"{value:g}" if isinstance(value, float) else str(value)
    if not text or any(c in text for c in ' "=\n\t'):
        return json.dumps(text)
    return text


def log_event(logger: logging.Logger, level: int, message: str, /, **fields: object) -> None:
    """Log ``message`` with ``key=value`` fields (None values are left out)."""
    if not logger.isEnabledFor(level):
        return
    present = {key: value for key, value in fields.items() if value is not None}
    logger.log(
        level,
        "%s",
        _Line(message, present),
        extra={FIELDS_ATTRIBUTE: present, EVENT_ATTRIBUTE: message},
        stacklevel=2,
    )


class JSONFormatter(logging.Formatter):
    """One JSON object per record: time (RFC 3339, UTC), level, logger, message, the
    event's fields, and the exception's text when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        event = getattr(record, EVENT_ATTRIBUTE, None)
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": event if event is not None else record.getMessage(),
        }
        for key, value in getattr(record, FIELDS_ATTRIBUTE, {}).items():
            entry.setdefault(key, value if isinstance(value, int | float | bool) else str(value))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(level: str, log_format: str = "text") -> None:
    """Records at ``level`` and above to stderr, as ``text`` or ``json``."""
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JSONFormatter())
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=getattr(logging, level.upper()), handlers=[handler])
