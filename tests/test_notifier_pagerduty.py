"""PagerDuty delivery (Events API v2) through the outbox, against the local PagerDuty test double.

Covers the event body (dedup_key = fingerprint, actions, severities, the 1024-character summary),
trigger → resolve of one alert, retries on 429 (never sooner than Retry-After) and 5xx, 400 as a
permanent failure, named routing keys, and no routing key in any log line, error or repr.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dqmon.alerts.delivery import DeliveryWorker, RetryPolicy
from dqmon.alerts.manager import AlertManager
from dqmon.alerts.notifiers.pagerduty import MAX_SUMMARY, PagerDutyNotifier, event_body
from dqmon.errors import NotifyError
from dqmon.registry import NOTIFIERS
from dqmon.results import Status
from dqmon.state.outbox import OutboxItem
from dqmon.state.store import SqliteStateStore
from tests.fixtures.pagerduty_api import OTHER_KEY, ROUTING_KEY, FakePagerDuty, problems
from tests.test_notifier_slack import FAST, make_pipeline, result, wait_for

T0 = 1_800_000_000.0
KEYS = {"default": ROUTING_KEY, "db": OTHER_KEY}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStateStore]:
    s = SqliteStateStore(tmp_path / "state.db")
    yield s
    s.close()


def item(event: str = "firing", **payload: object) -> OutboxItem:
    p: dict[str, object] = {
        "pipeline": "trades-features",
        "dataset": "trades",
        "check": "freshness",
        "kind": "freshness",
        "severity": "page",
        "status": "fail",
        "message": "p99 lag 95s > 30s",
        "at": "2027-01-15T08:00:00+00:00",
        "fingerprint": "0123456789abcdef",
        "slo": None,
        **payload,
    }
    return OutboxItem(1, "0123456789abcdef", "t", "pagerduty", event, p, T0)


def notifier(fake: FakePagerDuty) -> PagerDutyNotifier:
    return PagerDutyNotifier(KEYS, api_url=fake.api_url)


def drain(
    store: SqliteStateStore, fake: FakePagerDuty, pipeline_routes: list[str], *steps: Status
) -> DeliveryWorker:
    """An alert routed to `pipeline_routes` goes through `steps` (one minute apart); drain the outbox."""
    manager = AlertManager(make_pipeline(routes=[{"notify": pipeline_routes}]), store, slack_configured=False)
    worker = DeliveryWorker(store, {"pagerduty": notifier(fake)}, poll_interval=0.05, retry=FAST)
    worker.start()
    try:
        for i, status in enumerate(steps):
            manager.observe([result("freshness", status, slo="features-fresh")], T0 + 60 * i)
            worker.wake()
            wait_for(lambda: worker.pending() == 0)
    finally:
        worker.stop()
    return worker


# ---------------------------------------------------------------------- the event body


def test_firing_repeat_and_resolved_map_to_trigger_trigger_resolve_on_the_fingerprint() -> None:
    firing = event_body(item("firing", grafana_url="http://grafana.local/d/x"), ROUTING_KEY)
    assert firing["event_action"] == "trigger"
    assert firing["dedup_key"] == "0123456789abcdef"
    assert firing["payload"]["severity"] == "critical"
    assert firing["payload"]["source"] == "trades-features/trades"
    assert (firing["payload"]["component"], firing["payload"]["group"], firing["payload"]["class"]) == (
        "freshness",
        "trades-features",
        "freshness",
    )
    assert firing["payload"]["timestamp"] == "2027-01-15T08:00:00+00:00"
    assert firing["payload"]["summary"] == "[FIRING] trades-features/trades/freshness: p99 lag 95s > 30s"
    assert firing["payload"]["custom_details"]["status"] == "fail"
    assert "slo" not in firing["payload"]["custom_details"]  # None fields are left out
    assert firing["links"] == [{"href": "http://grafana.local/d/x", "text": "Open in Grafana"}]
    assert firing["client"] == "dqmon"
    assert event_body(item("repeat"), ROUTING_KEY)["event_action"] == "trigger"
    assert event_body(item("resolved"), ROUTING_KEY) == {
        "routing_key": ROUTING_KEY,
        "event_action": "resolve",
        "dedup_key": "0123456789abcdef",
    }
    assert event_body(item(severity="warn"), ROUTING_KEY)["payload"]["severity"] == "warning"
    assert event_body(item(severity=None), ROUTING_KEY)["payload"]["severity"] == "error"
    with pytest.raises(NotifyError) as info:
        event_body(item("acknowledged"), ROUTING_KEY)
    assert info.value.permanent


@given(
    message=st.text(max_size=3000),
    pipeline=st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,40}", fullmatch=True),
    dataset=st.none() | st.from_regex(r"[a-z][a-z0-9_]{0,20}", fullmatch=True),
    severity=st.sampled_from(["page", "warn", None, "other"]),
    event=st.sampled_from(["firing", "repeat", "resolved"]),
)
def test_every_body_is_a_valid_event_for_the_api(
    message: str, pipeline: str, dataset: str | None, severity: str | None, event: str
) -> None:
    body = event_body(
        item(event, message=message, pipeline=pipeline, dataset=dataset, severity=severity), ROUTING_KEY
    )
    assert problems(body, {ROUTING_KEY}) == []
    if event != "resolved":
        where = "/".join(x for x in (pipeline, dataset, "freshness") if x)
        full = f"[{event.upper()}] {where}: {message or 'fail'}".strip()
        expected = full if len(full) <= MAX_SUMMARY else full[: MAX_SUMMARY - 1] + "…"
        assert body["payload"]["summary"] == expected


# ---------------------------------------------------------------------- through the outbox


def test_trigger_then_resolve_reach_the_api_with_the_fingerprint_as_dedup_key(
    pagerduty_api: FakePagerDuty, store: SqliteStateStore
) -> None:
    worker = drain(store, pagerduty_api, ["pagerduty"], Status.FAIL, Status.OK)
    trigger, resolve = pagerduty_api.accepted()
    (delivered_firing, delivered_resolve) = store.outbox_items("delivered")
    fingerprint = delivered_firing.fingerprint
    assert (trigger["event_action"], resolve["event_action"]) == ("trigger", "resolve")
    assert trigger["dedup_key"] == resolve["dedup_key"] == fingerprint == delivered_resolve.fingerprint
    assert trigger["routing_key"] == ROUTING_KEY
    assert trigger["payload"]["custom_details"]["slo"] == "features-fresh"
    assert pagerduty_api.alerts == {(ROUTING_KEY, fingerprint): "resolved"}
    assert worker.stats.snapshot() == {("pagerduty", "delivered"): 2}


def test_a_named_routing_key_serves_pagerduty_name_targets(
    pagerduty_api: FakePagerDuty, store: SqliteStateStore
) -> None:
    drain(store, pagerduty_api, ["pagerduty:db"], Status.FAIL)
    (event,) = pagerduty_api.accepted()
    assert event["routing_key"] == OTHER_KEY
    pd = notifier(pagerduty_api)
    assert pd.serves("pagerduty") and pd.serves("pagerduty:db") and not pd.serves("pagerduty:nope")
    with pytest.raises(NotifyError) as info:
        pd.send(OutboxItem(2, "f", "t", "pagerduty:nope", "firing", item().payload, T0), None)
    assert info.value.permanent and "'nope' is not configured" in str(info.value)
    assert len(pagerduty_api.accepted()) == 1  # nothing was sent for the unknown name


def test_429_waits_at_least_retry_after_and_5xx_are_retried(
    pagerduty_api: FakePagerDuty, store: SqliteStateStore
) -> None:
    now = [T0]
    manager = AlertManager(make_pipeline(routes=[{"notify": ["pagerduty"]}]), store, slack_configured=False)
    manager.observe([result("freshness", Status.FAIL)], T0)
    policy = RetryPolicy(max_attempts=5, base_seconds=0.01, max_seconds=0.02, jitter=0.0)
    worker = DeliveryWorker(store, {"pagerduty": notifier(pagerduty_api)}, retry=policy, clock=lambda: now[0])
    try:
        pagerduty_api.fail_next(1, 429, retry_after="7")
        pagerduty_api.fail_next(2, 503)
        assert worker.run_once() == 1
        (pending,) = store.outbox_items("pending")
        assert pending.next_attempt_at == pytest.approx(T0 + 7)  # Retry-After, not our 0.01 s backoff
        assert "HTTP 429" in str(pending.last_error)
        now[0] += 6.9
        assert worker.run_once() == 0  # not due before Retry-After has passed
        now[0] += 0.2
        assert worker.run_once() == 1  # 503
        now[0] += 1
        assert worker.run_once() == 1  # 503
        now[0] += 1
        assert worker.run_once() == 1  # accepted
    finally:
        worker.stop()
    assert [s for s, _ in pagerduty_api.rejected] == [429, 503, 503]
    assert len(pagerduty_api.accepted()) == 1
    (delivered,) = store.outbox_items("delivered")
    assert delivered.attempts == 4
    assert worker.stats.snapshot() == {("pagerduty", "retried"): 3, ("pagerduty", "delivered"): 1}


def test_400_is_permanent_and_no_routing_key_reaches_logs_errors_or_repr(
    pagerduty_api: FakePagerDuty, store: SqliteStateStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # the most talkative setting, httpx and httpcore included
    pagerduty_api.keys = {OTHER_KEY}  # the default key was revoked: PagerDuty answers 400
    worker = drain(store, pagerduty_api, ["pagerduty"], Status.FAIL)
    (failed,) = store.outbox_items("failed")
    assert failed.attempts == 1  # not retried
    assert "HTTP 400" in str(failed.last_error) and "routing_key" in str(failed.last_error)
    assert [s for s, _ in pagerduty_api.rejected] == [400]
    assert worker.stats.snapshot() == {("pagerduty", "failed"): 1}
    lines = [r.getMessage() for r in caplog.records] + [str(r.__dict__) for r in caplog.records]
    assert any("failed after 1 attempt" in line for line in lines)  # the failure was logged
    for line in lines:
        assert ROUTING_KEY not in line and OTHER_KEY not in line
    pd = notifier(pagerduty_api)
    assert ROUTING_KEY not in repr(pd) and OTHER_KEY not in repr(pd)


def test_a_400_quoting_the_key_is_kept_redacted(pagerduty_api: FakePagerDuty) -> None:
    pagerduty_api.fail_next(1, 400, errors=[f"routing_key {ROUTING_KEY} is unknown"])
    with pytest.raises(NotifyError) as info:
        notifier(pagerduty_api).send(item(), None)
    assert info.value.permanent
    assert ROUTING_KEY not in str(info.value)
    assert str(info.value) == "pagerduty default: HTTP 400 routing_key *** is unknown"


def test_unreachable_api_is_retried_without_the_key_in_the_error() -> None:
    pd = PagerDutyNotifier(KEYS, api_url="http://127.0.0.1:1", timeout=1.0)
    with pytest.raises(NotifyError) as info:
        pd.send(item(), None)
    assert not info.value.permanent
    assert ROUTING_KEY not in str(info.value)


def test_pagerduty_is_a_registered_notifier() -> None:
    assert "pagerduty" in NOTIFIERS.kinds()
