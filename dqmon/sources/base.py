"""The Source contract: a dataset reader that yields micro-batches and source facts.

A source kind is one module: a config model (a `SourceSpec` subclass with `kind: Literal[...]`)
and a `Source` subclass naming it in `config_type`, registered with `@SOURCES.add(kind)`. Every
source is built from the same `SourceContext` and declares how it is driven (`schedule_seconds`),
so the runtime never tests a source's type.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import ClassVar

from dqmon.batch import MicroBatch
from dqmon.config.models import Dataset, Pipeline, SourceSpec
from dqmon.config.settings import Settings
from dqmon.facts import SourceFacts
from dqmon.state.store import KeyValueState


@dataclass(frozen=True)
class SourceContext:
    """What every source is built from."""

    pipeline: Pipeline
    dataset: Dataset
    settings: Settings
    store: KeyValueState  # sources keep small values (a SQL cursor) across restarts
    base_dir: Path  # the checks file's directory (relative paths in the config)
    clock: Callable[[], datetime]


class Source(ABC):
    """Lifecycle: `start()` once, then `poll_batch()` repeatedly from one thread, `close()` once.

    A source never raises out of `poll_batch` for transient faults (broker down, query
    timeout): it returns None, reports `up=False` in `facts()` and retries with backoff.
    """

    config_type: ClassVar[type[SourceSpec]]

    @classmethod
    @abstractmethod
    def from_context(cls, ctx: SourceContext) -> Source: ...

    def schedule_seconds(self) -> float | None:
        """None: streamed (a fetch thread polls it continuously); else the scheduler calls
        `poll_batch(0)` at this interval and the source paces its own reads."""
        return None

    @abstractmethod
    def start(self) -> None: ...

    @abstractmethod
    def poll_batch(self, timeout: float) -> MicroBatch | None:
        """The next micro-batch when its window closed within `timeout` seconds, else None."""

    @abstractmethod
    def facts(self) -> SourceFacts:
        """Current source-level facts (cheap; may be cached by the source)."""

    @abstractmethod
    def close(self) -> None: ...
