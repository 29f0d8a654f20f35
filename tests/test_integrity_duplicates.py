"""duplicates: exact against a plain-Python reference on random streams cut into random windows."""

from __future__ import annotations

from typing import Any

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing.parametric import column, dataframes

from dqmon.checks.duplicates_state import DuplicateState
from dqmon.config.loader import load_checks
from dqmon.results import Status
from dqmon.state.store import MemoryStateStore
from tests.checks_helpers import Clock, batch, engine
from tests.integrity_helpers import BASE, cuts, micro_batch, windows

SCHEMA = {"_partition": pl.Int32, "k": pl.Int64, "v": pl.Int64, "event_ts": pl.Int64}
HORIZON = 10


def reference(stream: list[dict[str, Any]], horizon: float) -> tuple[int, int]:
    """Duplicates and exact re-sends, one record at a time, with unbounded dictionaries."""
    newest: dict[int, float] = {}
    last: dict[tuple[int, int], tuple[float, int]] = {}
    dups = resends = 0
    for row in stream:
        part, key, value, t = row["_partition"], row["k"], row["v"], row["event_ts"]
        newest[part] = max(newest.get(part, t), t)
        prev = last.get((part, key))
        if prev is not None and prev[0] >= newest[part] - horizon:
            dups += 1
            resends += prev[1] == value
        last[(part, key)] = (max(prev[0], t) if prev else t, value)
    return dups, resends


records = st.lists(
    st.fixed_dictionaries(
        {
            "_partition": st.integers(0, 2),
            "k": st.integers(0, 6),
            "v": st.integers(0, 2),
            "step": st.integers(-4, 6),  # time moves mostly forward, sometimes back (late records)
        }
    ),
    max_size=80,
)


def with_times(raw: list[dict[str, Any]]) -> list[dict[str, Any]]:
    t = BASE
    out = []
    for row in raw:
        t += row["step"]
        out.append({"_partition": row["_partition"], "k": row["k"], "v": row["v"], "event_ts": t})
    return out


def run(stream: list[dict[str, Any]], points: list[int], **spec: Any) -> tuple[int, int, Any]:
    eng = engine([{"duplicates": {"key": "k", "payload": "v", "horizon": HORIZON, **spec}}])
    dups = resends = 0
    for i, rows in enumerate(windows(stream, points)):
        (result,) = eng.evaluate(micro_batch(rows, SCHEMA, i))
        dups += result.details.get("duplicates", 0)
        resends += result.details.get("exact_resends", 0)
    return dups, resends, eng.checks[0]


@settings(max_examples=150)
@given(data=st.data(), raw=records)
def test_duplicates_match_the_reference_however_the_stream_is_windowed(data: Any, raw: Any) -> None:
    stream = with_times(raw)
    dups, resends, _ = run(stream, data.draw(cuts(len(stream))))
    assert (dups, resends) == reference(stream, HORIZON)


@settings(max_examples=60)
@given(data=st.data(), raw=records)
def test_per_partition_states_merge_into_the_single_process_state(data: Any, raw: Any) -> None:
    stream = with_times(raw)
    points = data.draw(cuts(len(stream)))
    *_, whole = run(stream, points)
    # two replicas: partition 0 on one, partitions 1-2 on the other
    *_, left = run([r for r in stream if r["_partition"] == 0], [])
    *_, right = run([r for r in stream if r["_partition"] != 0], [])
    merged = left.state.merge(right.state)

    def canon(state: DuplicateState) -> list[tuple[Any, ...]]:
        return sorted(state.keys.rows())

    assert canon(merged) == canon(whole.state)
    assert merged.newest == whole.state.newest
    assert canon(whole.state.partition(0)) == canon(left.state)


def test_exact_resends_and_new_payloads_are_told_apart_and_the_rate_is_judged() -> None:
    eng = engine([{"duplicates": {"key": ["k"], "payload": ["v"], "horizon": "1m", "max_rate": 0.25}}])
    rows = [
        {"_partition": 0, "k": 1, "v": 10, "event_ts": BASE},
        {"_partition": 0, "k": 2, "v": 20, "event_ts": BASE + 1},
        {"_partition": 0, "k": 3, "v": 30, "event_ts": BASE + 2},
        {"_partition": 0, "k": 4, "v": 40, "event_ts": BASE + 3},
    ]
    (first,) = eng.evaluate(micro_batch(rows, SCHEMA, 0))
    assert first.status == Status.OK and first.value == 0.0
    again = [
        {"_partition": 0, "k": 1, "v": 10, "event_ts": BASE + 5},  # exact re-send
        {"_partition": 0, "k": 2, "v": 21, "event_ts": BASE + 6},  # same key, new payload
        {"_partition": 0, "k": 5, "v": 50, "event_ts": BASE + 7},
        {"_partition": 0, "k": 6, "v": 60, "event_ts": BASE + 8},
    ]
    (second,) = eng.evaluate(micro_batch(again, SCHEMA, 1))
    assert second.details["exact_resends"] == 1 and second.details["changed_payload"] == 1
    assert second.status == Status.FAIL and second.value == 0.5
    assert "1 exact re-sends, 1 with a new payload" in second.message
    assert second.details["state_entries"] == 6


def test_keys_older_than_the_horizon_are_forgotten_and_the_bound_is_reported() -> None:
    eng = engine([{"duplicates": {"key": "k", "horizon": "10s", "max_keys": 3}}])
    rows = [{"_partition": 0, "k": i, "v": 0, "event_ts": BASE + i} for i in range(5)]
    (result,) = eng.evaluate(micro_batch(rows, SCHEMA, 0))
    assert result.details["state_entries"] == 3 and result.details["evicted_keys"] == 2
    assert result.details["exact"] is False and "lower bound" in result.message
    late = [{"_partition": 0, "k": 4, "v": 0, "event_ts": BASE + 30}]  # 26 s later: beyond the horizon
    (result,) = eng.evaluate(micro_batch(late, SCHEMA, 1))
    assert result.details["duplicates"] == 0 and result.details["state_entries"] == 1
    # the dropped keys are beyond the horizon now: the answer is exact again
    assert result.details["exact"] is True and result.details["evicted_keys_total"] == 2


def test_state_survives_a_restart_through_the_store() -> None:
    store, clock = MemoryStateStore(), Clock()
    spec = [{"duplicates": {"key": "k", "horizon": "10m"}}]
    first = engine(spec, clock=clock, store=store)
    first.evaluate(micro_batch([{"_partition": 0, "k": 1, "v": 0, "event_ts": BASE}], SCHEMA, 0))
    clock.advance(61)
    first.evaluate(micro_batch([{"_partition": 1, "k": 2, "v": 0, "event_ts": BASE}], SCHEMA, 1))
    restarted = engine(spec, clock=clock, store=store)
    (result,) = restarted.evaluate(
        micro_batch([{"_partition": 0, "k": 1, "v": 0, "event_ts": BASE}], SCHEMA, 2)
    )
    # the default payload is every non-key field, event time included: an identical record
    assert result.details["duplicates"] == 1 and result.details["exact_resends"] == 1


def test_missing_key_column_and_empty_batches() -> None:
    eng = engine([{"duplicates": {"key": ["k", "nope"], "horizon": "1m"}}])
    (result,) = eng.evaluate(micro_batch([{"_partition": 0, "k": 1, "v": 0, "event_ts": BASE}], SCHEMA))
    assert result.status == Status.FAIL and "nope" in result.message
    (result,) = eng.evaluate(micro_batch([], SCHEMA))
    assert result.status == Status.OK


def test_spec_errors_point_at_the_file(tmp_path: Any) -> None:
    (tmp_path / "p.yaml").write_text(
        "pipeline: p\ndatasets:\n  - name: d\n    source: {kind: kafka, topic: t}\n    checks:\n"
        "      - duplicates: {key: [], horizon: 10m}\n"
    )
    import pytest

    from dqmon.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        load_checks(tmp_path)
    assert "p.yaml:6" in str(info.value)


def test_records_without_a_key_are_counted_apart_and_never_duplicates() -> None:
    eng = engine([{"duplicates": {"key": "k", "horizon": "1m"}}])
    rows = [{"_partition": 0, "k": None, "v": 1, "event_ts": BASE}] * 3 + [
        {"_partition": 0, "k": 1, "v": 1, "event_ts": BASE},
        {"_partition": 0, "k": 1, "v": 1, "event_ts": BASE},
    ]
    (result,) = eng.evaluate(micro_batch(rows, SCHEMA))
    assert result.details["null_keys"] == 3 and result.details["duplicates"] == 1
    assert result.details["rows"] == 2 and result.value == 0.5
    (result,) = eng.evaluate(micro_batch(rows[:3], SCHEMA, 1))
    assert result.details["duplicates"] == 0 and result.status == Status.OK


@settings(max_examples=40, deadline=None)
@given(
    dataframes(
        [
            column("k", allow_null=True),
            column("seq", allow_null=True),
            column("event_ts", allow_null=True),
            column("feature_ts", allow_null=True),
            column("_partition", allow_null=True),
        ],
        max_size=30,
        allow_infinity=True,
        allow_nan=True,
    )
)
def test_the_integrity_checks_never_raise_on_arbitrary_frames(df: pl.DataFrame) -> None:
    eng = engine(
        [
            {"duplicates": {"key": "k", "horizon": "1m"}},
            {"sequence": {"column": "seq", "by": "k"}},
            {"late_arrivals": {"max_delay": "1m"}},
            {"point_in_time": {"feature_time": "feature_ts", "max_feature_age": "1m"}},
        ]
    )
    for _ in range(2):  # the second pass meets the state the first one left
        results = eng.evaluate(batch(df))
        assert {r.kind for r in results} == {"duplicates", "sequence", "late_arrivals", "point_in_time"}
        assert all(r.message for r in results)
