"""What a link takes from a micro-batch: newest/oldest event time and counts/sums per event-time bin.

Small vectorised Polars work over a batch that is already in memory: no query on the data store.
An event-time column is parsed to epoch seconds once per batch (`BatchTimes` caches it), however
many links read it: parsing ISO strings is the expensive part (~35 ms per 100k rows here).
Unparseable event times are dropped (the dataset's own checks report them).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

from dqmon.batch import MicroBatch
from dqmon.checks.timecols import epoch_seconds


@dataclass(frozen=True)
class Bins:
    """Per bin index (event time // width; the bin starts at index * width): count and optional sum."""

    counts: dict[int, float]
    sums: dict[int, float]


@dataclass
class BatchTimes:
    """One micro-batch with its event-time columns parsed on first use."""

    batch: MicroBatch
    _epochs: dict[str, pl.Series | None] = field(default_factory=dict)

    def epochs(self, column: str) -> pl.Series | None:
        """The column as Float64 epoch seconds (nulls where unparseable); None when absent."""
        if column not in self._epochs:
            df = self.batch.df
            series = None
            if column in df.columns and df.height:
                try:
                    series = df.select(epoch_seconds(column, df.schema[column]).alias(column)).to_series()
                except (TypeError, pl.exceptions.PolarsError):
                    series = None
            self._epochs[column] = series
        return self._epochs[column]

    def newest(self, column: str) -> float | None:
        series = self.epochs(column)
        value = None if series is None else series.max()
        return None if value is None else float(value)  # type: ignore[arg-type]

    def oldest(self, column: str) -> float | None:
        series = self.epochs(column)
        value = None if series is None else series.min()
        return None if value is None else float(value)  # type: ignore[arg-type]

    def bins(
        self, column: str, width: float, *, count_column: str | None = None, sum_column: str | None = None
    ) -> Bins:
        """Counts (rows, or the sum of `count_column` for an aggregate view) and sums per bin."""
        series = self.epochs(column)
        if series is None:
            return Bins({}, {})
        df = self.batch.df
        columns = {"bin": (series / width).floor().cast(pl.Int64)}
        for name in (count_column, sum_column):
            if name is not None:
                columns[name] = (
                    df.get_column(name) if name in df.columns else pl.Series(name, [None] * df.height)
                )
        aggs = [
            (pl.col(count_column).cast(pl.Float64, strict=False).sum() if count_column else pl.len()).alias(
                "n"
            )
        ]
        if sum_column is not None:
            aggs.append(pl.col(sum_column).cast(pl.Float64, strict=False).sum().alias("s"))
        frame = (
            pl.DataFrame(columns)
            .lazy()
            .drop_nulls("bin")
            .group_by("bin")
            .agg(aggs)
            .collect(engine="in-memory")
        )
        starts = frame.get_column("bin").to_list()
        counts = dict(zip(starts, frame.get_column("n").cast(pl.Float64).to_list(), strict=True))
        sums = dict(zip(starts, frame.get_column("s").to_list(), strict=True)) if sum_column else {}
        return Bins(counts, {k: float(v or 0.0) for k, v in sums.items()})


def sampling_scale(batch: MicroBatch) -> float:
    """Rows the batch stands for per decoded row: >1 when the source sampled or capped the window."""
    if batch.rows_sampled <= 0 or batch.rows_seen <= batch.rows_sampled:
        return 1.0
    return batch.rows_seen / batch.rows_sampled
