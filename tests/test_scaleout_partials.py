"""Partial states merge exactly: records split across random partitions, replicas, batches and
overlapping (rebalance-like) offset ranges give the counts and rows of one plain reader of all."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

import numpy as np
import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from dqmon.batch import MicroBatch, PartitionWindow
from dqmon.columns import OFFSET_COLUMN, PARTITION_COLUMN
from dqmon.scaleout.partials import (
    Partial,
    clip_ranges,
    decode,
    encode,
    merge_partition,
    merge_window,
    split_batch,
    union_ranges,
)
from dqmon.sources.sampling import keep_mask

W0 = 1_700_000_000.0


def _records(partition: int, n: int, bad_every: int) -> pl.DataFrame:
    offsets = np.arange(n, dtype=np.int64)
    return pl.DataFrame(
        {
            "x": (offsets * 7 + partition).astype(np.float64),
            "name": pl.Series([f"r{partition}-{o}" for o in offsets], dtype=pl.String),
            PARTITION_COLUMN: np.full(n, partition, np.int32),
            OFFSET_COLUMN: offsets,
            "_bad": (offsets % bad_every == 3) if bad_every else np.zeros(n, bool),
            "_ts": 1_000 * partition + offsets,
        }
    )


def _batch(replica_rows: pl.DataFrame, counts: dict[int, PartitionWindow], rate: float) -> MicroBatch:
    """What a replica's source hands over: sampled, decoded rows plus per-partition counters."""
    keep = keep_mask(replica_rows[PARTITION_COLUMN].to_numpy(), replica_rows[OFFSET_COLUMN].to_numpy(), rate)
    sampled = replica_rows.filter(pl.Series(keep))
    good = sampled.filter(~pl.col("_bad")).drop("_bad", "_ts")
    bad = (
        sampled.filter(pl.col("_bad"))
        .select(PARTITION_COLUMN, OFFSET_COLUMN)
        .with_columns(pl.lit("invalid_json").alias("reason"))
    )
    return MicroBatch(
        pipeline="p",
        dataset="d",
        df=good,
        window_start=datetime.fromtimestamp(W0, UTC),
        window_end=datetime.fromtimestamp(W0 + 1, UTC),
        rows_seen=replica_rows.height,
        rows_sampled=sampled.height,
        partitions=counts,
        rejects=bad,
    )


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[dict[int, int], list[tuple[int, int, int, int]], int, float]:
    partitions = draw(st.integers(1, 5))
    sizes = {p: draw(st.integers(0, 60)) for p in range(partitions)}
    replicas = draw(st.integers(1, 3))
    slices: list[tuple[int, int, int, int]] = []  # (replica, partition, first, last)
    for p, n in sizes.items():
        if n == 0:
            slices.append((draw(st.integers(0, replicas - 1)), p, 0, -1))
            continue
        # random cut points; each piece may be stretched back into its predecessor (an overlap)
        cuts = sorted(set(draw(st.lists(st.integers(1, n - 1), max_size=3)))) if n > 1 else []
        bounds = [0, *cuts, n]
        for a, b in itertools.pairwise(bounds):
            back = draw(st.integers(0, a)) if draw(st.booleans()) else 0
            slices.append((draw(st.integers(0, replicas - 1)), p, a - back, b - 1))
    bad_every = draw(st.sampled_from([0, 5, 11]))
    rate = draw(st.sampled_from([1.0, 0.5, 0.2]))
    return sizes, slices, bad_every, rate


@settings(max_examples=150, deadline=None)
@given(scenarios())
def test_merged_window_equals_one_reader_of_every_partition(scenario) -> None:
    sizes, slices, bad_every, rate = scenario
    everything = {p: _records(p, n, bad_every) for p, n in sizes.items()}
    marks = {p: (100, 100 + n) for p, n in sizes.items()}
    # several slices of one replica are several batches of one window (the size bound closed one)
    # each replica's batches → partials → accumulated per replica (as the publisher does) → wire
    per_replica: dict[int, list[Partial]] = {}
    for replica, p, first, last in slices:
        rows = everything[p].slice(first, max(0, last - first + 1))
        counts = PartitionWindow(
            seen=rows.height,
            first_offset=first if rows.height else None,
            last_offset=last if rows.height else None,
            # the reader that held the partition at window start/end read that watermark
            start_mark=marks[p][0] if first == 0 else None,
            end_mark=marks[p][1] if last == sizes[p] - 1 else None,
        )
        per_replica.setdefault(replica, []).extend(
            split_batch(_batch(rows, {p: counts}, rate), f"r{replica}")
        )
    stored: list[Partial] = []
    for replica, parts in per_replica.items():
        for p in {x.partition for x in parts}:
            acc = merge_partition([x for x in parts if x.partition == p])
            stored.append(decode(p, acc.window_start, f"r{replica}", *encode(acc)))
    merged = merge_window("p", "d", stored, sizes)
    batch = merged.batch

    reference = pl.concat(list(everything.values()))
    keep = keep_mask(reference[PARTITION_COLUMN].to_numpy(), reference[OFFSET_COLUMN].to_numpy(), rate)
    sampled = reference.filter(pl.Series(keep))
    good = sampled.filter(~pl.col("_bad")).drop("_bad", "_ts").sort(PARTITION_COLUMN, OFFSET_COLUMN)
    assert merged.missing == ()
    assert batch.rows_seen == sum(sizes.values())  # no record counted twice, none lost
    assert batch.rows_sampled == sampled.height
    assert batch.decode_errors == (
        {"invalid_json": int(sampled["_bad"].sum())} if sampled["_bad"].sum() else {}
    )
    assert batch.rows_produced == sum(sizes.values())
    got = (
        batch.df.select(good.columns).sort(PARTITION_COLUMN, OFFSET_COLUMN)
        if batch.df.height
        else good.head(0)
    )
    assert got.to_dicts() == good.to_dicts()
    for p, n in sizes.items():
        if n:
            assert merged.through[p] == n - 1


def test_missing_partitions_and_half_held_partitions_make_the_window_partial() -> None:
    rows = _records(0, 10, 0)
    counts = {0: PartitionWindow(seen=10, first_offset=0, last_offset=9, start_mark=0, end_mark=10)}
    parts = split_batch(_batch(rows, counts, 1.0), "a")
    merged = merge_window("p", "d", parts, [0, 1, 2])
    assert merged.missing == (1, 2)
    assert merged.batch.partial
    assert merge_window("p", "d", parts, [0]).batch.partial is False
    # assigned mid-window: no start watermark, so no produced count and the window is partial
    late = {0: PartitionWindow(seen=10, first_offset=0, last_offset=9, start_mark=None, end_mark=10)}
    half = merge_window("p", "d", split_batch(_batch(rows, late, 1.0), "a"), [0]).batch
    assert half.partial and half.rows_produced is None and half.rows_seen == 10


def test_offsets_judged_in_an_earlier_window_are_not_counted_again() -> None:
    rows = _records(0, 20, 0)
    counts = {0: PartitionWindow(seen=20, first_offset=0, last_offset=19, start_mark=0, end_mark=30)}
    parts = split_batch(_batch(rows, counts, 1.0), "b")
    merged = merge_window("p", "d", parts, [0], through={0: 9})
    assert merged.batch.rows_seen == 10
    assert merged.batch.df[OFFSET_COLUMN].to_list() == list(range(10, 20))
    assert merged.through == {0: 19}
    # a log restarted below the judged offsets (re-created topic) counts afresh
    fresh = merge_window("p", "d", parts, [0], through={0: 500})
    assert fresh.batch.rows_seen == 20


def test_range_union_and_clipping_against_a_set_of_offsets() -> None:
    ranges = [(0, 9, 10), (5, 14, 10), (20, 29, 10), (22, 25, 4)]
    union = union_ranges(ranges)
    covered = {o for f, la, _ in ranges for o in range(f, la + 1)}
    assert sum(s for *_, s in union) == len(covered)
    assert sum(s for *_, s in clip_ranges(union, 12)) == len({o for o in covered if o > 12})


def test_replicas_with_differently_learned_types_merge() -> None:
    a = pl.DataFrame(
        {"v": [None, None], PARTITION_COLUMN: [0, 0], OFFSET_COLUMN: [0, 1]},
        schema_overrides={PARTITION_COLUMN: pl.Int32, OFFSET_COLUMN: pl.Int64},
    )
    b = pl.DataFrame(
        {"v": [1.5], PARTITION_COLUMN: [1], OFFSET_COLUMN: [0]},
        schema_overrides={PARTITION_COLUMN: pl.Int32, OFFSET_COLUMN: pl.Int64},
    )
    parts = [
        Partial(0, W0, W0 + 1, "a", ((0, 1, 2),), start_mark=0, end_mark=2, rows=a),
        Partial(1, W0, W0 + 1, "b", ((0, 0, 1),), start_mark=0, end_mark=1, rows=b),
    ]
    batch = merge_window("p", "d", parts, [0, 1]).batch
    assert batch.df.schema["v"] == pl.Float64
    assert batch.df["v"].to_list() == [None, None, 1.5]
