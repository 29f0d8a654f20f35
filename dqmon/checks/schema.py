"""Schema: a declared contract, drift against a learned baseline, and the decode-error rate."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import polars as pl

from dqmon.batch import MicroBatch
from dqmon.checks.base import Check, CheckContext
from dqmon.checks.registry import register
from dqmon.checks.timecols import epoch_seconds
from dqmon.columns import is_metadata_column
from dqmon.config.checks import Contract, SchemaSpec
from dqmon.config.loader import load_contract
from dqmon.results import CheckResult, Status


def type_family(dtype: pl.DataType) -> str:
    """Coarse type of a column. JSON gives 1 or 1.0 for the same field, so ints and floats are
    one family `number`; drift means a change of family (number → string), not of width."""
    if dtype == pl.Null:
        return "null"
    if dtype.is_numeric():
        return "number"
    if dtype in (pl.String, pl.Categorical) or isinstance(dtype, pl.Enum):
        return "string"
    if dtype == pl.Boolean:
        return "bool"
    if isinstance(dtype, pl.Datetime):
        return "timestamp"
    if dtype == pl.Date:
        return "date"
    if isinstance(dtype, pl.List | pl.Array):
        return "list"
    if isinstance(dtype, pl.Struct):
        return "struct"
    return str(dtype).lower()


def _text_time(dtype: pl.DataType) -> bool:
    """JSON has no timestamp type: ISO-8601 strings and epoch numbers may carry one (each value's
    parse is then checked, as freshness parses it)."""
    return dtype == pl.String or dtype.is_numeric()


def satisfies(dtype: pl.DataType, declared: str) -> bool:
    """Whether a column's dtype meets a contract type; an all-null column meets any type."""
    if declared == "any" or dtype == pl.Null:
        return True
    if declared == "timestamp" and _text_time(dtype):
        return True
    if declared == "int":
        return dtype.is_integer()
    if declared == "float":
        return dtype.is_float()
    if declared == "number":
        return dtype.is_numeric()
    return type_family(dtype) == declared


@register
class SchemaCheck(Check[SchemaSpec]):
    kind = "schema"
    spec_type = SchemaSpec

    def __init__(self, spec: SchemaSpec, name: str, ctx: CheckContext) -> None:
        super().__init__(spec, name, ctx)
        self.contract: Contract | None = None
        self.contract_error: str | None = None
        if isinstance(spec.contract, Contract):
            self.contract = spec.contract
        elif isinstance(spec.contract, str):
            try:
                self.contract = load_contract(ctx.base_dir / spec.contract)
            except (OSError, ValueError) as exc:
                self.contract_error = f"contract {spec.contract} unreadable: {str(exc).splitlines()[0]}"
        self._baseline_key = self.state_key("schema")
        # {"fields": {name: family}, "drift_since": iso | None}; read once, written on change
        self._baseline: dict[str, Any] | None = ctx.store.get_state(self._baseline_key)

    def aggregations(self, schema: pl.Schema) -> Sequence[pl.Expr]:
        if self.contract is None:
            return ()
        fields = self.contract.fields.items()
        nulls = [
            pl.col(f).null_count().alias(f"null|{f}")
            for f, rule in fields
            if not rule.nullable and f in schema
        ]
        unparseable = [
            (pl.col(f).is_not_null() & ~epoch_seconds(f, schema[f]).is_finite().fill_null(False))
            .sum()
            .alias(f"unparseable|{f}")
            for f, rule in fields
            if rule.type == "timestamp" and f in schema and _text_time(schema[f])
        ]
        return nulls + unparseable

    def finish(self, batch: MicroBatch, aggregates: Mapping[str, Any]) -> list[CheckResult]:
        results = []
        if self.contract_error:
            results.append(self.error(self.contract_error))
        elif self.contract is not None:
            results.append(self._contract(batch, self.contract, aggregates))
        if self.spec.on_drift != "ignore":
            results.append(self._drift(batch))
        results.append(self._decode_errors(batch))
        return results

    def _fields(self, batch: MicroBatch) -> dict[str, pl.DataType]:
        return {n: t for n, t in batch.df.schema.items() if not is_metadata_column(n)}

    def _contract(self, batch: MicroBatch, contract: Contract, counts: Mapping[str, Any]) -> CheckResult:
        if batch.rows_decoded == 0:
            return self.result(Status.OK, 0.0, "0 violations", "empty batch: contract not evaluated")
        fields = self._fields(batch)
        missing = [f for f, rule in contract.fields.items() if rule.required and f not in fields]
        wrong = {
            f: f"{type_family(fields[f])} ({fields[f]}) is not {rule.type}"
            for f, rule in contract.fields.items()
            if f in fields and not satisfies(fields[f], rule.type)
        }
        nulled = {k.removeprefix("null|"): int(n) for k, n in counts.items() if k.startswith("null|") and n}
        unparseable = {
            k.removeprefix("unparseable|"): int(n)
            for k, n in counts.items()
            if k.startswith("unparseable|") and n
        }
        extra = [] if contract.allow_extra_fields else sorted(set(fields) - set(contract.fields))
        problems = []
        if missing:
            problems.append(f"missing required fields: {', '.join(missing)}")
        if wrong:
            problems.append("wrong types: " + "; ".join(f"{f}: {why}" for f, why in wrong.items()))
        if nulled:
            problems.append(
                "nulls in non-nullable fields: " + ", ".join(f"{f} ({n})" for f, n in nulled.items())
            )
        if unparseable:
            problems.append(
                "unparseable timestamps: " + ", ".join(f"{f} ({n})" for f, n in unparseable.items())
            )
        if extra:
            problems.append(f"fields not in contract: {', '.join(extra)}")
        count = len(missing) + len(wrong) + len(nulled) + len(unparseable) + len(extra)
        details = {
            "missing": missing,
            "wrong_type": wrong,
            "nulls": nulled,
            "unparseable_timestamps": unparseable,
            "extra": extra,
        }
        if count:
            return self.result(
                self.violation, float(count), "0 violations", "; ".join(problems), details=details
            )
        return self.result(Status.OK, 0.0, "0 violations", "matches contract", details=details)

    def _drift(self, batch: MicroBatch) -> CheckResult:
        name = f"{self.name}:drift"
        now = self.ctx.clock()
        current = {f: type_family(t) for f, t in self._fields(batch).items()}
        if batch.rows_decoded == 0 or not current:
            return self.result(Status.OK, 0.0, "0 changes", "empty batch: drift not evaluated", check=name)
        stored = self._baseline
        if stored is None:
            self._save(current, None)
            return self.result(
                Status.OK, 0.0, "0 changes", f"learned baseline of {len(current)} fields", check=name
            )
        baseline: dict[str, str] = stored["fields"]
        added = sorted(f for f in current if f not in baseline and current[f] != "null")
        removed = sorted(f for f in baseline if f not in current)
        retyped = {
            f: f"{baseline[f]} → {current[f]}"
            for f in current
            if f in baseline and "null" not in (current[f], baseline[f]) and current[f] != baseline[f]
        }
        changes = len(added) + len(removed) + len(retyped)
        details: dict[str, Any] = {"added": added, "removed": removed, "retyped": retyped}
        if not changes:
            # Fields that were all-null at learning time get their real type when first seen.
            learned = {**baseline, **{f: t for f, t in current.items() if baseline.get(f) == "null"}}
            if learned != baseline or stored.get("drift_since"):
                self._save(learned, None)
            return self.result(
                Status.OK, 0.0, "0 changes", "schema matches baseline", check=name, details=details
            )
        since = stored.get("drift_since") or now.isoformat()
        details["since"] = since
        accept = self.spec.accept_after
        if accept is not None and (now - datetime.fromisoformat(since)) >= accept:
            self._save(current, None)
            return self.result(
                Status.OK,
                float(changes),
                "0 changes",
                f"drifted schema accepted as the new baseline after {accept}",
                check=name,
                details=details,
            )
        if not stored.get("drift_since"):
            self._save(baseline, since)
        parts = []
        if added:
            parts.append(f"added {', '.join(added)}")
        if removed:
            parts.append(f"removed {', '.join(removed)}")
        if retyped:
            parts.append("retyped " + ", ".join(f"{f} ({why})" for f, why in retyped.items()))
        status = Status.FAIL if self.spec.on_drift == "fail" else Status.WARN
        return self.result(
            status,
            float(changes),
            "0 changes",
            "schema drift: " + "; ".join(parts),
            check=name,
            details=details,
        )

    def _save(self, fields: dict[str, str], drift_since: str | None) -> None:
        self._baseline = {"fields": fields, "drift_since": drift_since}
        self.ctx.store.put_state(self._baseline_key, self._baseline)

    def _decode_errors(self, batch: MicroBatch) -> CheckResult:
        name = f"{self.name}:decode_errors"
        errors = batch.decode_error_count
        rate = errors / batch.rows_sampled if batch.rows_sampled else 0.0
        threshold = f"<= {self.spec.max_decode_error_rate:g}"
        details = {"errors": dict(batch.decode_errors), "sampled": batch.rows_sampled}
        if rate > self.spec.max_decode_error_rate:
            reasons = ", ".join(f"{r}: {n}" for r, n in sorted(batch.decode_errors.items()))
            return self.result(
                self.violation,
                rate,
                threshold,
                f"{errors} of {batch.rows_sampled} records undecodable ({reasons})",
                check=name,
                details=details,
            )
        return self.result(
            Status.OK, rate, threshold, f"{errors} undecodable records", check=name, details=details
        )
