"""partitions: classification on synthetic window stats, then on the real tansu broker."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from typing import Any

import numpy as np
import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dqmon.batch import MicroBatch, PartitionWindow
from dqmon.checks.partitions import HEALTH_CODES
from dqmon.config.settings import Settings
from dqmon.engine import DatasetEngine
from dqmon.results import CheckResult, Status
from dqmon.sources.kafka import KafkaSource
from dqmon.sources.kafka_partitions import PartitionTally
from dqmon.state.store import MemoryStateStore
from tests.checks_helpers import NOW, engine
from tests.fixtures.broker import make_producer, produce
from tests.test_kafka_source import pipeline

MS = int(NOW.timestamp() * 1000)


def window(index: int, stats: dict[int, PartitionWindow]) -> MicroBatch:
    end = NOW + timedelta(seconds=5 * index)
    df = pl.DataFrame({"x": [1]})
    return MicroBatch("p", "trades", df, end - timedelta(seconds=5), end, 1, 1, partitions=stats)


def moving(index: int, offset: int = 0) -> PartitionWindow:
    """A partition that got 10 records in window `index` with timestamps up to its end."""
    return PartitionWindow(
        seen=10, newest_ms=MS + 5000 * index - offset, start_mark=10 * index, end_mark=10 * (index + 1)
    )


def still(index: int) -> PartitionWindow:
    return PartitionWindow(seen=0, newest_ms=None, start_mark=10, end_mark=10)


def test_a_stopped_partition_is_stalled_after_stall_after_while_the_others_advance() -> None:
    eng = engine([{"partitions": {"stall_after": "12s", "max_timestamp_lag": "1h"}}])
    results: list[CheckResult] = []
    for i in range(6):
        stats = {0: moving(i), 1: moving(i) if i < 2 else still(i), 2: moving(i)}
        (result,) = eng.evaluate(window(i, stats))
        results.append(result)
    assert [r.status for r in results] == [Status.OK] * 4 + [Status.FAIL] * 2
    last = results[-1]
    assert last.details["stalled"] == [1] and last.value == 1.0
    assert last.message.startswith("partition 1 stalled") and "2 of 3 advanced" in last.message
    assert last.details["partition_health"] == {"1": HEALTH_CODES["stalled"], "0": 0, "2": 0}


def test_the_whole_topic_quiet_is_not_n_stalls() -> None:
    eng = engine([{"partitions": {"stall_after": "5s"}}])
    eng.evaluate(window(0, {p: moving(0) for p in range(4)}))
    for i in range(1, 5):
        (result,) = eng.evaluate(window(i, {p: still(i) for p in range(4)}))
        assert result.status == Status.OK and result.details["idle"] is True
        assert "topic quiet" in result.message
    # traffic resumes on all but partition 3: it stalled long ago, and says so at once
    (result,) = eng.evaluate(window(5, {0: moving(5), 1: moving(5), 2: moving(5), 3: still(5)}))
    assert result.status == Status.FAIL and result.details["stalled"] == [3]


def test_a_partition_whose_newest_timestamp_trails_is_lagging_and_revoked_ones_are_forgotten() -> None:
    eng = engine([{"partitions": {"max_timestamp_lag": "1m", "max_unhealthy": 0}}])
    (result,) = eng.evaluate(window(0, {0: moving(0), 1: moving(0, offset=90_000), 2: moving(0)}))
    assert result.status == Status.FAIL and result.details["lagging"] == [1]
    assert result.details["lag_seconds"] == {"1": 90.0} and "partition 1 lagging" in result.message
    (result,) = eng.evaluate(window(1, {0: moving(1), 2: moving(1)}))
    assert result.status == Status.OK and result.details["state_entries"] == 2


def test_sources_without_partition_data_get_an_error_and_the_report_is_capped() -> None:
    eng = engine([{"partitions": {}}])
    (result,) = eng.evaluate(window(0, {}))
    assert result.status == Status.ERROR and "kafka" in result.message
    (result,) = eng.evaluate(window(1, {p: moving(1) for p in range(200)}))
    assert len(result.details["partition_health"]) == 64 and result.details["partitions"] == 200


# ---------------------------------------------------------------------- the real broker
def broker_engine(topic: str, bootstrap: str) -> tuple[KafkaSource, DatasetEngine]:
    checks = [{"partitions": {"stall_after": "3s", "max_timestamp_lag": "10m"}}]
    p = pipeline(topic, bootstrap, name="health", checks=checks, mode="assign", start="earliest")
    source = KafkaSource(p, p.datasets[0], Settings())
    source.start()
    return source, DatasetEngine(p, p.datasets[0], store=MemoryStateStore())


def records(n: int) -> list[bytes]:
    return [json.dumps({"i": i}).encode() for i in range(n)]


def run_windows(
    source: KafkaSource, eng: DatasetEngine, producer: Any, topic: str, partitions: list[int], seconds: float
) -> list[CheckResult]:
    """Produce to `partitions` every 0.2 s for `seconds`, evaluating every window that closes."""
    results = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for p in partitions:
            produce(producer, topic, records(2), partition=p)
        batch = source.poll_batch(0.2)
        if batch is not None:
            assert set(batch.partitions) == {0, 1, 2}
            results.extend(eng.evaluate(batch))
    return results


@pytest.mark.broker
def test_on_the_broker_one_stopped_producer_is_a_stalled_partition_and_a_quiet_topic_is_not(
    bootstrap: str, topic_factory: Any
) -> None:
    topic = topic_factory(3)
    source, eng = broker_engine(topic, bootstrap)
    producer = make_producer(bootstrap)
    try:
        clean = run_windows(source, eng, producer, topic, [0, 1, 2], 3.0)
        assert clean and all(r.status == Status.OK for r in clean), [r.message for r in clean]
        seen = [r for r in clean if not r.details.get("idle")]
        assert seen and seen[-1].details["advancing"] == 3
        # partition 1's producer stops; 0 and 2 go on
        stopped = run_windows(source, eng, producer, topic, [0, 2], 6.0)
        failing = [r for r in stopped if r.status == Status.FAIL]
        assert failing, [r.message for r in stopped]
        assert all(r.details["stalled"] == [1] for r in failing)
        assert "partition 1 stalled" in failing[-1].message
        # everything stops: the whole topic is quiet, which is not a partition finding
        quiet = run_windows(source, eng, producer, topic, [], 5.0)
        assert quiet[-1].status == Status.OK and quiet[-1].details["idle"] is True
        assert all(r.status != Status.FAIL or r.details.get("stalled") == [1] for r in quiet)
    finally:
        source.close()


@pytest.mark.broker
def test_the_kafka_source_reports_each_partitions_window(bootstrap: str, topic_factory: Any) -> None:
    topic = topic_factory(3)
    source, _ = broker_engine(topic, bootstrap)
    producer = make_producer(bootstrap)  # one-message batches: tansu's watermarks are exact
    try:
        batches: list[MicroBatch] = [b for b in [source.poll_batch(0.1)] if b is not None]  # opens a window
        produce(producer, topic, records(5), partition=0, timestamp_ms=MS)
        produce(producer, topic, records(3), partition=2, timestamp_ms=MS + 7)
        deadline = time.monotonic() + 15
        while sum(b.rows_seen for b in batches) < 8 and time.monotonic() < deadline:
            batch = source.poll_batch(0.5)
            if batch is not None:
                batches.append(batch)
        # one more window so the watermarks after the last records are in
        batches.extend(b for b in [source.poll_batch(2.0)] if b is not None)
    finally:
        source.close()
    seen = {p: sum(b.partitions[p].seen for b in batches) for p in range(3)}
    assert seen == {0: 5, 1: 0, 2: 3}
    newest = {p: max((b.partitions[p].newest_ms or 0) for b in batches) for p in range(3)}
    assert newest == {0: MS, 1: 0, 2: MS + 7}
    # windows are contiguous: the watermark growth of all windows is what was produced
    assert {p: sum(b.partitions[p].produced or 0 for b in batches) for p in range(3)} == seen


def test_partition_health_and_state_size_gauges_are_exported_and_capped() -> None:
    from prometheus_client import CollectorRegistry

    from dqmon.telemetry.metrics import DqmonMetrics

    registry = CollectorRegistry()
    metrics = DqmonMetrics(registry, max_partition_series_per_dataset=3, process_metrics=False)
    eng = engine([{"partitions": {"stall_after": "1s"}}, {"duplicates": {"key": "x", "horizon": "1m"}}])
    metrics.record_results(eng.evaluate(window(0, {p: moving(0) for p in range(5)})))
    metrics.record_results(eng.evaluate(window(1, {0: moving(1), 1: still(1), 2: moving(1), 4: still(1)})))

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, {"pipeline": "p", "dataset": "trades", **labels})

    assert value("dqmon_partition_health", partition="1") == HEALTH_CODES["stalled"]
    assert value("dqmon_partition_health", partition="0") == HEALTH_CODES["healthy"]
    assert value("dqmon_partition_health", partition="4") is None  # beyond the cap of 3
    assert (value("dqmon_partition_series_dropped_total") or 0) >= 2
    entries = value("dqmon_check_state_entries", check="duplicates", kind="duplicates")
    assert entries == 1.0
    assert (value("dqmon_check_state_bytes", check="duplicates", kind="duplicates") or 0) > 0


@given(
    chunks=st.lists(
        st.lists(st.tuples(st.integers(0, 5), st.integers(0, 10**13)), min_size=1, max_size=30), max_size=5
    )
)
def test_partition_counter_matches_a_per_message_count(chunks: list[list[tuple[int, int]]]) -> None:
    tally = PartitionTally()
    seen: dict[int, int] = {}
    newest: dict[int, int] = {}
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    offset = 0
    for chunk in chunks:
        offsets = np.arange(offset, offset + len(chunk), dtype=np.int64)[::-1]  # any order
        offset += len(chunk)
        tally.take(
            np.array([p for p, _ in chunk], dtype=np.int64),
            offsets,
            np.array([t for _, t in chunk], dtype=np.int64),
        )
        for (p, t), o in zip(chunk, offsets.tolist(), strict=True):
            seen[p] = seen.get(p, 0) + 1
            newest[p] = max(newest.get(p, t), t)
            first[p], last[p] = min(first.get(p, o), o), max(last.get(p, o), o)
    windows = tally.close([0, 9], {0: 5, 9: 1}, {0: 7})
    assert {p: w.seen for p, w in windows.items() if w.seen} == seen
    assert {p: w.newest_ms for p, w in windows.items() if w.newest_ms is not None} == newest
    assert {p: w.first_offset for p, w in windows.items() if w.first_offset is not None} == first
    assert {p: w.last_offset for p, w in windows.items() if w.last_offset is not None} == last
    assert windows[0].produced == 2 and windows[9].produced is None and windows[9].seen == 0
