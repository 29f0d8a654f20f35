"""Replay: a file's rows as micro-batches at the dataset's window pace (demos, backtests, tests)."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from dqmon.batch import MicroBatch
from dqmon.config.models import Dataset, Pipeline
from dqmon.config.models import ReplaySource as ReplayConfig
from dqmon.facts import SourceFacts
from dqmon.registry import SOURCES
from dqmon.sources.base import Source, SourceContext
from dqmon.tables import read_table


@SOURCES.add("replay")
class ReplaySource(Source):
    """Emits `batch_rows` rows per window; after the end, empty windows (or again, with loop)."""

    config_type = ReplayConfig

    @classmethod
    def from_context(cls, ctx: SourceContext) -> ReplaySource:
        return cls(ctx.pipeline, ctx.dataset, ctx.base_dir, clock=ctx.clock)

    def __init__(
        self,
        pipeline: Pipeline,
        dataset: Dataset,
        base_dir: Path,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if not isinstance(dataset.source, ReplayConfig):
            raise TypeError(f"dataset {dataset.name!r} is not a replay source")
        self.pipeline = pipeline.pipeline
        self.dataset = dataset
        self.config: ReplayConfig = dataset.source
        self.path = base_dir / self.config.path
        self.clock = clock
        self.frame: pl.DataFrame | None = None
        self.position = 0
        self.window = max(dataset.window.total_seconds(), 0.001)
        self._window_start: datetime | None = None
        self._error: str | None = None

    def start(self) -> None:
        try:
            self.frame = read_table(self.path, self.config.format)
        except Exception as exc:  # noqa: BLE001 - reported as source down, never a crash
            self._error = f"cannot read replay file {self.path.name}: {type(exc).__name__}"
        self._window_start = self.clock()

    def poll_batch(self, timeout: float) -> MicroBatch | None:
        assert self._window_start is not None, "start() first"
        now = self.clock()
        due = self.window - (now - self._window_start).total_seconds()
        if due > 0:
            time.sleep(min(due, timeout))
            return None
        start, self._window_start = self._window_start, now
        frame = self.frame if self.frame is not None else pl.DataFrame()
        if self.position >= frame.height and self.config.loop:
            self.position = 0
        rows = frame.slice(self.position, self.config.batch_rows)
        self.position += rows.height
        return MicroBatch(self.pipeline, self.dataset.name, rows, start, now, rows.height, rows.height)

    def facts(self) -> SourceFacts:
        return SourceFacts(observed_at=self.clock(), up=self._error is None, error=self._error)

    def close(self) -> None:
        self.frame = None
