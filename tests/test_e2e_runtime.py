"""End to end (issue 6): `dqmon run` as a subprocess against a real tansu broker and a real
PostgreSQL materialized view, alerting to the Slack Web API test double.

Each incident kind is injected in turn into a live trades stream; for each, the right alert
must be posted (chat.postMessage naming pipeline/dataset/check) and, after the incident ends,
resolved by a reply in the same thread. The SQL dataset's freshness fires when the test stops
refreshing the view. A second test sends SIGTERM mid-run: exit code 0 within 10 s, and every
notification enqueued before it is delivered exactly once (now or after a restart).
"""

from __future__ import annotations

import contextlib
import json
import re
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from dqmon.demo.broker import EmbeddedBroker, free_port
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

PIPELINE = "e2e"
CHECKS_YAML = """\
pipeline: {pipeline}
owner: "#e2e-alerts"
alerts:
  for: 2s
  repeat_interval: 1h
  flap: {{window: 10m, max_transitions: 50}}
datasets:
  - name: trades
    source:
      kind: kafka
      topic: {topic}
      start: latest
      client: {{session.timeout.ms: 6000, heartbeat.interval.ms: 1500}}
    event_time: event_ts
    window: 1s
    checks:
      - freshness: {{max_lag: 5s, stat: newest, max_silence: 3s}}
      - volume: {{min: 60}}
      - schema: {{on_drift: warn}}
      - distribution:
          column: price
          by: symbol
          metric: psi
          max: 1.0
          bins: 5
          min_rows: 20
          reference: rolling_10s
      - validity: {{not_null: [trade_id, symbol, price]}}
  - name: features_mv
    source:
      kind: sql
      dsn: ${{E2E_PG_DSN}}
      query: "select symbol, updated_at from {schema}.features_mv"
      every: 1s
      timeout: 2s
    event_time: updated_at
    window: 1s
    checks:
      - freshness: {{max_lag: 4s, stat: newest}}
"""


@dataclass
class Stack:
    broker: EmbeddedBroker
    topic: str
    slack: FakeSlack
    checks_dir: Path
    data_dir: Path
    env: dict[str, str]
    tmp: Path


@dataclass(frozen=True)
class OutboxRow:
    id: int
    fingerprint: str
    event: str
    status: str
    check: str  # dataset/check


def outbox_rows(db: Path) -> list[OutboxRow]:
    """The notification outbox as the state store persisted it (read-only, like an operator would)."""
    if not db.exists():
        return []
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)) as conn:
        rows = conn.execute(
            "SELECT id, fingerprint, event, status,"
            " json_extract(payload, '$.dataset') || '/' || json_extract(payload, '$.check')"
            " FROM outbox ORDER BY id"
        ).fetchall()
    return [OutboxRow(int(i), str(f), str(e), str(st), str(c)) for i, f, e, st, c in rows]


def _fingerprint(body: dict[str, object]) -> str | None:
    match = re.search(r"fingerprint `([0-9a-f]+)`", json.dumps(body.get("blocks")))
    return match.group(1) if match else None


def slack_events(slack: FakeSlack) -> list[tuple[str | None, str]]:
    """(fingerprint, event) of each notification Slack received: a post, or a reply in a thread."""
    out = []
    for call in slack.posts():
        event = str(call.body.get("text", "")).split("]", 1)[0].strip("[").lower()
        out.append((_fingerprint(call.body), event))
    return out


def slack_check(slack: FakeSlack, fingerprint: str) -> str:
    """pipeline/dataset/check named by the first post of an alert."""
    for call in slack.posts():
        if _fingerprint(call.body) == fingerprint:
            return str(call.body["text"]).split("] ", 2)[2].split(": ", 1)[0]
    return ""


def _write_checks(checks_dir: Path, topic: str, schema: str) -> None:
    checks_dir.mkdir(exist_ok=True)
    text = CHECKS_YAML.format(pipeline=PIPELINE, topic=topic, schema=schema)
    (checks_dir / "e2e.yaml").write_text(text)


class ViewRefresher:
    """The pipeline behind the view: a thread inserts a row and refreshes the materialized view every
    `interval` seconds, until paused. It runs on its own clock, as a real pipeline does: refreshing
    only while the test polls left the view stale whenever the test waited on something else
    (dqmon's start-up), and dqmon rightly paged for it."""

    def __init__(self, dsn: str, schema: str, interval: float = 0.5) -> None:
        self.conn = psycopg.connect(dsn, autocommit=True)
        self.schema = schema
        self.interval = interval
        self.paused = False
        self.refreshes = 0
        self._stop = threading.Event()
        self.conn.execute(f"CREATE TABLE {schema}.features (symbol text, updated_at timestamptz)")
        self.conn.execute(
            f"CREATE MATERIALIZED VIEW {schema}.features_mv AS "
            f"SELECT symbol, max(updated_at) AS updated_at FROM {schema}.features GROUP BY symbol"
        )
        self.conn.execute(f"CREATE UNIQUE INDEX ON {schema}.features_mv (symbol)")
        self._tick()
        self._thread = threading.Thread(target=self._run, name="view-refresher", daemon=True)
        self._thread.start()

    def _tick(self) -> None:
        self.conn.execute(f"INSERT INTO {self.schema}.features VALUES ('BTC-USDT', now())")
        self.conn.execute(f"REFRESH MATERIALIZED VIEW CONCURRENTLY {self.schema}.features_mv")
        self.refreshes += 1

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            if not self.paused:
                self._tick()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self.conn.close()


@pytest.fixture
def stack(
    tmp_path: Path, slack_api: FakeSlack, pg_dsn: str, pg_schema: str
) -> Iterator[tuple[Stack, ViewRefresher]]:
    broker = EmbeddedBroker(log_file=tmp_path / "tansu.log")
    broker.start()
    try:
        topic = f"trades-{int(time.time())}"
        create_topic(broker.bootstrap_servers, topic)
        checks_dir = tmp_path / "checks"
        _write_checks(checks_dir, topic, pg_schema)
        data_dir = tmp_path / "data"
        env = {
            "DQMON_KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
            "DQMON_DATA_DIR": str(data_dir),
            "DQMON_HTTP_HOST": "127.0.0.1",
            "DQMON_SLACK_TOKEN": TOKEN,
            "DQMON_SLACK_API_URL": slack_api.api_url,
            "DQMON_LOG_FORMAT": "json",
            "E2E_PG_DSN": pg_dsn,
        }
        refresher = ViewRefresher(pg_dsn, pg_schema)
        try:
            yield Stack(broker, topic, slack_api, checks_dir, data_dir, env, tmp_path), refresher
        finally:
            refresher.close()
    finally:
        broker.stop()


def _start_dqmon(stack: Stack, log_name: str) -> DqmonProcess:
    proc = DqmonProcess(stack.checks_dir, stack.env, stack.tmp / log_name, free_port()).start()
    proc.wait_ready(60)
    return proc


def _await_alert(slack: FakeSlack, where: str, timeout: float, *, after: int) -> SlackAlert:
    """The first FIRING post for `where` among top-level posts number `after` onwards."""

    def posted() -> SlackAlert | None:
        alerts = [a for a in top_level_posts(slack)[after:] if a in fired(slack, where)]
        return alerts[0] if alerts else None

    alert: SlackAlert = wait_until(posted, timeout, f"a FIRING post for {where}", interval=0.5)
    return alert


def _await_resolve(slack: FakeSlack, alert: SlackAlert, timeout: float) -> None:
    def resolved() -> bool:
        return bool(resolved_replies(slack, alert))

    wait_until(resolved, timeout, f"a RESOLVED reply in the thread of {alert.text[:80]!r}", interval=0.5)


def _await_all_resolved(slack: FakeSlack, timeout: float) -> None:
    def quiet() -> bool:
        return not open_alerts(slack)

    try:
        wait_until(quiet, timeout, "every alert to resolve", interval=0.5)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; still open: {open_alerts(slack)}") from None


@pytest.mark.broker
@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_each_incident_fires_and_resolves_on_slack(stack: tuple[Stack, ViewRefresher]) -> None:
    env, refresher = stack
    slack = env.slack
    knobs = Knobs()
    producer = TradesProducer(env.broker.bootstrap_servers, env.topic, knobs).start()
    proc = _start_dqmon(env, "dqmon.log")
    timeline: list[tuple[str, float, float]] = []
    try:
        # tansu holds the first group join ~3 s: windows before it are empty and volume may fire;
        # the clean stretch starts once rows flow and those start-up alerts have resolved
        proc.wait_rows_flowing("trades")
        _await_all_resolved(slack, 30)
        startup = len(top_level_posts(slack))
        time.sleep(15)  # baselines (schema, rolling reference) are learned here
        clean = top_level_posts(slack)[startup:]
        assert not clean, [a.text for a in clean]

        def incident(name: str, inject: Knobs, *wheres: str) -> None:
            """Inject, await a FIRING post for each `where`, end it, await their RESOLVED replies."""
            started, mark = time.monotonic(), len(top_level_posts(slack))
            for field, value in vars(inject).items():
                setattr(knobs, field, value)
            alerts = [_await_alert(slack, where, 30, after=mark) for where in wheres]
            detected = time.monotonic() - started
            assert all(a.channel == "#e2e-alerts" for a in alerts)  # the pipeline owner's channel
            knobs.reset()
            refresher.paused = False
            for alert in alerts:
                _await_resolve(slack, alert, 40)
            _await_all_resolved(slack, 40)  # a clean start for the next incident
            timeline.append((name, round(detected, 1), round(time.monotonic() - started, 1)))

        # producer stall and the view no longer refreshed, at the same time (independent datasets)
        refresher.paused = True
        incident(
            "producer stall + view not refreshed",
            Knobs(stalled=True),
            f"{PIPELINE}/trades/freshness",
            f"{PIPELINE}/features_mv/freshness",
        )
        incident("volume drop", Knobs(volume_factor=0.05), f"{PIPELINE}/trades/volume")
        incident("schema change", Knobs(schema_change=True), f"{PIPELINE}/trades/schema")
        incident(
            "distribution shift",
            Knobs(shifted_symbol="ETH-USDT", shift_factor=1.25),
            f"{PIPELINE}/trades/distribution",
        )
        incident("null spike", Knobs(null_share=0.3), f"{PIPELINE}/trades/validity")
        print("incident, detected after s, resolved after s:", timeline)

        # what the posts say: the dataset, check and observed numbers, never the secrets
        drift = fired(slack, f"{PIPELINE}/trades/schema")[-1].text
        assert "price" in drift and "fee_bps" in drift, drift
        code, seconds = proc.terminate()
        assert code == 0, proc.log_tail()
        assert seconds < 10
        logs = proc.log_text()
        assert TOKEN not in logs and env.env["E2E_PG_DSN"] not in logs
        assert any(str(r.get("msg", "")).startswith("dqmon running") for r in proc.log_records()), logs[:2000]
        assert producer.failures == 0
    finally:
        producer.stop()
        proc.kill()


@pytest.mark.broker
@pytest.mark.postgres
@pytest.mark.timeout(180)
def test_sigterm_mid_run_exits_0_and_loses_no_notification(stack: tuple[Stack, ViewRefresher]) -> None:
    env, refresher = stack
    slack = env.slack
    knobs = Knobs()
    producer = TradesProducer(env.broker.bootstrap_servers, env.topic, knobs).start()
    proc = _start_dqmon(env, "dqmon-1.log")
    try:
        proc.wait_rows_flowing("trades")
        _await_all_resolved(slack, 30)
        time.sleep(3)
        delivered_before = len(slack.calls)
        # Slack is failing (500s): notifications pile up in the outbox while the stall fires
        slack.fail_next(100_000, 500)
        knobs.stalled = True
        refresher.paused = True
        db = env.data_dir / "state.db"

        def pending() -> int:
            return sum(1 for row in outbox_rows(db) if row.status == "pending")

        stale = {"trades/freshness", "features_mv/freshness"}

        def both_pending() -> bool:
            return stale <= {r.check for r in outbox_rows(db) if r.status == "pending"}

        wait_until(both_pending, 40, f"FIRING of {stale} pending in the outbox", interval=0.5)
        code, seconds = proc.terminate()
        assert code == 0, proc.log_tail()
        assert seconds < 10, seconds
        assert len(slack.calls) == delivered_before, "Slack was failing: nothing can have been delivered"
        before_restart = [r for r in outbox_rows(db) if r.status != "delivered"]
        assert len(before_restart) >= 2 and all(r.status == "pending" for r in before_restart), before_restart
    finally:
        proc.kill()

    # Slack is back; the restarted monitor delivers what the outbox holds, exactly once
    with slack.lock:
        slack.faults.clear()
    restarted = _start_dqmon(env, "dqmon-2.log")
    try:
        wait_until(lambda: pending() == 0, 30, "the outbox to drain after the restart", interval=0.5)
        time.sleep(2)  # room for a duplicate to show up
        rows = {r.id: r for r in outbox_rows(db)}
        assert all(rows[r.id].status == "delivered" for r in before_restart), rows
        # every outbox item (those from before SIGTERM and any new one) reached Slack exactly once
        sent = Counter(slack_events(slack))
        expected = Counter((r.fingerprint, r.event) for r in rows.values())
        assert sent == expected, f"Slack got {sent}, the outbox holds {expected}"
        checks = {slack_check(slack, r.fingerprint) for r in before_restart}
        assert {f"{PIPELINE}/{c}" for c in stale} <= checks, checks
        code, seconds = restarted.terminate()
        assert code == 0 and seconds < 10, restarted.log_tail()
    finally:
        producer.stop()
        restarted.kill()
