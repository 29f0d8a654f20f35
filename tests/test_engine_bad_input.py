"""Bad batches give `error` or `fail` results with a reason, never an exception out of the engine."""

from __future__ import annotations

import polars as pl
from hypothesis import HealthCheck, given, settings
from polars.testing.parametric import column, dataframes

from dqmon.results import Status
from tests.checks_helpers import batch, by_check, engine, trades

SUITE = [
    {"freshness": {"max_lag": "30s"}},
    {"volume": {"min": 1}},
    {
        "schema": {
            "contract": {
                "fields": {"price": {"type": "float", "nullable": False}, "symbol": {"type": "string"}}
            }
        }
    },
    {
        "distribution": {
            "column": "price",
            "metric": "ks",
            "max": 0.3,
            "reference": "rolling_1h",
            "min_rows": 2,
        }
    },
    {
        "distribution": {
            "name": "cat",
            "column": "symbol",
            "metric": "psi",
            "max": 0.3,
            "reference": "rolling_1h",
            "min_rows": 2,
            "by": "side",
        }
    },
    {
        "validity": {
            "not_null": ["price"],
            "range": {"price": {"gt": 0}},
            "in_set": {"side": ["buy", "sell"]},
            "regex": {"symbol": "^[A-Z]"},
            "unique": "trade_id",
        }
    },
    {"sql": {"query": "select avg(price) as value from batch", "min": 0}},
]


def test_wrong_types_give_error_or_fail_with_reason() -> None:
    e = engine(SUITE)
    e.evaluate(batch(trades()))
    df = trades().with_columns(
        pl.col("price").cast(pl.String), pl.col("event_ts").cast(pl.String).str.slice(0, 3)
    )
    got = by_check(e.evaluate(batch(df)))
    assert got["range(price)"].status == Status.ERROR and "numeric" in got["range(price)"].message
    assert got["schema"].status == Status.FAIL and "price" in got["schema"].message
    assert got["schema:drift"].status == Status.WARN and "retyped price" in got["schema:drift"].message
    assert got["freshness"].status == Status.FAIL and "no parseable event times" in got["freshness"].message
    assert got["distribution"].status == Status.ERROR and "numeric" in got["distribution"].message
    assert got["sql"].status == Status.ERROR
    assert got["in_set(side)"].status == Status.OK  # unaffected checks still report


def test_all_null_columns() -> None:
    e = engine(SUITE)
    df = trades().with_columns(pl.lit(None, dtype=pl.Float64).alias("price"), pl.lit(None).alias("event_ts"))
    got = by_check(e.evaluate(batch(df)))
    assert got["not_null(price)"].status == Status.FAIL and got["not_null(price)"].value == 1.0
    assert got["schema"].status == Status.FAIL and "nulls in non-nullable" in got["schema"].message
    assert got["freshness"].status == Status.FAIL
    assert got["distribution"].status == Status.OK and "insufficient" in got["distribution"].message


def test_empty_batches() -> None:
    e = engine(SUITE)
    for df in (pl.DataFrame(), trades().head(0)):
        got = by_check(e.evaluate(batch(df)))
        assert got["volume"].status == Status.FAIL and got["volume"].value == 0
        assert all(r.status in (Status.OK, Status.FAIL) for r in got.values()), {
            k: (r.status, r.message) for k, r in got.items() if r.status == Status.ERROR
        }


def test_nan_and_inf_values() -> None:
    e = engine(SUITE)
    df = trades().with_columns(
        pl.when(pl.int_range(pl.len()) < 10)
        .then(float("inf"))
        .when(pl.int_range(pl.len()) < 20)
        .then(float("nan"))
        .otherwise(pl.col("price"))
        .alias("price")
    )
    got = by_check(e.evaluate(batch(df)))
    assert got["range(price)"].status == Status.FAIL and got["range(price)"].details["violations"] == 20
    assert got["sql"].status in (Status.OK, Status.ERROR)  # avg of nan is nan: never a crash
    assert got["distribution"].status == Status.OK


def test_unknown_and_missing_columns() -> None:
    e = engine(SUITE)
    df = pl.DataFrame({"something": [1, 2, 3], "else": ["a", "b", "c"]})
    got = by_check(e.evaluate(batch(df)))
    assert got["not_null(price)"].status == Status.FAIL and "missing" in got["not_null(price)"].message
    assert (
        got["schema"].status == Status.FAIL
        and "missing required fields: price, symbol" in got["schema"].message
    )
    assert got["freshness"].status == Status.FAIL and "missing" in got["freshness"].message
    assert got["distribution"].status == Status.FAIL and "missing" in got["distribution"].message


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    dataframes(
        [
            column("price", allow_null=True),
            column("symbol", allow_null=True),
            column("side", allow_null=True),
            column("trade_id", allow_null=True),
            column("event_ts", allow_null=True),
        ],
        max_size=50,
        allow_infinity=True,
        allow_nan=True,
    )
)
def test_engine_never_raises_on_arbitrary_frames(df: pl.DataFrame) -> None:
    e = engine(SUITE)
    results = e.evaluate(batch(df))
    assert {r.kind for r in results} == {"freshness", "volume", "schema", "distribution", "validity", "sql"}
    for result in results:
        assert result.message
        if result.status == Status.ERROR:
            # an error says why in one line, carries no value, and is not a leaked traceback
            assert result.value is None, result
            assert "\n" not in result.message and "Traceback" not in result.message, result.message
