"""Engine benchmark: the standard suite on a seeded 1M-row trades batch, against a hand-written
single fused Polars query computing the same numbers (class HandWritten), at 100k and 1M rows.
Goals: engine speed >= 0.9x the hand query, peak extra memory <= 1.5x of it.
The second suite (`--suite integrity`, bench/integrity.py) runs the cross-window checks over a
stream of windows against hand-written queries keeping the same state; goal >= 0.8x, and the
cross-window state's memory is printed.

    python bench/engine.py [--suite standard|integrity|both] [--rows 100000 1000000] [--repeat 7]
                           [--windows 5] [--no-memory]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
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


class HandWritten:
    """Everything the standard suite computes, written by hand as the fastest one-select query.

    What a careful engineer would write for these numbers alone: the in-memory engine, one
    `select` of plain aggregations, PSI bin shares as `(price <= edge).mean()` per edge (no
    sort), and the exact two-sample KS D from one sort of the batch searched against the
    reference that was sorted (and its ECDF computed) once, outside the timed query. The search
    goes from the smaller sample into the larger one, whichever that is.
    """

    def __init__(self, reference: np.ndarray[Any, Any]) -> None:
        self.ref = np.sort(reference)
        n = self.ref.size
        self.n = n
        self.edges = np.unique(np.quantile(self.ref, np.linspace(0, 1, BINS + 1)[1:-1]))
        ref_counts = np.bincount(
            np.searchsorted(self.edges, self.ref, side="left"), minlength=self.edges.size + 1
        )
        self.ref_shares = np.clip(ref_counts / n, 1e-4, None)
        last = np.r_[self.ref[1:] != self.ref[:-1], True]
        self.ref_points = pl.Series(self.ref[last])  # distinct reference values
        self.ref_cdf = pl.Series((np.flatnonzero(last) + 1) / n)  # F_ref at each of them
        self.ref_cdf_before = pl.Series(np.r_[0.0, self.ref_cdf.to_numpy()[:-1]])
        self.ref_series = pl.Series(self.ref)

    def _ks(self, rows: int) -> pl.Expr:
        price = pl.col("price")
        s = price.drop_nulls().sort()
        m = price.count()  # not s.len(): Polars 2.1's CSE would then search the unsorted column
        if rows >= self.ref_points.len():
            # reference points into the sorted batch: D is reached at a reference value or just before it
            points = pl.lit(self.ref_points)
            at = (pl.lit(self.ref_cdf) - s.search_sorted(points, side="right") / m).abs().max()
            before = (pl.lit(self.ref_cdf_before) - s.search_sorted(points, side="left") / m).abs().max()
            return pl.max_horizontal(at, before)
        # batch values into the sorted reference: i/m is exact at the last of ties, (i-1)/m at the first
        ref = pl.lit(self.ref_series)
        rank = pl.int_range(1, m + 1).cast(pl.Float64) / m
        above = (rank - ref.search_sorted(s, side="right") / self.n).max()
        below = (ref.search_sorted(s, side="left") / self.n - (rank - 1 / m)).max()
        return pl.max_horizontal(above, below)

    def __call__(self, df: pl.DataFrame) -> dict[str, float]:
        now = NOW.timestamp()
        ts = pl.col("event_ts").dt.epoch("us")
        price, qty, side = pl.col("price"), pl.col("qty"), pl.col("side")
        exprs = [
            *(
                pl.col(c).null_count().alias(f"null_{c}")
                for c in ("trade_id", "symbol", "price", "qty", "venue")
            ),
            (~(price.is_finite() & (price > 0))).sum().alias("range_price"),  # nulls stay null: not counted
            (~(qty.is_finite() & (qty > 0) & (qty <= 1000))).sum().alias("range_qty"),
            (~side.is_in(["buy", "sell"])).sum().alias("in_set_side"),
            (pl.len() - pl.col("trade_id").null_count() - pl.col("trade_id").drop_nulls().n_unique()).alias(
                "dup"
            ),
            ts.min().alias("oldest"),
            ts.quantile(0.01, interpolation="linear").alias("p01"),
            pl.len().alias("rows"),
            *((price <= edge).mean().alias(f"le{i}") for i, edge in enumerate(self.edges)),
            self._ks(df.height).alias("ks"),
        ]
        row = df.lazy().select(exprs).collect(engine="in-memory").row(0, named=True)
        schema_ok = df.schema["price"].is_float() and df.schema["trade_id"] == pl.String
        cdf = np.array([row[f"le{i}"] for i in range(self.edges.size)] + [1.0])
        q = np.clip(np.diff(cdf, prepend=0.0), 1e-4, None)
        p = self.ref_shares
        return {
            "psi": float(np.sum((q - p) * np.log(q / p))),
            "ks": row["ks"],
            "lag_max": now - row["oldest"] / 1e6,
            "lag_p99": now - row["p01"] / 1e6,
            "rows": row["rows"],
            "dup": row["dup"],
            "null_venue": row["null_venue"],
            "null_price": row["null_price"],
            "range_price": row["range_price"],
            "range_qty": row["range_qty"],
            "in_set_side": row["in_set_side"],
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
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--suite", choices=("standard", "integrity", "both"), default="both")
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--reference-rows", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--windows", type=int, default=5, help="windows the integrity suite's rows span")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    parser.add_argument("--memory-of", choices=("engine", "hand"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_of:
        print(json.dumps(peak_extra_mb(args.memory_of, args.rows[0], args.reference_rows)))
        return
    if args.suite in ("standard", "both"):
        for rows in args.rows:
            standard(args, rows)
    if args.suite in ("integrity", "both"):
        integrity_suite(args)


def integrity_suite(args: argparse.Namespace) -> None:
    from bench import integrity

    start = NOW.timestamp() - 60
    frames = integrity.make_stream(max(args.rows), args.windows, start, seed=3)
    batches = integrity.batches(frames, start)
    integrity.run_engine(batches)  # warm-up
    integrity.hand_written(frames)
    engine_times, hand_times = [], []
    for _ in range(args.repeat):  # interleaved, so load from other processes falls on both sides alike
        took, results = timed(lambda: integrity.run_engine(batches), 1)
        engine_times.append(took)
        took, hand = timed(lambda: integrity.hand_written(frames), 1)
        hand_times.append(took)
    engine_s, hand_s = statistics.median(engine_times), statistics.median(hand_times)
    ours = integrity.engine_totals(results)
    rows = sum(f.height for f in frames)
    print(
        f"integrity suite: rows={rows:,} in {args.windows} windows, "
        f"repeat={args.repeat} (median, interleaved)"
    )
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


class _Engine:
    """The engine over one batch, the reference file loaded by a warm-up run (as a monitor would)."""

    def __init__(self, reference: pl.DataFrame, tmp: Path) -> None:
        reference.write_parquet(tmp / "reference.parquet")
        pipeline = suite("reference.parquet")
        self.engine = DatasetEngine(
            pipeline, pipeline.datasets[0], base_dir=tmp, store=MemoryStateStore(), clock=lambda: NOW
        )

    def __call__(self, df: pl.DataFrame) -> list[CheckResult]:
        return run_engine(self.engine, df)


def _rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_extra_mb(side: str, rows: int, reference_rows: int) -> float:
    """Peak RSS above the resting process while one side evaluates the batch (run in a fresh process).

    tracemalloc cannot see Polars' (Rust, jemalloc) allocations, so this samples RSS every
    0.5 ms from a thread (Polars and numpy release the GIL while they work). Both sides get the
    same data; the engine's reference file is loaded beforehand by a 1,000-row warm-up batch, the
    hand-written side's sorted reference is built beforehand too. The peak of three runs.
    """
    df = make_trades(rows, seed=1)
    reference = make_trades(reference_rows, seed=2)
    with tempfile.TemporaryDirectory() as tmp:
        fn: Any = (
            _Engine(reference, Path(tmp)) if side == "engine" else HandWritten(reference["price"].to_numpy())
        )
        fn(df.head(1000))
        gc.collect()
        rest = _rss_mb()
        peak = [rest]
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                peak[0] = max(peak[0], _rss_mb())
                time.sleep(0.0005)

        sampler = threading.Thread(target=sample)
        sampler.start()
        for _ in range(3):
            fn(df)
        done.set()
        sampler.join()
    return peak[0] - rest


def _memory(side: str, rows: int, reference_rows: int, runs: int = 3) -> list[float]:
    """Peak extra RSS of `runs` fresh processes (a few MB at 100k rows move with the allocator)."""
    argv = [sys.executable, __file__, "--memory-of", side, "--rows", str(rows)]
    argv += ["--reference-rows", str(reference_rows)]
    found = []
    for _ in range(runs):
        out = subprocess.run(argv, check=True, capture_output=True, text=True, env=os.environ)
        found.append(float(json.loads(out.stdout.strip().splitlines()[-1])))
    return found


def standard(args: argparse.Namespace, rows: int) -> None:
    df = make_trades(rows, seed=1)
    reference = make_trades(args.reference_rows, seed=2)
    with tempfile.TemporaryDirectory() as tmp:
        engine = _Engine(reference, Path(tmp))
        engine(df)  # warm-up: loads the reference file once, as a long-running monitor would
        hand = HandWritten(reference["price"].to_numpy())
        hand(df)
        # interleaved, so load from other processes falls on both sides alike
        engine_times, hand_times = [], []
        for _ in range(args.repeat):
            engine_s, results = timed(lambda: engine(df), 1)
            hand_s, theirs = timed(lambda: hand(df), 1)
            engine_times.append(engine_s)
            hand_times.append(hand_s)

    got = {r.check: r for r in results}
    pairs = {
        "psi": (got["price_psi"].value, theirs["psi"]),
        "ks": (got["price_ks"].value, theirs["ks"]),
        "lag_max": (got["fresh_max"].value, theirs["lag_max"]),
        "lag_p99": (got["fresh_p99"].value, theirs["lag_p99"]),
        "rows": (got["volume"].value, theirs["rows"]),
        "duplicates": (got["unique(trade_id)"].details["violations"], theirs["dup"]),
        "venue nulls": (got["null_rate(venue)"].details["violations"], theirs["null_venue"]),
        "price nulls": (got["not_null(price)"].details["violations"], theirs["null_price"]),
        "price range": (got["range(price)"].details["violations"], theirs["range_price"]),
        "qty range": (got["range(qty)"].details["violations"], theirs["range_qty"]),
        "side in_set": (got["in_set(side)"].details["violations"], theirs["in_set_side"]),
        "schema ok": (float(got["schema"].status.label == "ok"), theirs["schema_ok"]),
    }
    print(
        f"standard suite: rows={rows:,} reference={args.reference_rows:,} {len(results)} results, "
        f"repeat={args.repeat} (median, interleaved)"
    )
    for name, (ours, other) in pairs.items():
        agree = abs(float(ours) - float(other)) <= 1e-6 * max(1.0, abs(float(other)))
        print(
            f"  {name:12s} engine={float(ours):.9g} hand={float(other):.9g} {'ok' if agree else 'MISMATCH'}"
        )
        if not agree:
            raise SystemExit(f"engine and hand-written query disagree on {name}")
    engine_s, hand_s = statistics.median(engine_times), statistics.median(hand_times)
    ratio = hand_s / engine_s
    print(f"  engine:       {engine_s * 1000:8.1f} ms  (min {min(engine_times) * 1000:.1f})")
    print(f"  hand-written: {hand_s * 1000:8.1f} ms  (min {min(hand_times) * 1000:.1f})")
    print(
        f"  speed ratio (hand/engine) at {rows:,} rows: {ratio:.2f}  goal >= 0.90  "
        f"{'PASS' if ratio >= 0.9 else 'MISS'}"
    )
    if not args.no_memory:
        ours = _memory("engine", rows, args.reference_rows)
        hand = _memory("hand", rows, args.reference_rows)
        ours_mb, hand_mb = statistics.median(ours), statistics.median(hand)
        mem = ours_mb / hand_mb if hand_mb > 0 else float("inf")
        spread = f"(engine {min(ours):.1f}-{max(ours):.1f}, hand {min(hand):.1f}-{max(hand):.1f})"
        print(
            f"  peak extra RSS, median of 3 processes: engine {ours_mb:.1f} MB, hand-written "
            f"{hand_mb:.1f} MB {spread}, ratio {mem:.2f}  goal <= 1.50  {'PASS' if mem <= 1.5 else 'MISS'}"
        )


if __name__ == "__main__":
    main()
