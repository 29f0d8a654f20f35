"""group_by: pipeline — one Slack thread per pipeline incident, on the Slack API test double."""

from __future__ import annotations

from pathlib import Path

from dqmon.alerts.manager import AlertManager
from dqmon.alerts.notifiers.slack import SlackBotNotifier
from dqmon.results import Status
from dqmon.state.store import SqliteStateStore
from tests.fixtures.slack_api import TOKEN, FakeSlack
from tests.test_notifier_slack import make_pipeline, result, start_worker, wait_for

T0 = 1_800_000_000.0


def test_manager_shares_one_thread_per_incident_and_closes_it(tmp_path: Path) -> None:
    store = SqliteStateStore(tmp_path / "s.db")
    m = AlertManager(make_pipeline(group_by="pipeline"), store, slack_configured=True)
    first = m.observe([result("freshness", Status.FAIL)], T0)
    second = m.observe(
        [result("freshness", Status.FAIL), result("valid", Status.FAIL, kind="validity")], T0 + 5
    )
    assert first[0].payload["group_opened"] and "group_opened" not in second[0].payload
    assert first[0].thread_key == second[0].thread_key
    # a restart keeps the open group
    m = AlertManager(
        make_pipeline(group_by="pipeline"), SqliteStateStore(tmp_path / "s.db"), slack_configured=True
    )
    one_resolved = m.observe(
        [result("freshness", Status.OK), result("valid", Status.FAIL, kind="validity")], T0 + 10
    )
    assert one_resolved[0].thread_key == first[0].thread_key and "group_closed" not in one_resolved[0].payload
    closed = m.observe([result("valid", Status.OK, kind="validity")], T0 + 15)
    assert closed[0].payload["group_closed"] and closed[0].thread_key == first[0].thread_key
    reopened = m.observe([result("valid", Status.FAIL, kind="validity")], T0 + 20)
    assert reopened[0].thread_key != first[0].thread_key and reopened[0].payload["group_opened"]


def test_slack_gets_one_parent_per_incident(slack_api: FakeSlack, tmp_path: Path) -> None:
    store = SqliteStateStore(tmp_path / "s.db")
    manager = AlertManager(make_pipeline(group_by="pipeline"), store, slack_configured=True)
    worker = start_worker(store, {"slack": SlackBotNotifier(TOKEN, base_url=slack_api.api_url)})
    try:
        manager.observe([result("freshness", Status.FAIL, slo="features-fresh")], T0)
        worker.wake()
        wait_for(lambda: worker.pending() == 0)
        manager.observe(
            [
                result("freshness", Status.FAIL, slo="features-fresh"),
                result("valid", Status.FAIL, kind="validity"),
            ],
            T0 + 5,
        )
        manager.observe([result("freshness", Status.OK, slo="features-fresh")], T0 + 10)
        worker.wake()
        wait_for(lambda: worker.pending() == 0)
        assert slack_api.updates() == []  # one alert of the incident still fires: the parent stays
        manager.observe([result("valid", Status.OK, kind="validity")], T0 + 15)
        worker.wake()
        wait_for(lambda: worker.pending() == 0)
    finally:
        worker.stop()
    (parent,) = slack_api.top_level()
    ts = next(t for t, m in slack_api.messages.items() if not m.get("thread_ts"))
    replies = [
        r.body["text"].split("]")[0].strip("[") + " " + r.body["text"].split("/")[-1].split(":")[0]
        for r in slack_api.replies(ts)
    ]
    assert replies == ["FIRING valid", "RESOLVED freshness", "RESOLVED valid"]
    (update,) = slack_api.updates()
    assert update.body["ts"] == ts and update.body["text"] == "RESOLVED: all alerts of trades-features"
    assert "freshness" in parent.body["text"]
