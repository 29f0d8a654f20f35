"""The check contract: a check contributes aggregations to the batch's one query, then judges them."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

import polars as pl

from dqmon.batch import MicroBatch
from dqmon.config.checks import CheckSpec
from dqmon.config.models import Dataset, Pipeline
from dqmon.facts import SourceFacts
from dqmon.results import CheckResult, Verdicts, utcnow
from dqmon.state.store import CheckState


@dataclass(frozen=True)
class CheckContext:
    """What a check may use besides the batch: its config, paths, state and clock."""

    pipeline: Pipeline
    dataset: Dataset
    base_dir: Path
    store: CheckState
    clock: Callable[[], datetime] = utcnow


SpecT = TypeVar("SpecT", bound=CheckSpec)


class Check(Verdicts, ABC, Generic[SpecT]):
    """A configured check. Subclasses set `kind` and `spec_type` and implement `finish`.

    `aggregations` returns expressions the engine fuses into one `select` over the batch;
    `finish` receives their values by output name. Checks that cannot be fused (segmented,
    SQL, GX) return no aggregations and read `batch.df` in `finish`.
    """

    kind: ClassVar[str]
    spec_type: ClassVar[type[CheckSpec]]
    # The engine builds the fused query once per batch schema: `aggregations` must depend only on
    # the schema and the spec. A check whose expressions change with its state sets this False.
    cache_aggregations: ClassVar[bool] = True

    def __init__(self, spec: SpecT, name: str, ctx: CheckContext) -> None:
        self.spec: SpecT = spec
        self.name = name
        self.ctx: CheckContext = ctx

    def aggregations(self, schema: pl.Schema) -> Sequence[pl.Expr]:
        return ()

    @abstractmethod
    def finish(self, batch: MicroBatch, aggregates: Mapping[str, Any]) -> list[CheckResult]:
        """Turn this check's aggregate values into results; must not raise on bad data."""

    def on_facts(self, facts: SourceFacts, now: datetime) -> list[CheckResult]:
        """Judge source-level facts (lag, silence); most checks have nothing to say."""
        return []

    def result_dataset(self) -> str:
        return self.ctx.dataset.name

    def state_key(self, *parts: str) -> str:
        return "/".join((self.ctx.pipeline.pipeline, self.ctx.dataset.name, self.name, *parts))
