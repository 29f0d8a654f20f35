"""Building pipelines, batches and engines for check tests."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import polars as pl

from dqmon.batch import MicroBatch
from dqmon.config.models import Pipeline
from dqmon.engine import DatasetEngine
from dqmon.results import CheckResult, Status
from dqmon.state.store import MemoryStateStore, StateStore

NOW = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)


class Clock:
    def __init__(self, at: datetime = NOW) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at

    def advance(self, seconds: float) -> None:
        self.at += timedelta(seconds=seconds)


def pipeline(checks: list[dict[str, Any]], **dataset: Any) -> Pipeline:
    return Pipeline.model_validate(
        {
            "pipeline": "p",
            "datasets": [
                {
                    "name": "trades",
                    "event_time": "event_ts",
                    "source": {"kind": "kafka", "topic": "t"},
                    "window": "5s",
                    "checks": checks,
                    **dataset,
                }
            ],
        }
    )


def engine(
    checks: list[dict[str, Any]],
    clock: Callable[[], datetime] | None = None,
    store: StateStore | None = None,
    **dataset: Any,
) -> DatasetEngine:
    p = pipeline(checks, **dataset)
    return DatasetEngine(p, p.datasets[0], store=store or MemoryStateStore(), clock=clock or Clock())


def trades(
    n: int = 1000,
    *,
    seed: int = 0,
    now: datetime = NOW,
    lag: float = 2.0,
    shift: float = 0.0,
    symbols: tuple[str, ...] = ("BTC-USDT", "ETH-USDT"),
) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    event = [now - timedelta(seconds=float(s)) for s in rng.uniform(0, lag, n)]
    return pl.DataFrame(
        {
            "trade_id": [f"t{seed}-{i}" for i in range(n)],
            "symbol": rng.choice(symbols, n),
            "side": rng.choice(["buy", "sell"], n),
            "price": rng.normal(100 + shift, 5, n),
            "qty": rng.uniform(0.1, 2, n),
            "event_ts": pl.Series(event, dtype=pl.Datetime("us", "UTC")),
            "venue": pl.Series(
                [v or None for v in rng.choice(["binance", "coinbase", ""], n)], dtype=pl.String
            ),
        }
    )


def batch(
    df: pl.DataFrame,
    *,
    now: datetime = NOW,
    seen: int | None = None,
    decode_errors: dict[str, int] | None = None,
    produced: int | None = None,
) -> MicroBatch:
    errors = decode_errors or {}
    sampled = df.height + sum(errors.values())
    return MicroBatch(
        "p",
        "trades",
        df,
        now - timedelta(seconds=5),
        now,
        seen if seen is not None else sampled,
        sampled,
        errors,
        rows_produced=produced,
    )


def by_check(results: list[CheckResult]) -> dict[str, CheckResult]:
    return {r.check: r for r in results}


def statuses(results: list[CheckResult]) -> dict[str, Status]:
    return {r.check: r.status for r in results}
