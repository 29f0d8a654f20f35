"""MicroBatch: the rows sampled in one window, with the metadata the checks need."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

import polars as pl


@dataclass(frozen=True)
class PartitionWindow:
    """What one reader saw of one Kafka partition in a window (before sampling).

    The Kafka source fills one per assigned (or read) partition: records seen, first/last offset
    consumed (sampled or not), the newest broker timestamp, and the partition's high watermark
    when the window opened and closed (None when it was assigned or revoked mid-window). The
    `partitions` check classifies partitions from it; scale-out judges merge replicas' windows.
    """

    seen: int = 0
    first_offset: int | None = None
    last_offset: int | None = None
    newest_ms: int | None = None
    start_mark: int | None = None
    end_mark: int | None = None

    @property
    def produced(self) -> int | None:
        """Records the partition's log grew by in the window (None without both watermarks)."""
        if self.start_mark is None or self.end_mark is None:
            return None
        return max(0, self.end_mark - self.start_mark)


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
    # where rows_seen came from when it is not a count of records read (SQL source: count_query,
    # catalog (an estimate), cursor (new rows since the last poll), rows_read); None for Kafka/replay
    rows_seen_basis: str | None = None
    # column -> newest value over the whole dataset, when the source reads it cheaply (a view's
    # max(updated_at)); a sample's own newest row may come from a corner that stopped updating
    newest_by_column: Mapping[str, datetime] = field(default_factory=dict)
    # the window did not cover the whole dataset (e.g. partitions assigned mid-window): counts
    # are not comparable with full windows
    partial: bool = False
    # Kafka: per partition, what it did in the window (empty for other sources)
    partitions: Mapping[int, PartitionWindow] = field(default_factory=dict)
    # sampled records that failed decoding (_partition, _offset, reason): only from sources asked
    # to report them (scale-out replicas), so a judge counts a record read twice once
    rejects: pl.DataFrame | None = None

    @property
    def decode_error_count(self) -> int:
        return sum(self.decode_errors.values())

    @property
    def rows_decoded(self) -> int:
        return self.df.height
