"""Structured logs: JSON lines with trace ids, console lines, and secret redaction."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import TracerProvider

from dqmon.telemetry.logging import configure_logging

TOKEN = "xoxb-1234-abcdefSECRET"
DSN = "postgresql://dqmon:pa55w0rd-xyz@db.internal:5432/app"


@pytest.fixture(autouse=True)
def restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in [h for h in root.handlers if h not in handlers]:
        root.removeHandler(handler)
    root.setLevel(level)


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_carry_level_logger_extras_and_trace_ids() -> None:
    stream = io.StringIO()  # not a TTY: auto means JSON
    configure_logging("auto", "DEBUG", stream=stream)
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("work") as span:
        logging.getLogger("dqmon.runtime").info("batch %s checked", 7, extra={"dataset": "trades"})
    entry = lines(stream)[0]
    assert entry["msg"] == "batch 7 checked"
    assert entry["level"] == "info"
    assert entry["logger"] == "dqmon.runtime"
    assert entry["dataset"] == "trades"
    assert entry["trace_id"] == format(span.get_span_context().trace_id, "032x")


def test_console_format_is_one_readable_line() -> None:
    stream = io.StringIO()
    configure_logging("console", "INFO", stream=stream)
    logging.getLogger("dqmon.x").warning("source %s down", "trades")
    logging.getLogger("dqmon.x").debug("not shown")
    (line,) = stream.getvalue().splitlines()
    assert line.endswith("WARNING dqmon.x: source trades down")


def test_configured_secrets_and_url_passwords_are_redacted_everywhere() -> None:
    stream = io.StringIO()
    redactor = configure_logging("json", "INFO", secrets=[TOKEN], stream=stream)
    log = logging.getLogger("dqmon.notify")
    log.error("slack said invalid_auth for token %s", TOKEN)
    log.warning("cannot connect to %s", DSN, extra={"target": DSN})
    try:
        raise ConnectionError(f"refused: {DSN} with {TOKEN}")
    except ConnectionError:
        log.exception("state store down")
    redactor.add(["late-added-secret-value"])
    log.info("now late-added-secret-value is known")
    text = stream.getvalue()
    for secret in (TOKEN, "pa55w0rd-xyz", "late-added-secret-value"):
        assert secret not in text
    entries = lines(stream)
    assert entries[0]["msg"] == "slack said invalid_auth for token ***"
    assert entries[1]["msg"] == "cannot connect to postgresql://***@db.internal:5432/app"
    assert entries[1]["target"] == "postgresql://***@db.internal:5432/app"
    assert "ConnectionError: refused: postgresql://***@" in str(entries[2]["exc"])
    assert entries[3]["msg"] == "now *** is known"


def test_a_keyword_dsn_password_is_redacted_in_logs() -> None:
    stream = io.StringIO()
    configure_logging("json", "INFO", stream=stream)
    logging.getLogger("dqmon.sql").warning("invalid dsn: host=db password='p@ss word' user=me")
    (entry,) = lines(stream)
    assert entry["msg"] == "invalid dsn: host=db password=*** user=me"


def test_reconfiguring_replaces_the_handler_instead_of_duplicating_lines() -> None:
    first, second = io.StringIO(), io.StringIO()
    configure_logging("json", "INFO", stream=first)
    configure_logging("json", "INFO", stream=second)
    logging.getLogger("dqmon").info("once")
    assert first.getvalue() == ""
    assert len(second.getvalue().splitlines()) == 1


def test_structured_extras_stay_json_objects_with_nested_secrets_redacted() -> None:
    stream = io.StringIO()
    configure_logging("json", "INFO", secrets=[TOKEN], stream=stream)
    payload = {"check": "range(price)", "value": 0.01, "links": [DSN, {"token": TOKEN}], "slo": None}
    logging.getLogger("dqmon.alerts.notifications").warning("alert FIRING", extra={"alert": payload})
    (entry,) = lines(stream)
    assert entry["alert"] == {
        "check": "range(price)",
        "value": 0.01,
        "links": ["postgresql://***@db.internal:5432/app", {"token": "***"}],
        "slo": None,
    }
    assert TOKEN not in stream.getvalue() and "pa55w0rd-xyz" not in stream.getvalue()


@pytest.mark.parametrize(("level", "routine_lines_shown"), [("INFO", False), ("DEBUG", True)])
def test_scheduler_routine_lines_only_at_debug(level: str, routine_lines_shown: bool) -> None:
    scheduler_log = logging.getLogger("apscheduler.executors.default")
    before = logging.getLogger("apscheduler").level
    try:
        stream = io.StringIO()
        configure_logging("json", level, stream=stream)
        scheduler_log.info('Job "Runtime._sweep" executed successfully')
        scheduler_log.warning("Run time of job was missed")
        messages = [entry["msg"] for entry in lines(stream)]
    finally:
        logging.getLogger("apscheduler").setLevel(before)
    assert ('Job "Runtime._sweep" executed successfully' in messages) is routine_lines_shown
    assert "Run time of job was missed" in messages
