"""Online/offline parity, the pure part: point-in-time matching and per-feature comparison.

Online rows (entity, ts, features) are matched with the latest offline row of the same entity at or
before the online row's timestamp (Polars `join_asof`, strategy backward): what training would have
computed for that entity at that moment. Offline rows with the same entity and timestamp are
ambiguous; the last one read wins. Everything is vectorised: no Python loop per key.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import polars as pl

ENTITY = "__entity"
TS = "__ts"
OFFLINE_TS = "__offline_ts"
SUFFIX = "__offline"


def asof_match(online: pl.DataFrame, offline: pl.DataFrame, features: Sequence[str]) -> pl.DataFrame:
    """Online rows with `<feature>__offline` and `__offline_ts` of the matched offline row (null if none).

    Both frames have columns `__entity` (string), `__ts` (Float64 epoch seconds) and the features.
    """
    left = online.select(
        pl.col(ENTITY).cast(pl.String), pl.col(TS).cast(pl.Float64), *[pl.col(f) for f in features]
    )
    right = (
        offline.select(
            pl.col(ENTITY).cast(pl.String),
            pl.col(TS).cast(pl.Float64),
            *[pl.col(f).alias(f + SUFFIX) for f in features],
        )
        .drop_nulls([ENTITY, TS])
        .with_row_index("__order")
        .sort([ENTITY, TS, "__order"])
        .unique([ENTITY, TS], keep="last", maintain_order=True)
        .drop("__order")
        .with_columns(pl.col(TS).alias(OFFLINE_TS))
        .sort(TS)
    )
    indexed = left.with_row_index("__row")
    with_ts = indexed.filter(pl.col(TS).is_not_null()).sort(TS)
    matched = with_ts.join_asof(right, on=TS, by=ENTITY, strategy="backward", check_sortedness=False)
    no_ts = indexed.filter(pl.col(TS).is_null())
    if no_ts.height:
        # an online row without a timestamp cannot be matched point-in-time
        pad = no_ts.with_columns(
            [pl.lit(None, right.schema[c]).alias(c) for c in right.columns if c not in (ENTITY, TS)]
        )
        matched = pl.concat([matched, pad.select(matched.columns)], how="vertical_relaxed")
    return matched.sort("__row").drop("__row")


@dataclass(frozen=True)
class FeatureParity:
    feature: str
    compared: int
    mismatches: int
    # (entity, online, offline, |diff| or None) of the worst keys, bounded
    worst: list[dict[str, Any]] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.mismatches / self.compared if self.compared else 0.0


def compare(
    matched: pl.DataFrame,
    features: Sequence[str],
    *,
    tolerance: float = 0.0,
    rel_tolerance: float = 0.0,
    worst: int = 5,
) -> list[FeatureParity]:
    """Per feature: keys whose online value differs from the as-of offline value.

    A key without an offline row at or before its online timestamp is a mismatch (the online store
    serves something training never saw), as is a null on one side only. Numbers differ when
    |online - offline| > max(tolerance, rel_tolerance * |offline|); other types when unequal.
    """
    out = []
    for feature in features:
        on, off = pl.col(feature), pl.col(feature + SUFFIX)
        numeric = matched.schema[feature].is_numeric() and matched.schema[feature + SUFFIX].is_numeric()
        if numeric:
            diff = (on.cast(pl.Float64) - off.cast(pl.Float64)).abs()
            allowed = pl.max_horizontal(pl.lit(tolerance), off.cast(pl.Float64).abs() * rel_tolerance)
            differs = diff > allowed
        else:
            diff = pl.lit(None, pl.Float64)
            differs = on.cast(pl.String) != off.cast(pl.String)
        no_offline = pl.col(OFFLINE_TS).is_null()
        one_null = on.is_null() != off.is_null()
        bad = (no_offline | one_null | differs.fill_null(False)).alias("bad")
        frame = matched.select(
            pl.col(ENTITY), on.alias("online"), off.alias("offline"), diff.alias("diff"), bad
        ).filter(pl.col("bad"))
        top = frame.sort("diff", descending=True, nulls_last=False).head(worst)
        out.append(
            FeatureParity(
                feature=feature,
                compared=matched.height,
                mismatches=frame.height,
                worst=[
                    {"key": r[ENTITY], "online": r["online"], "offline": r["offline"], "diff": r["diff"]}
                    for r in top.iter_rows(named=True)
                ],
            )
        )
    return out
