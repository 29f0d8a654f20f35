"""The great_expectations check runs a real GX suite on a batch with known defects."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from dqmon.batch import MicroBatch
from dqmon.config.models import Pipeline
from dqmon.engine import DatasetEngine
from dqmon.results import CheckResult, Status

pytestmark = pytest.mark.gx

NOW = datetime(2025, 1, 1, tzinfo=UTC)

SUITE_V1 = {
    "name": "trades_suite",
    "expectations": [
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "trade_id"}},
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "symbol"}},
        {"type": "expect_column_values_to_be_between", "kwargs": {"column": "price", "min_value": 0}},
        {
            "type": "expect_column_values_to_be_in_set",
            "kwargs": {"column": "symbol", "value_set": ["BTC", "ETH", "SOL"]},
        },
        {"type": "expect_column_values_to_be_unique", "kwargs": {"column": "trade_id"}},
        {"type": "expect_table_row_count_to_be_between", "kwargs": {"min_value": 1, "max_value": 100}},
        {
            "type": "expect_column_values_to_match_regex",
            "kwargs": {"column": "venue", "regex": "^[a-z]+$"},
            "severity": "warning",
        },
        {"type": "expect_column_to_exist", "kwargs": {"column": "fee"}},
        {"type": "expect_column_values_to_be_between", "kwargs": {"column": "qty", "max_value": 10}},
        {"type": "expect_column_values_to_be_teleported", "kwargs": {"column": "qty"}},
    ],
}

# 8 rows: a null trade_id, a duplicate trade_id, a negative price, DOGE, one venue in capitals
BATCH = pl.DataFrame(
    {
        "trade_id": [1, 2, 3, 4, 5, 5, None, 8],
        "symbol": ["BTC", "ETH", "SOL", "BTC", "DOGE", "ETH", "BTC", "SOL"],
        "price": [100.0, 10.0, 5.0, -1.0, 0.1, 11.0, 101.0, 5.5],
        "venue": ["binance", "kraken", "kraken", "BINANCE", "binance", "kraken", "binance", "kraken"],
        "qty": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0],
    }
)


def engine_for(tmp_path: Path, suite: Any, *, severity: str = "page") -> DatasetEngine:
    (tmp_path / "suites").mkdir(exist_ok=True)
    (tmp_path / "suites" / "trades.json").write_text(
        suite if isinstance(suite, str) else json.dumps(suite), encoding="utf-8"
    )
    pipeline = Pipeline.model_validate(
        {
            "pipeline": "trades-features",
            "datasets": [
                {
                    "name": "trades",
                    "source": {"kind": "replay", "path": "trades.ndjson"},
                    "checks": [
                        {
                            "great_expectations": {
                                "suite": "suites/trades.json",
                                "name": "gx",
                                "severity": severity,
                            }
                        }
                    ],
                }
            ],
        }
    )
    return DatasetEngine(pipeline, pipeline.datasets[0], base_dir=tmp_path, clock=lambda: NOW)


def run(engine: DatasetEngine, df: pl.DataFrame = BATCH) -> dict[str, CheckResult]:
    batch = MicroBatch(
        pipeline="trades-features",
        dataset="trades",
        df=df,
        window_start=NOW,
        window_end=NOW,
        rows_seen=df.height,
        rows_sampled=df.height,
    )
    results = engine.evaluate(batch)
    by_name = {r.check: r for r in results}
    assert len(by_name) == len(results), "result names must be unique"
    return by_name


def test_each_expectation_of_a_real_suite_reports_its_own_outcome(tmp_path: Path) -> None:
    results = run(engine_for(tmp_path, SUITE_V1))
    assert set(results) == {
        "gx:expect_column_values_to_not_be_null:trade_id",
        "gx:expect_column_values_to_not_be_null:symbol",
        "gx:expect_column_values_to_be_between:price",
        "gx:expect_column_values_to_be_in_set:symbol",
        "gx:expect_column_values_to_be_unique:trade_id",
        "gx:expect_table_row_count_to_be_between",
        "gx:expect_column_values_to_match_regex:venue",
        "gx:expect_column_to_exist:fee",
        "gx:expect_column_values_to_be_between:qty",
        "gx:expect_column_values_to_be_teleported:qty",
    }
    status = {name.removeprefix("gx:"): r.status for name, r in results.items()}
    assert status == {
        "expect_column_values_to_not_be_null:trade_id": Status.FAIL,
        "expect_column_values_to_not_be_null:symbol": Status.OK,
        "expect_column_values_to_be_between:price": Status.FAIL,
        "expect_column_values_to_be_in_set:symbol": Status.FAIL,
        "expect_column_values_to_be_unique:trade_id": Status.FAIL,
        "expect_table_row_count_to_be_between": Status.OK,
        "expect_column_values_to_match_regex:venue": Status.WARN,  # the suite says severity warning
        "expect_column_to_exist:fee": Status.FAIL,
        "expect_column_values_to_be_between:qty": Status.OK,
        "expect_column_values_to_be_teleported:qty": Status.ERROR,  # not a GX expectation
    }
    null_ids = results["gx:expect_column_values_to_not_be_null:trade_id"]
    assert null_ids.value == pytest.approx(1 / 8)
    assert null_ids.details["unexpected_count"] == 1
    assert null_ids.kind == "great_expectations"
    price = results["gx:expect_column_values_to_be_between:price"]
    assert price.value == pytest.approx(1 / 8)
    assert price.threshold == "min_value=0"
    assert price.details["unexpected_sample"] == ["-1.0"]
    in_set = results["gx:expect_column_values_to_be_in_set:symbol"]
    assert in_set.details["unexpected_sample"] == ["DOGE"]
    assert "1 of 8 values unexpected" in in_set.message
    # GX counts both rows of the duplicated id, of the 7 non-null ones
    assert results["gx:expect_column_values_to_be_unique:trade_id"].details["unexpected_count"] == 2
    assert results["gx:expect_table_row_count_to_be_between"].value == 8
    assert "teleported" in results["gx:expect_column_values_to_be_teleported:qty"].message


def test_a_clean_batch_passes_and_the_suite_is_loaded_once(tmp_path: Path) -> None:
    suite = {"name": "s", "expectations": SUITE_V1["expectations"][:6]}  # type: ignore[index]
    engine = engine_for(tmp_path, suite)
    clean = BATCH.filter(pl.col("price") > 0, pl.col("symbol") != "DOGE", pl.col("trade_id").is_not_null())
    assert all(r.status is Status.OK for r in run(engine, clean).values())
    # an edit to the file does not change a running check (reload rebuilds checks)
    (tmp_path / "suites" / "trades.json").write_text("{broken", encoding="utf-8")
    assert all(r.status is Status.OK for r in run(engine, clean).values())


def test_legacy_suite_format_and_check_severity_warn(tmp_path: Path) -> None:
    legacy = {
        "expectation_suite_name": "old",
        "expectations": [
            {"expectation_type": "expect_column_values_to_not_be_null", "kwargs": {"column": "trade_id"}},
            {"expectation_type": "expect_column_values_to_not_be_null", "kwargs": {"column": "symbol"}},
        ],
    }
    results = run(engine_for(tmp_path, legacy, severity="warn"))
    assert results["gx:expect_column_values_to_not_be_null:trade_id"].status is Status.WARN
    assert results["gx:expect_column_values_to_not_be_null:symbol"].status is Status.OK


def test_duplicate_expectations_get_distinct_names(tmp_path: Path) -> None:
    twice = {
        "name": "s",
        "expectations": [
            {"type": "expect_column_values_to_be_between", "kwargs": {"column": "price", "min_value": 0}},
            {"type": "expect_column_values_to_be_between", "kwargs": {"column": "price", "max_value": 50}},
        ],
    }
    results = run(engine_for(tmp_path, twice))
    assert results["gx:expect_column_values_to_be_between:price"].threshold == "min_value=0"
    assert results["gx:expect_column_values_to_be_between:price#2"].threshold == "max_value=50"
    assert results["gx:expect_column_values_to_be_between:price#2"].value == pytest.approx(2 / 8)


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("{not json", "is not JSON"),
        (json.dumps({"name": "x"}), "no `expectations` list"),
        (json.dumps({"expectations": [{"kwargs": {}}]}), "has no `type`"),
    ],
)
def test_an_unreadable_suite_is_an_error_result(tmp_path: Path, content: str, reason: str) -> None:
    results = run(engine_for(tmp_path, content))
    assert list(results) == ["gx"]
    assert results["gx"].status is Status.ERROR
    assert reason in results["gx"].message


def test_a_missing_suite_file_is_an_error_result(tmp_path: Path) -> None:
    engine = engine_for(tmp_path, SUITE_V1)
    (tmp_path / "suites" / "trades.json").unlink()
    results = run(engine)
    assert results["gx"].status is Status.ERROR
    assert "cannot read expectation suite" in results["gx"].message


def test_without_great_expectations_installed_the_check_reports_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a None entry in sys.modules makes `import great_expectations` raise ImportError, as when absent
    monkeypatch.setitem(sys.modules, "great_expectations", None)
    results = run(engine_for(tmp_path, SUITE_V1))
    assert results["gx"].status is Status.ERROR
    assert "pip install 'dqmon[gx]'" in results["gx"].message


def test_importing_the_check_module_does_not_import_great_expectations() -> None:
    code = (
        "import sys, dqmon.checks.registry as r; r.kinds();"
        "assert 'great_expectations' not in sys.modules, 'imported eagerly'"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
