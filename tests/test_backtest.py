"""Backtest: a historical file replayed through checks and alert rules on a virtual clock."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import numpy as np
import polars as pl
from typer.testing import CliRunner

from dqmon.backtest import backtest
from dqmon.cli import app
from dqmon.config.loader import load_checks
from tests.checks_helpers import NOW

CHECKS = """\
pipeline: hist
alerts: {for: 10s, flap: {max_transitions: 10}}
datasets:
  - name: trades
    source: {kind: replay, path: trades.parquet}
    event_time: event_ts
    window: 5s
    checks:
      - volume: {min: 50}
      - validity: {not_null: [price]}
"""


def history(tmp_path: Path) -> Path:
    """10 minutes at 20 rows/s; silent from 180 s to 240 s; 40% prices missing from 360 s to 400 s."""
    rng = np.random.default_rng(5)
    seconds = np.sort(rng.uniform(0, 600, 12_000))
    seconds = seconds[(seconds < 180) | (seconds >= 240)]
    price = rng.normal(100, 1, seconds.size)
    spike = (seconds >= 360) & (seconds < 400) & (rng.random(seconds.size) < 0.4)
    frame = pl.DataFrame(
        {
            "event_ts": pl.Series(
                [NOW + timedelta(seconds=float(s)) for s in seconds], dtype=pl.Datetime("us", "UTC")
            ),
            "price": pl.Series(np.where(spike, np.nan, price)).fill_nan(None),
        }
    )
    checks = tmp_path / "checks"
    checks.mkdir()
    (checks / "hist.yaml").write_text(CHECKS)
    frame.write_parquet(checks / "trades.parquet")
    return checks


def test_backtest_finds_the_gap_and_the_null_spike(tmp_path: Path) -> None:
    checks = history(tmp_path)
    config = load_checks(checks)
    pipeline, dataset = config.find_dataset("trades")
    report = backtest(pl.read_parquet(checks / "trades.parquet"), pipeline, dataset)
    assert report.windows == 120
    assert report.rows == pl.read_parquet(checks / "trades.parquet").height
    assert report.evaluations["volume"]["fail"] == 12  # the 60 s gap: twelve empty windows
    events = [(e.event, e.check, round((e.at - NOW).total_seconds())) for e in report.alerts]
    volume = [(ev, at) for ev, check, at in events if check == "volume"]
    nulls = [(ev, at) for ev, check, at in events if check == "validity"]  # one alert per check
    # fires once it failed for 10 s of windows; resolves once the windows after the gap passed
    # for `clear` (two windows: the first full window after the gap, then 10 s more)
    assert volume == [("firing", 196), ("resolved", 256)]
    assert [ev for ev, _ in nulls] == ["firing", "resolved"]
    assert 370 <= nulls[0][1] <= 376 and 410 <= nulls[1][1] <= 416


def test_backtest_cli(tmp_path: Path) -> None:
    checks = history(tmp_path)
    result = CliRunner().invoke(
        app,
        [
            "backtest",
            str(checks / "trades.parquet"),
            "--checks",
            str(checks),
            "--dataset",
            "trades",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    events = [json.loads(line) for line in result.output.splitlines()]
    assert [e["event"] for e in events if e["check"] == "volume"] == ["firing", "resolved"]
    table = CliRunner().invoke(
        app,
        [
            "backtest",
            str(checks / "trades.parquet"),
            "--checks",
            str(checks),
            "-d",
            "trades",
            "--window",
            "1m",
        ],
        env={"COLUMNS": "200"},
    )
    assert table.exit_code == 0 and "in 10 windows" in table.output
