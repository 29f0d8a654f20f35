"""Validity semantics (denominators, all-null columns, typed in_set, engine-checked regexes,
empty ranges, count thresholds) and JSON-friendly timestamp contracts."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dqmon.config.loader import load_checks
from dqmon.errors import ConfigError
from dqmon.results import Status
from tests.checks_helpers import batch, by_check, engine


def frame(**columns: Any) -> pl.DataFrame:
    return pl.DataFrame(columns)


@settings(max_examples=100)
@given(
    values=st.lists(
        st.one_of(st.none(), st.floats(-5, 15), st.sampled_from([math.nan, math.inf, -math.inf])), min_size=1
    ),
    limit=st.sampled_from([0.0, 0.1, 0.25, 0.5]),
)
def test_range_share_is_over_non_null_values_and_compared_as_counts(values: list[Any], limit: float) -> None:
    e = engine([{"validity": {"range": {"x": {"ge": 0, "lt": 10}}, "max_fail_rate": limit}}])
    (result,) = e.evaluate(batch(pl.DataFrame({"x": values}, schema={"x": pl.Float64})))
    present = [v for v in values if v is not None]
    bad = sum(1 for v in present if not (math.isfinite(v) and 0 <= v < 10))
    assert result.details["violations"] == bad and result.details["denominator"] == len(present)
    if present:
        assert result.value == pytest.approx(bad / len(present))
        assert (result.status == Status.FAIL) == (bad > limit * len(present) + 1e-9)
    else:
        assert result.status == Status.OK


def test_nulls_do_not_dilute_and_all_null_columns_are_not_errors() -> None:
    e = engine(
        [{"validity": {"in_set": {"side": ["buy"]}, "regex": {"code": "^A"}, "range": {"x": {"gt": 0}}}}]
    )
    df = pl.DataFrame(
        {"side": ["buy", "sell"] + [None] * 8, "code": [None] * 10, "x": [None] * 10},
        schema={"side": pl.String, "code": pl.Null, "x": pl.Null},
    )
    got = by_check(e.evaluate(batch(df)))
    assert got["in_set(side)"].value == 0.5 and got["in_set(side)"].details["denominator"] == 2
    for name in ("regex(code)", "range(x)"):
        assert got[name].status == Status.OK and got[name].details["violations"] == 0, got[name].message


def test_in_set_compares_typed_values() -> None:
    e = engine(
        [
            {
                "validity": {
                    "in_set": {
                        "flag": [True, False],
                        "level": [1, 2],
                        "code": [1, True, "x"],
                        "wrong": ["1", "2"],
                    }
                }
            }
        ]
    )
    df = frame(flag=[True, False, None], level=[1.0, 2, 3], code=["1", "true", "y"], wrong=[1, 2, 3])
    got = by_check(e.evaluate(batch(df)))
    assert got["in_set(flag)"].status == Status.OK and got["in_set(flag)"].details["violations"] == 0
    assert got["in_set(level)"].details["violations"] == 1
    # a string column compares the set's values by their YAML text: 1 → "1", true → "true"
    assert got["in_set(code)"].details["violations"] == 1
    # numbers against quoted strings is explicit: an error for that rule alone
    assert got["in_set(wrong)"].status == Status.ERROR and "unquoted" in got["in_set(wrong)"].message
    assert got["in_set(level)"].status == Status.FAIL


def test_one_rule_that_cannot_run_does_not_hide_the_others() -> None:
    e = engine(
        [{"validity": {"range": {"symbol": {"gt": 0}}, "not_null": ["price"], "in_set": {"side": ["buy"]}}}]
    )
    df = frame(symbol=["a", "b"], price=[1.0, None], side=["buy", "sell"])
    got = by_check(e.evaluate(batch(df)))
    assert got["range(symbol)"].status == Status.ERROR and "numeric" in got["range(symbol)"].message
    assert got["not_null(price)"].status == Status.FAIL and got["in_set(side)"].status == Status.FAIL


def test_a_tenth_is_within_max_fail_rate_a_tenth() -> None:
    e = engine([{"validity": {"not_null": ["x"], "max_fail_rate": 1 - 0.9}}])
    df = pl.DataFrame({"x": [None] + [1] * 9})
    assert by_check(e.evaluate(batch(df)))["not_null(x)"].status == Status.OK


def write(tmp_path: Path, checks: str) -> Path:
    (tmp_path / "p.yaml").write_text(
        "pipeline: p\ndatasets:\n  - name: d\n    source: {kind: kafka, topic: t}\n    checks:\n" + checks
    )
    return tmp_path


@pytest.mark.parametrize(
    ("rule", "reason"),
    [
        ("{range: {x: {ge: 10, le: 0}}}", "empty range"),
        ("{range: {x: {gt: 5, lt: 5}}}", "empty range"),
        ("{range: {x: {gt: 5, le: 5}}}", "empty range"),
        ('{regex: {x: "(?=a)b"}}', "look-around"),
        ('{regex: {x: "(a)\\\\1"}}', "backreferences"),
    ],
)
def test_empty_ranges_and_regexes_polars_cannot_run_are_load_errors(
    tmp_path: Path, rule: str, reason: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_checks(write(tmp_path, f"      - validity: {rule}\n"))
    assert "p.yaml:6" in str(info.value) and reason in str(info.value)


def test_point_ranges_load(tmp_path: Path) -> None:
    load_checks(write(tmp_path, "      - validity: {range: {x: {ge: 5, le: 5}}, regex: {y: '^a+$'}}\n"))


# ---------------------------------------------------------------------- contracts
def test_timestamp_contract_fields_accept_iso_strings_and_epochs_and_count_unparseable() -> None:
    contract = {
        "fields": {
            "ts": {"type": "timestamp"},
            "ms": {"type": "timestamp"},
            "flag": {"type": "timestamp", "required": False},
        }
    }
    e = engine([{"schema": {"contract": contract, "on_drift": "ignore"}}])
    good = frame(ts=["2026-11-25T12:00:00Z", "2026-11-25T12:00:01Z", None], ms=[1_764_000_000_000, 1, 2])
    result = by_check(e.evaluate(batch(good)))["schema"]
    assert result.status == Status.OK, result.message
    bad = frame(
        ts=["2026-11-25T12:00:00Z", "yesterday", "soon"],
        ms=[1.0, float("nan"), 3.0],
        flag=[True, False, True],
    )
    result = by_check(e.evaluate(batch(bad)))["schema"]
    assert result.status == Status.FAIL
    assert result.details["unparseable_timestamps"] == {"ts": 2, "ms": 1}
    assert set(result.details["wrong_type"]) == {"flag"}
    assert "unparseable timestamps: ts (2), ms (1)" in result.message
