"""Every PromQL expression in the dashboards and rules returns data on a real Prometheus.

A real Prometheus (Debian package) scrapes a dqmon process that checks a real topic on the
tansu broker. `dqmon run` does not exist yet, so the process is a harness that wires the
real KafkaSource, DatasetEngine, DqmonMetrics, batch spans and TelemetryServer the way the
runtime will; SLO, alert and notifier numbers are fed through the metrics setters from the
check results (the runtime's alerting wiring is not part of this test).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from confluent_kafka import Consumer, TopicPartition

from tests.fixtures.broker import make_producer
from tests.fixtures.prometheus import PrometheusServer, free_port
from tests.test_dashboards import DASHBOARDS, as_promql, dashboard_expressions, load
from tests.test_prom_rules import RULES, load_yaml

pytestmark = [pytest.mark.prometheus, pytest.mark.broker, pytest.mark.slow]

HARNESS = textwrap.dedent(
    """
    import signal, sys, time
    from dqmon.config.models import Pipeline
    from dqmon.config.settings import Settings
    from dqmon.engine import DatasetEngine
    from dqmon.sources.kafka import KafkaSource
    from dqmon.telemetry.metrics import DqmonMetrics
    from dqmon.telemetry.server import Readiness, TelemetryServer
    from dqmon.telemetry.tracing import batch_span

    bootstrap, topic, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    pipeline = Pipeline.model_validate({
        "pipeline": "trades-features",
        "slos": [{"name": "checks-pass", "objective": 99.0, "window": "1h"}],
        "datasets": [{
            "name": "trades",
            "source": {"kind": "kafka", "topic": topic, "mode": "assign", "start": "earliest",
                       "consumer_groups": ["features-writer"]},
            "event_time": "ts",
            "window": "1s",
            "checks": [
                {"validity": {"not_null": ["price"], "range": {"price": {"gt": 0}}, "slo": "checks-pass"}},
                {"volume": {"min": 1, "anomaly": {"min_history": 3}}},
                {"freshness": {"max_lag": "30s"}},
                {"schema": {"on_drift": "warn"}},
                {"distribution": {"column": "price", "metric": "psi", "max": 0.2,
                                  "reference": {"rolling": "1h"}, "min_rows": 5}},
            ],
        }],
    })
    dataset = pipeline.datasets[0]
    metrics = DqmonMetrics()
    metrics.declare_dataset(pipeline.pipeline, dataset.name)
    metrics.declare_notifier("log")
    for severity in ("warn", "page"):
        metrics.set_alerts_firing(pipeline.pipeline, severity, 0)
    engine = DatasetEngine(pipeline, dataset)
    source = KafkaSource(pipeline, dataset, Settings(kafka_bootstrap_servers=bootstrap))
    server = TelemetryServer(metrics.registry, host="127.0.0.1", port=port,
                             readiness=lambda: Readiness(source.facts().up, ("source",)))
    server.start()
    source.start()
    stop = []
    signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
    evaluated = failed = 0
    while not stop:
        started_ns = time.time_ns()
        t0 = time.perf_counter()
        batch = source.poll_batch(0.5)
        fetch = time.perf_counter() - t0
        facts = source.facts()
        metrics.observe_facts(pipeline.pipeline, dataset.name, facts)
        results = engine.sweep(facts.observed_at, facts)
        if batch is not None:
            span = batch_span(pipeline.pipeline, dataset.name, destination=topic, start_time_ns=started_ns)
            with span as bt:
                bt.record_stage("fetch", fetch)
                bt.set_batch(batch)
                t1 = time.perf_counter()
                results += bt.attach(engine.evaluate(batch))
                check = time.perf_counter() - t1
            metrics.observe_batch(batch, {"fetch": fetch, "decode": 0.0, "check": check})
        metrics.record_results(results)
        evaluated += len(results)
        failing = [r for r in results if r.failed]
        failed += len(failing)
        for severity in ("warn", "page"):
            firing = sum(r.severity == severity for r in failing)
            metrics.set_alerts_firing(pipeline.pipeline, severity, firing)
        for _ in failing:
            metrics.count_notification("log", "delivered")
        bad = failed / evaluated if evaluated else 0.0
        burn = bad / 0.01  # share of failed evaluations over the 1% budget of a 99% objective
        metrics.set_slo(pipeline.pipeline, "checks-pass", 1 - burn, {"5m": burn, "1h": burn})
    source.close()
    server.stop()
    """
)


@pytest.fixture
def harness(bootstrap: str, topic: str) -> Iterator[tuple[int, str]]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    proc = subprocess.Popen(
        [sys.executable, "-c", HARNESS, bootstrap, topic, str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert proc.poll() is None, (proc.stdout.read() if proc.stdout else b"").decode()[-3000:]
            try:
                httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        yield port, topic
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def produce_trades(bootstrap: str, topic: str, stop: threading.Event) -> None:
    """~200 trades per second in small batches, with a malformed record and a new field now and then."""
    producer = make_producer(bootstrap, exact=False)
    i = 0
    while not stop.is_set():
        for _ in range(20):
            i += 1
            record: dict[str, Any] = {"id": i, "price": 100.0 + (i % 17), "ts": time.time()}
            if i % 97 == 0:
                record["price"] = -1.0
            if i > 1500:
                record["venue"] = "x"  # schema drift
            value = b"{not json" if i % 50 == 0 else json.dumps(record).encode()
            producer.produce(topic, value)
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


def test_every_dashboard_and_rule_expression_returns_data(
    bootstrap: str,
    harness: tuple[int, str],
    prometheus_server: Callable[..., PrometheusServer],
) -> None:
    port, topic = harness
    stop = threading.Event()
    producer = threading.Thread(target=produce_trades, args=(bootstrap, topic, stop), daemon=True)
    producer.start()
    try:
        commit_group_offsets(bootstrap, topic, "features-writer", 5)
        prom = prometheus_server([f"127.0.0.1:{port}"], rule_files=[RULES])
        assert prom.wait_for('dqmon_check_status{kind="schema"}', timeout=60), "no check results scraped"
        # rates need two samples in the window, the anomaly band three windows of history
        time.sleep(8)
        queries = {
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
        empty: dict[str, str] = {}
        for _ in range(20):
            empty = {q: where for q, where in queries.items() if not prom.query(q)}
            if not empty:
                break
            time.sleep(1)
        assert not empty, "expressions without data:\n" + "\n".join(f"{w}: {q}" for q, w in empty.items())
        # a query naming a metric dqmon does not emit returns nothing: the assertion above can fail
        assert prom.query('dqmon_rows_sen_total{pipeline=~".*"}') == []
        # the values make sense, not only exist
        seen = prom.query('dqmon_rows_seen_total{dataset="trades"}')
        assert float(seen[0]["value"][1]) > 100
        errors = prom.query('sum(dqmon_decode_errors_total{reason="invalid_json"})')
        assert float(errors[0]["value"][1]) >= 1
        lag = prom.query('dqmon_consumer_lag_messages{group="features-writer"}')
        assert float(lag[0]["value"][1]) > 0
        rules = httpx.get(f"{prom.url}/api/v1/rules", timeout=5).json()["data"]["groups"][0]["rules"]
        assert {r["health"] for r in rules} == {"ok"}, rules
        assert httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200
    finally:
        stop.set()
        producer.join(15)


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
