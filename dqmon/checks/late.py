"""Late arrivals: the share of records whose event time is older than the newest event time
already seen (across windows, in arrival order) by more than `max_delay`.

Separate from freshness: freshness asks "is the stream current?", this asks "of the records that
arrive, how many arrive late?" — a stream can be current while 5% of its events come minutes
behind. The newest time is kept per partition with `per_partition: true` (a slow partition is
then not "late" against a fast one), else for the whole dataset; it is persisted every window.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import polars as pl
from pydantic import Field

from dqmon.batch import MicroBatch
from dqmon.checks.base import Check, CheckContext
from dqmon.checks.registry import register
from dqmon.checks.streamstate import NO_PARTITION, exceeds, partition_expr, share
from dqmon.checks.timecols import epoch_seconds
from dqmon.config.checks import CheckSpec
from dqmon.config.durations import Duration, format_duration
from dqmon.results import CheckResult, Status


class LateArrivalsSpec(CheckSpec):
    column: str | None = Field(None, description="event-time column; default the dataset's event_time")
    max_delay: Duration = Field(description="a record older than the newest seen by more than this is late")
    max_rate: float = Field(0.0, ge=0, le=1, description="largest allowed share of late records")
    per_partition: bool = Field(False, description="compare with the newest time of the record's partition")


def delays(frame: pl.LazyFrame, newest: Mapping[int, float]) -> pl.DataFrame:
    """Per timed record (part, t in arrival order): how far it trails the newest time seen before it."""
    before = pl.DataFrame(
        {"part": list(newest), "before": list(newest.values())},
        schema={"part": pl.Int32(), "before": pl.Float64()},
    ).lazy()
    return (
        frame.with_row_index("i")
        .join(before, on="part", how="left")
        .sort("i")
        .with_columns(
            behind=pl.max_horizontal(pl.col("t").cum_max().shift(1).over("part"), pl.col("before"))
            - pl.col("t")
        )
        .select("part", "t", "behind")
        .collect(engine="in-memory")
    )


@register
class LateArrivalsCheck(Check[LateArrivalsSpec]):
    kind = "late_arrivals"
    spec_type = LateArrivalsSpec

    def __init__(self, spec: LateArrivalsSpec, name: str, ctx: CheckContext) -> None:
        super().__init__(spec, name, ctx)
        self.column = spec.column or ctx.dataset.event_time
        self._key = self.state_key("newest")
        stored = ctx.store.get_state(self._key)
        self.newest: dict[int, float] = (
            {int(p): float(t) for p, t in stored.items()} if isinstance(stored, dict) else {}
        )

    def finish(self, batch: MicroBatch, aggregates: Mapping[str, Any]) -> list[CheckResult]:
        threshold = f"rate <= {self.spec.max_rate:g}"
        limit = self.spec.max_delay.total_seconds()
        df = batch.df
        if self.column is None:
            return [self.error("no event-time column: set the dataset's event_time or the check's column")]
        if not df.height:
            return [self.result(Status.OK, None, threshold, "empty batch")]
        if self.column not in df.columns:
            return [
                self.result(self.violation, None, threshold, f"event-time column {self.column!r} missing")
            ]
        ts = epoch_seconds(self.column, df.schema[self.column])
        part = partition_expr(df.schema) if self.spec.per_partition else pl.lit(NO_PARTITION, pl.Int32)
        frame = df.lazy().select(part.alias("part"), ts.alias("t")).filter(pl.col("t").is_finite())
        out = delays(frame, self.newest)
        timed = out.height
        late_delays = out["behind"].filter(out["behind"] > limit)
        late = late_delays.len()
        for p, t in out.group_by("part").agg(pl.col("t").max()).iter_rows():
            self.newest[int(p)] = max(float(t), self.newest.get(int(p), float(t)))
        if timed:
            self.ctx.store.put_state(self._key, {str(p): t for p, t in self.newest.items()})
        details: dict[str, Any] = {
            "late": late,
            "timed_rows": timed,
            "untimed_rows": df.height - timed,
            "state_entries": len(self.newest),
        }
        if late:
            details["max_delay_seconds"] = round(float(late_delays.max()), 3)  # type: ignore[arg-type]
            details["p50_delay_seconds"] = round(float(late_delays.median()), 3)  # type: ignore[arg-type]
        rate = share(late, timed)
        message = f"{late} of {timed} records arrived more than {format_duration(self.spec.max_delay)} late"
        if late:
            message += f" (up to {details['max_delay_seconds']:.1f}s behind the newest event)"
        status = self.violation if exceeds(late, timed, self.spec.max_rate) else Status.OK
        return [self.result(status, rate, threshold, message, details=details)]
