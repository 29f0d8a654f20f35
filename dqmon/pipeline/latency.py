"""End-to-end latency: how far the downstream dataset's newest event time trails the upstream's.

Distinct from freshness: freshness compares one dataset with the clock, so a view can be fresh
while missing the topic's last minute, or stale only because the topic is quiet. Here the view is
compared with the topic as the topic looked when the view was read: upstream observations are kept
in a short bounded history, so a view polled every 30 s is not blamed for the 30 s since its poll.
"""

from __future__ import annotations

import threading
from collections import deque
from datetime import UTC, datetime

from dqmon.config.durations import format_duration
from dqmon.config.links import LatencySpec
from dqmon.pipeline.base import LinkCheck, LinkContext
from dqmon.pipeline.observe import BatchTimes
from dqmon.registry import LINK_KINDS
from dqmon.results import CheckResult, Status

HISTORY = 4096  # upstream observations kept (about an hour at one batch a second)


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")


@LINK_KINDS.add("latency")
class LatencyLink(LinkCheck[LatencySpec]):
    kind = "latency"
    spec_type = LatencySpec

    def __init__(self, spec: LatencySpec, name: str, ctx: LinkContext) -> None:
        super().__init__(spec, name, ctx)
        pipeline = ctx.pipeline
        self.up_column = spec.upstream_column or pipeline.dataset(spec.upstream).event_time
        self.down_column = spec.downstream_column or pipeline.dataset(spec.downstream).event_time
        self._lock = threading.Lock()
        # (observed at, newest upstream event time so far), both epoch seconds, non-decreasing
        self._upstream: deque[tuple[float, float]] = deque(maxlen=HISTORY)
        self._downstream: tuple[float, float] | None = None

    def observe(self, dataset: str, times: BatchTimes) -> None:
        if dataset == self.spec.upstream and self.up_column:
            newest = times.newest(self.up_column)
            if newest is None:
                return
            at = self.ctx.clock().timestamp()
            with self._lock:
                if self._upstream:
                    newest = max(newest, self._upstream[-1][1])
                self._upstream.append((at, newest))
        if dataset == self.spec.downstream and self.down_column:
            newest = times.newest(self.down_column)
            if newest is None:
                return
            at = self.ctx.clock().timestamp()
            with self._lock:
                if self._downstream is not None:
                    newest = max(newest, self._downstream[1])
                self._downstream = (at, newest)

    def _upstream_at(self, at: float) -> float | None:
        """Newest upstream event time known when the downstream was read (the latest observation
        not after `at`)."""
        best = None
        for observed, newest in reversed(self._upstream):
            if observed <= at:
                best = newest
                break
        return best

    def evaluate(self, now: datetime) -> list[CheckResult]:
        spec = self.spec
        threshold = f"<= {format_duration(spec.max_behind)}"
        if not self.up_column or not self.down_column:
            missing = spec.upstream if not self.up_column else spec.downstream
            return [
                self.error(f"no event-time column for {missing}: set its event_time or the link's column")
            ]
        with self._lock:
            down = self._downstream
            up = self._upstream_at(down[0]) if down is not None else None
        if down is None or up is None:
            return [self.result(Status.OK, None, threshold, "waiting for events of both datasets")]
        behind = max(0.0, up - down[1])
        details = {
            "upstream_newest": _iso(up),
            "downstream_newest": _iso(down[1]),
            "downstream_read_at": _iso(down[0]),
            "stage": spec.stage_name(),
        }
        message = (
            f"{spec.downstream} is {behind:.1f}s behind {spec.upstream} "
            f"(stage {spec.stage_name()}; newest event {_iso(down[1])} vs {_iso(up)})"
        )
        if behind > spec.max_behind.total_seconds():
            return [
                self.result(
                    self.violation,
                    behind,
                    threshold,
                    f"stage {spec.stage_name()} is behind: {message}",
                    details,
                )
            ]
        return [self.result(Status.OK, behind, threshold, message, details)]
