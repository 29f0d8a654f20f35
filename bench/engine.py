"""Engine benchmark: the standard suite on a seeded 1M-row trades batch, against a hand-written
single fused Polars query computing the same numbers. Goal: engine speed >= 0.7x the hand query.
The second suite (`--suite integrity`, bench/integrity.py) runs the cross-window checks over a
stream of windows against hand-written queries keeping the same state; goal >= 0.8x, and the
cross-window state's memory is printed.

    python bench/engine.py [--suite standard|integrity|both] [--rows 1000000] [--repeat 5] [--windows 5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from dqmon.batch import MicroBatch
from dqmon.config.models import Pipeline
from dqmon.engine import DatasetEngine
from dqmon.results import CheckResult
from dqmon.state.store import MemoryStateStore

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
SYMBOLS = ["BTC-USDT", "ETH-USDT", "SOL-USDT", "XRP-USDT", "DOGE-USDT"]
VENUES = ["binance", "coinbase", "kraken", "okx"]
BINS = 10


def make_trades(rows: int, seed: int) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    event = NOW - pl.Series(rng.exponential(0.8, rows) * 1e6).cast(pl.Int64).cast(pl.Duration("us"))
    venue = pl.Series(np.array(VENUES)[rng.integers(0, len(VENUES), rows)])
    venue = pl.select(pl.when(pl.Series(rng.random(rows) < 0.05)).then(None).otherwise(venue)).to_series()
    return pl.DataFrame(
        {
            "trade_id": pl.int_range(0, rows, eager=True).cast(pl.String),
            "symbol": np.array(SYMBOLS)[rng.integers(0, len(SYMBOLS), rows)],
            "side": np.array(["buy", "sell"])[rng.integers(0, 2, rows)],
            "price": rng.lognormal(4.0, 0.5, rows),
            "qty": rng.exponential(1.0, rows) + 1e-6,
            "event_ts": pl.Series(event).dt.replace_time_zone("UTC"),
            "ingest_ts": pl.Series(event).dt.replace_time_zone("UTC") + timedelta(milliseconds=50),
            "venue": venue,
        }
    )


def suite(reference_file: str) -> Pipeline:
    return Pipeline.model_validate(
        {
            "pipeline": "bench",
            "datasets": [
                {
                    "name": "trades",
                    "event_time": "event_ts",
                    "source": {"kind": "kafka", "topic": "bench"},
                    "checks": [
                        {
                            "validity": {
                                "not_null": ["trade_id", "symbol", "price", "qty"],
                                "null_rate": {"venue": 0.1},
                                "range": {"price": {"gt": 0}, "qty": {"gt": 0, "le": 1000}},
                                "in_set": {"side": ["buy", "sell"]},
                                "unique": "trade_id",
                            }
                        },
                        {"freshness": {"name": "fresh_max", "max_lag": "30s", "stat": "max"}},
                        {"freshness": {"name": "fresh_p99", "max_lag": "30s", "stat": "p99"}},
                        {"volume": {"min": 1000, "max": 5_000_000}},
                        {
                            "schema": {
                                "on_drift": "ignore",
                                "contract": {
                                    "fields": {
                                        "trade_id": {"type": "string", "nullable": False},
                                        "symbol": {"type": "string", "nullable": False},
                                        "side": {"type": "string"},
                                        "price": {"type": "float", "nullable": False},
                                        "qty": {"type": "float"},
                                        "event_ts": {"type": "timestamp", "nullable": False},
                                        "venue": {"type": "string"},
                                    }
                                },
                            }
                        },
                        {
                            "distribution": {
                                "name": "price_psi",
                                "column": "price",
                                "metric": "psi",
                                "max": 0.2,
                                "bins": BINS,
                                "reference": {"file": reference_file, "max_rows": 5_000_000},
                            }
                        },
                        {
                            "distribution": {
                                "name": "price_ks",
                                "column": "price",
                                "metric": "ks",
                                "max": 0.1,
                                "reference": {"file": reference_file, "max_rows": 5_000_000},
                            }
                        },
                    ],
                }
            ],
        }
    )


def hand_written(
    df: pl.DataFrame, ref_sorted: np.ndarray[Any, Any], edges: np.ndarray[Any, Any]
) -> dict[str, float]:
    """Everything the suite computes, written by hand as one select."""
    now = NOW.timestamp()
    n = ref_sorted.size
    ts = pl.col("event_ts").dt.epoch("us").cast(pl.Float64) / 1e6
    price = pl.col("price")
    finite = price.is_finite()
    ref = pl.lit(pl.Series(ref_sorted))
    ref_cdf_at_ref = pl.lit(pl.Series(np.searchsorted(ref_sorted, ref_sorted, side="right") / n))
    m = price.count()
    bins = [
        price.is_between(lo, hi, closed="right").sum().alias(f"bin{i}")
        for i, (lo, hi) in enumerate(zip([-np.inf, *edges], [*edges, np.inf], strict=True))
    ]
    exprs = [
        *(pl.col(c).null_count().alias(f"null_{c}") for c in ("trade_id", "symbol", "price", "qty", "venue")),
        (price.is_not_null() & ~(finite & (price > 0))).sum().alias("range_price"),
        (
            pl.col("qty").is_not_null()
            & ~(pl.col("qty").is_finite() & (pl.col("qty") > 0) & (pl.col("qty") <= 1000))
        )
        .sum()
        .alias("range_qty"),
        (pl.col("side").is_not_null() & ~pl.col("side").is_in(["buy", "sell"])).sum().alias("in_set_side"),
        (pl.col("trade_id").drop_nulls().len() - pl.col("trade_id").drop_nulls().n_unique()).alias(
            "dup_trade_id"
        ),
        (now - ts.min()).alias("lag_max"),
        (now - ts.quantile(0.01, interpolation="linear")).alias("lag_p99"),
        pl.len().alias("rows"),
        *bins,
        # continuous prices have no ties, so the current ECDF at its i-th sorted value is i/m
        (ref.search_sorted(price.sort(), side="right") / n - pl.int_range(1, m + 1) / m)
        .abs()
        .max()
        .alias("ks_a"),
        (price.sort().search_sorted(ref, side="right") / m - ref_cdf_at_ref).abs().max().alias("ks_b"),
    ]
    row = df.lazy().select(exprs).collect(engine="in-memory").row(0, named=True)
    schema_ok = df.schema["price"].is_float() and df.schema["trade_id"] == pl.String
    ref_counts = np.bincount(np.searchsorted(edges, ref_sorted, side="left"), minlength=edges.size + 1)
    cur_counts = np.array([row[f"bin{i}"] for i in range(edges.size + 1)], dtype=np.float64)
    p = np.clip(ref_counts / ref_counts.sum(), 1e-4, None)
    q = np.clip(cur_counts / cur_counts.sum(), 1e-4, None)
    return {
        "psi": float(np.sum((q - p) * np.log(q / p))),
        "ks": max(row["ks_a"], row["ks_b"]),
        "lag_max": row["lag_max"],
        "lag_p99": row["lag_p99"],
        "rows": row["rows"],
        "dup": row["dup_trade_id"],
        "null_venue": row["null_venue"],
        "schema_ok": float(schema_ok),
    }


def run_engine(engine: DatasetEngine, df: pl.DataFrame) -> list[CheckResult]:
    batch = MicroBatch("bench", "trades", df, NOW - timedelta(seconds=5), NOW, df.height, df.height)
    return engine.evaluate(batch)


def timed(fn: Any, repeat: int) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--suite", choices=("standard", "integrity", "both"), default="both")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--reference-rows", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--windows", type=int, default=5, help="windows the integrity suite's rows span")
    args = parser.parse_args()
    if args.suite in ("standard", "both"):
        standard(args)
    if args.suite in ("integrity", "both"):
        integrity_suite(args)


def integrity_suite(args: argparse.Namespace) -> None:
    from bench import integrity

    start = NOW.timestamp() - 60
    frames = integrity.make_stream(args.rows, args.windows, start, seed=3)
    batches = integrity.batches(frames, start)
    integrity.run_engine(batches)  # warm-up
    engine_s, results = timed(lambda: integrity.run_engine(batches), args.repeat)
    integrity.hand_written(frames)
    hand_s, hand = timed(lambda: integrity.hand_written(frames), args.repeat)
    ours = integrity.engine_totals(results)
    rows = sum(f.height for f in frames)
    print(f"integrity suite: rows={rows:,} in {args.windows} windows, repeat={args.repeat} (median)")
    for name, theirs in hand.items():
        if name == "state_bytes":
            continue
        agree = ours[name] == theirs
        print(f"  {name:12s} engine={ours[name]:>9} hand={theirs:>9} {'ok' if agree else 'MISMATCH'}")
        if not agree:
            raise SystemExit(f"engine and hand-written queries disagree on {name}")
    for check, (entries, size) in ours["state"].items():
        print(f"  state {check:14s} entries={entries:>9} bytes={size if size is not None else '-':>10}")
    print(f"  hand-written state bytes={hand['state_bytes']:,}")
    ratio = hand_s / engine_s
    print(f"engine:       {engine_s * 1000:8.1f} ms")
    print(f"hand-written: {hand_s * 1000:8.1f} ms")
    print(f"speed ratio (hand/engine): {ratio:.2f}  goal >= 0.80  {'PASS' if ratio >= 0.8 else 'MISS'}")


def standard(args: argparse.Namespace) -> None:
    df = make_trades(args.rows, seed=1)
    reference = make_trades(args.reference_rows, seed=2)
    with tempfile.TemporaryDirectory() as tmp:
        reference.write_parquet(Path(tmp) / "reference.parquet")
        pipeline = suite("reference.parquet")
        engine = DatasetEngine(
            pipeline, pipeline.datasets[0], base_dir=Path(tmp), store=MemoryStateStore(), clock=lambda: NOW
        )
        run_engine(engine, df)  # warm-up: loads the reference file once, as a long-running monitor would
        engine_s, results = timed(lambda: run_engine(engine, df), args.repeat)

    ref_sorted = np.sort(reference["price"].to_numpy())
    edges = np.unique(np.quantile(ref_sorted, np.linspace(0, 1, BINS + 1)[1:-1]))
    hand_written(df, ref_sorted, edges)
    hand_s, hand = timed(lambda: hand_written(df, ref_sorted, edges), args.repeat)

    got = {r.check: r for r in results}
    pairs = {
        "psi": (got["price_psi"].value, hand["psi"]),
        "ks": (got["price_ks"].value, hand["ks"]),
        "lag_max": (got["fresh_max"].value, hand["lag_max"]),
        "lag_p99": (got["fresh_p99"].value, hand["lag_p99"]),
        "rows": (got["volume"].value, hand["rows"]),
        "duplicates": (got["unique(trade_id)"].details["violations"], hand["dup"]),
        "venue nulls": (got["null_rate(venue)"].details["violations"], hand["null_venue"]),
    }
    print(
        f"rows={args.rows:,} reference={args.reference_rows:,} checks={len(results)} results, "
        f"repeat={args.repeat} (median)"
    )
    for name, (ours, theirs) in pairs.items():
        agree = abs(float(ours) - float(theirs)) <= 1e-6 * max(1.0, abs(float(theirs)))
        print(
            f"  {name:12s} engine={float(ours):.9g} hand={float(theirs):.9g} {'ok' if agree else 'MISMATCH'}"
        )
        if not agree:
            raise SystemExit(f"engine and hand-written query disagree on {name}")
    ratio = hand_s / engine_s
    print(f"engine:       {engine_s * 1000:8.1f} ms")
    print(f"hand-written: {hand_s * 1000:8.1f} ms")
    print(f"speed ratio (hand/engine): {ratio:.2f}  goal >= 0.70  {'PASS' if ratio >= 0.7 else 'MISS'}")


if __name__ == "__main__":
    main()
