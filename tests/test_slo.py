"""SLO budgets and burn rates equal a direct computation over random good/bad sequences."""

from __future__ import annotations

import math
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dqmon.config.models import BurnRateWindow, Pipeline
from dqmon.results import CheckResult, Status
from dqmon.slo import SloTracker


def pipeline(
    objective: float = 99.0, period: timedelta = timedelta(hours=6), bound_window: str | None = None
) -> Pipeline:
    """`bound_window`: bind a check of dataset d (evaluated every window) to the SLO, so the SLO
    expects one event per window; None: no check bound, nothing expected (counted events only)."""
    checks = [{"freshness": {"max_lag": "30s", "slo": "fresh"}}] if bound_window else []
    window = {"window": bound_window} if bound_window else {}
    return Pipeline.model_validate(
        {
            "pipeline": "p",
            "slos": [
                {
                    "name": "fresh",
                    "objective": objective,
                    "window": period,
                    "burn_rates": [
                        BurnRateWindow(long=timedelta(hours=1), short=timedelta(minutes=5), factor=14.4),
                        BurnRateWindow(
                            long=timedelta(hours=6), short=timedelta(minutes=30), factor=6, severity="warn"
                        ),
                    ],
                }
            ],
            "datasets": [
                {"name": "d", "source": {"kind": "replay", "path": "x.ndjson"}, "checks": checks, **window}
            ],
        }
    )


def result(
    status: Status, check: str = "freshness", slo: str | None = "fresh", dataset: str = "d"
) -> CheckResult:
    return CheckResult("p", dataset, check, "freshness", status, 1.0, "30s", "m", slo=slo)


# (seconds since previous event, bad?, which check failed)
events = st.lists(st.tuples(st.integers(0, 400), st.booleans(), st.sampled_from(["a", "b"])), max_size=300)


@settings(max_examples=150, deadline=None)
@given(
    seq=events,
    objective=st.sampled_from([90.0, 99.0, 99.9]),
    bound_window=st.sampled_from([None, "30s", "5m"]),
)
def test_budget_and_burn_rates_match_direct_computation(seq, objective: float, bound_window) -> None:
    p = pipeline(objective, bound_window=bound_window)
    tracker = SloTracker(p, bucket_seconds=60)
    per_second = 0.0 if bound_window is None else 1 / p.datasets[0].window.total_seconds()
    now, history = 1_000_000.0, []
    for gap, bad, check in seq:
        now += gap
        tracker.record([result(Status.FAIL if bad else Status.OK, check=check)], now)
        history.append((now, bad, check))
    (status,) = tracker.status(now)
    allowed = 1 - objective / 100
    newest = math.floor(now / 60)

    def in_window(t: float, seconds: float) -> bool:
        return math.floor(t / 60) > newest - math.ceil(seconds / 60)

    def direct(seconds: float) -> tuple[int, int]:
        window = [b for t, b, _ in history if in_window(t, seconds)]
        return len(window) - sum(window), sum(window)

    def events_over(seconds: float, g: int, b: int) -> float:
        return max(g + b, seconds * per_second)  # what was counted, or what the SLO expects

    good, bad = direct(6 * 3600)
    assert (status.good, status.bad) == (good, bad)
    total = events_over(6 * 3600, good, bad)
    expected_budget = 1.0 if total == 0 else 1 - (bad / total) / allowed
    assert status.budget_remaining == pytest.approx(expected_budget)
    for rate, (long_s, short_s) in zip(status.burn_rates, [(3600, 300), (6 * 3600, 1800)], strict=True):
        for seconds, got in ((long_s, rate.long_rate), (short_s, rate.short_rate)):
            g, b = direct(seconds)
            total = events_over(seconds, g, b)
            assert got == pytest.approx(0.0 if total == 0 else (b / total) / allowed)
    spent: dict[str, int] = {}
    for t, b, check in history:
        if b and in_window(t, 6 * 3600):
            spent[f"d/{check}"] = spent.get(f"d/{check}", 0) + 1
    assert dict(status.top_checks) == spent


def test_one_event_per_dataset_evaluation_and_error_counts_as_bad() -> None:
    tracker = SloTracker(pipeline(), bucket_seconds=60)
    tracker.record(
        [result(Status.OK, "a"), result(Status.ERROR, "b"), result(Status.OK, "c", slo=None)], 100.0
    )
    tracker.record([result(Status.OK, "a", dataset="e"), result(Status.WARN, "x", slo="undeclared")], 100.0)
    (s,) = tracker.status(100.0)
    assert (s.good, s.bad) == (1, 1)
    assert s.top_checks == (("d/b", 1),)
    assert tracker.unknown_slo_results == 1


def test_ring_forgets_events_older_than_the_period() -> None:
    tracker = SloTracker(pipeline(period=timedelta(hours=1)), bucket_seconds=60)
    tracker.record([result(Status.FAIL)], 0.0)
    tracker.record([result(Status.OK)], 3600.0 + 60)
    (s,) = tracker.status(3600.0 + 60)
    assert (s.good, s.bad) == (1, 0)
    assert tracker.buckets["fresh"].size == 60  # bounded: one bucket per minute of the period


def test_burn_alert_needs_both_windows() -> None:
    tracker = SloTracker(pipeline(objective=99.0), bucket_seconds=60)
    t = 0.0
    for _ in range(55):  # 55 good minutes, then 5 bad minutes: short window burns, long at 8.3x
        t += 60
        tracker.record([result(Status.OK)], t)
    for _ in range(5):
        t += 60
        tracker.record([result(Status.FAIL)], t)
    fast = tracker.status(t)[0].burn_rates[0]
    assert fast.short_rate == pytest.approx(100.0)
    assert fast.long_rate == pytest.approx(5 / 60 / 0.01)
    assert not fast.firing  # 8.3x < 14.4x over the hour
    for _ in range(5):
        t += 60
        tracker.record([result(Status.FAIL)], t)
    assert tracker.status(t)[0].burn_rates[0].firing


def test_snapshot_survives_restart() -> None:
    tracker = SloTracker(pipeline(), bucket_seconds=60)
    for i in range(30):
        tracker.record([result(Status.FAIL if i % 3 == 0 else Status.OK, check="a")], 1000.0 + 60 * i)
    again = SloTracker(pipeline(), bucket_seconds=60)
    again.load_json(tracker.to_json())
    assert again.status(2800.0) == tracker.status(2800.0)


def test_cold_start_budget_is_relative_to_the_period_not_to_the_events_seen() -> None:
    """Issue 10 #3: 70 s after start one bad 5-s window must not read "-3348% of the budget left"
    on a 28-day SLO, nor look like a sustained burn."""
    tracker = SloTracker(pipeline(99.9, timedelta(days=28), bound_window="5s"), bucket_seconds=60)
    t = 1_000_000.0
    for i in range(14):  # 70 s of 5-s windows, the 7th bad
        t += 5
        tracker.record([result(Status.FAIL if i == 6 else Status.OK)], t)
    (s,) = tracker.status(t)
    expected_over_period = 28 * 86400 / 5
    assert s.budget_remaining == pytest.approx(1 - 1 / (0.001 * expected_over_period))
    assert s.budget_remaining > 0.99
    assert not any(br.firing for br in s.burn_rates)
    # the unobserved rest of the hour counts as unspent: 13 bad windows are 13 of the hour's 720
    # expected evaluations (18x), not 13 of the 26 seen (500x); a real full outage still burns
    for _ in range(12):
        t += 5
        tracker.record([result(Status.FAIL)], t)
    (s,) = tracker.status(t)
    fast = s.burn_rates[0]
    assert fast.long_rate == pytest.approx(13 / 720 / 0.001)
    assert fast.firing
