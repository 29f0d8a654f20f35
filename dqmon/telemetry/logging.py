"""Structured logs: JSON lines for machines (Kubernetes), readable lines for a terminal.

Every record passes a redaction filter (dqmon.secrets.Redactor as a logging.Filter) that
replaces configured secret values, URL credentials and libpq `password=...` before it is
formatted, so a secret quoted in an exception message never reaches a log sink. Text that does
not pass a log handler (config problems, source errors) is scrubbed by the same Redactor.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Literal, TextIO

from opentelemetry import trace

from dqmon.secrets import Redactor

__all__ = ["JsonFormatter", "SecretRedactor", "configure_logging"]

LogFormat = Literal["auto", "json", "console"]
# attributes every LogRecord has; anything else was passed via `extra=` and is emitted as a field
_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}
# libraries that log every routine step at INFO (apscheduler: two lines per job run, every
# second); they speak at WARNING unless dqmon itself runs at DEBUG
_CHATTY_LOGGERS = ("apscheduler",)
_JsonValue = str | int | float | bool | None | list["_JsonValue"] | dict[str, "_JsonValue"]


class SecretRedactor(Redactor, logging.Filter):
    """Replaces secret values in a record's message, arguments, exception text and extras."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        logging.Filter.__init__(self)
        Redactor.__init__(self, secrets)

    def filter(self, record: logging.LogRecord) -> bool:
        # format once, then redact the final text: secrets may arrive through %-arguments
        record.msg = self.redact(record.getMessage())
        record.args = None
        if record.exc_info and record.exc_info[0] is not None:
            record.exc_text = self.redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        for key, value in list(vars(record).items()):
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                setattr(record, key, self.redact_value(value))
        return True

    def redact_value(self, value: object) -> _JsonValue:
        """An `extra=` value as JSON-ready data with every string in it redacted.

        Structured extras (an alert's payload) stay structured, and a secret nested in them
        is caught like one in the message.
        """
        if isinstance(value, str):
            return self.redact(value)
        if value is None or isinstance(value, bool | int | float):
            return value
        if isinstance(value, Mapping):
            return {self.redact(str(k)): self.redact_value(v) for k, v in value.items()}
        if isinstance(value, list | tuple | set | frozenset):
            return [self.redact_value(v) for v in value]
        return self.redact(str(value))


class JsonFormatter(logging.Formatter):
    """One JSON object per line with time, level, logger, message, trace ids and extras."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        ctx = trace.get_current_span().get_span_context()
        if ctx.is_valid:
            entry["trace_id"] = format(ctx.trace_id, "032x")
            entry["span_id"] = format(ctx.span_id, "016x")
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                # dicts and lists stay JSON objects and arrays (the redactor made them JSON-ready)
                entry[key] = value
        if record.exc_info and record.exc_info[0] is not None:
            entry["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exc"] = record.exc_text
        return json.dumps(entry, ensure_ascii=False, default=str)


_CONSOLE_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def configure_logging(
    fmt: LogFormat = "auto",
    level: str | int = "INFO",
    *,
    secrets: Iterable[str] = (),
    stream: TextIO | None = None,
) -> SecretRedactor:
    """Install one handler on the root logger; returns the redactor so secrets can be added later.

    `auto` writes JSON unless the stream is a terminal. The redactor sits on the handler, so
    records from every library (confluent-kafka callbacks, psycopg, slack-sdk) pass it.
    """
    stream = stream if stream is not None else sys.stderr
    if fmt == "auto":
        fmt = "console" if stream.isatty() else "json"
    handler = logging.StreamHandler(stream)
    handler.set_name("dqmon")
    formatter: logging.Formatter = (
        JsonFormatter() if fmt == "json" else logging.Formatter(_CONSOLE_FORMAT, "%H:%M:%S")
    )
    handler.setFormatter(formatter)
    redactor = SecretRedactor(secrets)
    handler.addFilter(redactor)
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == "dqmon"]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    chatty_level = logging.NOTSET if root.level <= logging.DEBUG else logging.WARNING
    for name in _CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(chatty_level)
    return redactor
