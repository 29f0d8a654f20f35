"""Slack delivery with the real slack-sdk clients against the local Slack Web API test double.

Covers exactly-once delivery, thread replies in the right thread, 429 Retry-After, 500s,
slow responses under bounded concurrency, permanent errors, and no secret in any log line.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from dqmon.alerts.delivery import DeliveryWorker, RetryPolicy
from dqmon.alerts.manager import AlertManager
from dqmon.alerts.notifiers.base import Notifier
from dqmon.alerts.notifiers.log import LogNotifier
from dqmon.alerts.notifiers.slack import SlackBotNotifier, SlackWebhookNotifier
from dqmon.alerts.notifiers.webhook import WebhookNotifier
from dqmon.config.models import Pipeline
from dqmon.results import CheckResult, Status
from dqmon.state.store import SqliteStateStore
from tests.fixtures.slack_api import TOKEN, WEBHOOK_PATH, FakeSlack

FAST = RetryPolicy(max_attempts=6, base_seconds=0.05, max_seconds=0.5)


def make_pipeline(**alerts: object) -> Pipeline:
    return Pipeline.model_validate(
        {
            "pipeline": "trades-features",
            "owner": "#ml-alerts",
            "grafana_url": "http://grafana.local/d/dqmon",
            "slos": [{"name": "features-fresh", "objective": 99.0, "window": "1d"}],
            # clear: 0s resolves at the first passing evaluation (these tests are about delivery)
            "alerts": {"repeat_interval": "10m", "flap": {"clear": "0s"}, **alerts},
            "datasets": [
                {
                    "name": "trades",
                    "source": {"kind": "replay", "path": "x.ndjson"},
                    "checks": [
                        {"freshness": {"max_lag": "30s", "slo": "features-fresh"}},
                        {"volume": {"min": 10, "severity": "warn"}},
                        {"validity": {"not_null": ["id"], "name": "valid"}},
                    ],
                }
            ],
        }
    )


def result(check: str, status: Status, *, kind: str | None = None, slo: str | None = None) -> CheckResult:
    return CheckResult(
        "trades-features",
        "trades",
        check,
        kind or check,
        status,
        42.0,
        "<= 30",
        f"{check} is {status.label}",
        slo=slo,
        trace_id="4bf92f3577b34da6a3ce929d0e0e4736",
        severity="warn" if check == "volume" else "page",
    )


def failing_all(status: Status = Status.FAIL) -> list[CheckResult]:
    return [
        result("freshness", status, slo="features-fresh"),
        result("volume", status),
        result("valid", status, kind="validity"),
    ]


def wait_for(cond: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.02)
    raise AssertionError("condition not reached in time")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStateStore]:
    s = SqliteStateStore(tmp_path / "state.db")
    yield s
    s.close()


def start_worker(store: SqliteStateStore, notifiers: dict[str, Notifier], **kw: object) -> DeliveryWorker:
    worker = DeliveryWorker(store, notifiers, poll_interval=0.05, retry=FAST, **kw)  # type: ignore[arg-type]
    worker.start()
    return worker


def test_every_alert_once_and_replies_in_its_thread(slack_api: FakeSlack, store: SqliteStateStore) -> None:
    manager = AlertManager(make_pipeline(), store, slack_configured=True)
    worker = start_worker(store, {"slack": SlackBotNotifier(TOKEN, base_url=slack_api.api_url)})
    try:
        t0 = 1_800_000_000.0
        assert len(manager.observe(failing_all(), t0)) == 3
        assert manager.observe(failing_all(), t0 + 60) == []  # still firing, inside repeat interval
        manager.observe(failing_all(), t0 + 601)  # repeat
        manager.observe([result("freshness", Status.OK, slo="features-fresh")], t0 + 700)  # one resolves
        worker.wake()
        wait_for(lambda: worker.pending() == 0)
    finally:
        worker.stop()
    parents = slack_api.top_level()
    assert sorted(p.body["blocks"][0]["text"]["text"].split(" / ")[-1] for p in parents) == [
        "freshness",
        "valid",
        "volume",
    ]
    assert all(p.body["channel"] == "#ml-alerts" for p in parents)
    by_check = {
        m["blocks"][0]["text"]["text"].split(" / ")[-1]: ts
        for ts, m in slack_api.messages.items()
        if not m.get("thread_ts")
    }
    for check, ts in by_check.items():
        replies = slack_api.replies(ts)
        expected = ["REPEAT", "RESOLVED"] if check == "freshness" else ["REPEAT"]
        assert [r.body["text"].split("]")[0].strip("[") for r in replies] == expected
    (update,) = slack_api.updates()
    assert update.body["ts"] == by_check["freshness"]
    assert "RESOLVED" in update.body["blocks"][0]["text"]["text"]
    # the firing message carries what an owner needs
    fresh = next(p for p in parents if p.body["blocks"][0]["text"]["text"].endswith("freshness"))
    text = str(fresh.body["blocks"])
    for needle in (
        "trades-features",
        "42",
        "<= 30",
        "features-fresh (99%)",
        "4bf92f3577b34da6a3ce929d0e0e4736",
        "http://grafana.local/d/dqmon?var-pipeline=trades-features",
    ):
        assert needle in text
    assert worker.stats.snapshot() == {("slack", "delivered"): 7}  # 3 firing, 3 repeats, 1 resolve
    assert manager.firing_counts() == {("trades-features", "page"): 1, ("trades-features", "warn"): 1}


def test_429_retry_after_is_honoured_and_delivered_once(
    slack_api: FakeSlack, store: SqliteStateStore
) -> None:
    slack_api.fail_next(2, 429, retry_after="1")
    manager = AlertManager(make_pipeline(), store, slack_configured=True)
    manager.observe([result("volume", Status.FAIL)], 1_800_000_000.0)
    started = time.monotonic()
    worker = start_worker(store, {"slack": SlackBotNotifier(TOKEN, base_url=slack_api.api_url)})
    try:
        wait_for(lambda: len(slack_api.posts()) == 1)
        elapsed = time.monotonic() - started
        wait_for(lambda: worker.pending() == 0)
    finally:
        worker.stop()
    assert elapsed >= 2.0  # two Retry-After: 1 waits, although our own backoff would retry in 0.05 s
    assert len(slack_api.posts()) == 1
    assert [s for _, s in slack_api.rejected] == [429, 429]
    assert worker.stats.get("slack", "retried") == 2
    assert worker.stats.get("slack", "delivered") == 1


def test_500s_are_retried_with_backoff_then_delivered_once(
    slack_api: FakeSlack, store: SqliteStateStore
) -> None:
    slack_api.fail_next(3, 500)
    manager = AlertManager(make_pipeline(), store, slack_configured=True)
    manager.observe([result("volume", Status.FAIL)], 1_800_000_000.0)
    worker = start_worker(store, {"slack": SlackBotNotifier(TOKEN, base_url=slack_api.api_url)})
    try:
        wait_for(lambda: worker.pending() == 0)
    finally:
        worker.stop()
    assert len(slack_api.posts()) == 1
    assert worker.stats.snapshot() == {("slack", "retried"): 3, ("slack", "delivered"): 1}
    (item,) = store.outbox_items("delivered")
    assert item.attempts == 4


def test_slow_slack_is_drained_with_bounded_concurrency(
    slack_api: FakeSlack, store: SqliteStateStore
) -> None:
    slack_api.delay = 0.4
    pipeline = make_pipeline(routes=[{"notify": [f"slack:#c{i}" for i in range(4)]}])
    manager = AlertManager(pipeline, store, slack_configured=True)
    manager.observe(failing_all(), 1_800_000_000.0)  # 3 alerts x 4 channels = 12 messages
    started = time.monotonic()
    worker = start_worker(
        store, {"slack": SlackBotNotifier(TOKEN, base_url=slack_api.api_url)}, concurrency=4
    )
    try:
        wait_for(lambda: worker.pending() == 0)
    finally:
        worker.stop()
    elapsed = time.monotonic() - started
    assert len(slack_api.posts()) == 12
    assert len({(p.body["channel"], p.body["text"]) for p in slack_api.posts()}) == 12
    assert slack_api.max_concurrent == 4  # never more than the bound, and the bound is used
    assert elapsed < 12 * 0.4 * 0.6  # far faster than one at a time


def test_permanent_error_fails_without_retry(slack_api: FakeSlack, store: SqliteStateStore) -> None:
    manager = AlertManager(make_pipeline(), store, slack_configured=True)
    manager.observe([result("volume", Status.FAIL)], 1_800_000_000.0)
    worker = start_worker(store, {"slack": SlackBotNotifier("xoxb-wrong", base_url=slack_api.api_url)})
    try:
        wait_for(lambda: worker.pending() == 0)
    finally:
        worker.stop()
    assert worker.stats.snapshot() == {("slack", "failed"): 1}
    (item,) = store.outbox_items("failed")
    assert item.last_error == "slack chat.postMessage: invalid_auth"


def test_no_secret_in_any_log_line(
    slack_api: FakeSlack, store: SqliteStateStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # the most talkative setting, for every logger
    slack_api.fail_next(1, 429, retry_after="0")
    slack_api.fail_next(1, 500)
    manager = AlertManager(make_pipeline(), store, slack_configured=True)
    manager.observe(failing_all(), 1_800_000_000.0)
    manager.observe([], 1_800_000_100.0)
    manager.observe([result("volume", Status.OK)], 1_800_000_200.0)
    notifiers: dict[str, Notifier] = {
        "slack": SlackBotNotifier(TOKEN, base_url=slack_api.api_url),
        "webhook": WebhookNotifier({"ops": slack_api.webhook_url}),
    }
    pipeline2 = make_pipeline(routes=[{"notify": ["webhook:ops", "webhook:missing"]}])
    AlertManager(pipeline2, store).observe([result("adhoc", Status.ERROR, kind="sql")], 1_800_000_000.0)
    hook = SlackWebhookNotifier(slack_api.webhook_url)
    worker = start_worker(store, notifiers)
    try:
        wait_for(lambda: worker.pending() == 0)
        from dqmon.state.outbox import OutboxItem

        hook.send(OutboxItem(0, "f", "f:1", "slack", "firing", {"check": "x"}, 0.0), None)
    finally:
        worker.stop()
    assert len(slack_api.top_level()) == 3
    assert len(slack_api.hooks()) == 2  # the generic webhook and the Slack incoming webhook
    records = caplog.records
    assert any(r.name.startswith("dqmon.alerts") for r in records)  # something was logged
    assert any(r.levelno == logging.DEBUG for r in records)
    secret_path = WEBHOOK_PATH.split("/")[-1]
    for r in records:
        line = r.getMessage() + str(getattr(r, "alert", ""))
        assert TOKEN not in line
        assert secret_path not in line
    for item in store.outbox_items():
        assert TOKEN not in str(item.last_error)
        assert secret_path not in str(item.last_error)


def test_webhook_notifiers_retry_and_carry_the_alert(slack_api: FakeSlack, store: SqliteStateStore) -> None:
    slack_api.fail_next(1, 503, retry_after="0")
    pipeline = make_pipeline(routes=[{"notify": ["webhook:ops", "log"]}])
    manager = AlertManager(pipeline, store)
    manager.observe([result("volume", Status.WARN)], 1_800_000_000.0)
    worker = start_worker(
        store, {"webhook": WebhookNotifier({"ops": slack_api.webhook_url}), "log": LogNotifier()}
    )
    try:
        wait_for(lambda: worker.pending() == 0)
    finally:
        worker.stop()
    (call,) = slack_api.hooks()
    assert call.body["event"] == "firing"
    assert call.body["alert"]["check"] == "volume"
    assert call.body["alert"]["status"] == "warn"
    assert worker.stats.snapshot() == {
        ("webhook", "retried"): 1,
        ("webhook", "delivered"): 1,
        ("log", "delivered"): 1,
    }
