"""Deterministic sampling decided before decoding: a hash of (partition, offset) against the rate.

The decision depends only on the record's coordinates, so it is stable across restarts and
replicas (no random seed), and a hot topic costs what its sample costs. Vectorised over numpy.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_TO_UNIT = 1.0 / float(1 << 53)

UInt64Array = npt.NDArray[np.uint64]
BoolArray = npt.NDArray[np.bool_]


def splitmix64(x: UInt64Array) -> UInt64Array:
    """The splitmix64 finaliser: a cheap, well-mixed 64-bit hash (uint64 arithmetic wraps)."""
    z = x + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


def uniform(partitions: npt.ArrayLike, offsets: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """A number in [0, 1) per record, a pure function of (partition, offset)."""
    part = np.asarray(partitions, dtype=np.int64).astype(np.uint64)
    off = np.asarray(offsets, dtype=np.int64).astype(np.uint64)
    # hash the partition first so partitions get unrelated offset streams
    key = splitmix64(part) ^ off
    return (splitmix64(key) >> np.uint64(11)).astype(np.float64) * _TO_UNIT


def keep_mask(partitions: npt.ArrayLike, offsets: npt.ArrayLike, rate: float) -> BoolArray:
    """True for the records to check; every record when rate >= 1, none when rate <= 0."""
    n = len(np.asarray(offsets))
    if rate >= 1.0:
        return np.ones(n, dtype=np.bool_)
    if rate <= 0.0:
        return np.zeros(n, dtype=np.bool_)
    return uniform(partitions, offsets) < rate
