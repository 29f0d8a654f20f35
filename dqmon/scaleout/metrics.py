"""Scale-out series, on the runtime's registry (created once per runtime, survive reloads)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class ScaleoutMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        labels = ("pipeline", "dataset")
        self.judge = Gauge(
            "dqmon_scaleout_judge",
            "1 while this replica judges the pipeline",
            ("pipeline",),
            registry=registry,
        )
        self.windows = Counter(
            "dqmon_scaleout_windows_judged_total",
            "Merged windows judged by this replica",
            labels,
            registry=registry,
        )
        self.incomplete = Counter(
            "dqmon_scaleout_incomplete_windows_total",
            "Merged windows judged with partitions no replica reported",
            labels,
            registry=registry,
        )
        self.partial_bytes = Counter(
            "dqmon_scaleout_partial_bytes_total",
            "Bytes of partial states this replica wrote (compressed rows + counters, re-sends included)",
            labels,
            registry=registry,
        )
        self.publish_errors = Counter(
            "dqmon_scaleout_publish_errors_total",
            "Failed writes of partial states or facts (retried with the next batch)",
            labels,
            registry=registry,
        )

    def declare(self, pipeline: str, dataset: str) -> None:
        for family in (self.windows, self.incomplete, self.partial_bytes, self.publish_errors):
            family.labels(pipeline, dataset)
        self.judge.labels(pipeline).set(0)
