"""AlertManager wiring: routing, per-check `for`, silences, SLO burn alerts, persistence, settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from dqmon.alerts.manager import AlertManager
from dqmon.alerts.notifiers.log import LogNotifier
from dqmon.alerts.notifiers.slack import SlackBotNotifier, SlackWebhookNotifier
from dqmon.alerts.setup import build_notifiers
from dqmon.config.models import Pipeline
from dqmon.config.settings import Settings
from dqmon.results import CheckResult, Status
from dqmon.state.store import MemoryStateStore, SqliteStateStore

T0 = 1_800_000_000.0


def make(**alerts: object) -> Pipeline:
    return Pipeline.model_validate(
        {
            "pipeline": "p",
            "owner": "#team",
            "slos": [
                {
                    "name": "fresh",
                    "objective": 99.0,
                    "window": "1d",
                    "burn_rates": [{"long": "1h", "short": "5m", "factor": 14.4}],
                }
            ],
            "alerts": {"flap": {"clear": "0s"}, **alerts},
            "datasets": [
                {
                    "name": "d",
                    "source": {"kind": "replay", "path": "x.ndjson"},
                    "checks": [
                        {"freshness": {"max_lag": "30s", "slo": "fresh", "for": "2m"}},
                        {"volume": {"min": 1, "severity": "warn", "notify": ["webhook:ops"]}},
                        {"validity": {"not_null": ["id"]}},
                    ],
                }
            ],
        }
    )


def res(check: str, status: Status, severity: str = "page", slo: str | None = None) -> CheckResult:
    return CheckResult(
        "p", "d", check, check.split(".")[0], status, 1.0, "t", "m", severity=severity, slo=slo
    )


def test_routes_check_notify_and_defaults() -> None:
    pipeline = make(routes=[{"match": {"severity": "page"}, "notify": ["slack:#pager", "log"]}])
    m = AlertManager(pipeline, MemoryStateStore(), slack_configured=True)
    out = m.observe([res("validity.not_null.id", Status.FAIL), res("volume", Status.WARN, "warn")], T0)
    assert sorted((n.payload["check"], n.target) for n in out) == [
        ("validity.not_null.id", "log"),
        ("validity.not_null.id", "slack:#pager"),
        ("volume", "webhook:ops"),
    ]
    m2 = AlertManager(make(), MemoryStateStore(), slack_configured=True)
    assert [n.target for n in m2.observe([res("validity", Status.ERROR)], T0)] == ["slack:#team"]
    m3 = AlertManager(make(), MemoryStateStore(), slack_configured=False)
    assert [n.target for n in m3.observe([res("validity", Status.FAIL)], T0)] == ["log"]


def test_check_for_overrides_pipeline_for() -> None:
    m = AlertManager(make(**{"for": "10m"}), MemoryStateStore())
    assert m.observe([res("freshness", Status.FAIL), res("validity", Status.FAIL)], T0) == []
    fired = m.observe([res("freshness", Status.FAIL), res("validity", Status.FAIL)], T0 + 120)
    assert [n.payload["check"] for n in fired] == ["freshness"]  # its own for: 2m
    fired = m.observe([res("freshness", Status.FAIL), res("validity", Status.FAIL)], T0 + 600)
    assert [n.payload["check"] for n in fired] == ["validity"]  # the pipeline's for: 10m


def test_silence_window_holds_notifications_until_it_ends() -> None:
    silence = {
        "match": {"check": "validity"},
        "starts": "2027-01-15T08:00:00Z",
        "ends": "2027-01-15T10:00:00Z",
        "reason": "backfill",
    }
    m = AlertManager(make(silences=[silence]), MemoryStateStore())
    start = 1_800_000_000.0  # 2027-01-15T08:00:00Z
    assert m.observe([res("validity", Status.FAIL)], start + 60) == []
    assert m.states()[next(iter(m.states()))].phase == "firing"
    out = m.observe([res("validity", Status.FAIL)], start + 2 * 3600)
    assert [n.event for n in out] == ["firing"]


def test_slo_burn_alert_names_the_slo_and_the_checks() -> None:
    m = AlertManager(make(), MemoryStateStore())
    events = []
    # dataset d is evaluated every 10 s (its window): 30 healthy minutes, then 10 failing ones
    for i in range(240):
        st = Status.FAIL if i >= 180 else Status.OK
        events += m.observe([res("freshness", st, slo="fresh")], T0 + 10 * i)
    slo_alerts = [n for n in events if n.payload["kind"] == "slo"]
    assert [n.event for n in slo_alerts] == ["firing"]
    msg = slo_alerts[0].payload["message"]
    assert "SLO fresh (99%)" in msg
    assert "d/freshness" in msg
    (slo_state,) = m.slo_status(T0 + 10 * 239)
    assert slo_state.bad == 60
    # relative to the 8,640 evaluations the 1-day SLO expects, not to the 240 seen so far
    assert slo_state.budget_remaining == pytest.approx(1 - 60 / (0.01 * 8640))


def test_states_and_slo_buckets_survive_a_restart(tmp_path: Path) -> None:
    store = SqliteStateStore(tmp_path / "s.db")
    m = AlertManager(make(), store, slo_save_interval=0)
    assert len(m.observe([res("validity", Status.FAIL), res("freshness", Status.OK, slo="fresh")], T0)) == 1
    store.close()
    store = SqliteStateStore(tmp_path / "s.db")
    again = AlertManager(make(), store)
    assert again.observe([res("validity", Status.FAIL)], T0 + 60) == []  # not re-announced
    assert again.firing_counts()[("p", "page")] == 1
    assert again.slo_status(T0 + 60)[0].good == 1
    resolved = again.observe([res("validity", Status.OK)], T0 + 120)
    assert [n.event for n in resolved] == ["resolved"]
    assert resolved[0].thread_key == next(iter(store.outbox_items())).thread_key
    store.close()


def test_notifiers_from_settings_read_secret_files(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("xoxb-from-file\n")
    notifiers = build_notifiers(
        Settings(slack_token_file=token, webhook_urls={"ops": "http://127.0.0.1:1/x"})
    )
    assert isinstance(notifiers["slack"], SlackBotNotifier)
    assert isinstance(notifiers["log"], LogNotifier)
    assert "xoxb" not in repr(notifiers["slack"])
    assert set(notifiers) == {"slack", "log", "webhook"}
    hook = build_notifiers(Settings(slack_webhook_url="http://127.0.0.1:1/hooks/x"))
    assert isinstance(hook["slack"], SlackWebhookNotifier)
    assert set(build_notifiers(Settings())) == {"log"}


def test_slack_routes_go_to_the_log_when_slack_is_not_configured() -> None:
    from dqmon.alerts.routing import route_targets
    from dqmon.config.models import Route

    routes = [
        Route.model_validate(
            {"match": {"severity": "page"}, "notify": ["slack", "slack:#oncall", "webhook:x"]}
        )
    ]
    labels = {"severity": "page"}
    without = route_targets(labels, check_notify=[], routes=routes, owner="#team", slack_configured=False)
    assert without == ["log", "webhook:x"]
    with_slack = route_targets(labels, check_notify=[], routes=routes, owner="#team", slack_configured=True)
    assert with_slack == ["slack:#team", "slack:#oncall", "webhook:x"]
