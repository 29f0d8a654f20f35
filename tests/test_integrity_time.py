"""late_arrivals against a plain-Python reference across random windows; point_in_time shares."""

from __future__ import annotations

from typing import Any

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from dqmon.results import Status
from dqmon.state.store import MemoryStateStore
from tests.checks_helpers import NOW, by_check, engine
from tests.integrity_helpers import BASE, cuts, micro_batch, windows

SCHEMA = {"_partition": pl.Int32, "event_ts": pl.Int64}
MAX_DELAY = 5


def late_reference(stream: list[dict[str, Any]], per_partition: bool) -> int:
    newest: dict[int, int] = {}
    late = 0
    for row in stream:
        if row["event_ts"] is None:
            continue
        part = row["_partition"] if per_partition else -1
        if part in newest and row["event_ts"] < newest[part] - MAX_DELAY:
            late += 1
        newest[part] = max(newest.get(part, row["event_ts"]), row["event_ts"])
    return late


records = st.lists(
    st.tuples(st.integers(0, 2), st.one_of(st.integers(-12, 8), st.none())),
    max_size=80,
)


@settings(max_examples=150)
@given(data=st.data(), raw=records, per_partition=st.booleans())
def test_late_arrivals_match_the_reference_however_the_stream_is_windowed(
    data: Any, raw: Any, per_partition: bool
) -> None:
    t = BASE
    stream = []
    for part, step in raw:
        if step is not None:
            t += step
        stream.append({"_partition": part, "event_ts": t if step is not None else None})
    eng = engine([{"late_arrivals": {"max_delay": MAX_DELAY, "per_partition": per_partition, "max_rate": 1}}])
    late = untimed = 0
    for i, rows in enumerate(windows(stream, data.draw(cuts(len(stream))))):
        (result,) = eng.evaluate(micro_batch(rows, SCHEMA, i))
        late += result.details.get("late", 0)
        untimed += result.details.get("untimed_rows", 0)
    assert late == late_reference(stream, per_partition)
    assert untimed == sum(r["event_ts"] is None for r in stream)


def test_late_share_is_judged_and_the_newest_time_survives_a_restart() -> None:
    store = MemoryStateStore()
    spec = [{"late_arrivals": {"max_delay": "2m", "max_rate": 0.1}}]
    first = engine(spec, store=store)
    (ok,) = first.evaluate(micro_batch([{"_partition": 0, "event_ts": BASE + 600}], SCHEMA, 0))
    assert ok.status == Status.OK and ok.value == 0
    restarted = engine(spec, store=store)
    rows = [{"_partition": 0, "event_ts": BASE + 600 - d} for d in (0, 30, 121, 300)] + [
        {"_partition": 0, "event_ts": BASE + 601}
    ] * 6
    (result,) = restarted.evaluate(micro_batch(rows, SCHEMA, 1))
    assert result.details["late"] == 2 and result.value == 0.2 and result.status == Status.FAIL
    assert result.details["max_delay_seconds"] == 300.0
    # exactly 10% late is within max_rate 0.1 (compared as counts)
    (edge,) = restarted.evaluate(
        micro_batch(
            [{"_partition": 0, "event_ts": BASE}] + [{"_partition": 0, "event_ts": BASE + 700}] * 9, SCHEMA, 2
        )
    )
    assert edge.details["late"] == 1 and edge.status == Status.OK


def test_iso_string_times_and_a_missing_column() -> None:
    eng = engine([{"late_arrivals": {"max_delay": "1m"}}])
    schema = {"event_ts": pl.String}
    rows = [{"event_ts": "2026-11-25T12:00:00Z"}, {"event_ts": "2026-11-25T11:58:00Z"}, {"event_ts": "bad"}]
    (result,) = eng.evaluate(micro_batch(rows, schema))
    assert result.details == {**result.details, "late": 1, "timed_rows": 2, "untimed_rows": 1}
    (missing,) = eng.evaluate(micro_batch([{"x": 1}], {"x": pl.Int64}))
    assert missing.status == Status.FAIL and "missing" in missing.message


PIT_SCHEMA = {"feature_ts": pl.Datetime("us", "UTC"), "event_ts": pl.Datetime("us", "UTC")}


def pit_rows(*pairs: tuple[float | None, float]) -> list[dict[str, Any]]:
    """(feature age in seconds before the event, event offset) pairs; a negative age is leakage."""
    from datetime import timedelta

    return [
        {
            "feature_ts": None if age is None else NOW + timedelta(seconds=at - age),
            "event_ts": NOW + timedelta(seconds=at),
        }
        for age, at in pairs
    ]


def test_point_in_time_reports_leakage_and_stale_features_apart() -> None:
    eng = engine(
        [
            {
                "point_in_time": {
                    "feature_time": "feature_ts",
                    "max_feature_age": "5m",
                    "tolerance": "1s",
                    "max_stale_rate": 0.25,
                }
            }
        ]
    )
    rows = pit_rows((10, 0), (-0.5, 1), (-30, 2), (301, 3), (400, 4), (None, 5))
    results = by_check(eng.evaluate(micro_batch(rows, PIT_SCHEMA)))
    leak, stale = results["point_in_time:leakage"], results["point_in_time:stale"]
    assert leak.details["leaking"] == 1 and leak.details["timed_rows"] == 5 and leak.status == Status.FAIL
    assert leak.details["max_feature_lead_seconds"] == 30.0
    assert stale.details["stale"] == 2 and stale.value == 0.4 and stale.status == Status.FAIL
    assert leak.details["untimed_rows"] == 1
    clean = by_check(eng.evaluate(micro_batch(pit_rows((10, 0), (20, 1)), PIT_SCHEMA)))
    assert {r.status for r in clean.values()} == {Status.OK}
    # max_rate covers both results unless one is overridden
    shared = engine(
        [{"point_in_time": {"feature_time": "feature_ts", "max_feature_age": "5m", "max_rate": 0.5}}]
    )
    results = by_check(shared.evaluate(micro_batch(rows, PIT_SCHEMA)))
    assert {r.status for r in results.values()} == {Status.OK}


def test_point_in_time_without_an_age_limit_and_with_epoch_numbers() -> None:
    eng = engine([{"point_in_time": {"feature_time": "f", "event_time": "e"}}])
    rows = [{"f": 1_764_000_000_000, "e": 1_764_000_001.0}, {"f": 1_764_000_002_000, "e": 1_764_000_001.0}]
    results = eng.evaluate(micro_batch(rows, {"f": pl.Int64, "e": pl.Float64}))
    assert [r.check for r in results] == ["point_in_time:leakage"]
    assert results[0].details["leaking"] == 1 and results[0].value == 0.5
