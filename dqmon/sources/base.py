"""The Source contract: a dataset reader that yields micro-batches and source facts."""

from __future__ import annotations

from abc import ABC, abstractmethod

from dqmon.batch import MicroBatch
from dqmon.facts import SourceFacts


class Source(ABC):
    """Lifecycle: `start()` once, then `poll_batch()` repeatedly from one thread, `close()` once.

    A source never raises out of `poll_batch` for transient faults (broker down, query
    timeout): it returns None, reports `up=False` in `facts()` and retries with backoff.
    """

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
