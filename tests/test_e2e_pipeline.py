"""End to end (issue 12): pipeline links through `dqmon run` on real components — a trades topic on
the tansu broker, a counts job keeping a PostgreSQL materialized view of it, alerts to the Slack Web
API test double — and the health verdict API of the running process.

Clean data: no alert. The counts job pausing (it falls behind the topic): the latency link fires,
naming the stage, /api/v1/health turns failing and back to ok once it catches up. The counts job
losing a fifth of the events: the reconcile link fires with the missing rows, latency stays quiet.
The topic stalling: trades/freshness pages, and the view going stale because of it (fed_by) is a
reply in that alert's thread, not a second page.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from dqmon.demo.broker import EmbeddedBroker, free_port
from dqmon.demo.counts_job import CountsJob
from tests.e2e_helpers import (
    DqmonProcess,
    Knobs,
    SlackAlert,
    TradesProducer,
    fired,
    open_alerts,
    resolved_replies,
    top_level_posts,
    wait_until,
)
from tests.fixtures.broker import create_topic
from tests.fixtures.slack_api import TOKEN, FakeSlack

PIPELINE = "e2e-links"
CHECKS = """\
pipeline: {pipeline}
owner: "#pipeline-alerts"
alerts:
  for: 2s
  repeat_interval: 1h
  flap: {{window: 10m, max_transitions: 50}}
datasets:
  - name: trades
    source: {{kind: kafka, topic: {topic}, mode: assign, start: latest}}
    event_time: event_ts
    window: 1s
    checks:
      - freshness: {{max_lag: 5s, stat: newest}}
  - name: trade_counts_mv
    source:
      kind: sql
      dsn: ${{E2E_PG_DSN}}
      query: "select bin_start, trades, newest_event from {schema}.trade_counts_mv"
      every: 1s
      timeout: 2s
    event_time: bin_start
    window: 1s
    fed_by: [trades]
    checks:
      - freshness: {{column: newest_event, max_lag: 12s, stat: newest}}
links:
  - latency:
      upstream: trades
      downstream: trade_counts_mv
      downstream_column: newest_event
      max_behind: 6s
      stage: counts job
  - reconcile:
      upstream: trades
      downstream: trade_counts_mv
      bin: 2s
      grace: 4s
      downstream_count: trades
      stage: counts job
"""


@dataclass
class Stack:
    broker: EmbeddedBroker
    topic: str
    slack: FakeSlack
    checks_dir: Path
    env: dict[str, str]
    tmp: Path
    job: CountsJob


@pytest.fixture
def stack(tmp_path: Path, slack_api: FakeSlack, pg_dsn: str, pg_schema: str) -> Iterator[Stack]:
    broker = EmbeddedBroker(log_file=tmp_path / "tansu.log")
    broker.start()
    try:
        topic = f"trades-{int(time.time())}"
        create_topic(broker.bootstrap_servers, topic)
        checks_dir = tmp_path / "checks"
        checks_dir.mkdir()
        (checks_dir / "links.yaml").write_text(
            CHECKS.format(pipeline=PIPELINE, topic=topic, schema=pg_schema)
        )
        env = {
            "DQMON_KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
            "DQMON_DATA_DIR": str(tmp_path / "data"),
            "DQMON_HTTP_HOST": "127.0.0.1",
            "DQMON_SLACK_TOKEN": TOKEN,
            "DQMON_SLACK_API_URL": slack_api.api_url,
            "DQMON_LOG_FORMAT": "json",
            "E2E_PG_DSN": pg_dsn,
        }
        job = CountsJob(broker.bootstrap_servers, topic, pg_dsn, pg_schema, from_beginning=True).start()
        try:
            yield Stack(broker, topic, slack_api, checks_dir, env, tmp_path, job)
        finally:
            job.stop()
    finally:
        broker.stop()


def _health(proc: DqmonProcess) -> tuple[int, dict[str, object]] | None:
    response = proc.get(f"/api/v1/health/{PIPELINE}")
    return None if response is None else (response.status_code, response.json())


def _await_alert(slack: FakeSlack, where: str, after: int, timeout: float = 40) -> SlackAlert:
    def posted() -> SlackAlert | None:
        alerts = [a for a in top_level_posts(slack)[after:] if a in fired(slack, where)]
        return alerts[0] if alerts else None

    alert: SlackAlert = wait_until(posted, timeout, f"a FIRING post for {where}", interval=0.5)
    return alert


def _await_quiet(slack: FakeSlack, timeout: float) -> None:
    try:
        wait_until(lambda: not open_alerts(slack), timeout, "every alert to resolve", interval=0.5)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; still open: {open_alerts(slack)}") from None


@pytest.mark.broker
@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_latency_and_reconcile_fire_on_their_incidents_and_health_follows(stack: Stack) -> None:
    slack, job = stack.slack, stack.job
    knobs = Knobs(per_second=100)
    producer = TradesProducer(stack.broker.bootstrap_servers, stack.topic, knobs).start()
    proc = DqmonProcess(stack.checks_dir, stack.env, stack.tmp / "dqmon.log", free_port()).start()
    timeline: dict[str, float] = {}
    try:
        proc.wait_ready(60)
        proc.wait_rows_flowing("trades")
        # clean stretch: both links judged (reconcile's first complete bins included), no alert
        latency_where = f"{PIPELINE}/trade_counts_mv/latency"
        reconcile_where = f"{PIPELINE}/trade_counts_mv/reconcile"
        wait_until(
            lambda: (
                proc.metric("dqmon_check_status", dataset="trade_counts_mv", check="reconcile") == 0.0
                and proc.metric("dqmon_check_value", dataset="trade_counts_mv", check="reconcile") is not None
            ),
            40,
            "reconcile to judge its first bins",
        )
        time.sleep(12)
        assert not top_level_posts(slack), [a.text for a in top_level_posts(slack)]
        status = _health(proc)
        assert status is not None and status[0] == 200 and status[1]["status"] == "ok", status

        # incident 1: the counts job stops (falls behind the topic)
        started, mark = time.monotonic(), len(top_level_posts(slack))
        job.paused = True
        alert = _await_alert(slack, latency_where, mark)
        timeline["latency detected after s"] = round(time.monotonic() - started, 1)
        assert "stage counts job is behind" in alert.text and alert.channel == "#pipeline-alerts", alert.text
        failing = wait_until(lambda: (h := _health(proc)) and h[0] == 503 and h, 10, "health to say failing")
        mv = next(d for d in failing[1]["datasets"] if d["dataset"] == "trade_counts_mv")
        assert mv["status"] == "failing" and mv["since"]
        assert any(c["check"] == "latency" and c["value"] > 6 for c in mv["failing_checks"]), mv
        job.paused = False
        wait_until(lambda: resolved_replies(slack, alert), 40, "the latency alert to resolve", interval=0.5)
        _await_quiet(slack, 40)  # reconcile may have fired on the bins the job had not written yet
        wait_until(
            lambda: (h := _health(proc)) and h[0] == 200 and h[1]["status"] == "ok", 20, "health ok again"
        )
        timeline["latency incident over after s"] = round(time.monotonic() - started, 1)

        # incident 2: the counts job loses a fifth of the events but keeps up
        started, mark = time.monotonic(), len(top_level_posts(slack))
        job.drop_share = 0.2
        alert = _await_alert(slack, reconcile_where, mark)
        timeline["reconcile detected after s"] = round(time.monotonic() - started, 1)
        assert "stage counts job lost or duplicated events" in alert.text, alert.text
        assert "rows missing in trade_counts_mv" in alert.text
        job.drop_share = 0.0
        wait_until(lambda: resolved_replies(slack, alert), 40, "the reconcile alert to resolve", interval=0.5)
        assert not fired(slack, latency_where)[1:], "latency must stay quiet while the job keeps up"
        timeline["reconcile incident over after s"] = round(time.monotonic() - started, 1)

        # incident 3: the topic stalls. trades/freshness pages; the view going stale because of it is
        # a consequence (fed_by: [trades]), posted in the trades alert's thread, not a page of its own
        _await_quiet(slack, 40)
        started, mark = time.monotonic(), len(top_level_posts(slack))
        knobs.stalled = True
        topic_alert = _await_alert(slack, f"{PIPELINE}/trades/freshness", mark)

        def consequence() -> dict[str, object] | None:
            replies = [
                c.body
                for c in slack.replies(topic_alert.ts)
                if str(c.body.get("text", "")).startswith("[FIRING]")
                and "trade_counts_mv/freshness" in str(c.body.get("text", ""))
            ]
            return replies[0] if replies else None

        reply = wait_until(
            consequence, 40, "the view's freshness as a reply in the trades thread", interval=0.5
        )
        assert "consequence of trades/freshness" in str(reply["blocks"]), reply
        timeline["consequence posted after s"] = round(time.monotonic() - started, 1)
        knobs.stalled = False
        wait_until(lambda: resolved_replies(slack, topic_alert), 40, "the stall to resolve", interval=0.5)
        _await_quiet(slack, 40)
        pages = [a for a in top_level_posts(slack)[mark:] if a.text.startswith("[FIRING]")]
        assert [a.text.split(": ", 1)[0] for a in pages] == [
            f"[FIRING] [page] {PIPELINE}/trades/freshness"
        ], pages
        print("pipeline incidents:", timeline, "consumed", job.consumed, "dropped", job.dropped)
        code, seconds = proc.terminate()
        assert code == 0 and seconds < 10, proc.log_tail()
        assert stack.env["E2E_PG_DSN"] not in proc.log_text()
    finally:
        producer.stop()
        proc.kill()
