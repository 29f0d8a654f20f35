"""Every PromQL expression in the dashboards and rules returns data on a real Prometheus.

A real Prometheus (Debian package) scrapes a `dqmon run` subprocess that checks a real topic
on the tansu broker: the checks directory written here has an SLO, a lag check on a consumer
group the test commits to, a validity check that fails (so an alert fires and the log
notifier counts a delivery), and the topic carries a few malformed records (decode errors).
The same /metrics output is linted with `promtool check metrics`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from tests.fixtures.broker import make_producer, produce
from tests.fixtures.prometheus import PrometheusServer, free_port
from tests.test_dashboards import DASHBOARDS, as_promql, dashboard_expressions, load
from tests.test_prom_rules import RULES, load_yaml

pytestmark = [pytest.mark.prometheus, pytest.mark.broker, pytest.mark.slow]

PIPELINE_GROUP = "features-writer"  # the watched pipeline's own consumer group (the test commits)
COMMITTED_OFFSET = 5
DQMON = Path(sys.executable).with_name("dqmon")

CHECKS = """\
pipeline: trades-features
owner: "#ml-platform-alerts"
slos:
  - name: checks-pass
    objective: 99.0
    window: 1h
datasets:
  - name: trades
    source:
      kind: kafka
      topic: {topic}
      start: earliest
      consumer_groups: [{group}]
      # tansu holds the first JoinGroup for session.timeout.ms / 2 (see ENV.md)
      client: {{session.timeout.ms: 6000, heartbeat.interval.ms: 1500}}
    event_time: ts
    window: 1s
    checks:
      # negative prices arrive in every window: this check fails and its alert fires
      - validity: {{not_null: [price], range: {{price: {{gt: 0}}}}, slo: checks-pass}}
      - volume: {{min: 1, anomaly: {{min_history: 3}}}}
      - freshness: {{max_lag: 30s}}
      - schema: {{on_drift: warn}}
      - distribution: {{column: price, metric: psi, max: 0.2, reference: {{rolling: 1h}}, min_rows: 5}}
      - lag: {{group: {group}, max_messages: 1000000}}
"""


@dataclass
class DqmonProcess:
    process: subprocess.Popen[bytes]
    url: str
    log_path: Path

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def log_entries(self) -> list[dict[str, Any]]:
        """The complete lines logged so far, each parsed as JSON (DQMON_LOG_FORMAT=json)."""
        text = self.log_path.read_text(errors="replace")
        return [json.loads(line) for line in text[: text.rfind("\n") + 1].splitlines() if line]


@pytest.fixture
def dqmon_run(bootstrap: str, topic: str, tmp_path: Path) -> Iterator[DqmonProcess]:
    """`dqmon run` on a checks directory for `topic`; SIGTERM at the end must stop it cleanly."""
    checks = tmp_path / "checks"
    checks.mkdir()
    (checks / "trades.yaml").write_text(CHECKS.format(topic=topic, group=PIPELINE_GROUP))
    port = free_port()
    # only what this test sets: no OTLP export, no Slack, no state DSN from the caller's shell
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "DQMON_"))}
    env.update(
        DQMON_KAFKA_BOOTSTRAP_SERVERS=bootstrap,
        DQMON_DATA_DIR=str(tmp_path / "data"),
        DQMON_HTTP_HOST="127.0.0.1",
        DQMON_HTTP_PORT=str(port),
        DQMON_LOG_FORMAT="json",
    )
    log_path = tmp_path / "dqmon.log"
    with log_path.open("wb") as log:  # a file, not a pipe: nobody reads it while the test runs
        process = subprocess.Popen(
            [str(DQMON), "run", "--checks", str(checks), "--no-live"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    running = DqmonProcess(process, f"http://127.0.0.1:{port}", log_path)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, f"dqmon run exited:\n{running.log_tail()}"
            try:
                httpx.get(f"{running.url}/healthz", timeout=1)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, f"no /healthz in 30 s:\n{running.log_tail()}"
                time.sleep(0.2)
        yield running
    finally:
        process.send_signal(signal.SIGTERM)
        code: int | None
        try:
            code = process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
            code = None
    assert code == 0, f"dqmon run did not stop cleanly on SIGTERM (exit {code}):\n{running.log_tail()}"


def trade_values(first: int, count: int) -> list[bytes]:
    """JSON trades; every 50th record is malformed, every 97th has a negative price, later ones drift."""
    values = []
    for i in range(first, first + count):
        record: dict[str, Any] = {"id": i, "price": 100.0 + (i % 17), "ts": time.time()}
        if i % 97 == 0:
            record["price"] = -1.0
        if i > 1500:
            record["venue"] = "x"  # schema drift
        values.append(b"{not json" if i % 50 == 0 else json.dumps(record).encode())
    return values


def produce_trades(producer: Producer, topic: str, first: int, stop: threading.Event) -> None:
    """~200 trades per second in small batches (not one-message batches: tansu's fetch cost)."""
    i = first
    while not stop.is_set():
        for value in trade_values(i, 20):
            producer.produce(topic, value)
        i += 20
        producer.poll(0)
        time.sleep(0.1)
    producer.flush(10)


def commit_group_offsets(bootstrap: str, topic: str, group: str, offset: int) -> None:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "log_level": 3})
    try:
        consumer.commit(offsets=[TopicPartition(topic, 0, offset)], asynchronous=False)
    finally:
        consumer.close()


def rule_data_query(expr: str) -> str:
    """The data behind an alert: drop a trailing comparison with a number, unwrap absent()."""
    expr = expr.strip()
    absent = re.fullmatch(r"absent\((.*)\)", expr)
    if absent:
        return absent.group(1)
    return re.sub(r"\s*(==|!=|>=|<=|>|<)\s*[0-9.]+\s*$", "", expr)


def dashboard_query(expr: str) -> str:
    """Grafana's variables as Grafana would expand them for 'All' and a 5-minute view."""
    expr = as_promql(expr)
    for name in ("pipeline", "dataset", "job"):
        expr = expr.replace(f'=~"${name}"', '=~".*"')
    return expr.replace("$__rate_interval", "1m").replace("$__range", "5m").replace("$__interval", "15s")


def all_queries() -> dict[str, str]:
    """Every dashboard and rule expression as runnable PromQL -> where it comes from."""
    return {
        **{
            dashboard_query(e): f"dashboard {p.stem}"
            for p in DASHBOARDS
            for e in dashboard_expressions(load(p))
        },
        **{
            rule_data_query(r["expr"]): f"rule {r['alert']}"
            for g in load_yaml(RULES)["groups"]
            for r in g["rules"]
        },
    }


def without_data(prom: PrometheusServer, queries: Mapping[str, str], *, patience: float) -> dict[str, str]:
    """The queries that still return nothing after `patience` seconds of retrying."""
    deadline = time.monotonic() + patience
    while True:
        empty = {q: where for q, where in queries.items() if not prom.query(q)}
        if not empty or time.monotonic() > deadline:
            return empty
        time.sleep(1)


def value(prom: PrometheusServer, expr: str) -> float:
    result = prom.query(expr)
    assert result, f"no data for {expr}"
    return float(result[0]["value"][1])


def test_every_dashboard_and_rule_expression_returns_data_from_dqmon_run(
    bootstrap: str,
    topic: str,
    dqmon_run: DqmonProcess,
    prometheus_server: Callable[..., PrometheusServer],
) -> None:
    producer = make_producer(bootstrap, exact=False)
    produce(producer, topic, trade_values(1, 200))
    commit_group_offsets(bootstrap, topic, PIPELINE_GROUP, COMMITTED_OFFSET)
    stop = threading.Event()
    feeder = threading.Thread(target=produce_trades, args=(producer, topic, 201, stop), daemon=True)
    feeder.start()
    try:
        prom = prometheus_server([dqmon_run.url.removeprefix("http://")], rule_files=[RULES])
        assert prom.wait_for('dqmon_check_status{kind="schema"}', timeout=40), (
            f"no check results scraped:\n{dqmon_run.log_tail()}"
        )
        queries = all_queries()
        # rates need two samples in their window, the anomaly band three windows of history,
        # the SLO and alert gauges the runtime's 5-second job
        empty = without_data(prom, queries, patience=25)
        assert not empty, "expressions without data:\n" + "\n".join(f"{w}: {q}" for q, w in empty.items())

        # a dashboard query naming a metric dqmon does not emit is reported by the same check
        misspelled = next(q for q in queries if "dqmon_rows_seen_total" in q)
        misspelled = misspelled.replace("dqmon_rows_seen_total", "dqmon_rows_sen_total")
        assert without_data(prom, {misspelled: "typo"}, patience=0) == {misspelled: "typo"}

        # the values make sense, not only exist
        assert value(prom, 'sum(dqmon_rows_seen_total{dataset="trades"})') > 100
        assert value(prom, 'sum(dqmon_decode_errors_total{reason="invalid_json"})') >= 1
        assert value(prom, f'dqmon_consumer_lag_messages{{group="{PIPELINE_GROUP}"}}') > 0
        assert value(prom, 'max(dqmon_check_status{kind="lag"})') == 0  # well under max_messages
        assert value(prom, 'max(dqmon_check_status{kind="validity"})') == 2
        assert value(prom, 'sum(dqmon_alerts_firing{pipeline="trades-features"})') >= 1
        assert value(prom, 'dqmon_notifications_total{notifier="log", outcome="delivered"}') >= 1
        assert value(prom, 'dqmon_slo_error_budget_remaining_ratio{slo="checks-pass"}') < 1
        # the Kafka source times its decoder: the decode stage has observations with real time
        assert value(prom, 'sum(dqmon_batch_duration_seconds_count{stage="decode"})') >= 1
        assert value(prom, 'sum(dqmon_batch_duration_seconds_sum{stage="decode"})') > 0
        rules = httpx.get(f"{prom.url}/api/v1/rules", timeout=5).json()["data"]["groups"][0]["rules"]
        assert {r["health"] for r in rules} == {"ok"}, rules
        assert httpx.get(f"{dqmon_run.url}/readyz", timeout=5).status_code == 200

        # the log notifier's lines are JSON with the alert as an object; no per-job scheduler chatter
        entries = dqmon_run.log_entries()
        alerts = [e["alert"] for e in entries if e["logger"] == "dqmon.alerts.notifications"]
        assert any(a["kind"] == "validity" and a["event"] == "firing" for a in alerts), alerts
        assert not [e for e in entries if e["logger"].startswith("apscheduler") and e["level"] == "info"]

        # promtool lints what `dqmon run` really serves
        exposition = httpx.get(f"{dqmon_run.url}/metrics", timeout=5).content
        assert b'stage="decode"' in exposition
        promtool = shutil.which("promtool")
        assert promtool, "promtool is installed by `make system-deps` / .ci/run (Debian prometheus package)"
        lint = subprocess.run(
            [promtool, "check", "metrics"], input=exposition, capture_output=True, timeout=30, check=False
        )
        report = (lint.stdout + lint.stderr).decode().strip()
        assert lint.returncode == 0 and report == "", report
    finally:
        stop.set()
        feeder.join(15)


def test_prometheus_fixture_rejects_a_bad_query(prometheus_server: Callable[..., PrometheusServer]) -> None:
    prom = prometheus_server(["127.0.0.1:1"])
    with pytest.raises(AssertionError, match="bad_data"):
        prom.query("sum by (")


def test_rule_and_dashboard_query_rewriting() -> None:
    assert rule_data_query('up{job="dqmon"} == 0') == 'up{job="dqmon"}'
    assert rule_data_query('absent(up{job="dqmon"})') == 'up{job="dqmon"}'
    assert rule_data_query("time() - max by (a) (m) > 600") == "time() - max by (a) (m)"
    assert dashboard_query('label_values(m{pipeline=~"$pipeline"}, dataset)') == 'm{pipeline=~".*"}'
    assert Path(RULES).exists()
