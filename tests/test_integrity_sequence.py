"""sequence: gaps, regressions and repeats per key, against a plain-Python reference across windows."""

from __future__ import annotations

from typing import Any

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from dqmon.results import Status
from dqmon.state.store import MemoryStateStore
from tests.checks_helpers import Clock, by_check, engine
from tests.integrity_helpers import cuts, micro_batch, windows

SCHEMA = {"symbol": pl.String, "seq": pl.Int64}


def reference(stream: list[dict[str, Any]]) -> dict[str, int]:
    last: dict[str, int] = {}
    out = {"gaps": 0, "missing": 0, "regressions": 0, "repeats": 0, "new_keys": 0, "unusable": 0}
    for row in stream:
        key, seq = row["symbol"], row["seq"]
        if seq is None:
            out["unusable"] += 1
            continue
        if key not in last:
            out["new_keys"] += 1
        else:
            step = seq - last[key]
            if step > 1:
                out["gaps"] += 1
                out["missing"] += step - 1
            elif step == 0:
                out["repeats"] += 1
            elif step < 0:
                out["regressions"] += 1
        last[key] = seq
    return out


def feed(symbols: list[str], steps: list[int | None]) -> list[dict[str, Any]]:
    """Per symbol a sequence that mostly counts up by one, with gaps, repeats, regressions, nulls."""
    current: dict[str, int] = {}
    rows = []
    for symbol, step in zip(symbols, steps, strict=False):
        if step is None:
            rows.append({"symbol": symbol, "seq": None})
            continue
        current[symbol] = current.get(symbol, 100) + step
        rows.append({"symbol": symbol, "seq": current[symbol]})
    return rows


stream = st.integers(0, 60).flatmap(
    lambda n: st.tuples(
        st.lists(st.sampled_from(["BTC", "ETH", "SOL"]), min_size=n, max_size=n),
        st.lists(
            st.one_of(st.just(1), st.just(1), st.integers(-3, 4), st.none()),
            min_size=n,
            max_size=n,
        ),
    )
)


@settings(max_examples=150)
@given(data=st.data(), drawn=stream)
def test_sequence_counts_match_the_reference_however_the_stream_is_windowed(data: Any, drawn: Any) -> None:
    rows = feed(*drawn)
    eng = engine([{"sequence": {"column": "seq", "by": "symbol", "max_missing": 10**9}}])
    totals = dict.fromkeys(("gaps", "missing", "regressions", "repeats", "new_keys", "unusable"), 0)
    for i, window in enumerate(windows(rows, data.draw(cuts(len(rows))))):
        (result,) = eng.evaluate(micro_batch(window, SCHEMA, i))
        for name in totals:
            totals[name] += result.details.get(name, 0)
    assert totals == reference(rows)


def test_a_gap_fails_and_names_the_key_and_the_state_is_kept_across_windows() -> None:
    eng = engine([{"sequence": {"column": "seq", "by": ["symbol"], "max_repeats": 1}}])
    first = [{"symbol": "BTC", "seq": 1}, {"symbol": "ETH", "seq": 7}, {"symbol": "BTC", "seq": 2}]
    (ok,) = eng.evaluate(micro_batch(first, SCHEMA, 0))
    assert ok.status == Status.OK and ok.value == 0
    second = [
        {"symbol": "ETH", "seq": None},
        {"symbol": "BTC", "seq": 6},
        {"symbol": "ETH", "seq": 8},
        {"symbol": "ETH", "seq": 8},
    ]
    (bad,) = eng.evaluate(micro_batch(second, SCHEMA, 1))
    assert bad.status == Status.FAIL
    assert bad.details["missing"] == 3 and bad.details["gaps"] == 1 and bad.details["repeats"] == 1
    assert "3 numbers missing in 1 gaps" in bad.message and "repeated" not in bad.message
    assert bad.details["worst_keys"] == [
        {"symbol": "BTC", "breaks": 1, "missing": 3},
        {"symbol": "ETH", "breaks": 1, "missing": 0},
    ]


def test_least_recently_seen_keys_are_dropped_beyond_the_bound() -> None:
    eng = engine([{"sequence": {"column": "seq", "by": "symbol", "max_keys": 2}}])
    eng.evaluate(micro_batch([{"symbol": "A", "seq": 1}, {"symbol": "B", "seq": 1}], SCHEMA, 0))
    eng.evaluate(micro_batch([{"symbol": "A", "seq": 2}], SCHEMA, 1))  # A used more recently than B
    (result,) = eng.evaluate(micro_batch([{"symbol": "C", "seq": 1}], SCHEMA, 2))
    assert result.details["evicted_keys"] == 1 and result.details["state_entries"] == 2
    # B was dropped: it starts afresh instead of being compared with its old number
    (result,) = eng.evaluate(micro_batch([{"symbol": "B", "seq": 50}, {"symbol": "A", "seq": 3}], SCHEMA, 3))
    assert result.details["new_keys"] == 1 and result.details["missing"] == 0
    assert result.details["evicted_keys_total"] == 2


def test_no_key_floats_bad_types_and_restarts() -> None:
    store, clock = MemoryStateStore(), Clock()
    spec = [{"sequence": {"column": "seq"}}]
    eng = engine(spec, clock=clock, store=store)
    schema = {"seq": pl.Float64}
    (result,) = eng.evaluate(micro_batch([{"seq": 1.0}, {"seq": 2.5}, {"seq": 2.0}], schema, 0))
    assert result.details["unusable"] == 1 and result.status == Status.OK
    clock.advance(61)
    eng.evaluate(micro_batch([{"seq": 3.0}], schema, 1))
    restarted = engine(spec, clock=clock, store=store)
    (result,) = restarted.evaluate(micro_batch([{"seq": 5.0}], schema, 2))
    assert result.details["missing"] == 1 and result.status == Status.FAIL
    results = by_check(restarted.evaluate(micro_batch([{"seq": "x"}], {"seq": pl.String}, 3)))
    assert results["sequence"].status == Status.ERROR and "integers" in results["sequence"].message
