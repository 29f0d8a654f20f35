"""SLOs: error budgets and multiwindow burn rates from the checks bound to each SLO.

Counting: each evaluation of a dataset is one *event* for every SLO that has checks of that
dataset bound to it (`slo:` on the check). The event is bad when any bound check failed (status
warn, fail or error), good otherwise; each failing check is charged one bad event so alerts can
name the checks that spent the budget.

Storage is bounded: per-SLO ring buffers of `bucket_seconds` buckets (default one minute) that
cover the SLO period, as numpy arrays: a 28-day SLO keeps 40,320 buckets. A window of length W
at time `now` is the ceil(W / bucket) newest buckets, the current bucket included.

Denominators are the evaluations *expected* over a window, not only those seen: the checks
bound to an SLO are evaluated once per window of their dataset (SQL datasets once per `every`),
so over W the SLO expects `W * sum(1/interval)` events. Each ratio divides by
max(events counted, events expected). Right after a start, one bad evaluation is therefore one
bad event out of the period's expected thousands (not "-3348% of the budget left"), and a burn
window whose long window is mostly unobserved counts the unobserved part as unspent: a minute
of failures is not a sustained burn over an hour.

- error budget remaining = 1 - bad over the period / ((1 - objective) * events over the period)
  (1.0 = untouched, 0 = spent, negative = overspent; 1.0 when nothing was counted yet)
- burn rate over W = (bad / events over W) / (1 - objective); 1.0 spends the budget exactly
  over the period. A burn-rate window fires when both its long and its short window exceed its
  factor (the SRE workbook's multiwindow, multi-burn-rate alerts) and the long window holds at
  least `min_events` counted events (default 10).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np
import numpy.typing as npt

from dqmon.config.durations import format_duration
from dqmon.config.models import BurnRateWindow, Dataset, Pipeline, Slo


@dataclass(frozen=True)
class BurnRate:
    window: str  # e.g. "1h/5m"
    long_rate: float
    short_rate: float
    factor: float
    severity: str
    long_events: int = 0
    min_events: int = 0
    short_seconds: float = 0.0

    @property
    def firing(self) -> bool:
        # too few events make any rate meaningless (one bad evaluation is a 100% error ratio)
        enough = self.long_events >= self.min_events
        return enough and self.long_rate > self.factor and self.short_rate > self.factor


@dataclass(frozen=True)
class SloStatus:
    pipeline: str
    slo: str
    objective: float  # percent
    good: int
    bad: int
    budget_remaining: float
    burn_rates: tuple[BurnRate, ...]
    # bad events per check over the longest burn window, largest first
    top_checks: tuple[tuple[str, int], ...]


def window_label(window: BurnRateWindow) -> str:
    """`1h/5m`: the durations as checks files write them (the `window` label of burn-rate metrics)."""
    return f"{format_duration(window.long)}/{format_duration(window.short)}"


class SloBuckets:
    """Good/bad counts of one SLO in a ring of time buckets covering its period."""

    def __init__(self, period: timedelta, bucket_seconds: float = 60.0) -> None:
        self.bucket_seconds = float(bucket_seconds)
        self.size = max(1, math.ceil(period.total_seconds() / self.bucket_seconds))
        self.ids: npt.NDArray[np.int64] = np.full(self.size, -1, dtype=np.int64)
        self.good: npt.NDArray[np.int64] = np.zeros(self.size, dtype=np.int64)
        self.bad: npt.NDArray[np.int64] = np.zeros(self.size, dtype=np.int64)
        self.check_bad: dict[str, npt.NDArray[np.int64]] = {}

    def bucket_id(self, at: float) -> int:
        return math.floor(at / self.bucket_seconds)

    def _slot(self, at: float) -> int:
        bid = self.bucket_id(at)
        slot = bid % self.size
        if self.ids[slot] != bid:  # a stale bucket from one period ago: reuse it
            self.ids[slot] = bid
            self.good[slot] = 0
            self.bad[slot] = 0
            for arr in self.check_bad.values():
                arr[slot] = 0
        return slot

    def add(self, at: float, good: int, bad: int, failing_checks: Iterable[str] = ()) -> None:
        slot = self._slot(at)
        self.good[slot] += good
        self.bad[slot] += bad
        for check in failing_checks:
            arr = self.check_bad.get(check)
            if arr is None:
                arr = self.check_bad[check] = np.zeros(self.size, dtype=np.int64)
            arr[slot] += 1

    def _mask(self, now: float, seconds: float) -> npt.NDArray[np.bool_]:
        newest = self.bucket_id(now)
        buckets = min(self.size, max(1, math.ceil(seconds / self.bucket_seconds)))
        return (self.ids > newest - buckets) & (self.ids <= newest)

    def totals(self, now: float, seconds: float) -> tuple[int, int]:
        mask = self._mask(now, seconds)
        return int(self.good[mask].sum()), int(self.bad[mask].sum())

    def checks(self, now: float, seconds: float) -> list[tuple[str, int]]:
        mask = self._mask(now, seconds)
        spent = [(name, int(arr[mask].sum())) for name, arr in self.check_bad.items()]
        return sorted((c for c in spent if c[1] > 0), key=lambda c: (-c[1], c[0]))

    # ------------------------------------------------------------------ persistence (sparse)
    def to_json(self) -> dict[str, Any]:
        used = np.nonzero(self.ids >= 0)[0]
        return {
            "bucket_seconds": self.bucket_seconds,
            "ids": self.ids[used].tolist(),
            "good": self.good[used].tolist(),
            "bad": self.bad[used].tolist(),
            "checks": {name: arr[used].tolist() for name, arr in self.check_bad.items()},
        }

    def load_json(self, body: Mapping[str, Any]) -> None:
        if float(body.get("bucket_seconds", -1)) != self.bucket_seconds:
            return  # a different bucket size: start afresh rather than mis-count
        ids = np.asarray(body.get("ids", []), dtype=np.int64)
        slots = ids % self.size
        self.ids[slots] = ids
        self.good[slots] = np.asarray(body.get("good", []), dtype=np.int64)
        self.bad[slots] = np.asarray(body.get("bad", []), dtype=np.int64)
        for name, values in dict(body.get("checks", {})).items():
            arr = self.check_bad[name] = np.zeros(self.size, dtype=np.int64)
            arr[slots] = np.asarray(values, dtype=np.int64)


def evaluation_seconds(dataset: Dataset) -> float:
    """How often a dataset's checks are evaluated: once per window (SQL sources: per `every`)."""
    every = getattr(dataset.source, "every", None) if dataset.source.kind == "sql" else None
    interval = every if every is not None else dataset.window
    return max(1.0, interval.total_seconds())


def burn_rate(good: int, bad: int, objective_percent: float, expected: float = 0.0) -> float:
    total = max(float(good + bad), expected)
    if total == 0:
        return 0.0
    return (bad / total) / (1.0 - objective_percent / 100.0)


def budget_remaining(good: int, bad: int, objective_percent: float, expected: float = 0.0) -> float:
    total = max(float(good + bad), expected)
    if total == 0:
        return 1.0
    return 1.0 - (bad / total) / (1.0 - objective_percent / 100.0)


class SloTracker:
    """All SLOs of one pipeline; fed with the check results of each evaluation."""

    def __init__(self, pipeline: Pipeline, *, bucket_seconds: float = 60.0, min_events: int = 10) -> None:
        self.pipeline = pipeline
        self.min_events = min_events
        self.slos: dict[str, Slo] = {slo.name: slo for slo in pipeline.slos}
        self.buckets: dict[str, SloBuckets] = {
            slo.name: SloBuckets(slo.window, bucket_seconds) for slo in pipeline.slos
        }
        self.unknown_slo_results = 0  # results naming an SLO the pipeline does not declare
        # events expected per second: one per evaluation of each dataset with a check bound to it
        self.rate: dict[str, float] = {name: 0.0 for name in self.slos}
        for dataset in pipeline.datasets:
            bound = {e.spec.slo for e in dataset.checks if e.spec.slo in self.rate}
            for name in bound:
                assert name is not None
                self.rate[name] += 1.0 / evaluation_seconds(dataset)

    def expected(self, slo: str, seconds: float) -> float:
        """Events the SLO expects over a window of `seconds`."""
        return self.rate.get(slo, 0.0) * seconds

    def record(self, results: Iterable[Any], now: float) -> None:
        """Count one event per (SLO, dataset) among `results` (CheckResult-like objects)."""
        events: dict[tuple[str, str], list[str]] = {}
        for r in results:
            if r.slo is None:
                continue
            if r.slo not in self.buckets:
                self.unknown_slo_results += 1
                continue
            failing = events.setdefault((r.slo, r.dataset), [])
            name = f"{r.dataset}/{getattr(r, 'origin', None) or r.check}"
            if _is_failing(r) and name not in failing:  # one bad event per check, not per part
                failing.append(name)
        for (slo, _dataset), failing in events.items():
            self.buckets[slo].add(
                now, good=0 if failing else 1, bad=1 if failing else 0, failing_checks=failing
            )

    def status(self, now: float) -> list[SloStatus]:
        out: list[SloStatus] = []
        for name, slo in self.slos.items():
            b = self.buckets[name]
            period = slo.window.total_seconds()
            good, bad = b.totals(now, period)
            rates = []
            for w in slo.burn_rates:
                long_s, short_s = w.long.total_seconds(), w.short.total_seconds()
                lg, lb = b.totals(now, long_s)
                sg, sb = b.totals(now, short_s)
                rates.append(
                    BurnRate(
                        window_label(w),
                        burn_rate(lg, lb, slo.objective, self.expected(name, long_s)),
                        burn_rate(sg, sb, slo.objective, self.expected(name, short_s)),
                        w.factor,
                        w.severity,
                        long_events=lg + lb,
                        min_events=self.min_events,
                        short_seconds=short_s,
                    )
                )
            longest = max(
                (w.long.total_seconds() for w in slo.burn_rates), default=slo.window.total_seconds()
            )
            out.append(
                SloStatus(
                    pipeline=self.pipeline.pipeline,
                    slo=name,
                    objective=slo.objective,
                    good=good,
                    bad=bad,
                    budget_remaining=budget_remaining(good, bad, slo.objective, self.expected(name, period)),
                    burn_rates=tuple(rates),
                    top_checks=tuple(b.checks(now, longest)),
                )
            )
        return out

    def to_json(self) -> dict[str, Any]:
        return {name: b.to_json() for name, b in self.buckets.items()}

    def load_json(self, body: Mapping[str, Any]) -> None:
        for name, value in body.items():
            if name in self.buckets and isinstance(value, Mapping):
                self.buckets[name].load_json(value)


def _is_failing(result: Any) -> bool:
    # WARN, FAIL and ERROR all spend budget: a check that cannot evaluate is not a kept promise
    return int(result.status) != 0
