"""Validity rules over columns: not_null, null_rate, range, in_set, regex, unique.

Each rule on each column is its own result (`not_null(trade_id)`), all computed in the batch's
one fused query, and each is independent: a rule whose expression cannot run on this batch's
column type is that rule's `error`, never the others'. Denominators: not_null and null_rate
count over all rows; range, in_set, regex and unique over the rows where the column is not null
(a burst of nulls must not dilute the share of bad values; nulls are not_null's business). An
all-null column (dtype Null) has no values to violate range, in_set or regex. Non-finite floats
(NaN, ±inf) violate range rules. Thresholds compare counts (`exceeds`), so `max_fail_rate: 0.1`
accepts exactly 10% whatever float error the share carries. `unique` is per window; `duplicates`
checks keys across windows.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl

from dqmon.batch import MicroBatch
from dqmon.checks.base import Check, CheckContext
from dqmon.checks.registry import register
from dqmon.checks.streamstate import exceeds
from dqmon.config.checks import RangeBound, Scalar, ValiditySpec
from dqmon.results import CheckResult, Status

#: rules whose share is over non-null rows; the others' is over all rows
NON_NULL_RULES = frozenset({"range", "in_set", "regex", "unique"})


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


def _text(value: Scalar) -> str:
    """A set value as a string column compares it: strings as they are, others as YAML/JSON wrote them."""
    return value if isinstance(value, str) else json.dumps(value)


def membership(column: str, dtype: pl.DataType, values: Sequence[Scalar]) -> pl.Expr:
    """`is_in` on typed values: booleans with booleans, numbers with numbers (1 == 1.0), strings
    with the text of every value. Raises TypeError when the set has no value of the column's type."""
    col = pl.col(column)
    if dtype == pl.Boolean:
        flags = [v for v in values if isinstance(v, bool)]
        if not flags:
            raise TypeError(
                f"in_set on Boolean column {column!r} needs true/false values, got {list(values)}"
            )
        return col.is_in(flags)
    if dtype.is_numeric():
        numbers = [float(v) for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
        if not numbers:
            problem = f"in_set on numeric column {column!r} has no numbers in {list(values)}"
            raise TypeError(problem + " (write numbers unquoted)")
        return col.cast(pl.Float64).is_in(numbers)
    return col.cast(pl.String).is_in([_text(v) for v in values])


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
        # why a rule cannot run on a column type, by (rule alias, dtype): found once per type
        self._problems: dict[tuple[str, pl.DataType], str | None] = {}

    def _name(self, rule: Rule) -> str:
        return rule.check_name if self.spec.name is None else f"{self.name}:{rule.check_name}"

    def _violations(self, rule: Rule, dtype: pl.DataType) -> pl.Expr:
        col = pl.col(rule.column)
        if rule.rule in ("not_null", "null_rate"):
            return col.null_count()
        if dtype == pl.Null:
            return pl.lit(0, pl.UInt32)  # nothing to violate: every value is null
        if rule.rule == "range":
            if not dtype.is_numeric():
                raise TypeError(f"range needs a numeric column, {rule.column!r} is {dtype}")
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
            member = membership(rule.column, dtype, self.spec.in_set[rule.column])
            return (col.is_not_null() & ~member).sum()
        if rule.rule == "regex":
            matches = col.cast(pl.String).str.contains(self.spec.regex[rule.column])
            return (col.is_not_null() & ~matches).sum()
        present = col.drop_nulls()
        return present.len() - present.n_unique()

    def _problem(self, rule: Rule, schema: pl.Schema) -> str | None:
        """Why this rule cannot run on the batch's column type (None when it can or it is missing).

        The rule's expression is tried on an empty frame of the batch's schema, once per type, so
        a type error is this rule's alone instead of failing the check's whole query."""
        dtype = schema.get(rule.column)
        if dtype is None:
            return None
        key = (rule.alias, dtype)
        if key not in self._problems:
            try:
                pl.DataFrame(schema={rule.column: dtype}).select(self._violations(rule, dtype))
                self._problems[key] = None
            except Exception as exc:  # noqa: BLE001 - reported as this rule's error
                self._problems[key] = (
                    str(exc).strip().splitlines()[0][:300] if str(exc).strip() else repr(exc)
                )
        return self._problems[key]

    def aggregations(self, schema: pl.Schema) -> Sequence[pl.Expr]:
        exprs = [pl.len().alias("rows")]
        counted: set[str] = set()
        for rule in self.rules:
            if rule.column not in schema or self._problem(rule, schema) is not None:
                continue
            exprs.append(self._violations(rule, schema[rule.column]).alias(rule.alias))
            if rule.rule in NON_NULL_RULES and rule.column not in counted:
                counted.add(rule.column)
                exprs.append(pl.col(rule.column).count().alias(f"non_null|{rule.column}"))
        return exprs

    def finish(self, batch: MicroBatch, aggregates: Mapping[str, Any]) -> list[CheckResult]:
        rows = int(aggregates.get("rows") or 0)
        return [self._judge(rule, batch, rows, aggregates) for rule in self.rules]

    def _judge(self, rule: Rule, batch: MicroBatch, rows: int, aggregates: Mapping[str, Any]) -> CheckResult:
        name = self._name(rule)
        threshold = f"ratio <= {rule.limit:g}"
        problem = self._problem(rule, batch.df.schema)
        if problem is not None:
            return self.result(Status.ERROR, None, None, problem, check=name)
        if rows == 0:
            return self.result(Status.OK, None, threshold, "empty batch", check=name)
        if rule.column not in batch.df.columns:
            status = Status.OK if rule.rule == "unique" else self.violation
            value = 1.0 if status != Status.OK else None
            return self.result(
                status, value, threshold, f"column {rule.column!r} missing from the batch", check=name
            )
        bad = int(aggregates.get(rule.alias) or 0)
        over = (
            rows if rule.rule not in NON_NULL_RULES else int(aggregates.get(f"non_null|{rule.column}") or 0)
        )
        unit = "rows" if rule.rule not in NON_NULL_RULES else "non-null values"
        details = {"violations": bad, "rows": rows, "denominator": over}
        if over == 0:
            return self.result(
                Status.OK, 0.0, threshold, f"no non-null values of {rule.column}", check=name, details=details
            )
        ratio = bad / over
        if exceeds(bad, over, rule.limit):
            message = f"{bad} of {over} {unit} violate {rule.rule} ({rule.describe}) on {rule.column}"
            return self.result(self.violation, ratio, threshold, message, check=name, details=details)
        return self.result(
            Status.OK, ratio, threshold, f"{bad} of {over} {unit} violate", check=name, details=details
        )
