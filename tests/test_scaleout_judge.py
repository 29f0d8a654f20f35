"""The judge on real PostgreSQL, with a controlled clock: windows merged once, in order, by one
lock holder; missing partitions make a partial window, alerted on only after a rebalance's time;
a second judge continues where the first stopped. The replica side is the real publisher."""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl
import pytest
from prometheus_client import CollectorRegistry

from dqmon.batch import MicroBatch, PartitionWindow
from dqmon.columns import OFFSET_COLUMN, PARTITION_COLUMN
from dqmon.config.models import Pipeline
from dqmon.engine import DatasetEngine
from dqmon.facts import SourceFacts
from dqmon.scaleout.election import JudgeLock
from dqmon.scaleout.judge import CHECK_NAME, Judge
from dqmon.scaleout.metrics import ScaleoutMetrics
from dqmon.scaleout.publisher import PartialPublisher
from dqmon.scaleout.store import PartialStore

pytestmark = pytest.mark.postgres
W0 = 1_800_000_000.0
PIPELINE = Pipeline.model_validate(
    {
        "pipeline": "judged",
        "datasets": [
            {
                "name": "trades",
                "window": "1s",
                "source": {
                    "kind": "kafka",
                    "topic": "t",
                    "mode": "group",
                    "client": {"session.timeout.ms": 2000},  # rebalance allowance: 2 s + one window
                },
                "checks": [{"volume": {"min": 5}}, {"validity": {"not_null": ["v"]}}],
            }
        ],
    }
)


class Clock:
    def __init__(self) -> None:
        self.now = W0

    def __call__(self) -> datetime:
        return datetime.fromtimestamp(self.now, UTC)


def batch(window: int, partitions: list[int], per_partition: int = 4) -> MicroBatch:
    """One replica's batch of window `window`: `per_partition` records on each partition."""
    start = W0 + window
    base = window * per_partition
    rows = pl.DataFrame(
        {
            "v": [1.0] * (per_partition * len(partitions)),
            PARTITION_COLUMN: pl.Series(
                [p for p in partitions for _ in range(per_partition)], dtype=pl.Int32
            ),
            OFFSET_COLUMN: pl.Series(
                [base + i for _ in partitions for i in range(per_partition)], dtype=pl.Int64
            ),
        }
    )
    counts = {
        p: PartitionWindow(per_partition, base, base + per_partition - 1, None, base, base + per_partition)
        for p in partitions
    }
    return MicroBatch(
        pipeline="judged",
        dataset="trades",
        df=rows,
        window_start=datetime.fromtimestamp(start, UTC),
        window_end=datetime.fromtimestamp(start + 1, UTC),
        rows_seen=rows.height,
        rows_sampled=rows.height,
        partitions=counts,
    )


class Harness:
    def __init__(self, dsn: str) -> None:
        self.store = PartialStore(dsn)
        self.metrics = ScaleoutMetrics(CollectorRegistry())
        self.clock = Clock()
        self.verdicts: list[tuple[str, MicroBatch | None, dict[str, str]]] = []
        self.elections: list[str] = []

    def publisher(self, replica: str, partitions: list[int]) -> PartialPublisher:
        return PartialPublisher(
            "judged",
            "trades",
            self.store,
            replica,
            lambda: partitions,
            self.metrics,
            clock=lambda: self.clock.now,
        )

    def judge(self, dsn: str, name: str) -> Judge:
        def publish(pipeline, dataset, results, batch) -> None:
            self.verdicts.append((name, batch, {r.check: r.status.label for r in results}))

        return Judge(
            PIPELINE,
            PIPELINE.datasets,
            self.store,
            JudgeLock(dsn, "judged"),
            lambda clock: {"trades": DatasetEngine(PIPELINE, PIPELINE.datasets[0], clock=clock)},
            publish,
            self.metrics,
            on_elected=lambda: self.elections.append(name),
            name=name,
            sweep_seconds=0.0,
            clock=self.clock,
        )


def test_windows_are_judged_once_in_order_and_missing_partitions_alert_only_when_overdue(pg_schema_dsn):
    h = Harness(pg_schema_dsn)
    a, b = h.publisher("a", [0, 1, 2]), h.publisher("b", [0, 1, 2])
    first, second = h.judge(pg_schema_dsn, "j1"), h.judge(pg_schema_dsn, "j2")
    try:
        a.sweep(h.clock(), SourceFacts(observed_at=h.clock()))  # the topic has partitions 0, 1, 2
        for w in range(2):  # complete windows: replica a holds 0 and 1, b holds 2
            a.evaluate(batch(w, [0, 1]))
            b.evaluate(batch(w, [2]))
        h.clock.now = W0 + 2.5
        first.tick()
        second.tick()  # the lock is taken: it does nothing
        assert h.elections == ["j1"]
        judged = [(n, bt.window_start.timestamp(), st) for n, bt, st in h.verdicts if bt is not None]
        assert [(n, s) for n, s, _ in judged] == [("j1", W0), ("j1", W0 + 1)]
        assert all(st["volume"] == "ok" and st[CHECK_NAME] == "ok" for *_, st in judged)
        # replica b stops reading partition 2 (a rebalance): windows 2..5 lack it
        h.verdicts.clear()
        for w in range(2, 7):
            a.evaluate(batch(w, [0, 1]))
            h.clock.now = W0 + w + 1 + 1 + 2.0 + 0.1  # past the grace of window w
            first.tick()
        by_window = {bt.window_start.timestamp() - W0: st for _, bt, st in h.verdicts if bt is not None}
        batches = {bt.window_start.timestamp() - W0: bt for _, bt, _ in h.verdicts if bt is not None}
        assert sorted(by_window) == [2, 3, 4, 5, 6]
        assert all(batches[w].partial and batches[w].rows_seen == 8 for w in by_window)
        assert all("volume" not in st for st in by_window.values())  # partial: volume does not judge
        assert [CHECK_NAME in by_window[w] for w in (2, 3, 4)] == [False, False, False]  # a rebalance
        assert by_window[5][CHECK_NAME] == "warn" and by_window[6][CHECK_NAME] == "warn"  # overdue
        assert h.metrics.incomplete.labels("judged", "trades")._value.get() == 5
        # the judge stops (its replica leaves); the second takes over from the next window on
        first.stop()
        h.verdicts.clear()
        a.evaluate(batch(7, [0, 1]))
        b.evaluate(batch(7, [2]))
        h.clock.now = W0 + 8.5
        second.tick()
        assert h.elections == ["j1", "j2"]
        assert [(n, bt.window_start.timestamp() - W0) for n, bt, _ in h.verdicts if bt] == [("j2", 7)]
        assert h.verdicts[-1][2][CHECK_NAME] == "ok"
    finally:
        first.stop()
        second.stop()
        h.store.close()


def test_batches_of_one_window_accumulate_into_one_partial_per_partition(pg_schema_dsn):
    h = Harness(pg_schema_dsn)
    replica = h.publisher("a", [0])
    try:
        head, tail = batch(0, [0], 6), batch(0, [0], 6)
        # the size bound closed the window early: the rest of it comes as a second batch
        tail = MicroBatch(**{**tail.__dict__, "df": tail.df.with_columns(pl.col(OFFSET_COLUMN) + 6),
                             "partitions": {0: PartitionWindow(6, 6, 11, None, None, 12)}})  # fmt: skip
        replica.evaluate(head)
        replica.evaluate(tail)
        (stored,) = h.store.partials("judged", "trades", W0)
        assert stored.ranges == ((0, 11, 12),)
        assert stored.rows.height == 12 and (stored.start_mark, stored.end_mark) == (0, 12)
    finally:
        h.store.close()


def test_a_window_the_size_bound_closed_early_waits_for_its_last_batch(pg_schema_dsn):
    h = Harness(pg_schema_dsn)
    replica = h.publisher("a", [0])
    judge = h.judge(pg_schema_dsn, "j")
    try:
        replica.sweep(h.clock(), SourceFacts(observed_at=h.clock()))
        head = batch(0, [0], 6)
        head = MicroBatch(**{**head.__dict__, "window_end": datetime.fromtimestamp(W0 + 0.4, UTC)})
        replica.evaluate(head)
        h.clock.now = W0 + 1.5  # the window has ended, its last batch is still being read
        judge.tick()
        assert h.verdicts == []
        tail = batch(0, [0], 6)
        tail = MicroBatch(**{**tail.__dict__, "df": tail.df.with_columns(pl.col(OFFSET_COLUMN) + 6),
                             "partitions": {0: PartitionWindow(6, 6, 11, None, None, 12)}})  # fmt: skip
        replica.evaluate(tail)
        judge.tick()
        (verdict,) = [v for v in h.verdicts if v[1] is not None]
        assert verdict[1].rows_seen == 12 and verdict[2]["volume"] == "ok"
    finally:
        judge.stop()
        h.store.close()
