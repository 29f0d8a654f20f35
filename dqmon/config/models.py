"""The checks-as-code models: pipelines, datasets, sources, SLOs and alert policy."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from dqmon.config.base import NAME_PATTERN, NotifyTarget, Severity, StrictModel
from dqmon.config.by_kind import ByKind
from dqmon.config.checks import CheckEntryField
from dqmon.config.durations import Duration
from dqmon.config.links import LinkEntryField
from dqmon.registry import DECODERS, SOURCES
from dqmon.secrets import is_secret_key

# --------------------------------------------------------------------------- sources


class Sampling(StrictModel):
    rate: float = Field(1.0, gt=0, le=1, description="share of records checked, decided before decoding")
    max_rows_per_batch: int = Field(100_000, ge=1, description="cap on sampled records per micro-batch")


class SchemaRegistry(StrictModel):
    url: str = Field(description="Confluent Schema Registry base URL")
    basic_auth: SecretStr | None = Field(None, description="user:password, usually ${ENV}")


ClientValue = str | int | float | bool


class SourceSpec(StrictModel):
    """Fields every source kind has; the kind's registered Source class names its subclass."""

    kind: str

    def secrets(self) -> list[str]:
        """Secret values in this source's config, so the log redactor can scrub them anywhere."""
        return []


class KafkaSource(SourceSpec):
    kind: Literal["kafka"]
    topic: str
    format: str = Field("json", description="a registered decoder: json, avro, protobuf, json_schema")
    bootstrap_servers: str | None = Field(None, description="defaults to DQMON_KAFKA_BOOTSTRAP_SERVERS")
    mode: Literal["group", "assign"] = Field(
        "group", description="group: replicas share partitions in dqmon's own group; assign: read all"
    )
    group_id: str | None = Field(None, description="dqmon's own group; default dqmon.<pipeline>.<dataset>")
    start: str = Field("latest", description="latest, earliest, or an ISO-8601 timestamp")
    sample: Sampling = Field(default_factory=Sampling)
    headers: list[str] = Field(default_factory=list, description="message headers copied into columns")
    consumer_groups: list[str] = Field(
        default_factory=list, description="the pipeline's own groups whose lag is reported (read only)"
    )
    schema_registry: SchemaRegistry | None = None
    client: dict[str, ClientValue] = Field(
        default_factory=dict, description="librdkafka settings (security.protocol, sasl.*, ssl.*)"
    )

    @field_validator("start")
    @classmethod
    def _start(cls, value: str) -> str:
        if value in ("latest", "earliest"):
            return value
        try:
            datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError("start must be latest, earliest or an ISO-8601 timestamp") from None
        return value

    def secrets(self) -> list[str]:
        values = [str(v) for k, v in self.client.items() if is_secret_key(k)]
        if self.schema_registry and self.schema_registry.basic_auth:
            values.append(self.schema_registry.basic_auth.get_secret_value())
        return values

    @field_validator("format")
    @classmethod
    def _registered_format(cls, value: str) -> str:
        DECODERS.get(value)  # UnknownKind (a ValueError) lists the valid formats
        return value

    @model_validator(mode="after")
    def _registry_when_needed(self) -> KafkaSource:
        if DECODERS.get(self.format).needs_schema_registry and self.schema_registry is None:
            raise ValueError(f"format {self.format} needs schema_registry: {{url: ...}}")
        return self


_SQL_NAME = r"^[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)?$"
SqlSampleMethod = Literal["system", "bernoulli", "key_ranges", "cursor", "full", "first"]
_BLOCK_METHODS = ("system", "bernoulli")


class SqlSample(StrictModel):
    """How a poll picks its rows (docs/sql-source.md has each method's statements and cost)."""

    method: SqlSampleMethod = Field(
        description="system/bernoulli: TABLESAMPLE of `relation` (PostgreSQL); key_ranges: short index "
        "range scans at random points of `key`; cursor: rows newer than the last `column` value; "
        "full: the whole relation (small views only); first: the query's first rows (cheap, not fair)"
    )
    percent: float | None = Field(
        None, gt=0, le=100, description="system/bernoulli: share sampled; default from the catalog estimate"
    )
    key: str | None = Field(None, description="key_ranges: an indexed numeric, date or timestamp column")
    ranges: int = Field(20, ge=1, le=1000, description="key_ranges: range scans per poll")
    column: str | None = Field(None, description="cursor: the increasing, indexed column")
    seed: int | None = Field(None, description="random start points and TABLESAMPLE seeds (tests)")

    @model_validator(mode="after")
    def _fields_of_method(self) -> SqlSample:
        if self.percent is not None and self.method not in _BLOCK_METHODS:
            raise ValueError(f"percent applies to system and bernoulli, not {self.method}")
        if (self.key is None) == (self.method == "key_ranges"):
            raise ValueError("key is required by key_ranges and only used by it")
        if (self.column is None) == (self.method == "cursor"):
            raise ValueError("column is required by cursor and only used by it")
        return self


class SqlSource(SourceSpec):
    kind: Literal["sql"]
    dsn: SecretStr = Field(description="postgresql://... DSN, usually ${ENV}; never logged")
    relation: str | None = Field(
        None, pattern=_SQL_NAME, description="table or (materialized) view, [schema.]name, quoted as given"
    )
    columns: list[str] = Field(default_factory=list, description="columns of `relation`; default all")
    query: str | None = Field(None, description="a SELECT instead of relation; run as a subquery")
    every: Duration = Field(timedelta(seconds=30), description="sampling interval")
    timeout: Duration = Field(timedelta(seconds=10), description="statement timeout of every statement")
    row_limit: int = Field(100_000, ge=1, le=10_000_000)
    cursor_column: str | None = Field(None, description="shorthand for sample: {method: cursor, column: ...}")
    sample: SqlSample | None = Field(
        None, description="default: cursor with cursor_column, system with relation, first with query"
    )
    volume: Literal["auto", "catalog", "count_query", "cursor", "rows_read"] = Field(
        "auto", description="where rows_seen comes from; auto: count_query, cursor, catalog, rows_read"
    )
    count_query: str | None = Field(None, description="a SELECT returning the row count (one value)")
    freshness: Literal["aggregate", "sample"] = Field(
        "aggregate", description="aggregate: max() in its own statement; sample: newest row of the sample"
    )
    freshness_column: str | None = Field(
        None, description="max() of it is the newest record time; default: event_time or the cursor column"
    )
    freshness_query: str | None = Field(None, description="a SELECT returning the newest time instead")

    @property
    def method(self) -> SqlSampleMethod:
        return self.sampling.method

    @property
    def sampling(self) -> SqlSample:
        """The effective sample settings, with the defaults filled in."""
        if self.sample is not None:
            return self.sample
        if self.cursor_column is not None:
            return SqlSample(method="cursor", column=self.cursor_column)
        return SqlSample(method="system" if self.relation is not None else "first")

    @property
    def volume_basis(self) -> str:
        if self.volume != "auto":
            return self.volume
        if self.count_query is not None:
            return "count_query"
        if self.method == "cursor":
            return "cursor"
        return "catalog" if self.relation is not None and self.method != "full" else "rows_read"

    @model_validator(mode="after")
    def _consistent(self) -> SqlSource:
        if (self.relation is None) == (self.query is None):
            raise ValueError("give exactly one of relation (a table or view name) and query")
        if self.columns and self.relation is None:
            raise ValueError("columns selects from relation; a query names its own columns")
        if self.cursor_column is not None and self.sample is not None:
            raise ValueError("cursor_column is shorthand for sample: {method: cursor}; give one of them")
        method = self.method
        if method in _BLOCK_METHODS and self.relation is None:
            raise ValueError(
                f"sample method {method} needs relation: TABLESAMPLE applies to a table or materialized "
                "view, not to a query"
            )
        needed = self.sampling.column or self.sampling.key
        if self.columns and needed is not None and needed not in self.columns:
            raise ValueError(f"columns must include {needed!r}: the sample method reads it back")
        if self.volume == "catalog" and self.relation is None:
            raise ValueError("volume catalog reads the catalog estimate of relation; give relation")
        if self.volume == "cursor" and method != "cursor":
            raise ValueError("volume cursor counts the rows a cursor read; use sample method cursor")
        if (self.volume == "count_query") != (self.count_query is not None) and self.volume != "auto":
            raise ValueError("volume count_query and count_query go together")
        if self.freshness_column is not None and self.freshness_query is not None:
            raise ValueError("give freshness_column or freshness_query, not both")
        if self.freshness == "sample" and (self.freshness_column or self.freshness_query):
            raise ValueError("freshness sample reads the sample; freshness_column/_query need aggregate")
        return self

    def secrets(self) -> list[str]:
        return [self.dsn.get_secret_value()]


class ReplaySource(SourceSpec):
    kind: Literal["replay"]
    path: str = Field(description="NDJSON, Parquet or CSV file, relative to the checks file")
    format: Literal["json", "parquet", "csv"] | None = None
    batch_rows: int = Field(10_000, ge=1)
    loop: bool = False


def _config_type(source_class: Any) -> type[SourceSpec]:
    config: type[SourceSpec] = source_class.config_type
    return config


# The model of `source:` is the config type of the Source class its kind names in the registry.
SourceConfig = Annotated[SourceSpec, ByKind(SOURCES, _config_type)]

# --------------------------------------------------------------------------- datasets


class Dataset(StrictModel):
    name: str = Field(pattern=NAME_PATTERN)
    description: str | None = None
    source: SourceConfig
    event_time: str | None = Field(None, description="column holding the event time")
    window: Duration = Field(timedelta(seconds=10), description="micro-batch time window")
    max_rows: int = Field(100_000, ge=1, description="micro-batch size bound")
    checks: list[CheckEntryField] = Field(default_factory=list)
    fed_by: list[str] = Field(
        default_factory=list,
        description="upstream datasets of this pipeline: while one is stale, this dataset's symptom "
        "alerts go into the upstream alert's thread as consequences",
    )


# --------------------------------------------------------------------------- SLOs and alerts


class BurnRateWindow(StrictModel):
    long: Duration
    short: Duration
    factor: float = Field(gt=0)
    severity: Severity = "page"


def default_burn_windows() -> list[BurnRateWindow]:
    """The SRE workbook's multiwindow, multi-burn-rate pairs for a 30-day budget."""
    hour = timedelta(hours=1)
    return [
        BurnRateWindow(long=hour, short=timedelta(minutes=5), factor=14.4, severity="page"),
        BurnRateWindow(long=6 * hour, short=timedelta(minutes=30), factor=6.0, severity="page"),
        BurnRateWindow(long=24 * hour, short=2 * hour, factor=3.0, severity="warn"),
        BurnRateWindow(long=72 * hour, short=6 * hour, factor=1.0, severity="warn"),
    ]


class Slo(StrictModel):
    name: str = Field(pattern=NAME_PATTERN)
    objective: float = Field(gt=0, lt=100, description="percent of evaluation windows that pass")
    window: Duration = Field(timedelta(days=28), description="the SLO period")
    description: str | None = None
    burn_rates: list[BurnRateWindow] = Field(default_factory=default_burn_windows)


MatchKey = Literal["pipeline", "dataset", "check", "kind", "severity", "slo"]


class Route(StrictModel):
    match: dict[MatchKey, str] = Field(default_factory=dict, description="all must equal; empty matches all")
    notify: list[NotifyTarget] = Field(
        description="slack:#channel, slack (owner channel), webhook:NAME, pagerduty, log"
    )
    continue_: bool = Field(False, alias="continue", description="keep matching later routes")


class Silence(StrictModel):
    match: dict[MatchKey, str] = Field(default_factory=dict)
    starts: datetime | None = None
    ends: datetime | None = None
    reason: str

    @model_validator(mode="after")
    def _order(self) -> Silence:
        if self.starts and self.ends and self.ends <= self.starts:
            raise ValueError("ends must be after starts")
        return self


class FlapPolicy(StrictModel):
    clear: Duration | None = Field(
        None,
        description="a firing alert resolves only after its check passed this long (hysteresis "
        "against flapping); default two windows of the alert's dataset",
    )
    # accepted so existing checks files still load; flap detection no longer counts transitions
    window: Duration | None = Field(None, description="deprecated and ignored (see clear)")
    max_transitions: int | None = Field(None, ge=2, description="deprecated and ignored (see clear)")


class AlertPolicy(StrictModel):
    for_: Duration = Field(timedelta(0), alias="for", description="default time failing before firing")
    repeat_interval: Duration = Field(timedelta(hours=4), description="re-notify a still-firing alert")
    send_resolved: bool = True
    flap: FlapPolicy = Field(default_factory=FlapPolicy)
    group_by: Literal["alert", "pipeline"] = Field(
        "alert",
        description="alert: one Slack thread per alert; pipeline: one thread per pipeline incident, "
        "opened by the first alert, closed when the last resolves",
    )
    routes: list[Route] = Field(
        default_factory=list, description="first match wins unless continue; default: the owner channel"
    )
    silences: list[Silence] = Field(default_factory=list)


# --------------------------------------------------------------------------- pipelines


class Pipeline(StrictModel):
    pipeline: str = Field(pattern=NAME_PATTERN, description="the data product's name")
    owner: str | None = Field(None, description="the owning team's Slack channel, e.g. #ml-platform-alerts")
    description: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    grafana_url: str | None = Field(None, description="dashboard base URL for alert links")
    slos: list[Slo] = Field(default_factory=list)
    alerts: AlertPolicy = Field(default_factory=AlertPolicy)
    datasets: list[Dataset] = Field(min_length=1)
    links: list[LinkEntryField] = Field(
        default_factory=list,
        description="checks across datasets: latency, reconcile, parity (docs/pipelines.md)",
    )

    @property
    def name(self) -> str:
        return self.pipeline

    def dataset(self, name: str) -> Dataset:
        for dataset in self.datasets:
            if dataset.name == name:
                return dataset
        raise KeyError(name)
