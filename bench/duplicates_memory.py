"""Transient memory of the duplicates check's per-window state update at the sidecar's scale.

Folds `--windows` windows of `--rows` new keys (3 partitions, 5 s apart) into a DuplicateState
with a 5-minute horizon, as the check does each window (judge, advance, prune), and reads the
process's private RSS right after each step: Polars' jemalloc returns freed pages within ~1.5 s,
so the reading is the step's transient before it is given back. It sleeps 2 s between windows so
each window starts from the resting figure.

    PYTHONPATH=. python bench/duplicates_memory.py [--rows 1000] [--windows 80]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import polars as pl

from dqmon.checks.duplicates import judge
from dqmon.checks.duplicates_state import DuplicateState
from dqmon.runtime.memory import status_mb

HORIZON = 300.0
WINDOW = 5.0


def _window(index: int, rows: int, rng: np.random.Generator) -> pl.LazyFrame:
    ids = np.arange(index * rows, (index + 1) * rows)
    return pl.DataFrame(
        {
            "part": (ids % 3).astype(np.int32),
            "h": pl.Series(ids.astype(np.uint64)),
            "t": 1.7e9 + index * WINDOW + rng.random(rows) * WINDOW,
            "ph": pl.Series(rng.integers(0, 2**63, rows).astype(np.uint64)),
        }
    ).lazy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1000, help="new keys per window")
    ap.add_argument("--windows", type=int, default=80, help="windows (the horizon fills after 60)")
    args = ap.parse_args()
    rng = np.random.default_rng(1)
    state = DuplicateState()
    full: list[float] = []
    for index in range(args.windows):
        frame = _window(index, args.rows, rng)
        time.sleep(2.0)
        resting = status_mb("RssAnon")
        _, keys = judge(frame, state, HORIZON)
        newest = {int(p): float(t) for p, t in keys.group_by("part").agg(pl.col("t").max()).iter_rows()}
        state.advance(keys, newest)
        state.prune(HORIZON)
        transient = status_mb("RssAnon") - resting
        if index * WINDOW >= HORIZON:
            full.append(transient)
        if index % 10 == 9:
            print(f"window {index + 1:3d}: {state.size:6d} keys, transient +{transient:.1f} MB", flush=True)
    if full:
        print(f"at a full horizon ({state.size} keys): median transient +{statistics.median(full):.1f} MB")


if __name__ == "__main__":
    main()
