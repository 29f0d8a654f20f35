"""Sequence numbers per key across windows: gaps (missing numbers), regressions, repeats.

Per key (`by`, default the whole stream), records are taken in arrival order (the batch's row
order, which is offset order within a Kafka partition); each number is compared with the key's
previous number, in this batch or, for its first record, the last number kept from earlier
windows. A step of +1 is in order, +k (k > 1) is a gap of k - 1 missing numbers, 0 a repeat, a
negative step a regression (the key then continues from the lower number). State: one row per
key (64-bit hash of the `by` values, last number, last window it was seen), at most `max_keys`;
beyond the bound the least recently seen keys are dropped (counted), and a dropped key that comes
back starts afresh.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import polars as pl
from pydantic import Field, field_validator

from dqmon.batch import MicroBatch
from dqmon.checks.base import Check, CheckContext
from dqmon.checks.registry import register
from dqmon.checks.streamstate import HASH_SEED, PERSIST_EVERY_SECONDS, frame_payload, stored_frame
from dqmon.config.checks import CheckSpec
from dqmon.results import CheckResult, Status

STATE_SCHEMA: dict[str, pl.DataType] = {"h": pl.UInt64(), "last": pl.Int64(), "used": pl.Int64()}
WORST_KEYS = 5


class SequenceSpec(CheckSpec):
    column: str = Field(description="integer sequence-number column")
    by: list[str] = Field(default_factory=list, description="key columns; each key has its own sequence")
    max_missing: int = Field(0, ge=0, description="missing numbers tolerated per window")
    max_regressions: int = Field(0, ge=0, description="out-of-order records tolerated per window")
    max_repeats: int = Field(0, ge=0, description="repeated numbers tolerated per window")
    max_keys: int = Field(100_000, ge=1, le=10_000_000, description="keys remembered (LRU beyond)")

    @field_validator("by", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


def sequence_number(column: str, dtype: pl.DataType) -> pl.Expr:
    """Int64 sequence numbers; null for nulls and non-integral floats (counted as unusable)."""
    col = pl.col(column)
    if dtype.is_integer():
        return col.cast(pl.Int64, strict=False)
    if dtype.is_float():
        x = col.cast(pl.Float64)
        return pl.when(x.is_finite() & (x == x.floor())).then(x.cast(pl.Int64, strict=False))
    if dtype == pl.Null:
        return col.cast(pl.Int64)
    raise TypeError(f"sequence column {column!r} is {dtype}; it must hold integers")


def steps(frame: pl.LazyFrame, state: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Per row of `frame` (i = row of the batch, h, s; arrival order, nulls dropped): the step
    from the key's previous number. Returns (i, h, d per row, sorted by key) and the batch's last
    number per key.

    Sorted by (key, arrival) the previous row is the key's previous record: no window function
    over many small key groups (slow in Polars)."""
    same = pl.col("h") == pl.col("h").shift(1)
    marked = (
        frame.join(state.lazy().select("h", "last"), on="h", how="left")
        .sort("h", "i")
        .with_columns(
            d=pl.col("s")
            - pl.when(same.fill_null(False)).then(pl.col("s").shift(1)).otherwise(pl.col("last"))
        )
    )
    out, last = pl.collect_all(
        [marked.select("i", "h", "d"), frame.group_by("h").agg(pl.col("s").last().alias("last"))],
        engine="in-memory",
    )
    return out, last


@register
class SequenceCheck(Check[SequenceSpec]):
    kind = "sequence"
    spec_type = SequenceSpec

    def __init__(self, spec: SequenceSpec, name: str, ctx: CheckContext) -> None:
        super().__init__(spec, name, ctx)
        self._key = self.state_key("last")
        stored = ctx.store.get_state(self._key)
        frame = stored_frame(stored, STATE_SCHEMA, hashed=bool(spec.by))
        self.state = frame if frame is not None else pl.DataFrame(schema=STATE_SCHEMA)
        self.windows = int(stored.get("windows", 0)) if isinstance(stored, dict) else 0
        self.evicted = int(stored.get("evicted", 0)) if isinstance(stored, dict) else 0
        self._persisted_at = ctx.clock().timestamp()

    def finish(self, batch: MicroBatch, aggregates: Mapping[str, Any]) -> list[CheckResult]:
        spec = self.spec
        threshold = f"missing <= {spec.max_missing}, regressions <= {spec.max_regressions}, "
        threshold += f"repeats <= {spec.max_repeats}"
        df = batch.df
        self.windows += 1
        if not df.height:
            return [self.result(Status.OK, None, threshold, "empty batch", details=self._memory())]
        missing = [c for c in (spec.column, *spec.by) if c not in df.columns]
        if missing:
            return [self.result(self.violation, None, threshold, f"columns missing: {', '.join(missing)}")]
        key = pl.struct(spec.by).hash(HASH_SEED) if spec.by else pl.lit(0, pl.UInt64)
        frame = (
            df.lazy()
            .with_row_index("i")
            .select("i", key.alias("h"), sequence_number(spec.column, df.schema[spec.column]).alias("s"))
        )
        usable = frame.filter(pl.col("s").is_not_null())
        out, last = steps(usable, self.state)
        d = out["d"]
        counts = {
            "records": out.height,
            "unusable": df.height - out.height,
            "gaps": int((d > 1).sum()),
            "missing": int((d - 1).filter(d > 1).sum() or 0),
            "regressions": int((d < 0).sum()),
            "repeats": int((d == 0).sum()),
            "new_keys": int(d.null_count()),
        }
        evicted = self._advance(last)
        breaks = counts["gaps"] + counts["regressions"] + counts["repeats"]
        details: dict[str, Any] = {**counts, "evicted_keys": evicted, **self._memory()}
        if breaks and spec.by:
            details["worst_keys"] = self._worst(df, out)
        problems = []
        if counts["missing"] > spec.max_missing:
            problems.append(f"{counts['missing']} numbers missing in {counts['gaps']} gaps")
        if counts["regressions"] > spec.max_regressions:
            problems.append(f"{counts['regressions']} out of order")
        if counts["repeats"] > spec.max_repeats:
            problems.append(f"{counts['repeats']} repeated")
        where = f" of {spec.column}" + (f" by {', '.join(spec.by)}" if spec.by else "")
        if problems:
            message = f"sequence{where}: " + "; ".join(problems)
            return [self.result(self.violation, float(breaks), threshold, message, details=details)]
        message = f"sequence{where}: {counts['missing']} missing, {counts['regressions']} out of order, "
        message += f"{counts['repeats']} repeated in {counts['records']} records"
        return [self.result(Status.OK, float(breaks), threshold, message, details=details)]

    def _worst(self, df: pl.DataFrame, out: pl.DataFrame) -> list[dict[str, Any]]:
        """The keys with the most breaks in this batch, by value (details only, never labels)."""
        d = pl.col("d")
        top = (
            out.lazy()
            .filter(d.is_not_null() & (d != 1))
            .group_by("h")
            .agg(pl.len().alias("breaks"), (d - 1).clip(0).sum().alias("missing"), pl.col("i").first())
            .sort(["breaks", "i"], descending=[True, False])
            .head(WORST_KEYS)
            .collect(engine="in-memory")
        )
        values = df.select(self.spec.by)[top["i"]]
        rows = [
            {**k, "breaks": b, "missing": m}
            for k, b, m in zip(
                values.to_dicts(), top["breaks"].to_list(), top["missing"].to_list(), strict=True
            )
        ]
        return [
            {k: (v if isinstance(v, int | float | bool) else str(v)) for k, v in row.items()} for row in rows
        ]

    def _advance(self, last: pl.DataFrame) -> int:
        """Fold the batch's last numbers in; drop least recently seen keys beyond max_keys."""
        fresh = last.with_columns(used=pl.lit(self.windows, pl.Int64)).select(list(STATE_SCHEMA))
        self.state = pl.concat([self.state.join(fresh, on="h", how="anti"), fresh])
        over = self.state.height - self.spec.max_keys
        if over > 0:
            self.state = self.state.sort(["used", "h"], descending=True).head(self.spec.max_keys)
            self.evicted += over
        now = self.ctx.clock().timestamp()
        if now - self._persisted_at >= PERSIST_EVERY_SECONDS:
            self._persisted_at = now
            payload = frame_payload(self.state, windows=self.windows, evicted=self.evicted)
            self.ctx.store.put_state(self._key, payload)
        return max(over, 0)

    def _memory(self) -> dict[str, Any]:
        return {
            "state_entries": self.state.height,
            "state_bytes": int(self.state.estimated_size()),
            "evicted_keys_total": self.evicted,
        }
