"""Backtest: replay a file through a dataset's checks and alert rules on a virtual clock.

The file is cut into the dataset's windows by event time (one group-by, no per-row Python);
each window is a micro-batch evaluated "as of" its end, and the pipeline's alert rules run on
the same clock, so tuning a threshold shows which alerts would have fired and when.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl

from dqmon.alerts.manager import AlertManager
from dqmon.batch import MicroBatch
from dqmon.checks.timecols import epoch_seconds
from dqmon.config.models import Dataset, Pipeline
from dqmon.engine import DatasetEngine
from dqmon.errors import DqmonError
from dqmon.results import CheckResult, Status
from dqmon.state.store import MemoryStateStore

MAX_WINDOWS = 200_000


@dataclass(frozen=True)
class AlertEvent:
    at: datetime
    event: str
    check: str
    message: str


@dataclass
class BacktestReport:
    windows: int = 0
    rows: int = 0
    evaluations: dict[str, dict[str, int]] = field(default_factory=dict)  # check -> status -> count
    alerts: list[AlertEvent] = field(default_factory=list)

    def count(self, results: Sequence[CheckResult]) -> None:
        for r in results:
            per = self.evaluations.setdefault(r.check, {s.label: 0 for s in Status})
            per[r.status.label] += 1


def backtest(
    frame: pl.DataFrame,
    pipeline: Pipeline,
    dataset: Dataset,
    *,
    base_dir: Path | None = None,
    window: timedelta | None = None,
    lag: timedelta = timedelta(seconds=1),
) -> BacktestReport:
    """Evaluate `frame` window by window; `lag` is how long after a window's end it is judged."""
    column = dataset.event_time
    if column is None or column not in frame.columns:
        raise DqmonError(f"backtest needs the dataset's event_time column ({column!r}) in the file")
    size = (window or dataset.window).total_seconds()
    if size <= 0:
        raise DqmonError("window must be positive")
    ts = frame.select(epoch_seconds(column, frame.schema[column]).alias("__t")).to_series()
    frame = frame.with_columns(ts).filter(pl.col("__t").is_not_null()).sort("__t")
    if frame.is_empty():
        raise DqmonError(f"no parseable event times in {column!r}")
    first = float(frame["__t"][0])
    frame = frame.with_columns(((pl.col("__t") - first) // size).cast(pl.Int64).alias("__w"))
    last_window = int(frame["__w"][-1])
    if last_window + 1 > MAX_WINDOWS:
        raise DqmonError(f"{last_window + 1} windows of {size:g}s: use a larger --window")
    windows = frame.partition_by("__w", as_dict=True, include_key=False)

    report = BacktestReport()
    now = [datetime.fromtimestamp(first, UTC)]
    store = MemoryStateStore()
    engine = DatasetEngine(pipeline, dataset, base_dir=base_dir, store=store, clock=lambda: now[0])
    alerts = AlertManager(pipeline, store, clock=lambda: now[0].timestamp())
    empty = frame.head(0).drop("__t")
    for index in range(last_window + 1):
        rows = windows.get((index,), empty)
        rows = rows.drop("__t") if "__t" in rows.columns else rows
        start = datetime.fromtimestamp(first + index * size, UTC)
        end = start + timedelta(seconds=size)
        now[0] = end + lag
        batch = MicroBatch(pipeline.pipeline, dataset.name, rows, start, end, rows.height, rows.height)
        results = engine.evaluate(batch)
        report.windows += 1
        report.rows += rows.height
        report.count(results)
        seen: set[tuple[str, str]] = set()
        for note in alerts.observe(results, now[0]):
            if (note.fingerprint, note.event) in seen:
                continue  # one event per alert, whatever the number of routes
            seen.add((note.fingerprint, note.event))
            payload = note.payload
            report.alerts.append(
                AlertEvent(now[0], note.event, str(payload.get("check")), str(payload.get("message") or ""))
            )
    return report
