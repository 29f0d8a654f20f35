"""Volume: rows per window within bounds, and anomalies against the stored history of counts."""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import numpy as np

from dqmon.batch import MicroBatch
from dqmon.checks.base import Check, CheckContext
from dqmon.checks.registry import register
from dqmon.checks.stats import robust_z
from dqmon.config.checks import VolumeSpec
from dqmon.results import CheckResult, Status, bounds_text


def _season(at: datetime, seasonality: str) -> int | None:
    if seasonality == "hour_of_day":
        return at.hour
    if seasonality == "hour_of_week":
        return at.weekday() * 24 + at.hour
    return None


@register
class VolumeCheck(Check[VolumeSpec]):
    kind = "volume"
    spec_type = VolumeSpec

    def __init__(self, spec: VolumeSpec, name: str, ctx: CheckContext) -> None:
        super().__init__(spec, name, ctx)
        self._series = self.state_key("counts")
        # window counts with their season, read from the store once; each batch appends to both
        self._history: deque[tuple[int | None, float]] = deque(
            maxlen=spec.anomaly.history if spec.anomaly else 1
        )
        if spec.anomaly is not None:
            self._history.extend(
                (_season(at, spec.anomaly.seasonality), count)
                for at, count in ctx.store.counts(self._series, spec.anomaly.history)
            )

    def _count(self, batch: MicroBatch) -> tuple[int, str]:
        mode = self.spec.count
        if mode == "auto":
            mode = "produced" if batch.rows_produced is not None else "seen"
        if mode == "produced":
            if batch.rows_produced is None:
                return batch.rows_seen, "seen"
            return batch.rows_produced, mode
        if mode == "sampled":
            return batch.rows_sampled, mode
        return batch.rows_seen, mode

    def finish(self, batch: MicroBatch, aggregates: Mapping[str, Any]) -> list[CheckResult]:
        count, counted = self._count(batch)
        if batch.partial:
            return []  # partitions arrived mid-window: the count says nothing, and must not resolve
        threshold = bounds_text((">=", self.spec.min), ("<=", self.spec.max))
        details: dict[str, Any] = {"count": count, "counted": counted}
        problems = []
        if self.spec.min is not None and count < self.spec.min:
            problems.append(f"{count} rows below the minimum {self.spec.min}")
        if self.spec.max is not None and count > self.spec.max:
            problems.append(f"{count} rows above the maximum {self.spec.max}")
        if self.spec.anomaly is not None:
            anomaly = self._anomaly(batch.window_end, count, details)
            if anomaly:
                problems.append(anomaly)
                threshold = threshold or f"|robust z| <= {self.spec.anomaly.sensitivity:g}"
        status = self.violation if problems else Status.OK
        message = "; ".join(problems) if problems else f"{count} rows in window"
        return [self.result(status, float(count), threshold, message, details=details)]

    def _anomaly(self, at: datetime, count: int, details: dict[str, Any]) -> str | None:
        spec = self.spec.anomaly
        assert spec is not None
        season = _season(at, spec.seasonality)
        values = np.array([c for s, c in self._history if s == season], dtype=np.float64)
        self._history.append((season, float(count)))
        self.ctx.store.append_count(self._series, at, count, spec.history)
        details["history"] = int(values.size)
        if values.size < spec.min_history:
            details["anomaly"] = f"learning ({values.size}/{spec.min_history} windows)"
            return None
        score = robust_z(values, float(count))
        low, high = score.band(spec.sensitivity)
        details.update(median=score.median, z=round(score.z, 3), band=[round(low, 3), round(high, 3)])
        too_low = score.z < -spec.sensitivity and spec.direction in ("both", "low")
        too_high = score.z > spec.sensitivity and spec.direction in ("both", "high")
        if too_low or too_high:
            word = "below" if too_low else "above"
            band = f"[{low:.0f}, {high:.0f}]"
            return f"{count} rows is anomalous: {word} the expected band {band} (z={score.z:.1f})"
        return None
