"""Lag: the pipeline's own consumer groups, read from broker facts (never committed to)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from dqmon.batch import MicroBatch
from dqmon.checks.base import Check
from dqmon.checks.registry import register
from dqmon.config.checks import LagSpec
from dqmon.config.durations import format_duration
from dqmon.facts import SourceFacts
from dqmon.results import CheckResult, Status, bounds_text


@register
class LagCheck(Check[LagSpec]):
    kind = "lag"
    spec_type = LagSpec

    def finish(self, batch: MicroBatch, aggregates: Mapping[str, Any]) -> list[CheckResult]:
        return []  # judged on source facts by the sweep

    def on_facts(self, facts: SourceFacts, now: datetime) -> list[CheckResult]:
        seconds = self.spec.max_seconds
        threshold = bounds_text(
            ("<=", None if self.spec.max_messages is None else f"{self.spec.max_messages} messages"),
            ("<=", None if seconds is None else format_duration(seconds)),
        )
        if not facts.up:
            return [self.error("source is down: consumer lag unknown")]
        lag = facts.consumer_lag.get(self.spec.group)
        if lag is None:
            return [self.error(f"no committed offsets found for consumer group {self.spec.group!r}")]
        problems = []
        if self.spec.max_messages is not None and lag.messages > self.spec.max_messages:
            problems.append(f"{lag.messages} messages behind")
        if (
            self.spec.max_seconds is not None
            and lag.seconds is not None
            and lag.seconds > self.spec.max_seconds.total_seconds()
        ):
            problems.append(f"{lag.seconds:.1f}s behind")
        details = {"messages": lag.messages, "seconds": lag.seconds, "group": self.spec.group}
        if problems:
            return [
                self.result(
                    self.violation,
                    float(lag.messages),
                    threshold,
                    f"group {self.spec.group} is " + " and ".join(problems),
                    details=details,
                )
            ]
        return [
            self.result(
                Status.OK,
                float(lag.messages),
                threshold,
                f"group {self.spec.group} is {lag.messages} messages behind",
                details=details,
            )
        ]
