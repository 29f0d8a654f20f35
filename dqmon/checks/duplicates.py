"""Duplicates across windows: the share of records whose key was already seen within a horizon.

A record is a duplicate when an earlier record of its partition (in an earlier window or earlier
in this one) had the same key at a time no older than `horizon` before the newest time seen up to
and including it. Keys are 64-bit hashes of the key columns (`pl.struct(key).hash`), so the
answer is exact within the horizon up to hash collisions (about n²/2⁶⁵: 3·10⁻⁸ at a million keys).
A duplicate whose payload hash equals its key's previous record is an exact re-send; otherwise a
new payload under a known key. State is bounded by `max_keys` (oldest keys dropped first and
counted; the result says the answer is then a lower bound).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import polars as pl
from pydantic import Field, field_validator

from dqmon.batch import MicroBatch
from dqmon.checks.base import Check, CheckContext
from dqmon.checks.duplicates_state import DuplicateState
from dqmon.checks.registry import register
from dqmon.checks.streamstate import (
    HASH_SEED,
    PERSIST_EVERY_SECONDS,
    exceeds,
    partition_expr,
    share,
    time_expr,
)
from dqmon.columns import is_metadata_column
from dqmon.config.checks import CheckSpec
from dqmon.config.durations import Duration, format_duration
from dqmon.results import CheckResult, Status


class DuplicatesSpec(CheckSpec):
    key: list[str] = Field(min_length=1, description="columns identifying a record (one or a list)")
    horizon: Duration = Field(description="how long a key is remembered, in record time")
    time: str | None = Field(
        None, description="record-time column; default the dataset's event_time, else the window end"
    )
    payload: list[str] | None = Field(
        None, description="columns compared to tell exact re-sends apart; default all non-key fields"
    )
    max_rate: float = Field(0.0, ge=0, le=1, description="largest allowed share of duplicate records")
    max_keys: int = Field(
        1_000_000, ge=1, le=50_000_000, description="bound on remembered keys (28 bytes each)"
    )
    persist: bool = Field(
        True, description="write the keys to the state store (at most once a minute) to survive restarts"
    )

    @field_validator("key", "payload", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


def judge(frame: pl.LazyFrame, state: DuplicateState, horizon: float) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Flag each record of `frame` (part, h, t, ph in stream order) against `state`.

    Returns the flags (part, dup, resend per row, in no particular order) and the batch's keys to
    fold into the state. Window functions over millions of tiny key groups are slow in Polars,
    so "earlier records of the same key" is computed on the frame sorted by (part, h, arrival):
    the previous row is the key's previous record, and the newest earlier time is a cumulative
    max over `group * (n + 1) + dense rank of t`, which never crosses into an earlier group.
    Kept apart from the check so tests and the benchmark run exactly what the check runs.
    """
    newest = pl.DataFrame(
        {"part": list(state.newest), "before": list(state.newest.values())},
        schema={"part": pl.Int32(), "before": pl.Float64()},
    )
    rows, keys = pl.collect_all(
        [
            # newest time of the partition up to and including each record (few groups: fast)
            frame.with_row_index("i").with_columns(run=pl.col("t").cum_max().over("part")),
            frame.group_by("part", "h").agg(pl.col("t").max(), pl.col("ph").last()),
        ],
        engine="in-memory",
    )
    # only the state's keys this batch has: the join below builds on them, not on the whole state
    seen = state.keys.join(keys.select("part", "h"), on=["part", "h"], how="semi")
    seen = seen.rename({"t": "st_t", "ph": "st_ph"})
    times = rows["t"].unique().sort()
    same = (pl.col("part") == pl.col("part").shift(1)) & (pl.col("h") == pl.col("h").shift(1))
    width = rows.height + 1
    ordered = (
        rows.lazy()
        .join(newest.lazy(), on="part", how="left")
        .join(seen.lazy(), on=["part", "h"], how="left")
        .sort("part", "h", "i")
        .with_columns(same=same.fill_null(False), rank=pl.col("t").rank("dense").cast(pl.Int64))
        .with_columns(group=(~pl.col("same")).cum_sum().cast(pl.Int64))
        .with_columns(z=pl.col("group") * width + pl.col("rank"))
        .with_columns(
            prev_rank=pl.when(pl.col("same")).then(pl.col("z").cum_max().shift(1) - pl.col("group") * width),
            prev_ph=pl.when(pl.col("same")).then(pl.col("ph").shift(1)).otherwise(pl.col("st_ph")),
            cut=pl.max_horizontal(pl.col("before"), pl.col("run")) - horizon,
        )
        .collect(engine="in-memory")
    )
    batch_prev = times.gather(ordered["prev_rank"] - 1)  # newest earlier time of the key in this batch
    flags = ordered.select(
        "part",
        dup=(pl.max_horizontal(batch_prev, pl.col("st_t")) >= pl.col("cut")).fill_null(False),
        same_payload=(pl.col("ph") == pl.col("prev_ph")).fill_null(False),
    ).select("part", "dup", resend=pl.col("dup") & pl.col("same_payload"))
    return flags, keys


@register
class DuplicatesCheck(Check[DuplicatesSpec]):
    kind = "duplicates"
    spec_type = DuplicatesSpec

    def __init__(self, spec: DuplicatesSpec, name: str, ctx: CheckContext) -> None:
        super().__init__(spec, name, ctx)
        self.time_column = spec.time or ctx.dataset.event_time
        self.horizon = spec.horizon.total_seconds()
        self._key = self.state_key("keys")
        stored = ctx.store.get_state(self._key) if spec.persist else None
        self.state = DuplicateState.from_json(stored)
        self._persisted_at = ctx.clock().timestamp()

    def _records(self, batch: MicroBatch) -> tuple[pl.LazyFrame, pl.Expr, pl.Expr]:
        schema = batch.df.schema
        payload = self.spec.payload
        if payload is None:
            payload = [c for c in schema if c not in self.spec.key and not is_metadata_column(c)]
        payload = [c for c in payload if c in schema]
        t, timed = time_expr(self.time_column, schema, batch.window_end)
        ph = pl.struct(payload).hash(HASH_SEED) if payload else pl.lit(0, pl.UInt64)
        # a record without its whole key identifies nothing: counted apart, never a duplicate
        keyed = pl.all_horizontal(pl.col(c).is_not_null() for c in self.spec.key)
        frame = (
            batch.df.lazy()
            .filter(keyed)
            .select(
                partition_expr(schema).alias("part"),
                pl.struct(self.spec.key).hash(HASH_SEED).alias("h"),
                t.alias("t"),
                ph.alias("ph"),
            )
        )
        return frame, timed, keyed

    def finish(self, batch: MicroBatch, aggregates: Mapping[str, Any]) -> list[CheckResult]:
        threshold = f"rate <= {self.spec.max_rate:g}"
        rows = batch.df.height
        if not rows:
            return [self.result(Status.OK, None, threshold, "empty batch", details=self._memory())]
        missing = [c for c in self.spec.key if c not in batch.df.columns]
        if missing:
            return [
                self.result(self.violation, None, threshold, f"key columns missing: {', '.join(missing)}")
            ]
        frame, timed, keyed = self._records(batch)
        counts = batch.df.select(timed.sum().alias("timed"), keyed.sum().alias("keyed")).row(0, named=True)
        untimed = rows - int(counts["timed"]) if self.time_column else 0
        null_keys, rows = rows - int(counts["keyed"]), int(counts["keyed"])
        flags, keys = judge(frame, self.state, self.horizon)
        dups = int(flags["dup"].sum())
        resends = int(flags["resend"].sum())
        newest = {int(p): float(t) for p, t in keys.group_by("part").agg(pl.col("t").max()).iter_rows()}
        self.state.advance(keys, newest)
        self.state.prune(self.horizon)
        evicted = self.state.bound(self.spec.max_keys)
        self._persist()
        details: dict[str, Any] = {
            "duplicates": dups,
            "exact_resends": resends,
            "changed_payload": dups - resends,
            "rows": rows,
            "null_keys": null_keys,
            "untimed_rows": untimed,
            "evicted_keys": evicted,
            "exact": self.state.exact(self.horizon),
            "evicted_keys_total": self.state.evicted,
            **self._memory(),
        }
        rate = share(dups, rows)
        what = f"{dups} of {rows} records repeat a key seen within {format_duration(self.spec.horizon)}"
        what += f" ({resends} exact re-sends, {dups - resends} with a new payload)"
        if not details["exact"]:
            what += f"; a lower bound: keys within the horizon were dropped by max_keys {self.spec.max_keys}"
        status = self.violation if exceeds(dups, rows, self.spec.max_rate) else Status.OK
        return [self.result(status, rate, threshold, what, details=details)]

    def _memory(self) -> dict[str, Any]:
        return {
            "state_entries": self.state.size,
            "state_bytes": self.state.nbytes,
            "partitions": len(self.state.newest),
        }

    def _persist(self) -> None:
        now = self.ctx.clock().timestamp()
        if self.spec.persist and now - self._persisted_at >= PERSIST_EVERY_SECONDS:
            self._persisted_at = now
            self.ctx.store.put_state(self._key, self.state.to_json())
