"""The duplicates check's cross-window state: which key hashes were seen, per partition.

One row per (partition, key hash): the newest record time of the key and the payload hash of
its latest record. Structured by partition because Kafka puts a key on one partition: replicas
that own different partitions hold disjoint states, and `merge` combines them (or two states of
one partition after a hand-over) without losing an answer the single-process state would give.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import polars as pl

from dqmon.checks.streamstate import frame_payload, stored_frame

SCHEMA: dict[str, pl.DataType] = {
    "part": pl.Int32(),
    "h": pl.UInt64(),
    "t": pl.Float64(),
    "ph": pl.UInt64(),
}
# bytes per key in the frame: the estimate reported as the state's memory
ROW_BYTES = 4 + 8 + 8 + 8


def empty_keys() -> pl.DataFrame:
    return pl.DataFrame(schema=SCHEMA)


@dataclass
class DuplicateState:
    """Key hashes with their newest time and latest payload hash; newest record time per partition."""

    keys: pl.DataFrame = field(default_factory=empty_keys)
    newest: dict[int, float] = field(default_factory=dict)
    evicted: int = 0  # keys dropped by the memory bound while still within the horizon (cumulative)
    evicted_until: float | None = None  # newest time among them: answers are exact again past it

    def exact(self, horizon: float) -> bool:
        """No key dropped by the bound could still be within the horizon of any partition."""
        if self.evicted_until is None or not self.newest:
            return self.evicted_until is None
        return self.evicted_until < min(self.newest.values()) - horizon

    @property
    def size(self) -> int:
        return self.keys.height

    @property
    def nbytes(self) -> int:
        return int(self.keys.estimated_size())

    def partitions(self) -> list[int]:
        return sorted(set(self.newest) | set(self.keys["part"].unique().to_list()))

    def partition(self, number: int) -> DuplicateState:
        """The part of the state one partition owns (what a replica hands over)."""
        return DuplicateState(
            self.keys.filter(pl.col("part") == number),
            {p: t for p, t in self.newest.items() if p == number},
        )

    def merge(self, other: DuplicateState) -> DuplicateState:
        """Union of two states: per key the newest time, and the payload of the newer record."""
        keys = (
            pl.concat([self.keys, other.keys])
            .sort("t", maintain_order=True)
            .group_by("part", "h")
            .agg(pl.col("t").max(), pl.col("ph").last())
            .select(list(SCHEMA))
        )
        newest = dict(self.newest)
        for part, at in other.newest.items():
            newest[part] = max(at, newest.get(part, at))
        until = [u for u in (self.evicted_until, other.evicted_until) if u is not None]
        return DuplicateState(keys, newest, self.evicted + other.evicted, max(until, default=None))

    def advance(self, batch_keys: pl.DataFrame, batch_newest: dict[int, float]) -> None:
        """Fold in a batch's keys (one row per key, its newest time, its latest payload hash).

        The batch's few keys are the build side of every join: a group-by over state and batch
        together hashed and copied the whole state each window (~20 MB transient at 60k keys
        for a 1,000-record window); this copies it once."""
        batch_keys = batch_keys.select(list(SCHEMA))
        on = ["part", "h"]
        known = self.keys.join(batch_keys.select(on), on=on, how="semi").select(*on, known_t="t")
        updated = (
            batch_keys.join(known, on=on, how="left")
            .with_columns(t=pl.max_horizontal("t", "known_t"))  # the batch's payload hash: it is later
            .select(list(SCHEMA))
        )
        self.keys = pl.concat([self.keys.join(batch_keys.select(on), on=on, how="anti"), updated])
        for part, at in batch_newest.items():
            self.newest[part] = max(at, self.newest.get(part, at))

    def prune(self, horizon: float) -> None:
        """Forget keys older than the horizon before their partition's newest time.

        No later answer changes: a record is judged against the newest time seen up to it, which
        is never below the newest time at any earlier window end.
        """
        if not self.keys.height:
            return
        cut = pl.col("part").replace_strict(
            {p: t - horizon for p, t in self.newest.items()}, default=None, return_dtype=pl.Float64()
        )
        expired = self.keys.select((pl.col("t") < cut).any()).item()
        if expired:  # one pass to ask, and a copy only when some key leaves
            self.keys = self.keys.filter(cut.is_null() | (pl.col("t") >= cut))

    def bound(self, max_keys: int) -> int:
        """Keep the `max_keys` newest keys; returns how many live keys were dropped."""
        over = self.keys.height - max_keys
        if over <= 0:
            return 0
        ordered = self.keys.sort("t", descending=True)
        dropped = ordered["t"][max_keys]  # the newest of the dropped keys
        self.keys = ordered.head(max_keys)
        self.evicted += over
        self.evicted_until = max(dropped, self.evicted_until or dropped)
        return over

    # ------------------------------------------------------------------ persistence
    def to_json(self) -> dict[str, Any]:
        return frame_payload(
            self.keys,
            newest={str(p): t for p, t in self.newest.items()},
            evicted=self.evicted,
            evicted_until=self.evicted_until,
        )

    @classmethod
    def from_json(cls, stored: Any) -> DuplicateState:
        if not isinstance(stored, dict):
            return cls()
        newest = {int(p): float(t) for p, t in (stored.get("newest") or {}).items()}
        keys = stored_frame(stored, SCHEMA, hashed=True)
        until = stored.get("evicted_until")
        return cls(
            keys if keys is not None else empty_keys(),
            newest,
            int(stored.get("evicted") or 0),
            float(until) if until is not None else None,
        )
