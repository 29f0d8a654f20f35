"""Reference samples for distribution checks: a declared file, or a rolling window of batches.

Bounded: each batch contributes at most `max_rows // 20` evenly spaced order statistics (a
quantile sketch that keeps the shape), and the window is cut to `max_rows` values in total.
"""

from __future__ import annotations

import base64
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

from dqmon.config.checks import Reference
from dqmon.state.store import KeyValueState

PERSIST_EVERY_SECONDS = 60.0


def thin(values: np.ndarray[Any, Any], limit: int, *, is_sorted: bool = False) -> np.ndarray[Any, Any]:
    """At most `limit` values that keep the distribution: evenly spaced order statistics."""
    if values.size <= limit:
        return values
    ordered = values if is_sorted else np.sort(values)
    index = np.linspace(0, ordered.size - 1, limit).round().astype(np.int64)
    return ordered[index]


@dataclass
class _Chunk:
    at: float
    values: np.ndarray[Any, Any]


class RollingReference:
    """Per-segment rolling reference samples, persisted (throttled) in the state store."""

    def __init__(self, spec: Reference, store: KeyValueState, key: str, max_segments: int) -> None:
        assert spec.rolling is not None
        self.window = spec.rolling.total_seconds()
        self.max_rows = spec.max_rows
        self.per_batch = max(100, spec.max_rows // 20)
        self.max_segments = max_segments
        self.store = store
        self.key = key
        self.segments: dict[str, deque[_Chunk]] = {}
        self._persisted_at = 0.0
        self._restore()

    def sample(self, segment: str, now: float) -> np.ndarray[Any, Any]:
        chunks = self._prune(segment, now)
        if not chunks:
            return np.array([])
        return np.concatenate([c.values for c in chunks])

    def add(self, segment: str, values: np.ndarray[Any, Any], now: float, *, is_sorted: bool = False) -> None:
        if values.size == 0:
            return
        if segment not in self.segments and len(self.segments) >= self.max_segments:
            return
        chunks = self.segments.setdefault(segment, deque())
        chunks.append(_Chunk(now, thin(values, self.per_batch, is_sorted=is_sorted)))
        total = sum(c.values.size for c in chunks)
        while chunks and total > self.max_rows:
            total -= chunks.popleft().values.size
        if now - self._persisted_at >= PERSIST_EVERY_SECONDS:
            self._persist(now)

    def _prune(self, segment: str, now: float) -> deque[_Chunk]:
        chunks = self.segments.get(segment, deque())
        while chunks and chunks[0].at < now - self.window:
            chunks.popleft()
        return chunks

    def _persist(self, now: float) -> None:
        self._persisted_at = now
        payload = {seg: [[c.at, _encode(c.values)] for c in chunks] for seg, chunks in self.segments.items()}
        self.store.put_state(self.key, payload)

    def _restore(self) -> None:
        stored = self.store.get_state(self.key)
        if not isinstance(stored, dict):
            return
        for segment, chunks in stored.items():
            self.segments[segment] = deque(_Chunk(float(at), _decode(vals)) for at, vals in chunks)


def _encode(values: np.ndarray[Any, Any]) -> str | list[Any]:
    """Numbers as `dtype:base64` of their bytes: a minute's persist of a 5-minute reference was
    ~120k Python floats and their JSON text (MBs of short-lived objects that fragment the heap);
    categories stay a JSON list."""
    if values.dtype.kind in "biuf":
        return (
            f"{values.dtype.str}:{base64.b64encode(np.ascontiguousarray(values).tobytes()).decode('ascii')}"
        )
    return list(values.tolist())


def _decode(stored: Any) -> np.ndarray[Any, Any]:
    if isinstance(stored, str):
        dtype, _, text = stored.partition(":")
        return np.frombuffer(base64.b64decode(text), dtype=np.dtype(dtype)).copy()
    return np.asarray(stored)  # a JSON list: categories, or a reference persisted before the encoding
