"""MicroBatch: the rows sampled in one window, with the metadata the checks need."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

import polars as pl


@dataclass(frozen=True)
class PartitionWindow:
    """What one reader saw of one Kafka partition in a window (before sampling).

    Filled only when a source reports per partition (scale-out replicas): the judge merges
    these from several replicas into one window. `start_mark`/`end_mark` are the partition's
    high watermark at window start/end (None when the partition was assigned or revoked
    mid-window); offsets are the first/last consumed, sampled or not.
    """

    seen: int = 0
    first_offset: int | None = None
    last_offset: int | None = None
    newest_ms: int | None = None
    start_mark: int | None = None
    end_mark: int | None = None


@dataclass(frozen=True)
class MicroBatch:
    """A polars DataFrame of sampled rows plus where and when they came from.

    `rows_seen` counts records read from the source in the window (before sampling),
    `rows_sampled` the records selected for checking (decoded or not), `decode_errors`
    the sampled records that could not be decoded, by bounded reason.
    """

    pipeline: str
    dataset: str
    df: pl.DataFrame
    window_start: datetime
    window_end: datetime
    rows_seen: int
    rows_sampled: int
    decode_errors: Mapping[str, int] = field(default_factory=dict)
    # partition -> (first offset, last offset) for Kafka; empty for other sources
    offsets: Mapping[int, tuple[int, int]] = field(default_factory=dict)
    trace_id: str | None = None
    # records produced in the window per broker watermarks (volume at any sampling rate)
    rows_produced: int | None = None
    # time the source spent decoding this batch (the rest of its poll time is fetching)
    decode_seconds: float = 0.0
    # the window did not cover the whole dataset (e.g. partitions assigned mid-window): counts
    # are not comparable with full windows
    partial: bool = False
    # per-partition counters, and sampled records that failed decoding (_partition, _offset,
    # reason): only from sources asked to report per partition (see PartitionWindow)
    partitions: Mapping[int, PartitionWindow] = field(default_factory=dict)
    rejects: pl.DataFrame | None = None

    @property
    def decode_error_count(self) -> int:
        return sum(self.decode_errors.values())

    @property
    def rows_decoded(self) -> int:
        return self.df.height
