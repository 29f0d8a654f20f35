"""Value types every layer shares: a check's status and its result on one micro-batch.

They sit at the bottom of the dependency graph so telemetry, alerts and the runtime read results
without depending on the Check base class. `Verdicts` is how dataset checks and pipeline links
make them, written once for both.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import IntEnum
from typing import Any, ClassVar, Protocol


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
    # The configured check that produced this result (its `name:`, else its kind) and the part of
    # it this result speaks for (`not_null(id)`, `drift`; None for a check's one main result).
    # Alerts group results and find the check's `for:`/`notify:` by `origin`, never by parsing
    # `check`, whose wording is each check kind's own business.
    origin: str | None = None
    rule: str | None = None

    @property
    def origin_check(self) -> str:
        """The producing check's name (`check` for results built without a link)."""
        return self.origin or self.check

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
            "origin": self.origin_check,
            "rule": self.rule,
        }


class _Judged(Protocol):
    @property
    def severity(self) -> str: ...
    @property
    def slo(self) -> str | None: ...


class _Named(Protocol):
    @property
    def pipeline(self) -> str: ...


class _Scope(Protocol):
    @property
    def pipeline(self) -> _Named: ...
    @property
    def clock(self) -> Callable[[], datetime]: ...


class Verdicts:
    """How a dataset check or a pipeline link says its results: named after it, with its kind,
    severity and SLO, stamped by its clock. A non-finite value (an empty mean, a division by zero)
    is kept as text in details: no gauge or threshold can compare NaN."""

    kind: ClassVar[str]
    name: str
    spec: _Judged
    ctx: _Scope

    def result_dataset(self) -> str:
        raise NotImplementedError

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
        *,
        check: str | None = None,
    ) -> CheckResult:
        """`check`: the part of this check the result speaks for (`name:rule`), else the check itself."""
        if value is not None and not math.isfinite(value):
            details = {**(details or {}), "raw_value": str(value)}
            value = None
        return CheckResult(
            pipeline=self.ctx.pipeline.pipeline,
            dataset=self.result_dataset(),
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
            origin=self.name,
            rule=None if check is None or check == self.name else check.removeprefix(f"{self.name}:"),
        )

    def error(self, message: str, *, check: str | None = None) -> CheckResult:
        return self.result(Status.ERROR, None, None, message, check=check)


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
