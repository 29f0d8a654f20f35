"""Scale-out parts on real PostgreSQL (partials table, judge lock) and the per-partition counters."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import polars as pl
import psycopg
import pytest

from dqmon.columns import OFFSET_COLUMN, PARTITION_COLUMN
from dqmon.scaleout.election import JudgeLock
from dqmon.scaleout.judge import merge_facts
from dqmon.scaleout.partials import Partial
from dqmon.scaleout.store import PartialStore, ReplicaFacts
from dqmon.sources.kafka_partitions import PartitionTally, rejected
from tests.e2e_helpers import wait_until

W = 1_700_000_000.0


def _rows(partition: int, offsets: list[int]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "v": [float(o) for o in offsets],
            PARTITION_COLUMN: pl.Series([partition] * len(offsets), dtype=pl.Int32),
            OFFSET_COLUMN: pl.Series(offsets, dtype=pl.Int64),
        }
    )


@pytest.mark.postgres
def test_partials_upsert_idempotently_and_windows_are_judged_once(pg_schema_dsn):
    store = PartialStore(pg_schema_dsn)
    try:
        part = Partial(0, W, W + 1, "a", ((0, 2, 3),), start_mark=0, end_mark=3, rows=_rows(0, [0, 1, 2]))
        store.put_partials("p", "d", [part], 1.0)
        store.put_partials("p", "d", [part], 2.0)  # a re-send replaces, never adds
        other = Partial(1, W, W + 1, "b", (), start_mark=5, end_mark=5, rows=_rows(1, []))
        store.put_partials("p", "d", [other], 2.0)
        assert store.windows("p", "d", 0.0) == {W: {0: W + 1, 1: W + 1}}
        loaded = sorted(store.partials("p", "d", W), key=lambda x: x.partition)
        assert [x.replica for x in loaded] == ["a", "b"]
        assert loaded[0].ranges == ((0, 2, 3),) and loaded[0].rows.equals(part.rows)
        assert loaded[1].rows.height == 0 and loaded[1].start_mark == 5
        assert store.claim_window("p", "d", W, "judge-1", {0: 2}, 3.0)
        assert not store.claim_window("p", "d", W, "judge-2", {0: 2}, 3.0)  # judged once
        assert store.last_judged("p", "d") == (W, {0: 2})
        store.drop_judged("p", "d", W)
        assert store.windows("p", "d", 0.0) == {}
        store.put_facts("p", "d", "a", {"up": True, "partitions": [0, 1]}, 10.0)
        assert [f.replica for f in store.facts("p", "d", 5.0)] == ["a"]
        assert store.facts("p", "d", 11.0) == []
        assert "postgresql" not in repr(store)
    finally:
        store.close()


@pytest.mark.postgres
def test_one_judge_lock_holder_and_a_dropped_session_frees_it(pg_schema_dsn):
    first, second = JudgeLock(pg_schema_dsn, "pipe"), JudgeLock(pg_schema_dsn, "pipe")
    elsewhere = JudgeLock(pg_schema_dsn, "other-pipe")
    try:
        assert first.try_acquire()
        assert first.try_acquire()  # still held
        assert not second.try_acquire()
        assert elsewhere.try_acquire()  # per pipeline
        # the holder's process dies: its session ends (terminated server-side, as on a dead peer)
        conn = first._conn
        assert conn is not None
        pid = conn.info.backend_pid
        with psycopg.connect(pg_schema_dsn, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        wait_until(second.try_acquire, 10, "the lock freed by the ended session")  # termination is async
        assert not first.try_acquire()  # reconnected, but the lock is taken now
        second.release()
        assert first.try_acquire()
    finally:
        for lock in (first, second, elsewhere):
            lock.release()


def test_partition_tally_counts_every_consumed_record_per_partition():
    tally = PartitionTally()
    parts = np.array([0, 1, 0, 2, 0], dtype=np.int64)
    offsets = np.array([10, 3, 11, 7, 12], dtype=np.int64)
    stamps = np.array([100, 200, 300, 50, 250], dtype=np.int64)
    tally.take(parts, offsets, stamps)
    tally.take(np.array([1], dtype=np.int64), np.array([4], dtype=np.int64), np.array([400], dtype=np.int64))
    counts = tally.close([0, 1, 2, 5], {0: 10, 1: 3, 5: 9}, {0: 13, 1: 5, 2: 8, 5: 9})
    assert counts[0].seen == 3 and (counts[0].first_offset, counts[0].last_offset) == (10, 12)
    assert counts[0].newest_ms == 300 and (counts[0].start_mark, counts[0].end_mark) == (10, 13)
    assert counts[1].seen == 2 and counts[1].last_offset == 4 and counts[1].newest_ms == 400
    assert counts[2].start_mark is None  # assigned mid-window
    assert counts[5].seen == 0 and counts[5].first_offset is None  # held, nothing produced


def test_replica_facts_merge_into_one_readers_facts():
    now = datetime.now(UTC)
    rows = [
        ReplicaFacts(
            "a", 10.0, {"up": True, "newest": 100.0, "produced": 7, "lag": {}, "partitions": [0, 1]}
        ),
        ReplicaFacts(
            "b",
            11.0,
            {
                "up": False,
                "newest": 120.0,
                "produced": 9,
                "lag": {"g": [4, 1.5]},
                "error": "down",
                "partitions": [2],
            },
        ),
    ]
    facts, partitions = merge_facts(rows, now)
    assert facts.up and facts.newest_record_time == datetime.fromtimestamp(120.0, UTC)
    assert facts.produced == 9 and facts.consumer_lag["g"].messages == 4
    assert partitions == [0, 1, 2]
    nobody, none = merge_facts([], now)
    assert not nobody.up and none == []


def test_undecodable_sampled_records_are_kept_by_partition_and_offset():
    partitions = np.array([0, 0, 1, 1, 2], dtype=np.int32)
    offsets = np.array([5, 6, 5, 9, 1], dtype=np.int64)
    decoded = _rows(0, [5]).vstack(_rows(1, [9]))
    out = rejected(partitions, offsets, decoded, {"invalid_json": 2, "empty": 1})
    assert out.select(PARTITION_COLUMN, OFFSET_COLUMN).rows() == [(0, 6), (1, 5), (2, 1)]
    assert sorted(out["reason"].to_list()) == ["empty", "invalid_json", "invalid_json"]  # counts exact
    assert rejected(partitions, offsets, decoded, {}).height == 0


def test_scale_out_is_on_for_group_mode_kafka_datasets_with_postgresql_unless_turned_off():
    from prometheus_client import CollectorRegistry
    from pydantic import SecretStr

    from dqmon.config.models import Pipeline
    from dqmon.config.settings import Settings
    from dqmon.runtime.replicas import Replicas

    pipeline = Pipeline.model_validate(
        {
            "pipeline": "p",
            "datasets": [
                {"name": "grouped", "source": {"kind": "kafka", "topic": "t"}},  # group is the default
                {"name": "assigned", "source": {"kind": "kafka", "topic": "t", "mode": "assign"}},
                {"name": "replayed", "source": {"kind": "replay", "path": "x.ndjson"}},
            ],
        }
    )

    def scaled(**settings: object) -> list[str]:
        replicas = Replicas(
            Settings(**settings),  # type: ignore[arg-type]
            CollectorRegistry(),
            lambda *_: None,
            lambda *_: None,  # type: ignore[arg-type,return-value]
            lambda *_: None,
            lambda: datetime.now(UTC),
        )
        return [d.name for d in pipeline.datasets if replicas.scaled_out(d)]

    dsn = SecretStr("postgresql://nobody@127.0.0.1:1/none")
    assert scaled(state_dsn=dsn) == ["grouped"]
    assert scaled() == []  # no PostgreSQL: each replica judges its own partitions, as before
    assert scaled(state_dsn=dsn, replicas="off") == []
