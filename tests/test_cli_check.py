"""`dqmon check`: a dataset's checks once over a file, as a checks repo's CI would run it."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import polars as pl
from typer.testing import CliRunner

from dqmon.cli import app
from tests.checks_helpers import NOW, trades

ROOT = Path(__file__).resolve().parents[1]


def _write(df: pl.DataFrame, path: Path) -> Path:
    df.with_columns(pl.col("event_ts").dt.strftime("%Y-%m-%dT%H:%M:%S%.fZ")).write_ndjson(path)
    return path


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["check", *args], env={"COLUMNS": "250"})
    return result.exit_code, result.output


def test_clean_file_passes_with_json_output(tmp_path: Path) -> None:
    batch = _write(trades(200).with_columns(pl.lit("binance").alias("venue")), tmp_path / "b.ndjson")
    code, out = _run(
        str(batch),
        "--checks",
        str(ROOT / "checks"),
        "--dataset",
        "trades",
        "--json",
        "--now",
        NOW.isoformat(),
    )
    results = [json.loads(line) for line in out.splitlines()]
    failing = {r["check"]: r["message"] for r in results if r["status"] in ("fail", "error")}
    # the volume minimum (50/window) and lag (needs a broker) are not judged on a file
    assert set(failing) <= {"lag"}
    assert code == (1 if failing else 0)
    assert {r["check"] for r in results} >= {"freshness", "schema", "not_null(price)", "crossed_notional"}


def test_defects_fail_with_exit_code_one(tmp_path: Path) -> None:
    df = trades(200).with_columns(pl.lit(-1.0).alias("price"))
    batch = tmp_path / "b.parquet"
    df.write_parquet(batch)
    code, out = _run(
        str(batch),
        "--checks",
        str(ROOT / "checks"),
        "--dataset",
        "trades-features/trades",
        "--json",
        "--now",
        (NOW + timedelta(minutes=5)).isoformat(),
    )
    statuses = {r["check"]: r["status"] for r in map(json.loads, out.splitlines())}
    assert code == 1
    assert statuses["range(price)"] == "fail"
    assert statuses["freshness"] == "fail"  # five minutes late


def test_table_output_and_unknown_dataset(tmp_path: Path) -> None:
    batch = _write(trades(50), tmp_path / "b.jsonl")
    code, out = _run(str(batch), "--checks", str(ROOT / "checks"), "--dataset", "orderbook")
    assert "dqmon check results" in out and "crossed_book" in out
    code, out = _run(str(batch), "--checks", str(ROOT / "checks"), "--dataset", "nope")
    assert code == 2 and "no dataset 'nope'" in out


def test_unreadable_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "b.txt").write_text("x")
    code, out = _run(str(tmp_path / "b.txt"), "--checks", str(ROOT / "checks"), "--dataset", "trades")
    assert code == 2 and "unknown file type" in out
