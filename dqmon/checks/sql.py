"""SQL: any rule Polars SQL can say, over the micro-batch registered as the table `batch`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import polars as pl

from dqmon.batch import MicroBatch
from dqmon.checks.base import Check
from dqmon.checks.registry import register
from dqmon.config.checks import SqlSpec
from dqmon.results import CheckResult, Status, bounds_text


@register
class SqlCheck(Check[SqlSpec]):
    kind = "sql"
    spec_type = SqlSpec

    def finish(self, batch: MicroBatch, aggregates: Mapping[str, Any]) -> list[CheckResult]:
        threshold = bounds_text((">=", self.spec.min), ("<=", self.spec.max))
        if batch.rows_decoded == 0:
            return [self.result(Status.OK, None, threshold, "empty batch: query not run")]
        with pl.SQLContext(batch=batch.df.lazy()) as ctx:
            frame = ctx.execute(self.spec.query).collect(engine="in-memory")
        if frame.height != 1 or not frame.columns:
            return [self.error(f"query must return one row, got {frame.height}")]
        column = "value" if "value" in frame.columns else frame.columns[0]
        raw = frame.get_column(column)[0]
        if raw is None:
            return [self.error("query returned null")]
        if not isinstance(raw, int | float):
            return [self.error(f"query's {column} is {type(raw).__name__}, not a number")]
        value = float(raw)
        low = self.spec.min is not None and value < self.spec.min
        high = self.spec.max is not None and value > self.spec.max
        if low or high:
            return [
                self.result(self.violation, value, threshold, f"query value {value:g} outside {threshold}")
            ]
        return [self.result(Status.OK, value, threshold, f"query value {value:g}")]
