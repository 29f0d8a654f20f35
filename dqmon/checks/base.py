"""The check contract: a check contributes aggregations to the batch's one query, then judges them."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import IntEnum
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

import polars as pl

from dqmon.batch import MicroBatch
from dqmon.config.checks import CheckSpec
from dqmon.config.models import Dataset, Pipeline
from dqmon.sources.facts import SourceFacts
from dqmon.state.store import StateStore


class Status(IntEnum):
    """Outcome of one evaluation; the integer is the `dqmon_check_status` gauge value."""

    OK = 0
    WARN = 1
    FAIL = 2
    ERROR = 3

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True)
class CheckResult:
    """One check's verdict on one micro-batch (or on source facts)."""

    pipeline: str
    dataset: str
    check: str
    kind: str
    status: Status
    value: float | None
    threshold: str | None
    message: str
    severity: str = "page"
    slo: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)
    evaluated_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    trace_id: str | None = None

    @property
    def failed(self) -> bool:
        return self.status in (Status.FAIL, Status.ERROR)

    def with_trace(self, trace_id: str | None) -> CheckResult:
        return replace(self, trace_id=trace_id)

    def to_dict(self) -> dict[str, Any]:
        return {
            "pipeline": self.pipeline,
            "dataset": self.dataset,
            "check": self.check,
            "kind": self.kind,
            "status": self.status.label,
            "value": self.value,
            "threshold": self.threshold,
            "message": self.message,
            "severity": self.severity,
            "slo": self.slo,
            "details": dict(self.details),
            "evaluated_at": self.evaluated_at.isoformat(),
            "trace_id": self.trace_id,
        }


def bounds_text(*bounds: tuple[str, object | None]) -> str | None:
    """`>= 10 and <= 20` from (operator, limit) pairs, skipping unset limits; None when all unset."""
    parts = [
        f"{op} {limit:g}" if isinstance(limit, float) else f"{op} {limit}"
        for op, limit in bounds
        if limit is not None
    ]
    return " and ".join(parts) or None


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class CheckContext:
    """What a check may use besides the batch: its config, paths, state and clock."""

    pipeline: Pipeline
    dataset: Dataset
    base_dir: Path
    store: StateStore
    clock: Callable[[], datetime] = utcnow


SpecT = TypeVar("SpecT", bound=CheckSpec)


class Check(ABC, Generic[SpecT]):
    """A configured check. Subclasses set `kind` and `spec_type` and implement `finish`.

    `aggregations` returns expressions the engine fuses into one `select` over the batch;
    `finish` receives their values by output name. Checks that cannot be fused (segmented,
    SQL, GX) return no aggregations and read `batch.df` in `finish`.
    """

    kind: ClassVar[str]
    spec_type: ClassVar[type[CheckSpec]]

    def __init__(self, spec: SpecT, name: str, ctx: CheckContext) -> None:
        self.spec = spec
        self.name = name
        self.ctx = ctx

    def aggregations(self, schema: pl.Schema) -> Sequence[pl.Expr]:
        return ()

    @abstractmethod
    def finish(self, batch: MicroBatch, aggregates: Mapping[str, Any]) -> list[CheckResult]:
        """Turn this check's aggregate values into results; must not raise on bad data."""

    def on_facts(self, facts: SourceFacts, now: datetime) -> list[CheckResult]:
        """Judge source-level facts (lag, silence); most checks have nothing to say."""
        return []

    # ------------------------------------------------------------------ helpers for subclasses
    @property
    def violation(self) -> Status:
        return Status.WARN if self.spec.severity == "warn" else Status.FAIL

    def result(
        self,
        status: Status,
        value: float | None,
        threshold: str | None,
        message: str,
        *,
        check: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> CheckResult:
        if value is not None and not math.isfinite(value):
            details = {**(details or {}), "raw_value": str(value)}
            value = None
        return CheckResult(
            pipeline=self.ctx.pipeline.pipeline,
            dataset=self.ctx.dataset.name,
            check=check or self.name,
            kind=self.kind,
            status=status,
            value=value,
            threshold=threshold,
            message=message,
            severity=self.spec.severity,
            slo=self.spec.slo,
            details=details or {},
            evaluated_at=self.ctx.clock(),
        )

    def error(self, message: str, *, check: str | None = None) -> CheckResult:
        return self.result(Status.ERROR, None, None, message, check=check)

    def state_key(self, *parts: str) -> str:
        return "/".join((self.ctx.pipeline.pipeline, self.ctx.dataset.name, self.name, *parts))
