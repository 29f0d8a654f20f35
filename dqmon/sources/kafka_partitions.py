"""Per-partition window counts for the `partitions` check: records read and newest timestamp.

Counted per consumed chunk with numpy (no Python work per message), before sampling, and joined
with the window's watermarks when it closes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from dqmon.batch import PartitionWindow


class PartitionCounter:
    """Records read and the newest broker timestamp (ms) per partition in one window."""

    def __init__(self) -> None:
        self.seen: dict[int, int] = {}
        self.newest_ms: dict[int, int] = {}

    def count(self, partitions: np.ndarray[Any, Any], timestamps: np.ndarray[Any, Any]) -> None:
        numbers, inverse, counts = np.unique(partitions, return_inverse=True, return_counts=True)
        newest = np.full(numbers.size, np.iinfo(np.int64).min, dtype=np.int64)
        np.maximum.at(newest, inverse, timestamps)
        for p, n, t in zip(numbers.tolist(), counts.tolist(), newest.tolist(), strict=True):
            self.seen[p] = self.seen.get(p, 0) + n
            self.newest_ms[p] = max(t, self.newest_ms.get(p, t))

    def windows(
        self,
        assigned: Sequence[int],
        before: Mapping[int, int] | None,
        after: Mapping[int, int] | None,
    ) -> dict[int, PartitionWindow]:
        """Every assigned (or read) partition's window, with its watermarks at start and end."""
        start, end = before or {}, after or {}
        return {
            p: PartitionWindow(self.seen.get(p, 0), self.newest_ms.get(p), start.get(p), end.get(p))
            for p in sorted(set(assigned) | set(self.seen))
        }
