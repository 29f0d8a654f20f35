"""What a link takes from a micro-batch: newest event time and counts/sums per event-time bin.

One small vectorised Polars query over a batch that is already in memory: no query on the data
store. Unparseable event times are dropped (the dataset's own checks report them).
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from dqmon.batch import MicroBatch
from dqmon.checks.timecols import epoch_seconds


@dataclass(frozen=True)
class Bins:
    """Per bin index (event time // width; the bin starts at index * width): count and optional sum."""

    counts: dict[int, float]
    sums: dict[int, float]


def newest_event(batch: MicroBatch, column: str) -> float | None:
    """Newest event time in the batch as epoch seconds; None when absent or unparseable."""
    df = batch.df
    if column not in df.columns or df.height == 0:
        return None
    try:
        value = df.select(epoch_seconds(column, df.schema[column]).max()).item()
    except (TypeError, pl.exceptions.PolarsError):
        return None
    return None if value is None else float(value)


def oldest_event(batch: MicroBatch, column: str) -> float | None:
    df = batch.df
    if column not in df.columns or df.height == 0:
        return None
    try:
        value = df.select(epoch_seconds(column, df.schema[column]).min()).item()
    except (TypeError, pl.exceptions.PolarsError):
        return None
    return None if value is None else float(value)


def sampling_scale(batch: MicroBatch) -> float:
    """Rows the batch stands for per decoded row: >1 when the source sampled or capped the window."""
    if batch.rows_sampled <= 0 or batch.rows_seen <= batch.rows_sampled:
        return 1.0
    return batch.rows_seen / batch.rows_sampled


def bin_values(
    batch: MicroBatch,
    column: str,
    width: float,
    *,
    count_column: str | None = None,
    sum_column: str | None = None,
) -> Bins:
    """Counts (rows, or the sum of `count_column` for an aggregate view) and sums per bin."""
    df = batch.df
    if column not in df.columns or df.height == 0:
        return Bins({}, {})
    ts = epoch_seconds(column, df.schema[column])
    aggs = [
        (pl.col(count_column).cast(pl.Float64, strict=False).sum() if count_column else pl.len()).alias("n")
    ]
    if sum_column is not None:
        aggs.append(pl.col(sum_column).cast(pl.Float64, strict=False).sum().alias("s"))
    frame = (
        df.lazy()
        .select([(ts / width).floor().cast(pl.Int64).alias("bin"), *_needed(df, count_column, sum_column)])
        .drop_nulls("bin")
        .group_by("bin")
        .agg(aggs)
        .collect(engine="in-memory")
    )
    starts = frame.get_column("bin").to_list()
    counts = dict(zip(starts, frame.get_column("n").cast(pl.Float64).to_list(), strict=True))
    sums = dict(zip(starts, frame.get_column("s").to_list(), strict=True)) if sum_column else {}
    return Bins(counts, {k: float(v or 0.0) for k, v in sums.items()})


def _needed(df: pl.DataFrame, *columns: str | None) -> list[pl.Expr]:
    out = []
    for column in columns:
        if column is None:
            continue
        out.append(pl.col(column) if column in df.columns else pl.lit(None, pl.Float64).alias(column))
    return out
