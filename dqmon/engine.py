"""The check engine: all checks of a dataset over one micro-batch, in one fused Polars query.

Each check contributes aggregation expressions; the engine runs them as a single `select`
(one scan of the batch). If the fused query fails (a type error in one check's expression),
each check's expressions are retried alone so one broken check becomes an `error` result
and the others still report. Nothing raised by a check escapes `evaluate`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl
from opentelemetry import trace

from dqmon.batch import MicroBatch
from dqmon.checks.base import Check, CheckContext
from dqmon.checks.registry import build_check
from dqmon.config.models import Dataset, Pipeline
from dqmon.facts import SourceFacts
from dqmon.results import CheckResult, Status, utcnow
from dqmon.state.store import CheckState, MemoryStateStore

log = logging.getLogger(__name__)
tracer = trace.get_tracer("dqmon.engine")
_SEP = "\x1f"
_MAX_PLANS = 8


@dataclass(frozen=True)
class _Plan:
    """One schema's fused query: each check's expressions, the de-duplicated select, the names."""

    exprs: dict[int, dict[str, pl.Expr] | Exception]
    errors: dict[int, Mapping[str, Any] | Exception]
    fused: list[pl.Expr]
    names: dict[int, dict[str, str]]


class DatasetEngine:
    """Evaluates one dataset's configured checks on its micro-batches and source facts."""

    def __init__(
        self,
        pipeline: Pipeline,
        dataset: Dataset,
        *,
        base_dir: Path | None = None,
        store: CheckState | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.pipeline = pipeline
        self.dataset = dataset
        self.ctx = CheckContext(
            pipeline=pipeline,
            dataset=dataset,
            base_dir=base_dir or Path.cwd(),
            store=store or MemoryStateStore(),
            clock=clock,
        )
        self.checks: list[Check[Any]] = [
            build_check(entry.kind, entry.spec, entry.check_name(), self.ctx) for entry in dataset.checks
        ]
        self._plans: dict[tuple[tuple[str, pl.DataType], ...], _Plan] = {}
        # some check's aggregations are not a function of the schema: rebuild the query every batch
        self._volatile = any(not check.cache_aggregations for check in self.checks)

    def evaluate(self, batch: MicroBatch) -> list[CheckResult]:
        """Run every check on the batch; one result or more per check, never an exception."""
        with tracer.start_as_current_span(
            "dqmon.checks",
            attributes={
                "dqmon.pipeline": self.pipeline.pipeline,
                "dqmon.dataset": self.dataset.name,
                "dqmon.rows_sampled": batch.rows_sampled,
                "dqmon.checks": len(self.checks),
            },
        ):
            aggregates = self._aggregate(batch)
            results: list[CheckResult] = []
            for index, check in enumerate(self.checks):
                with tracer.start_as_current_span(
                    f"dqmon.check {check.name}",
                    attributes={"dqmon.check": check.name, "dqmon.check.kind": check.kind},
                ) as span:
                    values = aggregates.get(index)
                    if isinstance(values, Exception):
                        produced = [check.error(f"could not evaluate: {_reason(values)}")]
                    else:
                        produced = self._finish(check, batch, values or {})
                    worst = max((r.status for r in produced), default=Status.OK)
                    span.set_attribute("dqmon.check.status", worst.label)
                    results.extend(produced)
            return results

    def sweep(self, now: datetime, facts: SourceFacts | None = None) -> list[CheckResult]:
        """Checks that judge time and source facts rather than rows: staleness, consumer lag."""
        facts = facts or SourceFacts(observed_at=now)
        results: list[CheckResult] = []
        for check in self.checks:
            try:
                results.extend(check.on_facts(facts, now))
            except Exception as exc:
                log.exception("check %s failed on source facts", check.name)
                results.append(check.error(f"could not evaluate source facts: {_reason(exc)}"))
        return results

    # ------------------------------------------------------------------ internals
    def _plan(self, schema: pl.Schema) -> _Plan:
        """The fused query for this schema: built once per schema, not per batch.

        Building and de-duplicating the expressions (each serialized to find identical ones,
        reference arrays included) is per-batch Python work that only depends on the schema and
        the checks' specs. A check whose `aggregations` depend on anything else sets
        `cache_aggregations = False` and is asked every batch.
        """
        if self._volatile:
            return self._build_plan(schema)
        key = tuple(schema.items())
        plan = self._plans.get(key)
        if plan is None:
            plan = self._build_plan(schema)
            if len(self._plans) >= _MAX_PLANS:  # a schema that changes every batch must not grow this
                self._plans.pop(next(iter(self._plans)))
            self._plans[key] = plan
        return plan

    def _build_plan(self, schema: pl.Schema) -> _Plan:
        exprs = self._expressions(schema)
        errors: dict[int, Mapping[str, Any] | Exception] = {
            i: v for i, v in exprs.items() if isinstance(v, Exception)
        }
        # Identical expressions from different checks (two drift metrics on one column, a
        # not_null and a contract on the same field) are computed once.
        shared: dict[str, str] = {}
        fused: list[pl.Expr] = []
        names: dict[int, dict[str, str]] = {}
        for index, values in exprs.items():
            if isinstance(values, Exception):
                continue
            names[index] = {}
            for local, expr in values.items():
                key = _expression_key(expr)
                if key not in shared:
                    shared[key] = f"{len(shared)}{_SEP}{local}"
                    fused.append(expr.alias(shared[key]))
                names[index][local] = shared[key]
        return _Plan(exprs, errors, fused, names)

    def _expressions(self, schema: pl.Schema) -> dict[int, dict[str, pl.Expr] | Exception]:
        """Each check's aggregations by the output name the check gave them."""
        exprs: dict[int, dict[str, pl.Expr] | Exception] = {}
        for index, check in enumerate(self.checks):
            try:
                exprs[index] = {e.meta.output_name(): e for e in check.aggregations(schema)}
            except Exception as exc:  # noqa: BLE001 - reported as this check's error
                exprs[index] = exc
        return exprs

    def _aggregate(self, batch: MicroBatch) -> dict[int, Mapping[str, Any] | Exception]:
        plan = self._plan(batch.df.schema)
        out = dict(plan.errors)
        if not plan.fused:
            return out
        with tracer.start_as_current_span(
            "dqmon.checks.aggregate", attributes={"dqmon.expressions": len(plan.fused)}
        ):
            try:
                row = _collect(batch.df, plan.fused)
                for index, mapping in plan.names.items():
                    out[index] = {local: row[alias] for local, alias in mapping.items()}
                return out
            except Exception:
                log.debug("fused check query failed; evaluating checks one by one", exc_info=True)
            for index, values in plan.exprs.items():
                if isinstance(values, Exception) or not values:
                    continue
                try:
                    out[index] = _collect(batch.df, [e.alias(local) for local, e in values.items()])
                except Exception as exc:  # noqa: BLE001
                    out[index] = exc
        return out

    def _finish(self, check: Check[Any], batch: MicroBatch, values: Mapping[str, Any]) -> list[CheckResult]:
        try:
            return check.finish(batch, values)
        except Exception as exc:
            log.debug("check %s raised", check.name, exc_info=True)
            return [check.error(f"could not evaluate: {_reason(exc)}")]


def _collect(df: pl.DataFrame, exprs: list[pl.Expr]) -> dict[str, Any]:
    frame = df.lazy().select(exprs).collect(engine="in-memory")
    return {name: frame.get_column(name)[0] if frame.height else None for name in frame.columns}


def _expression_key(expr: pl.Expr) -> str:
    try:
        return expr.meta.undo_aliases().meta.serialize(format="json")
    except Exception:  # noqa: BLE001 - an expression polars cannot serialize is simply not shared
        return f"unshared-{id(expr)}"


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300]}" if text else type(exc).__name__
