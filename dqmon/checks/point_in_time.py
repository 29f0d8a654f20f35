"""Point-in-time correctness of features joined to events: leakage and stale features.

Per row, `feature_time` is when the feature values were computed and `event_time` the event they
are used for. Leakage: the feature was computed after the event (`feature_time > event_time +
tolerance`), i.e. it may contain information from the future (label leakage in training data).
Stale: the feature is older than allowed at use time (`event_time - feature_time >
max_feature_age`). Both shares are over the rows where both times parse; rows where either is
missing or unparseable are counted apart. Two results: `<name>:leakage` and `<name>:stale`.
Stateless: computed in the batch's fused query.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

import polars as pl
from pydantic import Field

from dqmon.batch import MicroBatch
from dqmon.checks.base import Check, CheckContext
from dqmon.checks.registry import register
from dqmon.checks.streamstate import exceeds, share
from dqmon.checks.timecols import epoch_seconds
from dqmon.config.checks import CheckSpec
from dqmon.config.durations import Duration, format_duration
from dqmon.results import CheckResult, Status


class PointInTimeSpec(CheckSpec):
    feature_time: str = Field(description="column: when the row's features were computed")
    event_time: str | None = Field(None, description="column: the event's time; default the dataset's")
    max_feature_age: Duration | None = Field(None, description="largest allowed event time - feature time")
    tolerance: Duration = Field(
        timedelta(0), description="clock skew allowed before a feature newer than its event is leakage"
    )
    max_rate: float = Field(0.0, ge=0, le=1, description="largest allowed share, for both results")
    max_leakage_rate: float | None = Field(None, ge=0, le=1, description="override of max_rate for leakage")
    max_stale_rate: float | None = Field(None, ge=0, le=1, description="override of max_rate for stale rows")

    @property
    def leakage_limit(self) -> float:
        return self.max_rate if self.max_leakage_rate is None else self.max_leakage_rate

    @property
    def stale_limit(self) -> float:
        return self.max_rate if self.max_stale_rate is None else self.max_stale_rate


@register
class PointInTimeCheck(Check[PointInTimeSpec]):
    kind = "point_in_time"
    spec_type = PointInTimeSpec

    def __init__(self, spec: PointInTimeSpec, name: str, ctx: CheckContext) -> None:
        super().__init__(spec, name, ctx)
        self.event_time = spec.event_time or ctx.dataset.event_time

    def aggregations(self, schema: pl.Schema) -> Sequence[pl.Expr]:
        feature, event = self.spec.feature_time, self.event_time
        if event is None or feature not in schema or event not in schema:
            return ()
        f = epoch_seconds(feature, schema[feature])
        e = epoch_seconds(event, schema[event])
        both = f.is_finite() & e.is_finite()  # null when either is null: filtered below
        age = (e - f).filter(both.fill_null(False))
        exprs = [
            both.fill_null(False).sum().alias("timed"),
            (age < -self.spec.tolerance.total_seconds()).sum().alias("leaking"),
            (-age).max().alias("max_lead"),
        ]
        if self.spec.max_feature_age is not None:
            exprs.append((age > self.spec.max_feature_age.total_seconds()).sum().alias("stale"))
            exprs.append(age.max().alias("max_age"))
        return exprs

    def finish(self, batch: MicroBatch, aggregates: Mapping[str, Any]) -> list[CheckResult]:
        names = (f"{self.name}:leakage", f"{self.name}:stale")
        wanted = names if self.spec.max_feature_age is not None else names[:1]
        if self.event_time is None:
            problem = "no event-time column: set the dataset's event_time or the check's event_time"
            return [self.error(problem, check=n) for n in wanted]
        rows = batch.df.height
        if not rows:
            return [self.result(Status.OK, None, None, "empty batch", check=n) for n in wanted]
        missing = [c for c in (self.spec.feature_time, self.event_time) if c not in batch.df.columns]
        if missing:
            text = f"columns missing: {', '.join(missing)}"
            return [self.result(self.violation, None, None, text, check=n) for n in wanted]
        timed = int(aggregates.get("timed") or 0)
        base = {"timed_rows": timed, "untimed_rows": rows - timed}
        leaking = int(aggregates.get("leaking") or 0)
        lead = aggregates.get("max_lead")
        leak_details: dict[str, Any] = {**base, "leaking": leaking}
        if leaking and lead is not None:
            leak_details["max_feature_lead_seconds"] = round(float(lead), 3)
        results = [
            self._judge(
                names[0],
                leaking,
                timed,
                self.spec.leakage_limit,
                f"{leaking} of {timed} rows use features computed after their event",
                leak_details,
            )
        ]
        if self.spec.max_feature_age is not None:
            stale = int(aggregates.get("stale") or 0)
            age = aggregates.get("max_age")
            stale_details: dict[str, Any] = {**base, "stale": stale}
            if age is not None:
                stale_details["max_feature_age_seconds"] = round(float(age), 3)
            limit = format_duration(self.spec.max_feature_age)
            text = f"{stale} of {timed} rows use features older than {limit} at event time"
            results.append(self._judge(names[1], stale, timed, self.spec.stale_limit, text, stale_details))
        return results

    def _judge(
        self, name: str, bad: int, rows: int, max_rate: float, message: str, details: dict[str, Any]
    ) -> CheckResult:
        status = self.violation if exceeds(bad, rows, max_rate) else Status.OK
        return self.result(
            status, share(bad, rows), f"rate <= {max_rate:g}", message, check=name, details=details
        )
