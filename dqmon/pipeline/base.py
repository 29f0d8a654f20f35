"""The link contract: a cross-dataset check observes the micro-batches of the datasets it names and
judges them from that state on the runtime's sweep, or reads its own stores on a schedule."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import ClassVar, Generic, TypeVar

from dqmon.config.links import LinkSpec
from dqmon.config.models import Pipeline
from dqmon.pipeline.observe import BatchTimes
from dqmon.results import CheckResult, Verdicts, utcnow


@dataclass(frozen=True)
class LinkContext:
    pipeline: Pipeline
    base_dir: Path
    clock: Callable[[], datetime] = utcnow


SpecT = TypeVar("SpecT", bound=LinkSpec)


class LinkCheck(Verdicts, ABC, Generic[SpecT]):
    """A configured link. `observe` is called from the datasets' evaluation threads (keep it cheap and
    thread-safe); `evaluate` from the sweep; scheduled links (`schedule_seconds`) get `poll` instead."""

    kind: ClassVar[str]
    spec_type: ClassVar[type[LinkSpec]]

    def __init__(self, spec: SpecT, name: str, ctx: LinkContext) -> None:
        self.spec: SpecT = spec
        self.name = name
        self.ctx: LinkContext = ctx

    def observes(self) -> frozenset[str]:
        """Datasets whose batches this link wants."""
        return frozenset(name for _key, name in self.spec.datasets())

    def observe(self, dataset: str, times: BatchTimes) -> None:
        """Fold one micro-batch of `dataset` (`times.batch`) into the link's bounded state."""

    @abstractmethod
    def evaluate(self, now: datetime) -> list[CheckResult]:
        """Judge the state (no I/O); called once per sweep for unscheduled links."""

    def schedule_seconds(self) -> float | None:
        """None: judged by the sweep from batches; else `poll` runs on the scheduler at this interval."""
        return None

    def poll(self, now: datetime) -> list[CheckResult]:
        return self.evaluate(now)

    def source_up(self) -> bool | None:
        """Whether the stores a scheduled link reads answered on its last poll (None: it reads none)."""
        return None

    def close(self) -> None:
        """Release connections."""

    def result_dataset(self) -> str:
        return self.spec.result_dataset()
