"""Issue 10 #3: an SLO burn is ONE alert (the most severe firing window leads, the others are
named in it and update it in place), and when the checks that spent the budget already page,
the burn goes into their thread (Alertmanager's inhibit rules as the model), on the Slack double."""

from __future__ import annotations

from typing import Any

from dqmon.alerts.manager import AlertManager
from dqmon.alerts.notifiers.slack import SlackBotNotifier
from dqmon.config.models import Pipeline
from dqmon.results import CheckResult, Status
from dqmon.state.outbox import NewNotification
from dqmon.state.store import MemoryStateStore
from tests.fixtures.slack_api import TOKEN, FakeSlack
from tests.test_notifier_slack import start_worker, wait_for

T0 = 1_800_000_000.0
WINDOWS = ["1h/5m", "6h/30m", "1d/2h", "3d/6h"]  # the SRE workbook's defaults


def pipeline(freshness: dict[str, Any]) -> Pipeline:
    return Pipeline.model_validate(
        {
            "pipeline": "p",
            "owner": "#team",
            "slos": [{"name": "fresh", "objective": 99.9, "window": "28d"}],
            "datasets": [
                {
                    "name": "d",
                    "window": "5s",
                    "source": {"kind": "replay", "path": "x.ndjson"},
                    "checks": [{"freshness": {"max_lag": "30s", "slo": "fresh", **freshness}}],
                }
            ],
        }
    )


def fresh(status: Status) -> CheckResult:
    return CheckResult(
        "p", "d", "freshness", "freshness", status, 40.0, "<= 30s", "lag", slo="fresh", origin="freshness"
    )


def run_incident(m: AlertManager, healthy: int = 720, failing: int = 360) -> list[NewNotification]:
    """An hour of healthy 5-s windows, then half an hour of late data: every burn window fires."""
    out: list[NewNotification] = []
    for i in range(healthy + failing):
        out += m.observe([fresh(Status.FAIL if i >= healthy else Status.OK)], T0 + 5 * i)
    return out


def test_a_long_burn_is_one_alert_in_the_thread_of_the_paging_check() -> None:
    m = AlertManager(pipeline({}), MemoryStateStore(), slack_configured=True)
    out = run_incident(m)
    firings = [n for n in out if n.event == "firing"]
    assert [n.payload["check"] for n in firings] == ["freshness", "slo:fresh"]
    check, burn = firings
    assert burn.thread_key == check.thread_key  # a reply in the freshness alert's thread
    assert burn.payload["guest"] and burn.payload["in_thread_of"] == "d/freshness"
    assert burn.payload["windows"] == ["1h/5m"]  # the first window to fire leads
    updates = [n for n in out if n.payload["check"] == "slo:fresh" and n.event == "update"]
    assert updates and all(n.thread_key == check.thread_key for n in updates)
    last = updates[-1].payload
    assert sorted(last["windows"]) == sorted(WINDOWS)
    assert last["severity"] == "page" and last["windows"][0] in ("1h/5m", "6h/30m")
    assert "also firing" in last["message"] and "d/freshness" in last["message"]
    assert not [n for n in out if n.event == "firing" and n is not check and n is not burn]


def test_a_burn_without_a_paging_check_opens_its_own_thread() -> None:
    # the check waits an hour before it pages: the burn is the first to speak
    m = AlertManager(pipeline({"for": "1h"}), MemoryStateStore(), slack_configured=True)
    out = run_incident(m)
    (burn,) = [n for n in out if n.event == "firing"]
    assert burn.payload["check"] == "slo:fresh"
    assert "guest" not in burn.payload and burn.thread_key == burn.payload["message_key"]


def test_slack_sees_one_top_level_message_for_check_and_burn(slack_api: FakeSlack) -> None:
    store = MemoryStateStore()
    m = AlertManager(pipeline({}), store, slack_configured=True)
    worker = start_worker(store, {"slack": SlackBotNotifier(TOKEN, base_url=slack_api.api_url)})
    try:
        run_incident(m, failing=120)
        worker.wake()
        wait_for(lambda: worker.pending() == 0)
    finally:
        worker.stop()
    (parent,) = slack_api.top_level()
    parent_ts = next(ts for ts, msg in slack_api.messages.items() if not msg.get("thread_ts"))
    assert "freshness" in parent.body["text"]
    replies = slack_api.replies(parent_ts)
    assert [r.body["text"].split("]")[0] for r in replies] == ["[FIRING"]
    assert "slo:fresh" in replies[0].body["text"]
    burn_ts = next(ts for ts, msg in slack_api.messages.items() if msg.get("thread_ts") == parent_ts)
    # windows joining the burn edit the burn's own reply, never the check's parent message
    assert slack_api.updates() and {u.body["ts"] for u in slack_api.updates()} == {burn_ts}


def test_in_a_pipeline_group_a_hosted_burn_neither_holds_nor_reopens_the_group() -> None:
    p = pipeline({})
    p = p.model_copy(update={"alerts": p.alerts.model_copy(update={"group_by": "pipeline"})})
    m = AlertManager(p, MemoryStateStore(), slack_configured=True)
    out = run_incident(m, failing=120)
    check, burn = [n for n in out if n.event == "firing"]
    assert burn.thread_key == check.thread_key and burn.payload["guest"]
    later = []
    t = T0 + 5 * 840
    for i in range(1, 60):  # healthy again: the check resolves; the slow windows burn on for hours
        later += m.observe([fresh(Status.OK)], t + 5 * i)
    (resolved,) = [n for n in later if n.event == "resolved"]
    assert resolved.payload["check"] == "freshness"
    assert resolved.payload.get("group_closed")  # the still-firing burn does not hold the group open
    (update,) = [n for n in later if n.event == "update"]  # the 1h/5m window stopped firing
    assert update.payload["check"] == "slo:fresh" and "1h/5m" not in update.payload["windows"]
    assert update.thread_key == check.thread_key and "group_opened" not in update.payload


def test_sweep_results_move_alerts_but_are_not_slo_events() -> None:
    m = AlertManager(pipeline({}), MemoryStateStore())
    m.observe([fresh(Status.FAIL)], T0)  # a window's evaluation: one bad event
    for i in range(1, 30):  # the staleness sweep, once a second: alerts only
        m.observe([fresh(Status.FAIL)], T0 + i, slo_events=False)
    (status,) = m.slo_status(T0 + 30)
    assert (status.good, status.bad) == (0, 1)
    assert [s.phase for s in m.states().values()].count("firing") == 1  # freshness, not the SLO
