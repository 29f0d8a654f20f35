"""The judge of one pipeline: elected by an advisory lock, it merges windows and gives verdicts.

Every replica runs a Judge per scaled-out pipeline; only the lock holder acts. On election it
builds fresh engines and the pipeline's alert manager (both load their state from the shared
store, so a new judge continues baselines and alert episodes: same Slack thread, no second
"firing"), then, every tick:
* for each dataset, windows in order: a window is merged once every partition of the topic has
  reported (and the window has ended) or its grace has passed; it is claimed in the store (judged
  once), merged, and judged by the unchanged engine with the clock at the window's end (what a
  single reader closing the window would have used). Missing partitions give a `warn` result
  `incomplete window: partitions [...] missing` and a counter, and the batch is `partial`.
* the staleness sweep over the replicas' merged source facts;
* pruning of old partials.
Demoted (lock lost), it drops its engines and alert manager.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Protocol

from dqmon.batch import MicroBatch
from dqmon.config.models import Dataset, Pipeline
from dqmon.errors import StateError
from dqmon.facts import ConsumerLag, SourceFacts
from dqmon.results import CheckResult, Status
from dqmon.scaleout.election import JudgeLock
from dqmon.scaleout.metrics import ScaleoutMetrics
from dqmon.scaleout.partials import merge_window
from dqmon.scaleout.store import PartialStore, ReplicaFacts

log = logging.getLogger(__name__)
SETTLE_SECONDS = 0.3  # after a window ends, replicas' last batches of it are still being written
GRACE_EXTRA = 2.0  # a window waits at most one window + this for missing partitions
RETENTION = timedelta(minutes=15)
FACTS_FRESH = 5.0  # a replica whose facts are older than this is not reading anything
CHECK_NAME = "scaleout:partitions"


class Evaluator(Protocol):
    def evaluate(self, batch: MicroBatch) -> list[CheckResult]: ...

    def sweep(self, now: datetime, facts: SourceFacts | None = None) -> list[CheckResult]: ...


Publish = Callable[[Pipeline, Dataset, Sequence[CheckResult], MicroBatch | None], None]
BuildEngines = Callable[[Callable[[], datetime]], Mapping[str, Evaluator]]


def merge_facts(rows: Sequence[ReplicaFacts], now: datetime) -> tuple[SourceFacts, list[int]]:
    """The replicas' facts as one reader of the whole topic would report them, and its partitions."""
    if not rows:
        return SourceFacts(observed_at=now, up=False, error="no replica is reading the topic"), []
    latest = max(rows, key=lambda r: r.observed_at).body
    newest = [float(r.body["newest"]) for r in rows if r.body.get("newest") is not None]
    errors = [str(r.body["error"]) for r in rows if r.body.get("error")]
    partitions = sorted({int(p) for r in rows for p in r.body.get("partitions", [])})
    lag = {g: ConsumerLag(int(v[0]), v[1]) for g, v in dict(latest.get("lag") or {}).items()}
    facts = SourceFacts(
        observed_at=now,
        up=any(bool(r.body.get("up")) for r in rows),
        newest_record_time=datetime.fromtimestamp(max(newest), UTC) if newest else None,
        produced=latest.get("produced"),  # each replica measures the whole topic's watermarks
        consumer_lag=lag,
        error=errors[0] if errors else None,
    )
    return facts, partitions


class _DatasetCursor:
    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset
        seconds = dataset.window.total_seconds()
        self.window = seconds if seconds > 0 else 1.0  # as the Kafka source windows it
        self.after = -math.inf  # last judged window start
        self.through: dict[int, int] = {}
        self.partitions: list[int] = []
        self.missing_since: dict[int, float] = {}  # partition -> end of the first window it missed
        self.last_seen: int | None = None  # records in the last judged window (None: none yet)
        # a group hands a partition over within its session timeout (a dead member is evicted
        # then; a join is held at most that long): shorter gaps are a rebalance, not an outage
        client = getattr(dataset.source, "client", {}) or {}
        session = float(client.get("session.timeout.ms", 45_000)) / 1000.0
        self.rebalance_allowance = session + self.window


class Judge:
    def __init__(
        self,
        pipeline: Pipeline,
        datasets: Sequence[Dataset],
        store: PartialStore,
        lock: JudgeLock,
        build: BuildEngines,
        publish: Publish,
        metrics: ScaleoutMetrics,
        *,
        on_elected: Callable[[], None] = lambda: None,
        on_demoted: Callable[[], None] = lambda: None,
        name: str | None = None,
        tick_seconds: float = 0.25,
        sweep_seconds: float = 1.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.pipeline = pipeline
        self.datasets = list(datasets)
        self.store = store
        self.lock = lock
        self.build = build
        self.publish = publish
        self.metrics = metrics
        self.on_elected = on_elected
        self.on_demoted = on_demoted
        self.name = name or uuid.uuid4().hex[:8]
        self.tick_seconds = tick_seconds
        self.sweep_seconds = sweep_seconds
        self.clock = clock
        self.engines: Mapping[str, Evaluator] = {}
        self._cursors: dict[str, _DatasetCursor] = {}
        self._judging_at: datetime | None = None
        self._swept_at = 0.0
        self._pruned_at = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def elected(self) -> bool:
        return bool(self.engines)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._loop, name=f"dqmon-judge-{self.pipeline.pipeline}", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self.elected:
            self._demote()
        self.lock.release()

    def _loop(self) -> None:
        warned = -math.inf
        while not self._stop.is_set():
            try:
                self.tick()
            except StateError as exc:  # PostgreSQL unreachable: say so every 30 s, not every tick
                if time.monotonic() - warned >= 30.0:
                    warned = time.monotonic()
                    log.warning("judge of %s cannot reach the store: %s", self.pipeline.pipeline, exc)
            except Exception:
                log.exception("judge of %s failed a tick", self.pipeline.pipeline)
            self._stop.wait(self.tick_seconds if self.elected else 1.0)

    # ------------------------------------------------------------------ one step
    def tick(self) -> None:
        if not self.lock.try_acquire():
            if self.elected:
                log.warning("judge of %s lost its lock; another replica takes over", self.pipeline.pipeline)
                self._demote()
            return
        if not self.elected:
            self._elect()
        now = self.clock()
        if time.monotonic() - self._swept_at >= self.sweep_seconds:  # first: it learns the partitions
            self._swept_at = time.monotonic()
            self._sweep(now)
        if time.monotonic() - self._pruned_at >= 60.0:  # first too: a long-stopped install's leftovers
            self._pruned_at = time.monotonic()
            self.store.prune((now - RETENTION).timestamp())
        for cursor in self._cursors.values():
            self._judge_ready(cursor, now)

    def _elect(self) -> None:
        cursors = {d.name: _DatasetCursor(d) for d in self.datasets}
        for cursor in cursors.values():
            last = self.store.last_judged(self.pipeline.pipeline, cursor.dataset.name)
            if last is not None:
                cursor.after, cursor.through = last
        self._cursors = cursors
        self.engines = dict(self.build(self._eval_clock))
        self.on_elected()
        self.metrics.judge.labels(self.pipeline.pipeline).set(1)
        log.info("judging pipeline %s (replica %s)", self.pipeline.pipeline, self.name)

    def _demote(self) -> None:
        self.engines = {}
        self._cursors = {}
        self.on_demoted()
        self.metrics.judge.labels(self.pipeline.pipeline).set(0)

    def _eval_clock(self) -> datetime:
        return self._judging_at if self._judging_at is not None else self.clock()

    # ------------------------------------------------------------------ windows
    def _judge_ready(self, cursor: _DatasetCursor, now: datetime) -> None:
        name, pipeline = cursor.dataset.name, self.pipeline.pipeline
        windows = self.store.windows(pipeline, name, cursor.after)
        at = now.timestamp()
        for start, ends in windows.items():
            ended = start + cursor.window
            expected = set(cursor.partitions) or set(ends)
            # every partition reported by a replica whose window closed by time (not by size)
            finished = {p for p, end in ends.items() if end >= ended - 1e-3}
            complete = expected <= finished and at >= ended + SETTLE_SECONDS
            if not complete and at < ended + cursor.window + GRACE_EXTRA:
                return  # windows are judged in order: later ones wait for this one
            merged = merge_window(
                pipeline, name, self.store.partials(pipeline, name, start), expected, cursor.through
            )
            claimed = self.store.claim_window(pipeline, name, start, self.name, merged.through, at)
            cursor.after = start
            if not claimed:  # another judge got there first (a lock handover in progress)
                last = self.store.last_judged(pipeline, name)
                if last is not None:
                    cursor.after, cursor.through = last
                continue
            cursor.through = merged.through
            self._verdict(cursor, merged.batch, merged.missing)
            self.store.drop_judged(pipeline, name, start)

    def _verdict(self, cursor: _DatasetCursor, batch: MicroBatch, missing: tuple[int, ...]) -> None:
        pipeline, name = self.pipeline.pipeline, cursor.dataset.name
        engine = self.engines.get(name)
        if engine is None:
            return
        # as one reader of every partition does: the window in which the stream starts, or resumes
        # after a silent window, saw only part of it (sources/kafka.py), so volume does not judge it
        resumed = batch.rows_seen > 0 and cursor.last_seen == 0
        cursor.last_seen = batch.rows_seen
        if resumed and not batch.partial:
            batch = replace(batch, partial=True)
        self._judging_at = batch.window_end
        try:
            results = engine.evaluate(batch)
        finally:
            self._judging_at = None
        end = batch.window_end.timestamp()
        cursor.missing_since = {p: cursor.missing_since.get(p, end) for p in missing}
        overdue = [p for p in missing if end - cursor.missing_since[p] >= cursor.rebalance_allowance]
        if overdue or not missing:
            results.append(self._completeness(cursor, missing))
        # else a rebalance is handing partitions over: the batch is partial (volume does not judge
        # it) and counted, but the window is neither called healthy nor alerted on yet
        self.metrics.windows.labels(pipeline, name).inc()
        if missing:
            self.metrics.incomplete.labels(pipeline, name).inc()
        self.publish(self.pipeline, cursor.dataset, results, batch)

    def _completeness(self, cursor: _DatasetCursor, missing: tuple[int, ...]) -> CheckResult:
        expected = len(cursor.partitions) or None
        if missing:
            status, message = Status.WARN, f"incomplete window: partitions {list(missing)} missing"
        else:
            status, message = Status.OK, "every partition reported"
        return CheckResult(
            pipeline=self.pipeline.pipeline,
            dataset=cursor.dataset.name,
            check=CHECK_NAME,
            kind="scaleout",
            status=status,
            value=float(len(missing)),
            threshold=f"all {expected} partitions" if expected else "all partitions",
            message=message,
            severity="warn",
            details={"missing": list(missing)},
        )

    # ------------------------------------------------------------------ facts
    def _sweep(self, now: datetime) -> None:
        since = now.timestamp() - FACTS_FRESH
        for cursor in self._cursors.values():
            name = cursor.dataset.name
            try:
                rows = self.store.facts(self.pipeline.pipeline, name, since)
            except StateError:
                log.warning("reading replica facts of %s/%s failed", self.pipeline.pipeline, name)
                continue
            facts, partitions = merge_facts(rows, now)
            if partitions:
                cursor.partitions = partitions
            engine = self.engines.get(name)
            results = engine.sweep(now, facts) if engine is not None else []
            if results:
                self.publish(self.pipeline, cursor.dataset, results, None)
