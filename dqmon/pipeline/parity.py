"""Online/offline parity: does the online store serve what training would compute, key by key?

Every `every` the link samples N entity keys (from `keys:` or the offline table), reads their
current online values (Redis hashes or a SQL relation), reads the offline history of the same keys
up to the newest online timestamp, matches each online row with the latest offline row at or before
it (dqmon/pipeline/asof.py) and reports, per feature, the share of sampled keys whose values differ
beyond the tolerance; keys the online store does not have count as mismatches. One result per poll
on the (pseudo-)dataset `dataset` (default `online_store`): value = the worst feature's mismatch
rate. Runs on the scheduler: a dead or slow store costs at most its timeout and reports an error.
"""

from __future__ import annotations

import random
from datetime import datetime
from typing import Any

import polars as pl

from dqmon.config.durations import format_duration
from dqmon.config.links import ParitySpec, RedisOnline, SqlOffline
from dqmon.pipeline.asof import ENTITY, OFFLINE_TS, TS, asof_match, compare
from dqmon.pipeline.base import LinkCheck, LinkContext
from dqmon.pipeline.stores import (
    ParquetOfflineStore,
    RedisOnlineStore,
    SqlOfflineStore,
    SqlOnlineStore,
    StoreError,
)
from dqmon.registry import LINK_KINDS
from dqmon.results import CheckResult, Status


@LINK_KINDS.add("parity")
class ParityLink(LinkCheck[ParitySpec]):
    kind = "parity"
    spec_type = ParitySpec

    def __init__(self, spec: ParitySpec, name: str, ctx: LinkContext) -> None:
        super().__init__(spec, name, ctx)
        self.online: RedisOnlineStore | SqlOnlineStore = (
            RedisOnlineStore(spec.online, spec.features)
            if isinstance(spec.online, RedisOnline)
            else SqlOnlineStore(spec.online, spec.entity, spec.features)
        )
        self.offline: SqlOfflineStore | ParquetOfflineStore = (
            SqlOfflineStore(spec.offline, spec.entity, spec.features)
            if isinstance(spec.offline, SqlOffline)
            else ParquetOfflineStore(spec.offline, spec.entity, spec.features, ctx.base_dir)
        )
        self.up: bool | None = None
        self._rng = random.Random()
        self._pool: list[str] = []
        self._pool_at: datetime | None = None

    def observes(self) -> frozenset[str]:
        return frozenset()

    def schedule_seconds(self) -> float | None:
        return self.spec.every.total_seconds()

    def source_up(self) -> bool | None:
        return self.up

    def evaluate(self, now: datetime) -> list[CheckResult]:
        return self.poll(now)

    def close(self) -> None:
        self.online.close()

    def _keys(self, now: datetime) -> list[str]:
        """N keys: from `keys:`, else from a pool of offline keys read at most every `keys_every`
        (listing the distinct keys of a history table is a scan: not once per poll)."""
        pool = self.spec.keys
        if not pool:
            stale = self._pool_at is None or (now - self._pool_at) >= self.spec.keys_every
            if stale or not self._pool:
                self._pool = self.offline.sample_keys(self.spec.key_pool)
                self._pool_at = now
            pool = self._pool
        return self._rng.sample(pool, min(self.spec.sample, len(pool)))

    def poll(self, now: datetime) -> list[CheckResult]:
        spec = self.spec
        threshold = f"mismatch rate <= {spec.max_mismatch_rate:g} per feature"
        try:
            keys = self._keys(now)
            online = self.online.read(keys) if keys else pl.DataFrame()
            until = online.get_column(TS).max() if online.height else None
            offline = self.offline.history(keys, float(until)) if isinstance(until, float) else None
        except StoreError as exc:
            self.up = False
            return [self.error(f"stage {spec.stage_name()}: {exc}")]
        self.up = True
        if not keys:
            return [self.result(Status.OK, None, threshold, "no entity keys to sample yet")]
        if offline is None or online.height == 0:
            return [
                self.result(
                    self.violation,
                    1.0,
                    threshold,
                    f"stage {spec.stage_name()}: none of {len(keys)} sampled keys is in the online store",
                    {"sampled": len(keys), "missing_online": len(keys)},
                )
            ]
        # online values as the offline types (Redis holds strings)
        online = online.with_columns(
            pl.col(f).cast(offline.schema[f], strict=False)
            for f in spec.features
            if offline.schema[f].is_numeric() or offline.schema[f] == pl.Boolean
        )
        matched = asof_match(online, offline, spec.features)
        parity = compare(
            matched,
            spec.features,
            tolerance=spec.tolerance,
            rel_tolerance=spec.rel_tolerance,
            worst=spec.worst_keys,
        )
        return [self._judge(now, keys, matched, parity, threshold)]

    def _judge(
        self, now: datetime, keys: list[str], matched: pl.DataFrame, parity: Any, threshold: str
    ) -> CheckResult:
        spec = self.spec
        missing = len(keys) - matched.height
        rates = {p.feature: (p.mismatches + missing) / len(keys) for p in parity}
        ages = matched.select(
            (pl.col(TS) - pl.col(OFFLINE_TS)).median().alias("gap_p50"),
            (pl.col(TS) - pl.col(OFFLINE_TS)).max().alias("gap_max"),
            (pl.lit(now.timestamp()) - pl.col(TS)).max().alias("online_age_max"),
        ).row(0, named=True)
        details: dict[str, Any] = {
            "stage": spec.stage_name(),
            "sampled": len(keys),
            "missing_online": missing,
            "mismatch_rate": {f: round(r, 6) for f, r in rates.items()},
            "worst_keys": {p.feature: p.worst for p in parity if p.worst},
            "age_gap_seconds": {k: (None if v is None else round(float(v), 3)) for k, v in ages.items()},
        }
        if spec.max_age is not None:
            stale = matched.filter(pl.lit(now.timestamp()) - pl.col(TS) > spec.max_age.total_seconds())
            details["stale_keys"] = stale.get_column(ENTITY).head(spec.worst_keys).to_list()
            # a key the online store no longer updates: judged like a mismatching feature
            rates["(stale)"] = (stale.height + missing) / len(keys)
            details["stale_rate"] = round(rates["(stale)"], 6)
        worst_feature = max(rates, key=lambda f: rates[f])
        value = rates[worst_feature]
        bad = {f: r for f, r in rates.items() if r > spec.max_mismatch_rate}
        if not bad:
            message = (
                f"online store matches offline for {len(keys)} sampled keys "
                f"(worst {worst_feature} {value:.1%})"
            )
            return self.result(Status.OK, value, threshold, message, details)
        stale_rate = bad.pop("(stale)", None)
        parts = []
        if bad:
            listed = ", ".join(f"{f} {r:.1%}" for f, r in sorted(bad.items(), key=lambda kv: -kv[1]))
            worst = max(bad, key=lambda f: bad[f])
            example = next((p.worst[0] for p in parity if p.feature == worst and p.worst), None)
            shown = (
                f"; e.g. key {example['key']}: online {example['online']} vs offline {example['offline']}"
                if example
                else ""
            )
            parts.append(f"values that differ from offline as of the same time: {listed}{shown}")
        if stale_rate is not None and spec.max_age is not None:
            parts.append(f"stale rows (older than {format_duration(spec.max_age)}) for {stale_rate:.1%}")
        message = (
            f"stage {spec.stage_name()} serves {'; and '.join(parts)} "
            f"(of {len(keys)} sampled keys; allowed {spec.max_mismatch_rate:.1%})"
        )
        return self.result(self.violation, value, threshold, message, details)
