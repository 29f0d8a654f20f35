"""Random streams cut into random windows, for the cross-window checks' property tests."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from itertools import pairwise
from typing import Any

import polars as pl
from hypothesis import strategies as st

from dqmon.batch import MicroBatch
from tests.checks_helpers import NOW

BASE = 1_764_000_000  # epoch seconds: event times are BASE + small integers


def cuts(n: int) -> st.SearchStrategy[list[int]]:
    """Sorted cut points splitting n records into windows (some possibly empty)."""
    return st.lists(st.integers(0, n), max_size=6).map(sorted)


def windows(rows: Sequence[dict[str, Any]], points: Sequence[int]) -> list[list[dict[str, Any]]]:
    bounds = [0, *points, len(rows)]
    return [list(rows[a:b]) for a, b in pairwise(bounds)]


def micro_batch(rows: list[dict[str, Any]], schema: dict[str, Any], index: int = 0) -> MicroBatch:
    df = pl.DataFrame(rows, schema=schema, orient="row") if rows else pl.DataFrame(schema=schema)
    end = NOW + timedelta(seconds=5 * index)
    return MicroBatch("p", "trades", df, end - timedelta(seconds=5), end, df.height, df.height)
