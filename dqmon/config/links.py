"""What a pipeline's `links:` accept: cross-dataset check specs, validated like dataset checks.

A link entry is a one-key mapping whose key is the kind (`- latency: {...}`), exactly like a
dataset's checks; which spec model a kind takes is the `spec_type` of the link class registered
for it in `dqmon.registry.LINK_KINDS`, so `dqmon schema` and file:line errors follow the registry.
The specs live here (not in the check modules) so config validation never imports Polars code.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import Field, SecretStr, model_validator

from dqmon.config.base import NAME_PATTERN, StrictModel
from dqmon.config.by_kind import ByKind, KindEntry
from dqmon.config.checks import CheckSpec
from dqmon.config.durations import Duration
from dqmon.registry import LINK_KINDS

if TYPE_CHECKING:
    from dqmon.config.models import Pipeline


class LinkSpec(CheckSpec):
    """Fields every link kind accepts (besides name, severity, slo, notify, for, description)."""

    stage: str | None = Field(
        None, description="the stage between the datasets, named in messages (default: 'up → down')"
    )

    def datasets(self) -> list[tuple[str, str]]:
        """(key, dataset name) of every dataset this link reads, for cross-reference checks."""
        return []

    def result_dataset(self) -> str:
        """The dataset the link's results are reported on."""
        raise NotImplementedError

    def secrets(self) -> list[str]:
        """Secret values (DSNs, URLs) in this link's config, for the log redactor."""
        return []


class PairSpec(LinkSpec):
    upstream: str = Field(description="dataset upstream (e.g. the Kafka topic)")
    downstream: str = Field(description="dataset downstream (e.g. the materialized view); results go here")
    upstream_column: str | None = Field(
        None, description="upstream event-time column (default its event_time)"
    )
    downstream_column: str | None = Field(
        None, description="downstream event-time column (default its event_time)"
    )

    def datasets(self) -> list[tuple[str, str]]:
        return [("upstream", self.upstream), ("downstream", self.downstream)]

    def result_dataset(self) -> str:
        return self.downstream

    def stage_name(self) -> str:
        return self.stage or f"{self.upstream} → {self.downstream}"

    @model_validator(mode="after")
    def _distinct(self) -> PairSpec:
        if self.upstream == self.downstream:
            raise ValueError("upstream and downstream must be different datasets")
        return self


class LatencySpec(PairSpec):
    max_behind: Duration = Field(
        description="largest allowed newest upstream event time - newest downstream event time"
    )


Accumulate = Literal["auto", "snapshot", "increments"]


class ReconcileSpec(PairSpec):
    bin: Duration = Field(timedelta(minutes=1), description="event-time bin width")
    grace: Duration = Field(
        timedelta(minutes=2), description="a bin is compared once it ended this long ago (late data)"
    )
    downstream_count: str | None = Field(
        None, description="downstream column holding each bin's count (an aggregate view); default: rows"
    )
    sum: str | None = Field(None, description="upstream column whose per-bin sum is compared too")
    downstream_sum: str | None = Field(None, description="downstream column of that sum (default: `sum`)")
    tolerance: float = Field(0.0, ge=0, le=1, description="allowed |gap| as a share of the upstream value")
    abs_tolerance: float = Field(0.0, ge=0, description="allowed |gap| in absolute units")
    downstream_mode: Accumulate = Field(
        "auto",
        description="snapshot: each downstream batch is the whole relation (sql without cursor); "
        "increments: batches add up (streams); auto: by source kind",
    )
    judge_bins: int = Field(
        3, ge=1, le=1000, description="newest complete bins judged per evaluation (older gaps age out)"
    )
    max_bins: int = Field(120, ge=2, le=10_000, description="bins of state kept per side (bounded)")

    @model_validator(mode="after")
    def _grace(self) -> ReconcileSpec:
        if self.bin <= timedelta(0):
            raise ValueError("bin must be positive")
        if self.judge_bins > self.max_bins:
            raise ValueError("judge_bins must not exceed max_bins")
        if self.downstream_sum is not None and self.sum is None:
            raise ValueError("downstream_sum needs sum")
        return self


class RedisOnline(StrictModel):
    kind: Literal["redis"]
    url: SecretStr = Field(description="redis://host:port/db, usually ${ENV}; never logged")
    key_prefix: str = Field("", description="hash key = prefix + entity key")
    timestamp_field: str = Field("event_ts", description="hash field with the row's event time")
    socket_timeout: Duration = Field(timedelta(seconds=2))


class SqlOnline(StrictModel):
    kind: Literal["sql"]
    dsn: SecretStr = Field(description="postgresql://... (PostgreSQL, RisingWave, Materialize); never logged")
    relation: str = Field(description="table or view keyed by the entity column")
    timestamp_column: str = Field("event_ts")
    timeout: Duration = Field(timedelta(seconds=5), description="statement timeout")


class SqlOffline(StrictModel):
    kind: Literal["sql"]
    dsn: SecretStr
    table: str = Field(description="history table: one row per entity and event time")
    timestamp_column: str = Field("event_ts")
    timeout: Duration = Field(timedelta(seconds=10), description="statement timeout")
    max_rows: int = Field(100_000, ge=1, description="rows read per poll at most")


class ParquetOffline(StrictModel):
    kind: Literal["parquet"]
    path: str = Field(description="a Parquet file or glob, relative to the checks file")
    timestamp_column: str = Field("event_ts")


class ParitySpec(LinkSpec):
    dataset: str = Field(
        "online_store", pattern=NAME_PATTERN, description="(pseudo-)dataset the results are reported on"
    )
    entity: str = Field(description="entity key column (offline/SQL) — the hash key suffix in Redis")
    features: list[str] = Field(min_length=1, description="feature columns / hash fields compared")
    online: Annotated[RedisOnline | SqlOnline, Field(discriminator="kind")]
    offline: Annotated[SqlOffline | ParquetOffline, Field(discriminator="kind")]
    keys: list[str] = Field(
        default_factory=list, description="entity keys to sample from; default: the offline table's keys"
    )
    sample: int = Field(100, ge=1, le=10_000, description="entity keys read per interval (N)")
    key_pool: int = Field(
        10_000, ge=1, le=1_000_000, description="offline keys kept to sample from (read every keys_every)"
    )
    keys_every: Duration = Field(
        timedelta(minutes=10), description="how often the pool of offline keys is read again"
    )
    every: Duration = Field(timedelta(seconds=30))
    tolerance: float = Field(0.0, ge=0, description="numeric |online - offline| allowed (absolute)")
    rel_tolerance: float = Field(0.0, ge=0, description="… or as a share of |offline|")
    max_mismatch_rate: float = Field(0.0, ge=0, le=1, description="per feature, share of sampled keys")
    max_age: Duration | None = Field(
        None,
        description="online rows older than this (now - their timestamp) are stale; the share of stale "
        "keys is judged against max_mismatch_rate too",
    )
    worst_keys: int = Field(5, ge=0, le=100, description="worst keys listed in details (bounded)")

    def result_dataset(self) -> str:
        return self.dataset

    def secrets(self) -> list[str]:
        stores = (self.online, self.offline)
        return [
            s.get_secret_value()
            for store in stores
            if (s := getattr(store, "url", None) or getattr(store, "dsn", None))
        ]

    def stage_name(self) -> str:
        return self.stage or "online store"


@dataclass(frozen=True)
class LinkEntry(KindEntry):
    """One item of a pipeline's `links:` list: its kind and validated spec."""

    spec: LinkSpec

    def check_name(self) -> str:
        return self.spec.name or self.kind


def _spec_type(link_class: Any) -> type[LinkSpec]:
    spec: type[LinkSpec] = link_class.spec_type
    return spec


LinkEntryField = Annotated[LinkEntry, ByKind(LINK_KINDS, _spec_type, entry=LinkEntry)]


def link_problems(pipeline: Pipeline) -> Iterator[tuple[tuple[Any, ...], str]]:
    """(key path, reason) for links naming unknown datasets or clashing names; fed_by too."""
    names = {d.name: d for d in pipeline.datasets}
    known = ", ".join(sorted(names))
    seen: set[tuple[str, str]] = set()
    for index, entry in enumerate(pipeline.links):
        path: tuple[Any, ...] = ("links", index, entry.kind)
        for key, dataset in entry.spec.datasets():
            if dataset not in names:
                yield (*path, key), f"unknown dataset {dataset!r}; this pipeline's datasets: {known}"
        target = entry.spec.result_dataset()
        name = entry.check_name()
        clash = names.get(target)
        if (target, name) in seen or (
            clash is not None and any(e.check_name() == name for e in clash.checks)
        ):
            yield ("links", index), f"another check of {target} is named {name!r}; give this one `name:`"
        seen.add((target, name))
    graph = {d.name: d.fed_by for d in pipeline.datasets}
    cycle_reported = False  # one problem per checks file is enough to see the cycle
    for d_index, fed in enumerate(pipeline.datasets):
        for f_index, upstream in enumerate(fed.fed_by):
            if upstream not in names or upstream == fed.name:
                why = "itself" if upstream == fed.name else f"unknown dataset {upstream!r}"
                yield ("datasets", d_index, "fed_by", f_index), f"fed_by names {why}; datasets: {known}"
            elif not cycle_reported and fed.name in _upstream_of(upstream, graph):
                cycle_reported = True
                yield ("datasets", d_index, "fed_by", f_index), f"fed_by {upstream!r} makes a cycle"


def _upstream_of(dataset: str, graph: dict[str, list[str]]) -> set[str]:
    seen: set[str] = set()
    stack = list(graph.get(dataset, ()))
    while stack:
        name = stack.pop()
        if name not in seen:
            seen.add(name)
            stack += graph.get(name, ())
    return seen
