"""Partial states: one replica's view of one partition in one window, and their exact merge.

A partial holds the window's sampled rows of one partition (with the `_partition`/`_offset`
metadata columns) and counters: offset ranges read (first, last, records seen), the newest
broker timestamp, the high watermarks at window start/end, and the sampled records that failed
decoding. Merging is exact: rows are concatenated and de-duplicated by (`_partition`, `_offset`),
offset ranges are unioned per partition (records in an overlap are counted once), watermarks
take the earliest start and the latest end. The merged window is an ordinary MicroBatch that
the unchanged engine judges, so every check kind gives a single reader's verdict.

The overlap rule assumes contiguous offsets inside an overlap (true unless the topic is compacted
or transactional); only records read twice are affected, which happens around a rebalance or a
replica restart.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import polars as pl

from dqmon.batch import MicroBatch
from dqmon.columns import OFFSET_COLUMN, PARTITION_COLUMN

REASON = "reason"
KEY = [PARTITION_COLUMN, OFFSET_COLUMN]
Range = tuple[int, int, int]  # first offset, last offset, records seen in between
_REJECT_SCHEMA = {PARTITION_COLUMN: pl.Int32(), OFFSET_COLUMN: pl.Int64(), REASON: pl.String()}


def empty_rejects() -> pl.DataFrame:
    return pl.DataFrame(schema=_REJECT_SCHEMA)


@dataclass(frozen=True)
class Partial:
    """What one replica read of one partition in one window (`window_start` is epoch seconds)."""

    partition: int
    window_start: float
    window_end: float
    replica: str = ""
    ranges: tuple[Range, ...] = ()
    newest_ms: int | None = None
    start_mark: int | None = None
    end_mark: int | None = None
    rows: pl.DataFrame = field(default_factory=pl.DataFrame)
    rejects: pl.DataFrame = field(default_factory=empty_rejects)

    @property
    def seen(self) -> int:
        return sum(r[2] for r in self.ranges)


# --------------------------------------------------------------------------- from a batch


def split_batch(batch: MicroBatch, replica: str) -> list[Partial]:
    """A replica's micro-batch (from a source that reports per partition) → one partial per partition."""
    start, end = batch.window_start.timestamp(), batch.window_end.timestamp()
    rows = dict(_by_partition(batch.df))
    rejects = dict(_by_partition(batch.rejects if batch.rejects is not None else empty_rejects()))
    out = []
    for p, counts in batch.partitions.items():
        ranges: tuple[Range, ...] = ()
        if counts.seen and counts.first_offset is not None and counts.last_offset is not None:
            ranges = ((counts.first_offset, counts.last_offset, counts.seen),)
        out.append(
            Partial(
                partition=p,
                window_start=start,
                window_end=end,
                replica=replica,
                ranges=ranges,
                newest_ms=counts.newest_ms,
                start_mark=counts.start_mark,
                end_mark=counts.end_mark,
                rows=rows.get(p, batch.df.head(0)),
                rejects=rejects.get(p, empty_rejects()),
            )
        )
    return out


def _by_partition(df: pl.DataFrame) -> Iterable[tuple[int, pl.DataFrame]]:
    if not df.height or PARTITION_COLUMN not in df.columns:
        return []
    return ((int(key[0]), part) for key, part in df.partition_by(PARTITION_COLUMN, as_dict=True).items())


# --------------------------------------------------------------------------- merging


def union_ranges(ranges: Iterable[Range]) -> tuple[Range, ...]:
    """Disjoint ranges covering the input; records in overlaps counted once (contiguous offsets)."""
    out: list[Range] = []
    for first, last, seen in sorted(ranges):
        if out and first <= out[-1][1] + 1:  # overlapping or adjacent: one range
            f0, l0, s0 = out[-1]
            overlap = min(l0, last) - first + 1
            out[-1] = (f0, max(l0, last), s0 + seen - min(overlap, seen, s0))
        else:
            out.append((first, last, seen))
    return tuple(out)


def clip_ranges(ranges: Iterable[Range], through: int) -> tuple[Range, ...]:
    """Drop what lies at or below offset `through` (already judged in an earlier window)."""
    out: list[Range] = []
    for first, last, seen in ranges:
        if last <= through:
            continue
        if first <= through:
            seen, first = max(0, seen - (through - first + 1)), through + 1
        out.append((first, last, seen))
    return tuple(out)


def _frames(frames: Sequence[pl.DataFrame]) -> pl.DataFrame:
    nonempty = [f for f in frames if f.width]
    if not nonempty:
        return pl.DataFrame()
    # replicas learn field types on their own: a column null-only on one may be typed on another
    return pl.concat(nonempty, how="diagonal_relaxed")


def _minmax(values: Iterable[int | None], pick: Any) -> int | None:
    present = [v for v in values if v is not None]
    return pick(present) if present else None


def merge_partition(parts: Sequence[Partial], through: int | None = None) -> Partial:
    """One partition's partials (any replicas, any batches) → one; `through` drops judged offsets."""
    first = parts[0]
    if len(parts) == 1 and (through is None or all(r[0] > through for r in first.ranges)):
        return first  # the usual case: one reader held the partition all window, nothing to dedupe
    rows = _frames([p.rows for p in parts])
    rejects = _frames([p.rejects for p in parts])
    if rows.height:
        rows = rows.unique(subset=KEY, keep="first", maintain_order=True)
    if rejects.height:
        rejects = rejects.unique(subset=KEY, keep="first", maintain_order=True)
        if rows.height:  # decoded by some reader: it is a row (a learned type may differ per replica)
            rejects = rejects.join(rows.select(KEY), on=KEY, how="anti", maintain_order="left")
    ranges = union_ranges(r for p in parts for r in p.ranges)
    if through is not None:
        ranges = clip_ranges(ranges, through)
        if rows.height:
            rows = rows.filter(pl.col(OFFSET_COLUMN) > through)
        if rejects.height:
            rejects = rejects.filter(pl.col(OFFSET_COLUMN) > through)
    return replace(
        first,
        window_end=max(p.window_end for p in parts),
        replica="+".join(sorted({p.replica for p in parts})),
        ranges=ranges,
        newest_ms=_minmax((p.newest_ms for p in parts), max),
        start_mark=_minmax((p.start_mark for p in parts), min),
        end_mark=_minmax((p.end_mark for p in parts), max),
        rows=rows,
        rejects=rejects if rejects.width else empty_rejects(),
    )


@dataclass(frozen=True)
class MergedWindow:
    batch: MicroBatch
    missing: tuple[int, ...]  # topic partitions no replica reported
    through: dict[int, int]  # per partition, the last offset counted so far (this window included)


def merge_window(
    pipeline: str,
    dataset: str,
    partials: Sequence[Partial],
    topic_partitions: Iterable[int],
    through: Mapping[int, int] | None = None,
) -> MergedWindow:
    """Every replica's partials of one window → the MicroBatch one reader of all partitions gives."""
    through = dict(through or {})
    by_partition: dict[int, list[Partial]] = {}
    for p in partials:
        by_partition.setdefault(p.partition, []).append(p)
    merged: list[Partial] = []
    for partition, parts in sorted(by_partition.items()):
        limit = through.get(partition)
        marks = [m for p in parts for m in (p.start_mark, p.end_mark) if m is not None]
        if limit is not None and marks and max(marks) <= limit:
            limit = None  # the log restarted below what was judged (topic re-created): count afresh
        part = merge_partition(parts, limit)
        merged.append(part)
        top = max([r[1] for r in part.ranges] + [limit if limit is not None else -1])
        if top >= 0:
            through[partition] = top
    missing = tuple(sorted(set(topic_partitions) - set(by_partition)))
    rows = _frames([p.rows for p in merged])  # partition order, offsets ascending within one reader
    rejects = _frames([p.rejects for p in merged])
    sampled = (
        pl.concat([f.select(KEY) for f in (rows, rejects) if f.height])
        if rows.height or rejects.height
        else None
    )
    offsets: dict[int, tuple[int, int]] = {}
    if sampled is not None:
        for p, lo, hi in (
            sampled.group_by(PARTITION_COLUMN)
            .agg(pl.col(OFFSET_COLUMN).min().alias("lo"), pl.col(OFFSET_COLUMN).max().alias("hi"))
            .iter_rows()
        ):
            offsets[int(p)] = (int(lo), int(hi))
    errors: dict[str, int] = {}
    if rejects.height:
        errors = {str(r): int(n) for r, n in rejects.group_by(REASON).len().iter_rows()}
    marked = all(p.start_mark is not None and p.end_mark is not None for p in merged)
    produced = None
    if merged and marked:
        produced = 0
        for p in merged:
            assert p.start_mark is not None
            assert p.end_mark is not None
            produced += p.end_mark - p.start_mark if p.end_mark >= p.start_mark else p.end_mark
    start = min((p.window_start for p in partials), default=0.0)
    end = max((p.window_end for p in partials), default=start)
    batch = MicroBatch(
        pipeline=pipeline,
        dataset=dataset,
        df=rows,
        window_start=datetime.fromtimestamp(start, UTC),
        window_end=datetime.fromtimestamp(end, UTC),
        rows_seen=sum(p.seen for p in merged),
        rows_sampled=rows.height + rejects.height,
        decode_errors=errors,
        offsets=offsets,
        rows_produced=produced,
        # missing partitions, or a partition no replica held for the whole window: counts of this
        # window are not comparable with full ones (volume does not judge it)
        partial=bool(missing) or not marked,
    )
    return MergedWindow(batch, missing, through)


# --------------------------------------------------------------------------- wire format


def encode(part: Partial) -> tuple[str, bytes]:
    """Counters as JSON text and the rows as compressed Arrow IPC (what the partials table stores)."""
    counters = {
        "window_end": part.window_end,
        "ranges": [list(r) for r in part.ranges],
        "newest_ms": part.newest_ms,
        "start_mark": part.start_mark,
        "end_mark": part.end_mark,
        "rejects": [[int(o), str(r)] for o, r in part.rejects.select(OFFSET_COLUMN, REASON).iter_rows()],
    }
    buf = io.BytesIO()
    part.rows.write_ipc_stream(buf, compression="zstd")  # the stream format: ~4x cheaper for small frames
    return json.dumps(counters, separators=(",", ":")), buf.getvalue()


def decode(partition: int, window_start: float, replica: str, counters: str, rows: bytes) -> Partial:
    c = json.loads(counters)
    rejects = pl.DataFrame(
        {
            PARTITION_COLUMN: [partition] * len(c["rejects"]),
            OFFSET_COLUMN: [o for o, _ in c["rejects"]],
            REASON: [r for _, r in c["rejects"]],
        },
        schema=_REJECT_SCHEMA,
    )
    return Partial(
        partition=partition,
        window_start=window_start,
        window_end=float(c["window_end"]),
        replica=replica,
        ranges=tuple((int(f), int(la), int(s)) for f, la, s in c["ranges"]),
        newest_ms=c.get("newest_ms"),
        start_mark=c.get("start_mark"),
        end_mark=c.get("end_mark"),
        rows=pl.read_ipc_stream(io.BytesIO(rows)),
        rejects=rejects,
    )
