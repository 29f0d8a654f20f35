"""Check results as Prometheus series, computed when Prometheus scrapes.

The latest result per (pipeline, dataset, check, kind) becomes `dqmon_check_status`, its value
and bounds; freshness lag is computed at scrape time from the newest record time, so it keeps
growing while a source is silent instead of freezing at the last batch's value.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from dqmon.results import Status

CHECK_LABELS = ("pipeline", "dataset", "check", "kind")
DATASET_LABELS = ("pipeline", "dataset")


@dataclass(frozen=True)
class LatestResult:
    status: Status
    value: float | None
    evaluated_at: float
    lower_bound: float | None
    upper_bound: float | None


def number(raw: object) -> float | None:
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        return None
    return float(raw)


def result_bounds(details: Mapping[str, object]) -> tuple[float | None, float | None]:
    """A check's accepted range from its details: `lower_bound`/`upper_bound`, or a `band` pair."""
    lower, upper = number(details.get("lower_bound")), number(details.get("upper_bound"))
    band = details.get("band")
    if isinstance(band, list | tuple) and len(band) == 2:
        lower = lower if lower is not None else number(band[0])
        upper = upper if upper is not None else number(band[1])
    return lower, upper


class ScrapeTimeCollector(Collector):
    """Serves the latest check results and time-dependent gauges when Prometheus scrapes.

    Freshness lag is computed here (now - newest record time) so it keeps growing while a
    source is silent, instead of freezing at the value of the last batch.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._results: dict[tuple[str, str, str, str], LatestResult] = {}
        self._newest: dict[tuple[str, str], float] = {}

    def put_results(self, latest: Mapping[tuple[str, str, str, str], LatestResult]) -> None:
        with self._lock:
            self._results.update(latest)

    def forget_dataset(self, pipeline: str, dataset: str) -> None:
        with self._lock:
            for key in [k for k in self._results if k[:2] == (pipeline, dataset)]:
                del self._results[key]
            self._newest.pop((pipeline, dataset), None)

    def series_count(self, pipeline: str, dataset: str) -> int:
        with self._lock:
            return sum(1 for k in self._results if k[:2] == (pipeline, dataset))

    def known(self, key: tuple[str, str, str, str]) -> bool:
        with self._lock:
            return key in self._results

    def put_newest_record_time(self, pipeline: str, dataset: str, epoch_seconds: float) -> None:
        with self._lock:
            self._newest[(pipeline, dataset)] = epoch_seconds

    def describe(self) -> Iterable[Metric]:
        return self._families(now=0.0, results={}, newest={})

    def collect(self) -> Iterable[Metric]:
        with self._lock:
            results = dict(self._results)
            newest = dict(self._newest)
        return self._families(now=time.time(), results=results, newest=newest)

    @staticmethod
    def _families(
        now: float,
        results: Mapping[tuple[str, str, str, str], LatestResult],
        newest: Mapping[tuple[str, str], float],
    ) -> list[Metric]:
        status = GaugeMetricFamily(
            "dqmon_check_status",
            "Last evaluation of a check: 0 ok, 1 warn, 2 fail, 3 error",
            labels=CHECK_LABELS,
        )
        value = GaugeMetricFamily(
            "dqmon_check_value", "The observed value a check compared to its threshold", labels=CHECK_LABELS
        )
        evaluated = GaugeMetricFamily(
            "dqmon_check_last_evaluation_timestamp_seconds",
            "Unix time of a check's last evaluation",
            labels=CHECK_LABELS,
        )
        lower = GaugeMetricFamily(
            "dqmon_check_lower_bound",
            "Lowest value the check accepts (declared or learned, e.g. an anomaly band)",
            labels=CHECK_LABELS,
        )
        upper = GaugeMetricFamily(
            "dqmon_check_upper_bound",
            "Highest value the check accepts (declared or learned, e.g. an anomaly band)",
            labels=CHECK_LABELS,
        )
        for key, latest in sorted(results.items()):
            labels = list(key)
            status.add_metric(labels, float(latest.status))
            evaluated.add_metric(labels, latest.evaluated_at)
            if latest.value is not None:
                value.add_metric(labels, latest.value)
            if latest.lower_bound is not None:
                lower.add_metric(labels, latest.lower_bound)
            if latest.upper_bound is not None:
                upper.add_metric(labels, latest.upper_bound)
        lag = GaugeMetricFamily(
            "dqmon_freshness_lag_seconds",
            "Now minus the newest record time the source knows of",
            labels=DATASET_LABELS,
        )
        for (pipeline, dataset), newest_at in sorted(newest.items()):
            lag.add_metric([pipeline, dataset], max(0.0, now - newest_at))
        return [status, value, evaluated, lower, upper, lag]
