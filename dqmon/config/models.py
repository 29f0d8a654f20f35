"""The checks-as-code models: pipelines, datasets, sources, SLOs and alert policy."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from dqmon.config.base import NAME_PATTERN, Severity, StrictModel
from dqmon.config.checks import CheckEntry
from dqmon.config.durations import Duration

# --------------------------------------------------------------------------- sources


class Sampling(StrictModel):
    rate: float = Field(1.0, gt=0, le=1, description="share of records checked, decided before decoding")
    max_rows_per_batch: int = Field(100_000, ge=1, description="cap on sampled records per micro-batch")


class SchemaRegistry(StrictModel):
    url: str = Field(description="Confluent Schema Registry base URL")
    basic_auth: SecretStr | None = Field(None, description="user:password, usually ${ENV}")


ClientValue = str | int | float | bool


class KafkaSource(StrictModel):
    kind: Literal["kafka"]
    topic: str
    format: Literal["json", "avro"] = "json"
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

    @model_validator(mode="after")
    def _avro_needs_registry(self) -> KafkaSource:
        if self.format == "avro" and self.schema_registry is None:
            raise ValueError("format avro needs schema_registry: {url: ...}")
        return self


class SqlSource(StrictModel):
    kind: Literal["sql"]
    dsn: SecretStr = Field(description="postgresql://... DSN, usually ${ENV}; never logged")
    query: str = Field(description="a SELECT; run read-only with a statement timeout")
    every: Duration = Field(timedelta(seconds=30), description="sampling interval")
    timeout: Duration = Field(timedelta(seconds=10), description="statement timeout")
    row_limit: int = Field(100_000, ge=1, le=10_000_000)
    cursor_column: str | None = Field(
        None, description="read only rows with this column greater than the last seen value"
    )


class ReplaySource(StrictModel):
    kind: Literal["replay"]
    path: str = Field(description="NDJSON, Parquet or CSV file, relative to the checks file")
    format: Literal["json", "parquet", "csv"] | None = None
    batch_rows: int = Field(10_000, ge=1)
    loop: bool = False


SourceConfig = Annotated[KafkaSource | SqlSource | ReplaySource, Field(discriminator="kind")]

# --------------------------------------------------------------------------- datasets


class Dataset(StrictModel):
    name: str = Field(pattern=NAME_PATTERN)
    description: str | None = None
    source: SourceConfig
    event_time: str | None = Field(None, description="column holding the event time")
    window: Duration = Field(timedelta(seconds=10), description="micro-batch time window")
    max_rows: int = Field(100_000, ge=1, description="micro-batch size bound")
    checks: list[CheckEntry] = Field(default_factory=list)


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
    notify: list[str] = Field(description="slack:#channel, slack (owner channel), webhook:NAME, log")
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

    @property
    def name(self) -> str:
        return self.pipeline

    def dataset(self, name: str) -> Dataset:
        for dataset in self.datasets:
            if dataset.name == name:
                return dataset
        raise KeyError(name)
