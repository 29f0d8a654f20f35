"""The stream-integrity suite for bench/engine.py: duplicates, sequence, late_arrivals,
point_in_time and partitions over a stream of windows, against hand-written Polars queries that
keep the same cross-window state by hand.

    python bench/engine.py --suite integrity [--rows 1000000] [--windows 5]
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import numpy as np
import polars as pl

from dqmon.batch import MicroBatch, PartitionWindow
from dqmon.config.models import Pipeline
from dqmon.engine import DatasetEngine
from dqmon.results import CheckResult
from dqmon.state.store import MemoryStateStore

SYMBOLS = ["BTC-USDT", "ETH-USDT", "SOL-USDT", "XRP-USDT", "DOGE-USDT"]
PARTITIONS = 8
HORIZON = 600.0
MAX_DELAY = 120.0
MAX_AGE = 300.0
SEED = 0x5EED_D0_0D  # streamstate.HASH_SEED: the hand-written query hashes like the check


def make_stream(rows: int, windows: int, start: float, seed: int) -> list[pl.DataFrame]:
    """`windows` consecutive frames of `rows // windows` trades with integrity defects sprinkled in."""
    rng = np.random.default_rng(seed)
    n = rows // windows
    frames, next_id = [], 0
    seq_base = dict.fromkeys(SYMBOLS, 0)
    for w in range(windows):
        ids = np.arange(next_id, next_id + n)
        next_id += n
        redo = rng.random(n) < 0.01  # 1%: a key of the previous window again (a producer retry)
        ids = np.where(redo & (ids >= n), ids - n, ids)
        t = start + w * 10.0 + np.sort(rng.uniform(0, 10, n))
        t = np.where(rng.random(n) < 0.005, t - 300, t)  # 0.5% arrive five minutes late
        age = rng.exponential(30.0, n)
        age = np.where(rng.random(n) < 0.001, -5.0, age)  # 0.1% leak: features from after the event
        symbol = np.array(SYMBOLS)[rng.integers(0, len(SYMBOLS), n)]
        frame = pl.DataFrame(
            {
                "trade_id": ids,
                "symbol": symbol,
                "price": rng.lognormal(4.0, 0.5, n),
                "event_ts": t,
                "feature_ts": t - age,
                "_partition": (ids % PARTITIONS).astype(np.int32),
            }
        ).with_columns(seq=pl.int_range(pl.len()).over("symbol"))
        offsets = pl.DataFrame({"symbol": list(seq_base), "base": list(seq_base.values())})
        frame = frame.join(offsets, on="symbol", how="left", maintain_order="left").with_columns(
            seq=pl.col("seq") + pl.col("base")
        )
        for s, count in frame.group_by("symbol").len().iter_rows():
            seq_base[s] += count
        frame = frame.drop("base").filter(pl.Series(rng.random(n) >= 0.001))  # 0.1% lost: gaps
        if frames:  # 0.3% exact re-sends of the previous window's records
            frame = pl.concat([frame, frames[-1].sample(fraction=0.003, seed=seed + w)])
        frames.append(frame)
    return frames


def suite() -> Pipeline:
    return Pipeline.model_validate(
        {
            "pipeline": "bench",
            "datasets": [
                {
                    "name": "trades",
                    "event_time": "event_ts",
                    "source": {"kind": "kafka", "topic": "bench"},
                    "checks": [
                        {"duplicates": {"key": "trade_id", "horizon": HORIZON, "max_rate": 0.05}},
                        {"sequence": {"column": "seq", "by": "symbol", "max_missing": 10**9}},
                        {"late_arrivals": {"max_delay": MAX_DELAY, "max_rate": 0.05}},
                        {"point_in_time": {"feature_time": "feature_ts", "max_feature_age": MAX_AGE}},
                        {"partitions": {}},
                    ],
                }
            ],
        }
    )


def batches(frames: list[pl.DataFrame], start: float) -> list[MicroBatch]:
    from datetime import UTC, datetime

    out = []
    for w, df in enumerate(frames):
        end = datetime.fromtimestamp(start + (w + 1) * 10.0, UTC)
        seen = df.group_by("_partition").len().iter_rows()
        stats = {
            int(p): PartitionWindow(
                seen=int(c), newest_ms=int(end.timestamp() * 1000), start_mark=0, end_mark=int(c)
            )
            for p, c in seen
        }
        out.append(
            MicroBatch(
                "bench",
                "trades",
                df,
                end - timedelta(seconds=10),
                end,
                df.height,
                df.height,
                partitions=stats,
            )
        )
    return out


def run_engine(frames: list[MicroBatch]) -> list[list[CheckResult]]:
    pipeline = suite()
    engine = DatasetEngine(
        pipeline, pipeline.datasets[0], store=MemoryStateStore(), clock=lambda: frames[-1].window_end
    )
    return [engine.evaluate(b) for b in frames]


def hand_written(frames: list[pl.DataFrame]) -> dict[str, Any]:
    """The same numbers with state kept by hand: one lazy query per window per concern."""
    keys = pl.DataFrame(schema={"part": pl.Int32, "h": pl.UInt64, "t": pl.Float64, "ph": pl.UInt64})
    newest_part = pl.DataFrame(schema={"part": pl.Int32, "before": pl.Float64})
    last_seq = pl.DataFrame(schema={"h": pl.UInt64, "last": pl.Int64})
    newest = None
    totals = dict.fromkeys(
        ("dups", "resends", "missing", "regressions", "repeats", "late", "leak", "stale"), 0
    )
    for df in frames:
        payload = pl.struct("symbol", "price", "event_ts", "feature_ts", "seq").hash(SEED)
        lf = df.lazy().select(
            pl.col("_partition").cast(pl.Int32).alias("part"),
            pl.struct("trade_id").hash(SEED).alias("h"),
            pl.col("event_ts").cast(pl.Float64).alias("t"),
            payload.alias("ph"),
        )
        # the key's earlier records on the frame sorted by (part, key, arrival); segmented max of
        # the earlier times through a cumulative max of group * (n + 1) + dense rank of t
        run = (
            lf.with_row_index("i")
            .with_columns(run=pl.col("t").cum_max().over("part"))
            .collect(engine="in-memory")
        )
        times = run["t"].unique().sort()
        same = (pl.col("part") == pl.col("part").shift(1)) & (pl.col("h") == pl.col("h").shift(1))
        width = run.height + 1
        ordered = (
            run.lazy()
            .join(newest_part.lazy(), on="part", how="left")
            .join(keys.lazy().rename({"t": "st", "ph": "sph"}), on=["part", "h"], how="left")
            .sort("part", "h", "i")
            .with_columns(same=same.fill_null(False), r=pl.col("t").rank("dense").cast(pl.Int64))
            .with_columns(g=(~pl.col("same")).cum_sum().cast(pl.Int64))
            .with_columns(
                pr=pl.when("same").then(
                    (pl.col("g") * width + pl.col("r")).cum_max().shift(1) - pl.col("g") * width
                ),
                pph=pl.when("same").then(pl.col("ph").shift(1)).otherwise("sph"),
                cut=pl.max_horizontal("before", "run") - HORIZON,
            )
            .collect(engine="in-memory")
        )
        d = pl.max_horizontal(times.gather(ordered["pr"] - 1), "st") >= pl.col("cut")
        dup = ordered.lazy().select(
            d.sum().alias("dups"), (d & (pl.col("ph") == pl.col("pph"))).sum().alias("resends")
        )
        sym = df.lazy().select(
            pl.struct("symbol").hash(SEED).alias("h"), pl.col("seq").cast(pl.Int64).alias("s")
        )
        seq = (
            sym.with_row_index("i")
            .join(last_seq.lazy(), on="h", how="left")
            .sort("h", "i")
            .select(
                d=pl.col("s")
                - pl.when(pl.col("h") == pl.col("h").shift(1)).then(pl.col("s").shift(1)).otherwise("last")
            )
            .select(
                (pl.col("d") - 1).filter(pl.col("d") > 1).sum().alias("missing"),
                (pl.col("d") < 0).sum().alias("regressions"),
                (pl.col("d") == 0).sum().alias("repeats"),
            )
        )
        t = pl.col("event_ts").cast(pl.Float64)
        prev = t.cum_max().shift(1)
        if newest is not None:
            prev = pl.max_horizontal(prev, pl.lit(newest))
        age = pl.col("event_ts") - pl.col("feature_ts")
        rows = df.lazy().select(
            (prev - t > MAX_DELAY).sum().alias("late"),
            (age < 0).sum().alias("leak"),
            (age > MAX_AGE).sum().alias("stale"),
            t.max().alias("newest"),
        )
        new_keys = lf.group_by("part", "h").agg(pl.col("t").max(), pl.col("ph").last())
        new_seq = sym.group_by("h").agg(pl.col("s").last().alias("last"))
        a, b, c, k, s = pl.collect_all([dup, seq, rows, new_keys, new_seq], engine="in-memory")
        for frame in (a, b, c):
            for name, value in frame.row(0, named=True).items():
                if name in totals:
                    totals[name] += int(value or 0)
        newest = c["newest"][0] if newest is None else max(newest, c["newest"][0])
        parts = k.group_by("part").agg(pl.col("t").max().alias("before"))
        newest_part = pl.concat([newest_part, parts]).group_by("part").agg(pl.col("before").max())
        keys = pl.concat([keys, k]).group_by("part", "h").agg(pl.col("t").max(), pl.col("ph").last())
        keys = (
            keys.join(newest_part, on="part").filter(pl.col("t") >= pl.col("before") - HORIZON).drop("before")
        )
        last_seq = pl.concat([last_seq.join(s, on="h", how="anti"), s])
    totals["state_bytes"] = int(keys.estimated_size() + last_seq.estimated_size())
    return totals


def engine_totals(results: list[list[CheckResult]]) -> dict[str, Any]:
    totals = dict.fromkeys(
        ("dups", "resends", "missing", "regressions", "repeats", "late", "leak", "stale"), 0
    )
    names = {
        "duplicates": (("dups", "duplicates"), ("resends", "exact_resends")),
        "sequence": (("missing", "missing"), ("regressions", "regressions"), ("repeats", "repeats")),
        "late_arrivals": (("late", "late"),),
        "point_in_time:leakage": (("leak", "leaking"),),
        "point_in_time:stale": (("stale", "stale"),),
    }
    for window in results:
        for result in window:
            for total, detail in names.get(result.check, ()):
                totals[total] += int(result.details.get(detail, 0))
    last = {r.check: r for r in results[-1]}
    totals["state"] = {
        name: (last[name].details.get("state_entries"), last[name].details.get("state_bytes"))
        for name in ("duplicates", "sequence", "late_arrivals", "partitions")
    }
    return totals
