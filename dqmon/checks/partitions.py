"""Per-partition health of a Kafka topic: healthy, stalled, lagging, or idle with the topic.

Each window the Kafka source reports, per assigned partition, the records read, the newest
broker timestamp and the high watermark at the window's start and end (`MicroBatch.
partitions`). A partition progressed when its watermark grew (or, without watermarks,
records were read). Classification, per window:

* idle with the topic: no partition progressed — quiet is not broken; freshness and volume judge
  a silent topic, so this check says nothing (status ok) instead of reporting N stalls;
* stalled: no progress for `stall_after` while other partitions progressed in this window;
* lagging: progressing, but its newest timestamp trails the topic's newest by more than
  `max_timestamp_lag` (a producer writing old data, or dqmon behind on that partition);
* healthy otherwise.

State per partition (last progress time, newest timestamp) is small and persisted; partitions
revoked from this replica are forgotten. Partition numbers appear in the result and message;
`partition_health` in details (at most MAX_REPORTED partitions, unhealthy first) feeds the
`dqmon_partition_health` gauge.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from pydantic import Field

from dqmon.batch import MicroBatch, PartitionWindow
from dqmon.checks.base import Check, CheckContext
from dqmon.checks.registry import register
from dqmon.checks.streamstate import PERSIST_EVERY_SECONDS
from dqmon.config.checks import CheckSpec
from dqmon.config.durations import Duration
from dqmon.results import CheckResult, Status

#: partitions listed in details and exported as gauge series, per dataset (cardinality bound)
MAX_REPORTED = 64
HEALTH_CODES = {"healthy": 0, "lagging": 1, "stalled": 2, "idle": 3}


class PartitionsSpec(CheckSpec):
    stall_after: Duration = Field(
        timedelta(seconds=30), description="no progress this long while other partitions advance: stalled"
    )
    max_timestamp_lag: Duration | None = Field(
        timedelta(minutes=1), description="newest timestamp trailing the topic's newest by more: lagging"
    )
    max_unhealthy: int = Field(0, ge=0, description="stalled + lagging partitions tolerated")


def _numbers(partitions: list[int]) -> str:
    word = "partition" if len(partitions) == 1 else "partitions"
    shown = ", ".join(map(str, partitions[:10])) + (
        f" and {len(partitions) - 10} more" if len(partitions) > 10 else ""
    )
    return f"{word} {shown}"


def _progressed(window: PartitionWindow) -> bool:
    produced = window.produced
    return window.seen > 0 or (produced is not None and produced > 0)


@register
class PartitionsCheck(Check[PartitionsSpec]):
    kind = "partitions"
    spec_type = PartitionsSpec

    def __init__(self, spec: PartitionsSpec, name: str, ctx: CheckContext) -> None:
        super().__init__(spec, name, ctx)
        self._key = self.state_key("partitions")
        stored = ctx.store.get_state(self._key)
        # partition -> [last progress (epoch s), newest broker timestamp (ms) or None]
        self.state: dict[int, list[Any]] = (
            {int(p): list(v) for p, v in stored.items()} if isinstance(stored, dict) else {}
        )
        self._persisted_at = ctx.clock().timestamp()

    def finish(self, batch: MicroBatch, aggregates: Mapping[str, Any]) -> list[CheckResult]:
        stats = batch.partitions
        if not stats:
            return [self.error("no per-partition window data: the partitions check needs a kafka source")]
        now, start = batch.window_end.timestamp(), batch.window_start.timestamp()
        for gone in set(self.state) - set(stats):
            del self.state[gone]  # revoked from this replica (or the topic shrank)
        moving = [p for p, w in stats.items() if _progressed(w)]
        for p, w in stats.items():
            last, newest = self.state.get(p, [start, None])
            if _progressed(w):
                last = now
            if w.newest_ms is not None:
                newest = w.newest_ms if newest is None else max(newest, w.newest_ms)
            self.state[p] = [last, newest]
        self._persist()
        threshold = f"unhealthy partitions <= {self.spec.max_unhealthy}"
        if not moving:
            health = dict.fromkeys(sorted(stats)[:MAX_REPORTED], "idle")
            quiet: dict[str, Any] = {
                "partitions": len(stats),
                "partition_health": self._codes(health),
                "idle": True,
            }
            message = (
                f"topic quiet: none of {len(stats)} partitions advanced (freshness and volume judge silence)"
            )
            return [self.result(Status.OK, 0.0, threshold, message, details=quiet)]
        stall = self.spec.stall_after.total_seconds()
        stalled = sorted(p for p in stats if p not in moving and now - self.state[p][0] >= stall)
        topic_newest = max((v[1] for v in self.state.values() if v[1] is not None), default=None)
        behind: dict[int, float] = {}
        if self.spec.max_timestamp_lag is not None and topic_newest is not None:
            limit = self.spec.max_timestamp_lag.total_seconds()
            for p in stats:
                newest = self.state[p][1]
                if p not in stalled and newest is not None and (topic_newest - newest) / 1000 > limit:
                    behind[p] = (topic_newest - newest) / 1000
        lagging = sorted(behind)
        health = {p: "stalled" for p in stalled} | {p: "lagging" for p in lagging}
        unhealthy = len(health)
        for p in sorted(stats):
            if len(health) >= MAX_REPORTED:
                break
            health.setdefault(p, "healthy")
        details: dict[str, Any] = {
            "partitions": len(stats),
            "advancing": len(moving),
            "stalled": stalled,
            "lagging": lagging,
            "partition_health": self._codes(dict(list(health.items())[:MAX_REPORTED])),
            "seen": {str(p): stats[p].seen for p in sorted(stats)[:MAX_REPORTED]},
            "state_entries": len(self.state),
        }
        if behind:
            details["lag_seconds"] = {str(p): round(s, 3) for p, s in sorted(behind.items())}
        problems = []
        if stalled:
            silent = max(now - self.state[p][0] for p in stalled)
            problems.append(
                f"{_numbers(stalled)} stalled (no progress for up to {silent:.0f}s "
                f"while {len(moving)} of {len(stats)} advanced)"
            )
        if lagging:
            problems.append(
                f"{_numbers(lagging)} lagging (newest record up to "
                f"{max(behind.values()):.0f}s behind the topic's)"
            )
        if unhealthy > self.spec.max_unhealthy:
            return [
                self.result(self.violation, float(unhealthy), threshold, "; ".join(problems), details=details)
            ]
        message = (
            "; ".join(problems)
            if problems
            else f"all {len(stats)} partitions healthy ({len(moving)} advanced)"
        )
        return [self.result(Status.OK, float(unhealthy), threshold, message, details=details)]

    @staticmethod
    def _codes(health: Mapping[int, str]) -> dict[str, int]:
        return {str(p): HEALTH_CODES[h] for p, h in health.items()}

    def _persist(self) -> None:
        now = self.ctx.clock().timestamp()
        if now - self._persisted_at >= PERSIST_EVERY_SECONDS:
            self._persisted_at = now
            self.ctx.store.put_state(self._key, {str(p): v for p, v in self.state.items()})
