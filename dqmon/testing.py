"""Helpers for users' checks repos: run a dataset's checks on a DataFrame, no Kafka needed."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from dqmon.batch import MicroBatch
from dqmon.config.models import Dataset, Pipeline
from dqmon.engine import DatasetEngine
from dqmon.results import CheckResult, Status
from dqmon.state.store import CheckState, MemoryStateStore


def run_checks(
    frame: pl.DataFrame,
    pipeline: Pipeline,
    dataset: Dataset,
    *,
    base_dir: Path | None = None,
    now: datetime | None = None,
    store: CheckState | None = None,
) -> list[CheckResult]:
    """Evaluate a dataset's checks once, treating `frame` as one micro-batch ending at `now`."""
    at = now or datetime.now(UTC)
    engine = DatasetEngine(
        pipeline, dataset, base_dir=base_dir, store=store or MemoryStateStore(), clock=lambda: at
    )
    batch = MicroBatch(
        pipeline=pipeline.pipeline,
        dataset=dataset.name,
        df=frame,
        window_start=at - dataset.window,
        window_end=at,
        rows_seen=frame.height,
        rows_sampled=frame.height,
    )
    return engine.evaluate(batch)


_STYLE = {Status.OK: "green", Status.WARN: "yellow", Status.FAIL: "red", Status.ERROR: "magenta"}


def render_results(results: Sequence[CheckResult]) -> None:
    """Print results as a table on the terminal."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="dqmon check results")
    for column in ("dataset", "check", "kind", "status", "value", "threshold", "message"):
        table.add_column(column, overflow="fold")
    for r in results:
        value = "" if r.value is None else f"{r.value:.6g}"
        table.add_row(
            f"{r.pipeline}/{r.dataset}",
            r.check,
            r.kind,
            f"[{_STYLE[r.status]}]{r.status.label}[/]",
            value,
            r.threshold or "",
            r.message,
        )
    Console().print(table)
