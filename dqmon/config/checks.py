"""Check specifications: what each check kind accepts in a checks file.

A check entry in YAML is a one-key mapping, the key being the kind:
`- freshness: {max_lag: 30s}`. `CheckEntry` holds its kind and spec; which spec model a kind
takes is the `spec_type` of the check class registered for it (dqmon.registry.CHECK_KINDS).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from dqmon.config.base import NAME_PATTERN, NotifyTarget, Severity, StrictModel
from dqmon.config.by_kind import ByKind, KindEntry
from dqmon.config.durations import Duration, parse_duration
from dqmon.registry import CHECK_KINDS


class CheckSpec(StrictModel):
    """Fields every check kind accepts."""

    name: Annotated[str | None, Field(pattern=NAME_PATTERN)] = None
    severity: Severity = Field("page", description="warn: status warn on violation; page: status fail")
    slo: str | None = Field(None, description="name of a pipeline SLO this check counts towards")
    notify: list[NotifyTarget] = Field(
        default_factory=list,
        description="routes overriding the pipeline's: slack:#channel, webhook:NAME, pagerduty[:NAME], log",
    )
    for_: Duration | None = Field(None, alias="for", description="must fail this long before an alert fires")
    description: str | None = None


class FreshnessSpec(CheckSpec):
    column: str | None = Field(None, description="event-time column; defaults to the dataset's event_time")
    max_lag: Duration = Field(description="largest allowed now - event time")
    stat: Literal["newest", "p99", "max"] = Field(
        "p99", description="which lag is compared: newest record, 99th percentile, or oldest record"
    )
    max_ingest_lag: Duration | None = Field(
        None, description="largest allowed p99 of ingest (Kafka) time - event time"
    )
    max_silence: Duration | None = Field(
        None, description="stale when no record arrived for this long (default: max_lag)"
    )


class Anomaly(StrictModel):
    method: Literal["mad"] = "mad"
    sensitivity: float = Field(4.0, gt=0, description="robust z-score beyond which a count is anomalous")
    min_history: int = Field(20, ge=3, description="windows of history needed before it may fire")
    history: int = Field(2016, ge=10, le=100_000, description="windows of history kept")
    seasonality: Literal["none", "hour_of_day", "hour_of_week"] = "none"
    direction: Literal["both", "low", "high"] = "both"


class VolumeSpec(CheckSpec):
    min: int | None = Field(None, ge=0, description="fewest rows per window")
    max: int | None = Field(None, ge=0, description="most rows per window")
    count: Literal["auto", "seen", "sampled", "produced"] = Field(
        "auto", description="which count: produced (broker watermarks) when known, else seen"
    )
    anomaly: Anomaly | None = None

    @model_validator(mode="after")
    def _bounds(self) -> VolumeSpec:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("min must not exceed max")
        if self.min is None and self.max is None and self.anomaly is None:
            raise ValueError("give min, max or anomaly")
        return self


FieldType = Literal["string", "int", "float", "number", "bool", "timestamp", "date", "list", "struct", "any"]


class ContractField(StrictModel):
    type: FieldType = "any"
    required: bool = True
    nullable: bool = True


class Contract(StrictModel):
    fields: dict[str, ContractField]
    allow_extra_fields: bool = True


class SchemaSpec(CheckSpec):
    contract: str | Contract | None = Field(
        None, description="a contract file (JSON or YAML, relative to the checks file) or an inline contract"
    )
    on_drift: Literal["ignore", "warn", "fail"] = Field(
        "warn", description="status when fields are added, removed or retyped against the learned baseline"
    )
    accept_after: Duration | None = Field(
        None, description="adopt a drifted schema as the new baseline after it persisted this long"
    )
    max_decode_error_rate: float = Field(0.0, ge=0, le=1, description="allowed undecodable records ratio")


class Reference(StrictModel):
    rolling: Duration | None = Field(None, description="earlier batches within this window")
    file: str | None = Field(None, description="a Parquet/NDJSON/CSV file, relative to the checks file")
    max_rows: int = Field(50_000, ge=100, le=5_000_000, description="reference sample size bound")

    @model_validator(mode="after")
    def _one(self) -> Reference:
        if (self.rolling is None) == (self.file is None):
            raise ValueError("give exactly one of rolling or file")
        return self


class DistributionSpec(CheckSpec):
    column: str
    by: str | None = Field(None, description="segment column; each segment compared to its own reference")
    metric: Literal["psi", "ks", "chi2", "unseen"] = "psi"
    max: float = Field(description="largest allowed value (psi, ks D, chi2 statistic, unseen share)")
    reference: Reference = Field(description="rolling_1h, {rolling: 1h} or {file: ref.parquet}")
    bins: int = Field(10, ge=2, le=100, description="quantile bins for numeric PSI")
    min_rows: int = Field(100, ge=1, description="fewer rows (batch or reference) → skipped, status ok")
    max_segments: int = Field(50, ge=1, le=1000, description="bound on segments tracked with by:")
    categorical: bool | None = Field(None, description="force categorical handling; default by dtype")

    @field_validator("reference", mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if isinstance(value, str):
            if value.startswith("rolling_"):
                return {"rolling": parse_duration(value.removeprefix("rolling_"))}
            if value.startswith("file:"):
                return {"file": value.removeprefix("file:")}
            raise ValueError("reference must be rolling_<duration>, file:<path>, or a mapping")
        return value


Scalar = str | int | float | bool


class RangeBound(StrictModel):
    gt: float | None = None
    ge: float | None = None
    lt: float | None = None
    le: float | None = None

    @model_validator(mode="after")
    def _some(self) -> RangeBound:
        if all(v is None for v in (self.gt, self.ge, self.lt, self.le)):
            raise ValueError("give at least one of gt, ge, lt, le")
        # the tightest lower and upper bounds (a strict bound wins a tie): no value may lie between
        lows = [(v, strict) for v, strict in ((self.gt, True), (self.ge, False)) if v is not None]
        highs = [(v, strict) for v, strict in ((self.lt, True), (self.le, False)) if v is not None]
        if lows and highs:
            low, low_strict = max(lows, key=lambda b: (b[0], b[1]))
            high, high_strict = min(highs, key=lambda b: (b[0], not b[1]))
            if low > high or (low == high and (low_strict or high_strict)):
                raise ValueError(f"empty range: no value satisfies {self._text()}")
        return self

    def _text(self) -> str:
        ops = (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<="))
        return " and ".join(
            f"{sym} {getattr(self, op):g}" for op, sym in ops if getattr(self, op) is not None
        )


class ValiditySpec(CheckSpec):
    not_null: list[str] = Field(default_factory=list)
    null_rate: dict[str, Annotated[float, Field(ge=0, le=1)]] = Field(
        default_factory=dict, description="column → largest allowed null ratio"
    )
    range: dict[str, RangeBound] = Field(default_factory=dict)
    in_set: dict[str, list[Scalar]] = Field(default_factory=dict)
    regex: dict[str, str] = Field(default_factory=dict)
    unique: list[str] = Field(
        default_factory=list,
        description="columns whose values must be unique within a window (across windows: duplicates)",
    )
    max_fail_rate: float = Field(0.0, ge=0, le=1, description="ratio of violating rows tolerated per rule")

    @field_validator("unique", "not_null", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("regex")
    @classmethod
    def _compiles(cls, value: dict[str, str]) -> dict[str, str]:
        # compiled by the engine that runs it: Polars (Rust regex) rejects look-around and
        # back-references that Python's `re` accepts
        import polars as pl

        for column, pattern in value.items():
            try:
                pl.select(pl.lit("").str.contains(pattern))
            except Exception as exc:  # noqa: BLE001 - Polars raises ComputeError for a bad pattern
                lines = [ln.strip() for ln in str(exc).splitlines()]
                reason = next((ln.removeprefix("error: ") for ln in lines if ln.startswith("error:")), "")
                reason = reason or " ".join(str(exc).split())[:200]
                raise ValueError(
                    f"regex for {column!r} does not compile in Polars' regex engine (Rust regex: no "
                    f"look-around, no back-references): {reason}"
                ) from None
        return value

    @model_validator(mode="after")
    def _some(self) -> ValiditySpec:
        if not (self.not_null or self.null_rate or self.range or self.in_set or self.regex or self.unique):
            raise ValueError("give at least one rule: not_null, null_rate, range, in_set, regex, unique")
        return self


class SqlSpec(CheckSpec):
    query: str = Field(description="Polars SQL over the table `batch`, returning one row with column `value`")
    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _bounds(self) -> SqlSpec:
        if self.min is None and self.max is None:
            raise ValueError("give min or max for the query's value")
        return self


class LagSpec(CheckSpec):
    group: str = Field(description="the pipeline's own consumer group (read, never committed)")
    max_messages: int | None = Field(None, ge=0)
    max_seconds: Duration | None = None

    @model_validator(mode="after")
    def _bounds(self) -> LagSpec:
        if self.max_messages is None and self.max_seconds is None:
            raise ValueError("give max_messages or max_seconds")
        return self


class GreatExpectationsSpec(CheckSpec):
    suite: str = Field(description="an expectation-suite JSON file, relative to the checks file")


@dataclass(frozen=True)
class CheckEntry(KindEntry):
    """One item of a dataset's `checks:` list: its kind and its validated spec."""

    spec: CheckSpec

    def check_name(self) -> str:
        """The check's stable name within its dataset: `name:` or the kind."""
        return self.spec.name or self.kind


def _spec_type(check_class: Any) -> type[CheckSpec]:
    spec: type[CheckSpec] = check_class.spec_type
    return spec


# A check entry is validated by the spec type of the check class its kind names in the registry,
# so check kinds registered by plug-ins validate (and appear in `dqmon schema`) like built-ins.
CheckEntryField = Annotated[CheckEntry, ByKind(CHECK_KINDS, _spec_type, entry=CheckEntry)]
