"""Freshness: how old the newest data is, and staleness when nothing arrives at all."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import polars as pl

from dqmon.batch import MicroBatch
from dqmon.checks.base import Check, CheckContext
from dqmon.checks.registry import register
from dqmon.checks.timecols import epoch_seconds
from dqmon.columns import INGEST_TIME_COLUMN
from dqmon.config.checks import FreshnessSpec
from dqmon.config.durations import format_duration
from dqmon.facts import SourceFacts
from dqmon.results import CheckResult, Status


def _secs(value: float) -> str:
    return f"{value:.1f}s"


@register
class FreshnessCheck(Check[FreshnessSpec]):
    kind = "freshness"
    spec_type = FreshnessSpec

    def __init__(self, spec: FreshnessSpec, name: str, ctx: CheckContext) -> None:
        super().__init__(spec, name, ctx)
        self.column = spec.column or ctx.dataset.event_time
        self.max_lag = spec.max_lag.total_seconds()
        self.max_silence = (spec.max_silence or spec.max_lag).total_seconds()
        stored = ctx.store.get_state(self.state_key("last_arrival"))
        # Until the first record, silence is measured from start-up: a topic that never
        # produces must still go stale.
        self._last_arrival: float | None = float(stored) if stored is not None else None
        self._started = ctx.clock().timestamp()

    def aggregations(self, schema: pl.Schema) -> Sequence[pl.Expr]:
        if self.column is None or self.column not in schema:
            return ()
        ts = epoch_seconds(self.column, schema[self.column])
        exprs = [
            ts.max().alias("newest"),
            ts.min().alias("oldest"),
            ts.quantile(0.01, interpolation="linear").alias("p01"),
            ts.count().alias("valid"),
        ]
        if INGEST_TIME_COLUMN in schema:
            # when records were produced: what silence is measured from
            ingest = epoch_seconds(INGEST_TIME_COLUMN, schema[INGEST_TIME_COLUMN])
            exprs.append(ingest.max().alias("ingest_newest"))
        if INGEST_TIME_COLUMN in schema and self.spec.max_ingest_lag is not None:
            exprs.append((ingest - ts).quantile(0.99, interpolation="linear").alias("ingest_p99"))
            exprs.append((ingest - ts).max().alias("ingest_max"))
        return exprs

    def finish(self, batch: MicroBatch, aggregates: Mapping[str, Any]) -> list[CheckResult]:
        now = self.ctx.clock().timestamp()
        threshold = f"<= {format_duration(self.spec.max_lag)}"
        if self.column is None:
            return [self.error("no event-time column: set the dataset's event_time or the check's column")]
        if batch.rows_decoded == 0:
            return [self._silence(now)]
        if self.column not in batch.df.columns:
            return [
                self.result(self.violation, None, threshold, f"event-time column {self.column!r} missing")
            ]
        if not aggregates.get("valid"):
            return [
                self.result(
                    self.violation, None, threshold, f"no parseable event times in column {self.column!r}"
                )
            ]
        newest = float(aggregates["newest"])
        known = batch.newest_by_column.get(self.column)
        if known is not None:
            # the source read the whole dataset's newest value (a view's max()): a sample drawn from a
            # corner that stopped updating must not make a live dataset look stale
            newest = max(newest, known.timestamp())
        produced = aggregates.get("ingest_newest")
        self._arrived(min(now, float(produced if produced is not None else newest)))
        lags = {
            "newest": now - newest,
            "p99": now - float(aggregates["p01"]),
            "max": now - float(aggregates["oldest"]),
        }
        value = lags[self.spec.stat]
        details: dict[str, Any] = {f"lag_{k}_seconds": round(v, 3) for k, v in lags.items()}
        status = Status.OK
        message = f"{self.spec.stat} event lag {_secs(value)}"
        if value > self.max_lag:
            status = self.violation
            message += f" exceeds {format_duration(self.spec.max_lag)}"
        if self.spec.max_ingest_lag is not None and aggregates.get("ingest_p99") is not None:
            ingest_p99 = float(aggregates["ingest_p99"])
            details["ingest_lag_p99_seconds"] = round(ingest_p99, 3)
            details["ingest_lag_max_seconds"] = round(float(aggregates["ingest_max"]), 3)
            if ingest_p99 > self.spec.max_ingest_lag.total_seconds():
                status = self.violation
                limit = format_duration(self.spec.max_ingest_lag)
                message += f"; p99 ingest lag {_secs(ingest_p99)} exceeds {limit}"
        return [self.result(status, value, threshold, message, details=details)]

    def on_facts(self, facts: SourceFacts, now: datetime) -> list[CheckResult]:
        """Staleness sweep: only speaks when the dataset has been silent for too long."""
        if facts.newest_record_time is not None:
            self._arrived(facts.newest_record_time.timestamp())
        result = self._silence(now.timestamp())
        return [result] if result.status != Status.OK else []

    def _silence(self, now: float) -> CheckResult:
        since = self._last_arrival if self._last_arrival is not None else self._started
        silent = max(0.0, now - since)
        threshold = f"<= {format_duration(self.spec.max_lag)}"
        details = {"silent_seconds": round(silent, 3)}
        if silent > self.max_silence:
            return self.result(
                self.violation, silent, threshold, f"stale: no records for {_secs(silent)}", details=details
            )
        return self.result(
            Status.OK, None, threshold, f"no records in window (last {_secs(silent)} ago)", details=details
        )

    def _arrived(self, at: float) -> None:
        """Silence counts from the newest record's production (or event) time, not from when dqmon
        read it: re-reading old records after a restart must not look like fresh data."""
        if self._last_arrival is None or at > self._last_arrival:
            self._last_arrival = at
            self.ctx.store.put_state(self.state_key("last_arrival"), at)
