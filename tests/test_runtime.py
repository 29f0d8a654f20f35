"""The runtime in-process (`Runtime(checks_dir, settings)`): probes, reload, bounded queues, replay.

Real parts only: the telemetry server over loopback, a real tansu broker for readiness, the
SQLite state store, and the Slack Web API test double (a SaaS) for the replay end-to-end test.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry

from dqmon.config.models import Dataset, Pipeline
from dqmon.config.settings import Settings
from dqmon.demo.broker import EmbeddedBroker
from dqmon.results import CheckResult, Status
from dqmon.runtime.app import Runtime
from tests.e2e_helpers import FAST_GROUP_JOIN, wait_until, write_replay_checks, write_trades
from tests.fixtures.broker import create_topic
from tests.fixtures.slack_api import TOKEN, FakeSlack

Captured = list[tuple[str, CheckResult]]


def _settings(tmp: Path, **extra: object) -> Settings:
    return Settings(data_dir=tmp / "data", http_host="127.0.0.1", http_port=0, **extra)  # type: ignore[arg-type]


def _capture(runtime: Runtime) -> Captured:
    captured: Captured = []
    lock = threading.Lock()

    def hook(pipeline: Pipeline, dataset: Dataset, results: Sequence[CheckResult]) -> None:
        with lock:
            captured.extend((dataset.name, r) for r in results)

    runtime.on_results.append(hook)
    return captured


def _start_replay(tmp_path: Path, running: list[Runtime]) -> tuple[Path, Runtime, Captured]:
    """A started runtime over the looping replay dataset, with its results captured."""
    checks = tmp_path / "checks"
    write_replay_checks(checks)
    write_trades(checks / "trades.ndjson")
    runtime = Runtime(checks, _settings(tmp_path), registry=CollectorRegistry(), watch_files=False)
    running.append(runtime)
    captured = _capture(runtime)
    runtime.start()
    return checks, runtime, captured


@pytest.fixture
def running() -> Iterator[list[Runtime]]:
    """Runtimes a test starts; each is stopped afterwards even when the test fails."""
    runtimes: list[Runtime] = []
    yield runtimes
    for runtime in runtimes:
        runtime.stop(timeout=5)


# --------------------------------------------------------------------------- probes


@pytest.mark.broker
def test_readyz_follows_the_sources_and_healthz_stays_up(
    tmp_path: Path, private_broker: EmbeddedBroker, running: list[Runtime]
) -> None:
    topic = "probes"
    create_topic(private_broker.bootstrap_servers, topic)
    checks = tmp_path / "checks"
    checks.mkdir()
    client = ", ".join(f"{k}: {v}" for k, v in FAST_GROUP_JOIN.items())
    (checks / "p.yaml").write_text(
        f"""\
pipeline: probes
datasets:
  - name: events
    source: {{kind: kafka, topic: {topic}, client: {{{client}}}}}
    window: 1s
    checks:
      - volume: {{min: 0}}
"""
    )
    settings = _settings(tmp_path, kafka_bootstrap_servers=private_broker.bootstrap_servers)
    # a slow first sweep leaves a window in which the source has not reported yet
    runtime = Runtime(checks, settings, registry=CollectorRegistry(), watch_files=False, sweep_seconds=2.0)
    running.append(runtime)
    runtime.start()
    url = runtime.server.url

    before = httpx.get(f"{url}/readyz", timeout=2)
    assert before.status_code == 503, before.text
    assert "probes/events" in before.text
    assert httpx.get(f"{url}/healthz", timeout=2).status_code == 200

    wait_until(lambda: httpx.get(f"{url}/readyz", timeout=2).status_code == 200, 30, "/readyz 200")

    private_broker.stop()
    wait_until(
        lambda: httpx.get(f"{url}/readyz", timeout=2).status_code == 503,
        30,
        "/readyz 503 with the broker down",
    )
    assert httpx.get(f"{url}/healthz", timeout=2).status_code == 200  # alive, only not ready

    private_broker.start()  # tansu forgets topics on restart: recreate it
    create_topic(private_broker.bootstrap_servers, topic)
    wait_until(lambda: httpx.get(f"{url}/readyz", timeout=2).status_code == 200, 45, "/readyz 200 again")


# --------------------------------------------------------------------------- reload


def _drift_messages(captured: Captured, since: int = 0) -> list[str]:
    return [r.message for _, r in captured[since:] if r.check == "schema:drift"]


def test_reload_adds_a_check_and_keeps_the_learned_schema_baseline(
    tmp_path: Path, running: list[Runtime]
) -> None:
    checks, runtime, captured = _start_replay(tmp_path, running)
    wait_until(lambda: len(_drift_messages(captured)) >= 3, 15, "three schema evaluations")
    assert _drift_messages(captured)[0].startswith("learned baseline"), _drift_messages(captured)

    write_replay_checks(checks, extra_checks="      - validity: {not_null: [price]}\n")
    runtime.watch()
    assert runtime._reload_requested.is_set()  # the file watcher noticed the change
    mark = len(captured)
    assert runtime.reload()
    wait_until(
        lambda: any(r.check == "not_null(price)" for _, r in captured[mark:]), 15, "the added check to run"
    )
    wait_until(lambda: len(_drift_messages(captured, mark)) >= 2, 15, "schema evaluations after reload")
    after = _drift_messages(captured, mark)
    assert not any(m.startswith("learned baseline") for m in after), after  # nothing re-learned
    assert all(m == "schema matches baseline" for m in after), after
    assert len(runtime.workers) == 1


def test_an_invalid_reload_is_logged_and_the_old_checks_keep_running(
    tmp_path: Path, running: list[Runtime], caplog: pytest.LogCaptureFixture
) -> None:
    checks, runtime, captured = _start_replay(tmp_path, running)
    wait_until(lambda: len(captured) >= 4, 15, "first results")
    workers = list(runtime.workers)

    (checks / "replay.yaml").write_text(
        "pipeline: replayed\ndatasets:\n  - name: trades\n    source: {kind: nope}\n"
    )
    with caplog.at_level(logging.ERROR, logger="dqmon.runtime.app"):
        assert runtime.reload() is False
    rejected = [r for r in caplog.records if "reload rejected" in r.getMessage()]
    assert rejected, [r.getMessage() for r in caplog.records]
    assert "replay.yaml" in rejected[0].getMessage()  # the problem names the file
    assert runtime.workers == workers
    mark = len(captured)
    wait_until(lambda: len(captured) > mark + 4, 10, "the old checks to keep producing results")
    assert {r.check for _, r in captured[mark:]} >= {"volume", "schema:drift"}


# --------------------------------------------------------------------------- bounded queue


def test_a_slow_dataset_drops_the_oldest_batches_and_counts_them(
    tmp_path: Path, running: list[Runtime]
) -> None:
    checks = tmp_path / "checks"
    write_replay_checks(checks, window="50ms")
    write_trades(checks / "trades.ndjson")
    registry = CollectorRegistry()
    settings = _settings(tmp_path, max_queue_batches=2)
    runtime = Runtime(checks, settings, registry=registry, watch_files=False)
    running.append(runtime)
    ages: list[float] = []

    def slow(pipeline: Pipeline, dataset: Dataset, results: Sequence[CheckResult]) -> None:
        # runs on the dataset's evaluation thread: a stand-in for an expensive check suite
        if not threading.current_thread().name.startswith("dqmon-evaluate"):
            return  # sweeps publish from the scheduler thread
        worker = runtime.workers[0]
        if worker.last_batch_at is not None:
            ages.append((datetime.now(UTC) - worker.last_batch_at).total_seconds())
        time.sleep(0.6)

    runtime.on_results.append(slow)
    runtime.start()
    labels = {"pipeline": "replayed", "dataset": "trades"}

    def dropped() -> float:
        return registry.get_sample_value("dqmon_dropped_batches_total", labels) or 0.0

    wait_until(lambda: dropped() >= 10 and len(ages) >= 4, 20, "dropped batches to be counted")
    depth = registry.get_sample_value("dqmon_queue_depth_batches", labels)
    assert depth is not None and depth <= 2
    assert runtime.workers[0].queue.qsize() <= 2
    # the oldest are dropped: what gets evaluated next is recent, not 0.6 s or more behind
    assert sorted(ages[1:])[len(ages[1:]) // 2] < 0.45, ages


# --------------------------------------------------------------------------- replay end to end


def test_a_replay_dataset_runs_end_to_end_to_slack(
    tmp_path: Path, slack_api: FakeSlack, running: list[Runtime]
) -> None:
    checks = tmp_path / "checks"
    write_replay_checks(checks, extra_checks="      - validity: {not_null: [price]}\n")
    write_trades(checks / "trades.ndjson", rows=200, null_every=10)
    registry = CollectorRegistry()
    settings = _settings(tmp_path, slack_token=TOKEN, slack_api_url=slack_api.api_url)
    runtime = Runtime(checks, settings, registry=registry, watch_files=False)
    running.append(runtime)
    runtime.start()

    labels = {"pipeline": "replayed", "dataset": "trades"}
    wait_until(lambda: (registry.get_sample_value("dqmon_rows_seen_total", labels) or 0) >= 200, 15, "rows")
    status = registry.get_sample_value(
        "dqmon_check_status", {**labels, "check": "not_null(price)", "kind": "validity"}
    )
    assert status == float(Status.FAIL)
    post = wait_until(
        # one alert per check: the validity alert names its failing rule
        lambda: [
            c for c in slack_api.posts() if "replayed/trades/validity: not_null(price)" in c.body["text"]
        ],
        15,
        "the not_null alert on Slack",
    )[0]
    assert post.body["text"].startswith("[FIRING]") and post.body["channel"] == "#replay-alerts"
    assert "5 of 50 rows" in post.body["text"], post.body["text"]  # one row in ten has no price
    assert not [c for c in slack_api.posts() if "/volume" in c.body["text"]]  # volume is fine
