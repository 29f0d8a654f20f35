"""KafkaSource against the real tansu broker: batches, sampling, metadata, facts, no commits."""

from __future__ import annotations

import json
import time
from typing import Any

import polars as pl
import pytest
from confluent_kafka import Consumer, TopicPartition

from dqmon.columns import INGEST_TIME_COLUMN
from dqmon.config.models import Pipeline
from dqmon.config.settings import Settings
from dqmon.sources.kafka import KafkaSource
from tests.fixtures.broker import make_producer, produce

pytestmark = pytest.mark.broker


def pipeline(
    topic: str,
    bootstrap: str,
    *,
    name: str = "trades-features",
    checks: list[Any] | None = None,
    **source: Any,
) -> Pipeline:
    """One dataset `trades` on `topic`; `window` and `max_rows` are the dataset's, the rest its source's."""
    window = source.pop("window", "1s")
    max_rows = source.pop("max_rows", 100_000)
    return Pipeline.model_validate(
        {
            "pipeline": name,
            "datasets": [
                {
                    "name": "trades",
                    "window": window,
                    "max_rows": max_rows,
                    "source": {"kind": "kafka", "topic": topic, "bootstrap_servers": bootstrap, **source},
                    "checks": checks or [],
                }
            ],
        }
    )


def open_source(topic: str, bootstrap: str, **source: Any) -> KafkaSource:
    p = pipeline(topic, bootstrap, **source)
    made = KafkaSource(p, p.datasets[0], Settings())
    made.start()
    return made


def trades(n: int, start: int = 0) -> list[bytes]:
    return [
        json.dumps({"trade_id": i, "symbol": "BTC", "price": 100.0 + i}).encode()
        for i in range(start, start + n)
    ]


def drain(source: KafkaSource, *, until_rows: int, deadline_s: float = 15.0) -> list[Any]:
    batches = []
    deadline = time.monotonic() + deadline_s
    while sum(b.rows_seen for b in batches) < until_rows and time.monotonic() < deadline:
        batch = source.poll_batch(0.5)
        if batch is not None:
            batches.append(batch)
    return batches


def test_assign_mode_reads_every_partition_with_metadata_columns(bootstrap, topic_factory):
    topic = topic_factory(3)
    source = open_source(topic, bootstrap, mode="assign", start="earliest", headers=["trace"])
    try:
        producer = make_producer(bootstrap)
        for p in range(3):
            produce(
                producer, topic, trades(10, p * 10), partition=p, key=b"k%d" % p, headers=[("trace", b"abc")]
            )
        batches = drain(source, until_rows=30)
    finally:
        source.close()
    df = pl.concat([b.df for b in batches if b.df.height])
    assert df.height == 30
    assert sorted(df["trade_id"].to_list()) == list(range(30))
    assert set(df["_partition"].to_list()) == {0, 1, 2}
    assert df.schema["_timestamp"] == pl.Datetime("us", "UTC")
    assert df["_header_trace"].to_list() == ["abc"] * 30
    assert set(df["_key"].to_list()) == {"k0", "k1", "k2"}
    assert all(INGEST_TIME_COLUMN in b.df.columns for b in batches)  # what freshness reads ingest time from
    offsets = {}
    for b in batches:
        offsets.update(b.offsets)
    assert offsets == {0: (0, 9), 1: (0, 9), 2: (0, 9)}
    # the messages' own timestamps: produced within the last minute
    age = (
        pl.Series([time.time()]).cast(pl.Float64) * 1000 - df["_timestamp"].dt.epoch("ms").cast(pl.Float64)
    ).max()
    assert 0 <= age < 60_000  # type: ignore[operator]


def test_start_latest_skips_history_and_empty_windows_still_yield_batches(bootstrap, topic):
    producer = make_producer(bootstrap)
    produce(producer, topic, trades(5))
    source = open_source(topic, bootstrap, mode="assign", start="latest", window="500ms")
    try:
        first = [source.poll_batch(1.0) for _ in range(3)]
        empties = [b for b in first if b is not None]
        assert empties, "an empty window must still produce a batch"
        assert all(b.rows_seen == 0 and b.df.height == 0 for b in empties)
        assert "_timestamp" in empties[0].df.columns
        produce(producer, topic, trades(7, 100))
        batches = drain(source, until_rows=7)
    finally:
        source.close()
    rows = pl.concat([b.df for b in batches if b.df.height])
    assert sorted(rows["trade_id"].to_list()) == list(range(100, 107))
    assert sum(b.rows_produced or 0 for b in batches) == 7


def test_sampling_rate_counts_seen_and_sampled(bootstrap, topic):
    producer = make_producer(bootstrap, exact=False)
    produce(producer, topic, trades(4000))
    source = open_source(topic, bootstrap, mode="assign", start="earliest", sample={"rate": 0.1})
    try:
        batches = drain(source, until_rows=4000)
    finally:
        source.close()
    seen = sum(b.rows_seen for b in batches)
    sampled = sum(b.rows_sampled for b in batches)
    assert seen == 4000
    assert 300 <= sampled <= 500  # 10% within ~5 standard deviations
    assert sum(b.df.height for b in batches) == sampled


def test_size_bound_closes_batches_without_losing_rows(bootstrap, topic):
    producer = make_producer(bootstrap, exact=False)
    produce(producer, topic, trades(2500))
    source = open_source(topic, bootstrap, mode="assign", start="earliest", max_rows=1000, window="30s")
    try:
        batches = []
        deadline = time.monotonic() + 15
        while sum(b.df.height for b in batches) < 2000 and time.monotonic() < deadline:
            batch = source.poll_batch(1.0)
            if batch is not None:
                batches.append(batch)
    finally:
        source.close()
    assert [b.rows_sampled for b in batches[:2]] == [1000, 1000]
    ids = pl.concat([b.df for b in batches])["trade_id"].to_list()
    assert ids == list(range(len(ids)))  # in order, nothing skipped at the cut


def test_bad_messages_are_counted_and_good_ones_kept(bootstrap, topic):
    producer = make_producer(bootstrap, exact=False, **{"message.max.bytes": 3_000_000})
    good = trades(20)
    bad = [
        b'{"trade_id": 1, "sym',
        b"\x00\xff\xfe garbage",
        b"",
        b"[1, 2, 3]",
        b"{" + b'"a":"' + b"x" * 1_048_576 + b'"}',
    ]
    produce(producer, topic, good[:10] + bad + good[10:])
    source = open_source(
        topic, bootstrap, mode="assign", start="earliest", client={"fetch.max.bytes": 5_000_000}
    )
    try:
        batches = drain(source, until_rows=25)
    finally:
        source.close()
    errors: dict[str, int] = {}
    for b in batches:
        for reason, count in b.decode_errors.items():
            errors[reason] = errors.get(reason, 0) + count
    assert errors == {"invalid_json": 2, "empty": 1, "not_object": 1, "too_large": 1}
    df = pl.concat([b.df for b in batches if b.df.height])
    assert sorted(df["trade_id"].to_list()) == list(range(20))
    assert df.filter(pl.col("trade_id") == 10)["_offset"].to_list() == [15]  # metadata lines up


def test_group_mode_uses_its_own_group_and_never_commits(bootstrap, topic):
    pipeline_group = "trades-features-writer"
    producer = make_producer(bootstrap)
    produce(producer, topic, trades(10))
    # the pipeline's own consumer commits offset 4
    owner = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": pipeline_group, "enable.auto.commit": False}
    )
    owner.commit(offsets=[TopicPartition(topic, 0, 4)], asynchronous=False)
    owner.close()
    source = open_source(
        topic,
        bootstrap,
        mode="group",
        start="earliest",
        consumer_groups=[pipeline_group],
        client={"session.timeout.ms": 6000, "heartbeat.interval.ms": 1000},
    )
    try:
        batches = drain(source, until_rows=10, deadline_s=20)
        facts = source.facts()
        own_group = source.group_id
    finally:
        source.close()
    assert own_group == "dqmon.trades-features.trades"
    assert sum(b.rows_seen for b in batches) == 10
    assert facts.up
    assert facts.consumer_lag[pipeline_group].messages == 6
    assert facts.consumer_lag[pipeline_group].seconds is not None
    assert 0 <= facts.consumer_lag[pipeline_group].seconds < 60
    assert facts.newest_record_time is not None
    checker = Consumer({"bootstrap.servers": bootstrap, "group.id": pipeline_group})
    own = Consumer({"bootstrap.servers": bootstrap, "group.id": own_group})
    try:
        assert checker.committed([TopicPartition(topic, 0)], timeout=5)[0].offset == 4
        assert own.committed([TopicPartition(topic, 0)], timeout=5)[0].offset < 0  # dqmon commits nothing
    finally:
        checker.close()
        own.close()


def test_facts_report_produced_between_calls(bootstrap, topic):
    source = open_source(topic, bootstrap, mode="assign", start="latest")
    source.facts_ttl = 0
    try:
        source.facts()
        produce(make_producer(bootstrap), topic, trades(12))
        facts = source.facts()
    finally:
        source.close()
    assert facts.up
    assert facts.produced == 12


def test_group_mode_replicas_share_the_partitions(bootstrap, topic_factory):
    topic = topic_factory(4)
    group_client = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 500}
    replicas = [
        open_source(topic, bootstrap, mode="group", start="earliest", client=group_client) for _ in range(2)
    ]
    batches: list[list[Any]] = [[], []]
    try:
        assert replicas[0].group_id == replicas[1].group_id
        # both replicas poll until the group has settled with partitions on each
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not all(r._assigned for r in replicas):
            for r in replicas:
                r.poll_batch(0.3)
        assigned = [set(r._assigned) for r in replicas]
        assert all(assigned), assigned
        assert assigned[0].isdisjoint(assigned[1])
        assert assigned[0] | assigned[1] == {0, 1, 2, 3}
        producer = make_producer(bootstrap)
        for p in range(4):
            produce(producer, topic, trades(10, p * 10), partition=p)
        deadline = time.monotonic() + 20
        while sum(b.rows_seen for got in batches for b in got) < 40 and time.monotonic() < deadline:
            for r, got in zip(replicas, batches, strict=True):
                batch = r.poll_batch(0.3)
                if batch is not None:
                    got.append(batch)
    finally:
        for r in replicas:
            r.close()
    frames = [pl.concat([b.df for b in got if b.df.height]) for got in batches]
    for frame, mine in zip(frames, assigned, strict=True):
        assert frame.height > 0
        assert set(frame["_partition"].to_list()) <= mine  # each replica reads only its partitions
    ids = pl.concat(frames)["trade_id"].to_list()
    assert sorted(ids) == list(range(40))  # together they read every message exactly once


def test_sampling_picks_the_same_records_after_a_restart(bootstrap, topic_factory):
    topic = topic_factory(2)
    producer = make_producer(bootstrap, exact=False)
    for p in range(2):
        produce(producer, topic, trades(1000, p * 1000), partition=p)

    def sampled_ids() -> list[int]:
        source = open_source(topic, bootstrap, mode="assign", start="earliest", sample={"rate": 0.1})
        try:
            batches = drain(source, until_rows=2000)
        finally:
            source.close()
        assert sum(b.rows_seen for b in batches) == 2000
        return sorted(pl.concat([b.df for b in batches if b.df.height])["trade_id"].to_list())

    first = sampled_ids()
    assert 100 <= len(first) <= 300
    assert sampled_ids() == first  # a new consumer with other fetch boundaries samples the same records
