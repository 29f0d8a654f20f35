"""Validity rules over columns: not_null, null_rate, range, in_set, regex, unique.

Each rule on each column is its own result (`not_null(trade_id)`), all computed in the
batch's one fused query. Non-finite floats (NaN, ±inf) violate range rules.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl

from dqmon.batch import MicroBatch
from dqmon.checks.base import Check, CheckContext
from dqmon.checks.registry import register
from dqmon.config.checks import RangeBound, ValiditySpec
from dqmon.results import CheckResult, Status


@dataclass(frozen=True)
class Rule:
    rule: str
    column: str
    limit: float  # largest allowed violation ratio
    describe: str

    @property
    def check_name(self) -> str:
        return f"{self.rule}({self.column})"

    @property
    def alias(self) -> str:
        return f"{self.rule}|{self.column}"


def _range_text(bound: RangeBound) -> str:
    parts = []
    for op, sym in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<=")):
        value = getattr(bound, op)
        if value is not None:
            parts.append(f"{sym} {value:g}")
    return " and ".join(parts)


@register
class ValidityCheck(Check[ValiditySpec]):
    kind = "validity"
    spec_type = ValiditySpec

    def __init__(self, spec: ValiditySpec, name: str, ctx: CheckContext) -> None:
        super().__init__(spec, name, ctx)
        tol = spec.max_fail_rate
        rules = [Rule("not_null", c, tol, "no nulls") for c in spec.not_null]
        rules += [Rule("null_rate", c, rate, f"null ratio <= {rate:g}") for c, rate in spec.null_rate.items()]
        rules += [Rule("range", c, tol, _range_text(b)) for c, b in spec.range.items()]
        rules += [Rule("in_set", c, tol, f"in {values}") for c, values in spec.in_set.items()]
        rules += [Rule("regex", c, tol, f"matches {pattern}") for c, pattern in spec.regex.items()]
        rules += [Rule("unique", c, tol, "unique") for c in spec.unique]
        self.rules = rules

    def _name(self, rule: Rule) -> str:
        return rule.check_name if self.spec.name is None else f"{self.name}:{rule.check_name}"

    @staticmethod
    def _type_problem(rule: Rule, schema: pl.Schema) -> str | None:
        """Why a rule cannot run on this batch's column type (None when it can, or it is missing)."""
        dtype = schema.get(rule.column)
        if rule.rule == "range" and dtype is not None and not dtype.is_numeric():
            return f"range needs a numeric column, {rule.column!r} is {dtype}"
        return None

    def _violations(self, rule: Rule, dtype: pl.DataType) -> pl.Expr:
        col = pl.col(rule.column)
        if rule.rule in ("not_null", "null_rate"):
            return col.null_count()
        if rule.rule == "range":
            bound = self.spec.range[rule.column]
            x = col.cast(pl.Float64)
            ok = x.is_finite()
            if bound.gt is not None:
                ok &= x > bound.gt
            if bound.ge is not None:
                ok &= x >= bound.ge
            if bound.lt is not None:
                ok &= x < bound.lt
            if bound.le is not None:
                ok &= x <= bound.le
            return (x.is_not_null() & ~ok).sum()
        if rule.rule == "in_set":
            values = self.spec.in_set[rule.column]
            if (
                all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
                and dtype.is_numeric()
            ):
                member = col.cast(pl.Float64).is_in([float(v) for v in values])
            else:
                member = col.cast(pl.String).is_in([str(v) for v in values])
            return (col.is_not_null() & ~member).sum()
        if rule.rule == "regex":
            matches = col.cast(pl.String).str.contains(self.spec.regex[rule.column])
            return (col.is_not_null() & ~matches).sum()
        present = col.drop_nulls()
        return present.len() - present.n_unique()

    def aggregations(self, schema: pl.Schema) -> Sequence[pl.Expr]:
        return [pl.len().alias("rows")] + [
            self._violations(rule, schema[rule.column]).alias(rule.alias)
            for rule in self.rules
            if rule.column in schema and self._type_problem(rule, schema) is None
        ]

    def finish(self, batch: MicroBatch, aggregates: Mapping[str, Any]) -> list[CheckResult]:
        rows = int(aggregates.get("rows") or 0)
        results = []
        for rule in self.rules:
            name = self._name(rule)
            threshold = f"ratio <= {rule.limit:g}"
            problem = self._type_problem(rule, batch.df.schema)
            if problem is not None:
                results.append(self.result(Status.ERROR, None, None, problem, check=name))
            elif rows == 0:
                results.append(self.result(Status.OK, None, threshold, "empty batch", check=name))
            elif rule.column not in batch.df.columns:
                status = Status.OK if rule.rule == "unique" else self.violation
                results.append(
                    self.result(
                        status,
                        1.0 if status != Status.OK else None,
                        threshold,
                        f"column {rule.column!r} missing from the batch",
                        check=name,
                    )
                )
            else:
                bad = int(aggregates.get(rule.alias) or 0)
                ratio = bad / rows
                details = {"violations": bad, "rows": rows}
                if ratio > rule.limit:
                    message = f"{bad} of {rows} rows violate {rule.rule} ({rule.describe}) on {rule.column}"
                    results.append(
                        self.result(self.violation, ratio, threshold, message, check=name, details=details)
                    )
                else:
                    results.append(
                        self.result(
                            Status.OK,
                            ratio,
                            threshold,
                            f"{bad} of {rows} rows violate",
                            check=name,
                            details=details,
                        )
                    )
        return results
