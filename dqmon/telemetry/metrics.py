"""Prometheus metrics: check results served at scrape time, plus dqmon's self-metrics.

Everything is registered on an injected `CollectorRegistry`, so tests use a fresh one and
several monitors can live in one process. Label values come from configuration (pipeline,
dataset and check names, consumer groups, notifier names) or from fixed vocabularies
(stage, status, reason, outcome); nothing is taken from the data. As a second guard,
the number of check series per dataset is capped and overflow is counted, so a check that
names its results after data values cannot blow up Prometheus.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Mapping, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector

from dqmon.batch import MicroBatch
from dqmon.facts import SourceFacts
from dqmon.registry import DECODERS
from dqmon.results import CheckResult
from dqmon.telemetry.check_series import (
    CHECK_LABELS,
    DATASET_LABELS,
    LatestResult,
    ScrapeTimeCollector,
    number,
    result_bounds,
)

__all__ = [
    "BATCH_STAGES",
    "NOTIFICATION_OUTCOMES",
    "DqmonMetrics",
    "decode_error_reasons",
    "decode_reason_label",
]

#: micro-batch stages timed by `dqmon_batch_duration_seconds`
BATCH_STAGES: tuple[str, ...] = ("fetch", "decode", "check")


def decode_error_reasons() -> tuple[str, ...]:
    """The only values the `reason` label of `dqmon_decode_errors_total` takes: every registered
    decoder's own `reasons`, and "other" for anything else."""
    reasons = {reason for _name, decoder in DECODERS.items() for reason in decoder.reasons}
    return (*sorted(reasons), "other")


#: the only values the `outcome` label of `dqmon_notifications_total` takes; others become "other"
NOTIFICATION_OUTCOMES: tuple[str, ...] = ("delivered", "retried", "failed", "dropped", "other")
STATE_STORE_OPERATIONS: tuple[str, ...] = ("read", "write", "connect", "other")

# Seconds; batches span milliseconds (decode of a small sample) to tens of seconds (a slow fetch).
_DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
#: partitions per dataset with a `dqmon_partition_health` series; more are counted, not exported
MAX_PARTITION_SERIES = 64


def decode_reason_label(reason: str) -> str:
    """Map a decoder's reason to the bounded `reason` label (unknown reasons become "other")."""
    return reason if reason in decode_error_reasons() else "other"


def _bounded(value: str, allowed: Sequence[str]) -> str:
    return value if value in allowed else "other"


class DqmonMetrics:
    """All of dqmon's Prometheus metrics on one registry; the runtime calls the methods below.

    Thread-safe: sources, the engine and notifiers call it from their own threads.
    """

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        max_check_series_per_dataset: int = 500,
        max_partition_series_per_dataset: int = MAX_PARTITION_SERIES,
        process_metrics: bool = True,
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.max_check_series_per_dataset = max_check_series_per_dataset
        self._lock = threading.Lock()
        self._groups: dict[tuple[str, str], set[str]] = {}
        self.max_partition_series_per_dataset = max_partition_series_per_dataset
        self._partitions: dict[tuple[str, str], set[str]] = {}
        self._scrape_time = ScrapeTimeCollector()
        self.registry.register(self._scrape_time)
        if process_metrics:
            # process_resident_memory_bytes, process_cpu_seconds_total, ... for the health dashboard
            ProcessCollector(registry=self.registry)
        r = self.registry
        self.check_evaluations = Counter(
            "dqmon_check_evaluations_total",
            "Check evaluations by outcome",
            [*CHECK_LABELS, "status"],
            registry=r,
        )
        self.check_series_dropped = Counter(
            "dqmon_check_series_dropped_total",
            "Check results not exported because the dataset reached its series cap",
            DATASET_LABELS,
            registry=r,
        )
        self.check_state_entries = Gauge(
            "dqmon_check_state_entries",
            "Entries a cross-window check keeps (keys, partitions); bounded by the check's limit",
            CHECK_LABELS,
            registry=r,
        )
        self.check_state_bytes = Gauge(
            "dqmon_check_state_bytes",
            "Estimated memory of a cross-window check's state",
            CHECK_LABELS,
            registry=r,
        )
        self.partition_health = Gauge(
            "dqmon_partition_health",
            "Per-partition health from the partitions check: 0 healthy, 1 lagging, 2 stalled, 3 idle "
            f"(at most {MAX_PARTITION_SERIES} partitions per dataset)",
            [*DATASET_LABELS, "partition"],
            registry=r,
        )
        self.partition_series_dropped = Counter(
            "dqmon_partition_series_dropped_total",
            "Partition health values not exported because the dataset reached its partition series cap",
            DATASET_LABELS,
            registry=r,
        )
        self.batches = Counter("dqmon_batches_total", "Micro-batches evaluated", DATASET_LABELS, registry=r)
        self.rows_seen = Counter(
            "dqmon_rows_seen_total", "Records read before sampling", DATASET_LABELS, registry=r
        )
        self.rows_sampled = Counter(
            "dqmon_rows_sampled_total", "Records selected for checking", DATASET_LABELS, registry=r
        )
        self.decode_errors = Counter(
            "dqmon_decode_errors_total",
            "Sampled records that could not be decoded, by bounded reason",
            [*DATASET_LABELS, "reason"],
            registry=r,
        )
        self.batch_duration = Histogram(
            "dqmon_batch_duration_seconds",
            "Time per micro-batch stage (fetch, decode, check)",
            [*DATASET_LABELS, "stage"],
            buckets=_DURATION_BUCKETS,
            registry=r,
        )
        self.source_up = Gauge(
            "dqmon_source_up", "1 when the source is reachable, else 0", DATASET_LABELS, registry=r
        )
        self.consumer_lag_messages = Gauge(
            "dqmon_consumer_lag_messages",
            "Messages the pipeline's own consumer group is behind (high watermark - committed)",
            [*DATASET_LABELS, "group"],
            registry=r,
        )
        self.consumer_lag_seconds = Gauge(
            "dqmon_consumer_lag_seconds",
            "Age of the oldest message the pipeline's own consumer group has not committed",
            [*DATASET_LABELS, "group"],
            registry=r,
        )
        self.queue_depth = Gauge(
            "dqmon_queue_depth_batches", "Micro-batches waiting for the engine", DATASET_LABELS, registry=r
        )
        self.dropped_batches = Counter(
            "dqmon_dropped_batches_total",
            "Micro-batches dropped because the engine queue was full",
            DATASET_LABELS,
            registry=r,
        )
        self.alerts_firing = Gauge(
            "dqmon_alerts_firing", "Alerts in state firing", ["pipeline", "severity"], registry=r
        )
        self.slo_budget_remaining = Gauge(
            "dqmon_slo_error_budget_remaining_ratio",
            "Share of the SLO's error budget left in its window (1 untouched, 0 or less exhausted)",
            ["pipeline", "slo"],
            registry=r,
        )
        self.slo_burn_rate = Gauge(
            "dqmon_slo_burn_rate",
            "How fast the error budget burns over a window (1 = exactly exhausted at the period's end)",
            ["pipeline", "slo", "window"],
            registry=r,
        )
        self.notifications = Counter(
            "dqmon_notifications_total",
            "Notification attempts by notifier and outcome",
            ["notifier", "outcome"],
            registry=r,
        )
        self.unconfigured_targets = Gauge(
            "dqmon_notify_targets_unconfigured",
            "Notify targets of the newest checks (rejected if > 0) that no configured notifier serves",
            registry=r,
        )
        self.state_store_errors = Counter(
            "dqmon_state_store_errors_total", "State store failures", ["operation"], registry=r
        )
        for operation in STATE_STORE_OPERATIONS:
            self.state_store_errors.labels(operation)

    # ------------------------------------------------------------------ declarations
    def declare_dataset(self, pipeline: str, dataset: str) -> None:
        """Create a dataset's series at zero so rate() and alerts work before the first error."""
        for reason in decode_error_reasons():
            self.decode_errors.labels(pipeline, dataset, reason)
        for stage in BATCH_STAGES:
            self.batch_duration.labels(pipeline, dataset, stage)
        for counter in (self.batches, self.rows_seen, self.rows_sampled, self.dropped_batches):
            counter.labels(pipeline, dataset)
        self.check_series_dropped.labels(pipeline, dataset)
        self.queue_depth.labels(pipeline, dataset)

    def declare_notifier(self, notifier: str) -> None:
        """Create a notifier's series at zero so a failure rate is visible from the first one."""
        for outcome in NOTIFICATION_OUTCOMES:
            self.notifications.labels(notifier, outcome)

    def forget_dataset(self, pipeline: str, dataset: str) -> None:
        """Drop a dataset's check series (after a config reload removed it)."""
        self._scrape_time.forget_dataset(pipeline, dataset)

    # ------------------------------------------------------------------ micro-batches
    def observe_batch(self, batch: MicroBatch, stage_seconds: Mapping[str, float]) -> None:
        """Count a micro-batch's rows and decode errors and time its stages."""
        labels = (batch.pipeline, batch.dataset)
        self.batches.labels(*labels).inc()
        self.rows_seen.labels(*labels).inc(max(0, batch.rows_seen))
        self.rows_sampled.labels(*labels).inc(max(0, batch.rows_sampled))
        for reason, count in batch.decode_errors.items():
            if count > 0:
                self.decode_errors.labels(*labels, decode_reason_label(reason)).inc(count)
        for stage, seconds in stage_seconds.items():
            if seconds >= 0:
                self.batch_duration.labels(*labels, _bounded(stage, BATCH_STAGES)).observe(seconds)

    def record_results(self, results: Sequence[CheckResult]) -> None:
        """Publish check results: the latest per check for the gauges, each one for the counter."""
        latest: dict[tuple[str, str, str, str], LatestResult] = {}
        for result in results:
            key = (result.pipeline, result.dataset, result.check, result.kind)
            if key not in latest and not self._admit(key, pending=len(latest)):
                self.check_series_dropped.labels(result.pipeline, result.dataset).inc()
                continue
            self.check_evaluations.labels(*key, result.status.label).inc()
            lower, upper = result_bounds(result.details)
            latest[key] = LatestResult(
                status=result.status,
                value=result.value,
                evaluated_at=result.evaluated_at.timestamp(),
                lower_bound=lower,
                upper_bound=upper,
            )
            self._state_gauges(key, result.details)
            if result.kind == "partitions":
                self._partition_gauges(result.pipeline, result.dataset, result.details)
        self._scrape_time.put_results(latest)

    def _state_gauges(self, key: tuple[str, str, str, str], details: Mapping[str, object]) -> None:
        entries, size = number(details.get("state_entries")), number(details.get("state_bytes"))
        if entries is not None:
            self.check_state_entries.labels(*key).set(entries)
        if size is not None:
            self.check_state_bytes.labels(*key).set(size)

    def _partition_gauges(self, pipeline: str, dataset: str, details: Mapping[str, object]) -> None:
        health = details.get("partition_health")
        if not isinstance(health, Mapping):
            return
        with self._lock:
            known = self._partitions.setdefault((pipeline, dataset), set())
            admitted = []
            for partition, code in health.items():
                if str(partition) not in known and len(known) >= self.max_partition_series_per_dataset:
                    self.partition_series_dropped.labels(pipeline, dataset).inc()
                    continue
                known.add(str(partition))
                admitted.append((str(partition), code))
        for partition, code in admitted:
            value = number(code)
            if value is not None:
                self.partition_health.labels(pipeline, dataset, partition).set(value)

    def _admit(self, key: tuple[str, str, str, str], pending: int) -> bool:
        if self._scrape_time.known(key):
            return True
        used = self._scrape_time.series_count(key[0], key[1]) + pending
        return used < self.max_check_series_per_dataset

    # ------------------------------------------------------------------ sources
    def observe_facts(self, pipeline: str, dataset: str, facts: SourceFacts) -> None:
        """Source reachability, newest record time and the pipeline's consumer lag."""
        self.set_source_up(pipeline, dataset, facts.up)
        if facts.newest_record_time is not None:
            self._scrape_time.put_newest_record_time(pipeline, dataset, facts.newest_record_time.timestamp())
        with self._lock:
            previous = self._groups.get((pipeline, dataset), set())
            current = set(facts.consumer_lag)
            self._groups[(pipeline, dataset)] = current
        for group in previous - current:
            for gauge in (self.consumer_lag_messages, self.consumer_lag_seconds):
                # a group removed from config; its seconds series may never have existed
                with contextlib.suppress(KeyError):
                    gauge.remove(pipeline, dataset, group)
        for group, lag in facts.consumer_lag.items():
            self.consumer_lag_messages.labels(pipeline, dataset, group).set(lag.messages)
            if lag.seconds is not None:
                self.consumer_lag_seconds.labels(pipeline, dataset, group).set(lag.seconds)

    def set_source_up(self, pipeline: str, dataset: str, up: bool) -> None:
        self.source_up.labels(pipeline, dataset).set(1.0 if up else 0.0)

    def set_queue_depth(self, pipeline: str, dataset: str, depth: int) -> None:
        self.queue_depth.labels(pipeline, dataset).set(depth)

    def count_dropped_batch(self, pipeline: str, dataset: str) -> None:
        self.dropped_batches.labels(pipeline, dataset).inc()

    # ------------------------------------------------------------------ alerts, SLOs, notifiers, state
    def set_alerts_firing(self, pipeline: str, severity: str, count: int) -> None:
        self.alerts_firing.labels(pipeline, severity).set(count)

    def set_slo(
        self, pipeline: str, slo: str, budget_remaining: float, burn_rates: Mapping[str, float]
    ) -> None:
        """SLO state; `burn_rates` maps a window label (e.g. "1h", "5m") to its burn rate."""
        self.slo_budget_remaining.labels(pipeline, slo).set(budget_remaining)
        for window, rate in burn_rates.items():
            self.slo_burn_rate.labels(pipeline, slo, window).set(rate)

    def count_notification(self, notifier: str, outcome: str) -> None:
        self.notifications.labels(notifier, _bounded(outcome, NOTIFICATION_OUTCOMES)).inc()

    def count_state_store_error(self, operation: str) -> None:
        self.state_store_errors.labels(_bounded(operation, STATE_STORE_OPERATIONS)).inc()
