"""The link contract: a cross-dataset check observes the micro-batches of the datasets it names and
judges them from that state on the runtime's sweep, or reads its own stores on a schedule."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

from dqmon.config.links import LinkSpec
from dqmon.config.models import Pipeline
from dqmon.pipeline.observe import BatchTimes
from dqmon.results import CheckResult, Status, utcnow


@dataclass(frozen=True)
class LinkContext:
    pipeline: Pipeline
    base_dir: Path
    clock: Callable[[], datetime] = utcnow


SpecT = TypeVar("SpecT", bound=LinkSpec)


class LinkCheck(ABC, Generic[SpecT]):
    """A configured link. `observe` is called from the datasets' evaluation threads (keep it cheap and
    thread-safe); `evaluate` from the sweep; scheduled links (`schedule_seconds`) get `poll` instead."""

    kind: ClassVar[str]
    spec_type: ClassVar[type[LinkSpec]]

    def __init__(self, spec: SpecT, name: str, ctx: LinkContext) -> None:
        self.spec = spec
        self.name = name
        self.ctx = ctx

    def observes(self) -> frozenset[str]:
        """Datasets whose batches this link wants."""
        return frozenset(name for _key, name in self.spec.datasets())

    def observe(self, dataset: str, times: BatchTimes) -> None:
        """Fold one micro-batch of `dataset` (`times.batch`) into the link's bounded state."""

    @abstractmethod
    def evaluate(self, now: datetime) -> list[CheckResult]:
        """Judge the state (no I/O); called once per sweep for unscheduled links."""

    def schedule_seconds(self) -> float | None:
        """None: judged by the sweep from batches; else `poll` runs on the scheduler at this interval."""
        return None

    def poll(self, now: datetime) -> list[CheckResult]:
        return self.evaluate(now)

    def source_up(self) -> bool | None:
        """Whether the stores a scheduled link reads answered on its last poll (None: it reads none)."""
        return None

    def close(self) -> None:
        """Release connections."""

    # ------------------------------------------------------------------ helpers
    @property
    def violation(self) -> Status:
        return Status.WARN if self.spec.severity == "warn" else Status.FAIL

    def result(
        self,
        status: Status,
        value: float | None,
        threshold: str | None,
        message: str,
        details: Mapping[str, Any] | None = None,
    ) -> CheckResult:
        if value is not None and not math.isfinite(value):
            details = {**(details or {}), "raw_value": str(value)}
            value = None
        return CheckResult(
            pipeline=self.ctx.pipeline.pipeline,
            dataset=self.spec.result_dataset(),
            check=self.name,
            origin=self.name,
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

    def error(self, message: str) -> CheckResult:
        return self.result(Status.ERROR, None, None, message)
