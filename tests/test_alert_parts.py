"""Issue 10 #4: the results of one check are ONE alert: one Slack message listing every failing
part, edited in place (chat.update) as parts change, resolved once, in its thread."""

from __future__ import annotations

from dqmon.alerts.manager import AlertManager
from dqmon.alerts.notifiers.slack import SlackBotNotifier
from dqmon.config.models import Pipeline
from dqmon.results import CheckResult, Status
from dqmon.state.store import MemoryStateStore
from tests.fixtures.slack_api import TOKEN, FakeSlack
from tests.test_notifier_slack import start_worker, wait_for

T0 = 1_800_000_000.0
PIPELINE = Pipeline.model_validate(
    {
        "pipeline": "p",
        "owner": "#team",
        "datasets": [
            {
                "name": "trades",
                "window": "5s",
                "source": {"kind": "replay", "path": "x.ndjson"},
                "checks": [{"schema": {"contract": {"fields": {"price": {"type": "number"}}}}}],
            }
        ],
    }
)


def schema(contract: Status, drift: Status, decode: Status = Status.OK) -> list[CheckResult]:
    def part(check: str, rule: str | None, status: Status, message: str) -> CheckResult:
        return CheckResult(
            "p", "trades", check, "schema", status, 1.0, "0", message, origin="schema", rule=rule
        )

    return [
        part("schema", None, contract, "wrong types: price: string is not number"),
        part("schema:drift", "drift", drift, "schema drift: retyped price (number → string)"),
        part("schema:decode_errors", "decode_errors", decode, "3 of 50 records undecodable"),
    ]


def test_contract_and_drift_page_once_and_the_message_follows_the_parts(slack_api: FakeSlack) -> None:
    store = MemoryStateStore()
    m = AlertManager(PIPELINE, store, slack_configured=True)
    worker = start_worker(store, {"slack": SlackBotNotifier(TOKEN, base_url=slack_api.api_url)})

    def deliver() -> None:
        worker.wake()
        wait_for(lambda: worker.pending() == 0)

    try:
        fired = m.observe(schema(Status.FAIL, Status.WARN), T0)
        assert [n.event for n in fired] == ["firing"]
        assert fired[0].payload["check"] == "schema"
        assert [p["part"] for p in fired[0].payload["parts"]] == ["schema", "schema:drift"]
        deliver()
        assert m.observe(schema(Status.FAIL, Status.WARN), T0 + 5) == []  # same parts: silence
        grown = m.observe(schema(Status.FAIL, Status.WARN, Status.FAIL), T0 + 10)
        assert [n.event for n in grown] == ["update"]
        deliver()
        shrunk = m.observe(schema(Status.OK, Status.WARN), T0 + 15)
        assert [n.event for n in shrunk] == ["update"]
        deliver()
        # healthy for two windows (clear): one resolve
        events = [n.event for t in (20, 25, 30) for n in m.observe(schema(Status.OK, Status.OK), T0 + t)]
        assert events == ["resolved"]
        deliver()
    finally:
        worker.stop()
    (parent,) = slack_api.top_level()
    assert "2 parts failing" in parent.body["text"]
    assert "schema:drift" in parent.body["text"] and "wrong types" in parent.body["text"]
    ts = next(t for t, msg in slack_api.messages.items() if not msg.get("thread_ts"))
    edits = [u.body for u in slack_api.updates()]
    assert [e["ts"] for e in edits] == [ts, ts, ts]  # two part changes, then the resolve
    assert "3 parts failing" in edits[0]["text"] and "decode_errors" in edits[0]["text"]
    assert edits[1]["text"].startswith("[FIRING]") and "schema:drift" in edits[1]["text"]
    assert "wrong types" not in edits[1]["text"]
    assert edits[2]["text"].startswith("[RESOLVED]")
    assert [r.body["text"].split("]")[0] for r in slack_api.replies(ts)] == ["[RESOLVED"]
