"""A replica's side: it stands in for a dataset's engine, turning each batch into partials.

The worker hands it every micro-batch and every sweep, exactly as it would the engine; it
returns no results (the pipeline's judge gives the verdicts) and writes instead:
* per partition, the replica's accumulated view of the window (several batches of one window,
  when the size bound closed one early, are merged first), upserted so re-sending is harmless;
* the source facts (up, newest record, watermarks delta, lag, the topic's partitions) for the
  judge's staleness sweep.
A failed write is retried with the next batch; what never arrives the judge reports missing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from datetime import datetime

from dqmon.batch import MicroBatch
from dqmon.errors import StateError
from dqmon.facts import SourceFacts
from dqmon.results import CheckResult
from dqmon.scaleout.metrics import ScaleoutMetrics
from dqmon.scaleout.partials import Partial, merge_partition, split_batch
from dqmon.scaleout.store import PartialStore

log = logging.getLogger(__name__)
KEEP_WINDOWS = 3  # unsent partials (failed writes) are retried for this many windows
FACTS_EVERY = 0.5


def facts_body(facts: SourceFacts, partitions: Sequence[int]) -> dict[str, object]:
    newest = facts.newest_record_time
    return {
        "up": facts.up,
        "newest": newest.timestamp() if newest is not None else None,
        "produced": facts.produced,
        "lag": {g: [lag.messages, lag.seconds] for g, lag in facts.consumer_lag.items()},
        "error": facts.error,
        "partitions": sorted(partitions),
    }


class PartialPublisher:
    def __init__(
        self,
        pipeline: str,
        dataset: str,
        store: PartialStore,
        replica: str,
        partitions: Callable[[], Sequence[int]],
        metrics: ScaleoutMetrics,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.pipeline = pipeline
        self.dataset = dataset
        self.store = store
        self.replica = replica
        self.partitions = partitions
        self.metrics = metrics
        self.clock = clock
        self._acc: dict[tuple[float, int], Partial] = {}
        self._unsent: set[tuple[float, int]] = set()
        self._facts_at = 0.0
        self._warned_at = -1e9

    def _failed(self, what: str, exc: StateError) -> None:
        self.metrics.publish_errors.labels(self.pipeline, self.dataset).inc()
        if self.clock() - self._warned_at >= 30.0:  # a store outage: once every 30 s, not per batch
            self._warned_at = self.clock()
            log.warning("publishing %s of %s/%s failed: %s", what, self.pipeline, self.dataset, exc)

    def evaluate(self, batch: MicroBatch) -> list[CheckResult]:
        for part in split_batch(batch, self.replica):
            key = (part.window_start, part.partition)
            before = self._acc.get(key)
            self._acc[key] = part if before is None else merge_partition([before, part])
            self._unsent.add(key)
        # batches come window after window: an older window only stays while its write failed
        newest = max((w for w, _ in self._acc), default=0.0)
        span = max(1.0, (batch.window_end - batch.window_start).total_seconds())
        for key in list(self._acc):
            if key[0] < newest and (key not in self._unsent or key[0] < newest - KEEP_WINDOWS * span):
                del self._acc[key]
                self._unsent.discard(key)
        self._flush()
        return []

    def _flush(self) -> None:
        keys = sorted(self._unsent)
        if not keys:
            return
        try:
            written = self.store.put_partials(
                self.pipeline, self.dataset, [self._acc[k] for k in keys], self.clock()
            )
        except StateError as exc:
            self._failed("partials", exc)
            return
        self._unsent.clear()
        self.metrics.partial_bytes.labels(self.pipeline, self.dataset).inc(written)

    def sweep(self, now: datetime, facts: SourceFacts | None = None) -> list[CheckResult]:
        at = self.clock()
        if facts is None or at - self._facts_at < FACTS_EVERY:
            return []
        try:
            self.store.put_facts(
                self.pipeline, self.dataset, self.replica, facts_body(facts, self.partitions()), at
            )
            self._facts_at = at
        except StateError as exc:
            self._failed("facts", exc)
        self._flush()  # retry partials a failed write left behind
        return []
