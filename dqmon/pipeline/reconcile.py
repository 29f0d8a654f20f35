"""Reconciliation: counts (and optionally sums) per event-time bin, upstream against downstream.

Each side keeps at most `max_bins` bins. Upstream batches (a stream) add to their bins; a
downstream SQL relation polled without a cursor is a snapshot, so each of its batches replaces the
downstream bins. A bin is judged once it ended `grace` ago and both sides were read after that;
bins before the first complete upstream bin (the bin after the first whole batch closed: dqmon
started mid-bin, at `latest`, with partitions positioned one by one) are never judged.
Each evaluation judges the newest `judge_bins` complete bins (default 3), so a past gap ages out and the alert
resolves once recent bins reconcile again.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from datetime import UTC, datetime

from dqmon.config.durations import format_duration
from dqmon.config.links import ReconcileSpec
from dqmon.pipeline.base import LinkCheck, LinkContext
from dqmon.pipeline.observe import BatchTimes, sampling_scale
from dqmon.registry import LINK_KINDS
from dqmon.results import CheckResult, Status

LISTED_BINS = 10  # bins listed in details


class _Side:
    """Bounded per-bin count and sum of one dataset."""

    def __init__(self, max_bins: int) -> None:
        self.max_bins = max_bins
        self.counts: dict[int, float] = {}
        self.sums: dict[int, float] = {}
        self.read_at: float | None = None

    def add(self, counts: dict[int, float], sums: dict[int, float], scale: float) -> None:
        for b, n in counts.items():
            self.counts[b] = self.counts.get(b, 0.0) + n * scale
        for b, s in sums.items():
            self.sums[b] = self.sums.get(b, 0.0) + s * scale
        self._bound()

    def replace(self, counts: dict[int, float], sums: dict[int, float]) -> None:
        self.counts = dict(counts)
        self.sums = dict(sums)
        self._bound()

    def _bound(self) -> None:
        # keep the newest bins: dict order is insertion order, so trim by bin index
        if len(self.counts) > self.max_bins:
            for b in sorted(self.counts)[: len(self.counts) - self.max_bins]:
                del self.counts[b]
        if len(self.sums) > self.max_bins:
            for b in sorted(self.sums)[: len(self.sums) - self.max_bins]:
                del self.sums[b]


@dataclass(frozen=True)
class _BinGap:
    start: float  # epoch seconds
    up: float
    down: float
    up_sum: float
    down_sum: float

    @property
    def gap(self) -> float:
        return self.down - self.up

    @property
    def sum_gap(self) -> float:
        return self.down_sum - self.up_sum

    def to_dict(self, *, with_sums: bool) -> dict[str, object]:
        out: dict[str, object] = {"bin": _iso(self.start), "upstream": self.up, "downstream": self.down}
        out["gap"] = self.gap
        if with_sums:
            out.update(upstream_sum=self.up_sum, downstream_sum=self.down_sum, sum_gap=self.sum_gap)
        return out


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")


@LINK_KINDS.add("reconcile")
class ReconcileLink(LinkCheck[ReconcileSpec]):
    kind = "reconcile"
    spec_type = ReconcileSpec

    def __init__(self, spec: ReconcileSpec, name: str, ctx: LinkContext) -> None:
        super().__init__(spec, name, ctx)
        pipeline = ctx.pipeline
        up, down = pipeline.dataset(spec.upstream), pipeline.dataset(spec.downstream)
        self.up_column = spec.upstream_column or up.event_time
        self.down_column = spec.downstream_column or down.event_time
        mode = spec.downstream_mode
        if mode == "auto":
            snapshot = down.source.kind == "sql" and getattr(down.source, "cursor_column", None) is None
            mode = "snapshot" if snapshot else "increments"
        self.snapshot = mode == "snapshot"
        self.width = spec.bin.total_seconds()
        self.grace = spec.grace.total_seconds()
        self.down_sum = spec.downstream_sum or spec.sum
        self._lock = threading.Lock()
        self._up = _Side(spec.max_bins)
        self._down = _Side(spec.max_bins)
        self._first_bin: int | None = None  # first bin whose upstream events were all read
        self._down_first_bin: int | None = None

    def observe(self, dataset: str, times: BatchTimes) -> None:
        at = self.ctx.clock().timestamp()
        if dataset == self.spec.upstream and self.up_column:
            bins = times.bins(self.up_column, self.width, sum_column=self.spec.sum)
            first = self._first_complete(times)
            with self._lock:
                if self._first_bin is None and first is not None:
                    self._first_bin = first
                self._up.add(bins.counts, bins.sums, sampling_scale(times.batch))
                self._up.read_at = at
        if dataset == self.spec.downstream and self.down_column:
            bins = times.bins(
                self.down_column,
                self.width,
                count_column=self.spec.downstream_count,
                sum_column=self.down_sum,
            )
            with self._lock:
                if self.snapshot:
                    self._down.replace(bins.counts, bins.sums)
                else:
                    first = self._first_complete(times, self.down_column)
                    if self._down_first_bin is None and first is not None:
                        self._down_first_bin = first
                    self._down.add(bins.counts, bins.sums, 1.0)
                self._down.read_at = at

    def _first_complete(self, times: BatchTimes, column: str | None = None) -> int | None:
        """The first bin all of whose events a stream side read: the bin after the one in which its
        first non-empty, whole batch closed. Before that, partitions may still have been getting
        positioned at `latest` (each is resolved on its own), so earlier bins can be incomplete."""
        batch = times.batch
        oldest = times.oldest(column or self.up_column or "")
        if oldest is None or batch.partial:
            return None
        return math.floor(max(oldest, batch.window_end.timestamp()) / self.width) + 1

    def _off(self, g: _BinGap) -> bool:
        sums = self.spec.sum is not None and abs(g.sum_gap) > self._allowed(g.up_sum)
        return abs(g.gap) > self._allowed(g.up) or sums

    def _allowed(self, upstream: float) -> float:
        return max(self.spec.abs_tolerance, self.spec.tolerance * abs(upstream))

    def evaluate(self, now: datetime) -> list[CheckResult]:
        spec = self.spec
        tol = f"<= max({spec.abs_tolerance:g}, {spec.tolerance:g} * upstream) per bin"
        if not self.up_column or not self.down_column:
            missing = spec.upstream if not self.up_column else spec.downstream
            return [
                self.error(f"no event-time column for {missing}: set its event_time or the link's column")
            ]
        with self._lock:
            first = self._first_bin
            if self._down_first_bin is not None and first is not None:
                first = max(first, self._down_first_bin)
            up_read, down_read = self._up.read_at, self._down.read_at
            if first is None or up_read is None or down_read is None:
                return [self.result(Status.OK, None, tol, "waiting for batches of both datasets")]
            # a bin is complete when it ended `grace` ago and both sides were read after that
            horizon = min(now.timestamp(), up_read, down_read) - self.grace
            last = math.floor(horizon / self.width) - 1
            if last < first:
                return [self.result(Status.OK, None, tol, "waiting for the first complete bin")]
            judged = list(range(max(first, last - spec.judge_bins + 1), last + 1))
            rows = [
                (
                    b,
                    self._up.counts.get(b, 0.0),
                    self._down.counts.get(b, 0.0),
                    self._up.sums.get(b, 0.0),
                    self._down.sums.get(b, 0.0),
                )
                for b in judged
            ]
        gaps = [_BinGap(b * self.width, up_n, down_n, up_s, down_s) for b, up_n, down_n, up_s, down_s in rows]
        off = [g for g in gaps if self._off(g)]
        count_gap = sum(g.gap for g in off)
        value = sum(abs(g.gap) for g in off)
        details: dict[str, object] = {
            "stage": spec.stage_name(),
            "bins_judged": len(gaps),
            "bins_off": [g.to_dict(with_sums=spec.sum is not None) for g in off[:LISTED_BINS]],
            "count_gap": count_gap,
            "bin": format_duration(spec.bin),
        }
        if spec.sum is not None:
            details["sum_gap"] = sum(g.sum_gap for g in off)
        window = (
            f"{len(gaps)} complete {format_duration(spec.bin)} bin(s) up to {_iso((last + 1) * self.width)}"
        )
        if not off:
            message = f"{spec.downstream} reconciles with {spec.upstream} over {window}"
            return [self.result(Status.OK, 0.0, tol, message, details)]
        worst = max(off, key=lambda g: (abs(g.gap), abs(g.sum_gap)))
        parts = []
        if count_gap:
            direction = "missing in" if count_gap < 0 else "extra in"
            parts.append(f"{abs(count_gap):g} rows {direction} {spec.downstream}")
        sums_off = [g for g in off if spec.sum is not None and abs(g.sum_gap) > self._allowed(g.up_sum)]
        if sums_off:
            parts.append(f"sum({spec.sum}) off by {sum(g.sum_gap for g in sums_off):+g}")
        listed = ", ".join(f"{_iso(g.start)} {g.gap:+g}" for g in off[:3])
        message = (
            f"stage {spec.stage_name()} lost or duplicated events: {len(off)} of {window} off vs "
            f"{spec.upstream}: {'; '.join(parts) or 'gaps cancel out'} ({listed}); "
            f"worst {_iso(worst.start)}: {worst.down:g} vs {worst.up:g}"
        )
        return [self.result(self.violation, value, tol, message, details)]
