"""One dataset at run time: its source, a bounded queue of micro-batches, and its engine.

Streaming sources (Kafka, replay) are read by a fetch thread; scheduled sources (SQL views)
are polled by the runtime's scheduler. Either way batches go through a bounded queue to one
evaluation thread, so a slow check never stalls the consumer and memory stays bounded: when
the queue is full the oldest waiting batch is dropped and counted.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from dqmon.batch import MicroBatch
from dqmon.config.models import Dataset, Pipeline
from dqmon.facts import SourceFacts
from dqmon.results import CheckResult
from dqmon.scaleout.judge import Evaluator
from dqmon.sources.base import Source
from dqmon.telemetry.metrics import DqmonMetrics
from dqmon.telemetry.tracing import batch_span

log = logging.getLogger(__name__)
Publish = Callable[[Pipeline, Dataset, Sequence[CheckResult], MicroBatch | None], None]


@dataclass
class _Queued:
    batch: MicroBatch
    fetch_seconds: float
    fetch_started_ns: int


class DatasetWorker:
    def __init__(
        self,
        pipeline: Pipeline,
        dataset: Dataset,
        source: Source,
        engine: Evaluator,  # a DatasetEngine, or a scale-out replica's partial publisher
        metrics: DqmonMetrics,
        publish: Publish,
        *,
        max_queue: int = 8,
    ) -> None:
        self.pipeline = pipeline
        self.dataset = dataset
        self.source = source
        self.engine = engine
        self.metrics = metrics
        self.publish = publish
        # scheduled sources are polled by the runtime's scheduler, streamed ones by a fetch thread
        self.schedule_seconds = source.schedule_seconds()
        self.queue: queue.Queue[_Queued] = queue.Queue(maxsize=max_queue)
        self._stop = threading.Event()
        self._engine_lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self.started = False
        self.last_batch_at: datetime | None = None
        self.last_facts: SourceFacts | None = None

    @property
    def name(self) -> str:
        return f"{self.pipeline.pipeline}/{self.dataset.name}"

    def start(self) -> None:
        self.source.start()
        self.started = True
        if self.schedule_seconds is None:
            self._spawn(self._fetch_loop, "fetch")
        self._spawn(self._evaluate_loop, "evaluate")

    def _spawn(self, target: Callable[[], None], role: str) -> None:
        thread = threading.Thread(target=target, name=f"dqmon-{role}-{self.name}", daemon=True)
        thread.start()
        self._threads.append(thread)

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.1, deadline - time.monotonic()))
        try:
            self.source.close()
        except Exception:
            log.warning("closing source of %s failed", self.name, exc_info=True)

    # ------------------------------------------------------------------ fetching
    def poll_once(self, timeout: float = 0.0) -> bool:
        """Poll the source once (the scheduler calls this for SQL views); True when a batch came."""
        started_ns = time.time_ns()
        start = time.monotonic()
        try:
            batch = self.source.poll_batch(timeout)
        except Exception:
            log.exception("source of %s failed while polling", self.name)
            time.sleep(min(timeout, 1.0))
            return False
        if batch is None:
            return False
        self._enqueue(_Queued(batch, time.monotonic() - start, started_ns))
        return True

    def _fetch_loop(self) -> None:
        while not self._stop.is_set():
            self.poll_once(timeout=0.5)

    def _enqueue(self, item: _Queued) -> None:
        while True:
            try:
                self.queue.put_nowait(item)
                break
            except queue.Full:
                try:
                    self.queue.get_nowait()
                    self.metrics.count_dropped_batch(self.pipeline.pipeline, self.dataset.name)
                    log.warning("engine queue of %s full: dropped the oldest batch", self.name)
                except queue.Empty:
                    pass
        self.metrics.set_queue_depth(self.pipeline.pipeline, self.dataset.name, self.queue.qsize())

    # ------------------------------------------------------------------ evaluating
    def _evaluate_loop(self) -> None:
        while not self._stop.is_set():
            try:
                item = self.queue.get(timeout=0.5)
            except queue.Empty:
                continue
            self.metrics.set_queue_depth(self.pipeline.pipeline, self.dataset.name, self.queue.qsize())
            try:
                self.evaluate(item)
            except Exception:
                log.exception("evaluating a batch of %s failed", self.name)

    def evaluate(self, item: _Queued) -> list[CheckResult]:
        batch = item.batch
        source = self.dataset.source
        destination = getattr(source, "topic", None) or self.dataset.name
        system = "kafka" if source.kind == "kafka" else None
        with batch_span(
            self.pipeline.pipeline,
            self.dataset.name,
            destination=destination,
            system=system,
            start_time_ns=item.fetch_started_ns,
        ) as span:
            decode = min(batch.decode_seconds, item.fetch_seconds)
            span.record_stage(
                "fetch",
                item.fetch_seconds - decode,
                end_ns=item.fetch_started_ns + int((item.fetch_seconds - decode) * 1e9),
            )
            if decode:
                span.record_stage(
                    "decode", decode, end_ns=item.fetch_started_ns + int(item.fetch_seconds * 1e9)
                )
            span.set_batch(batch)
            start = time.monotonic()
            with self._engine_lock:
                results = self.engine.evaluate(batch)
            check_seconds = time.monotonic() - start
            results = span.attach(results)
        self.metrics.observe_batch(
            batch, {"fetch": item.fetch_seconds - decode, "decode": decode, "check": check_seconds}
        )
        self.last_batch_at = batch.window_end
        self.publish(self.pipeline, self.dataset, results, batch)
        return results

    # ------------------------------------------------------------------ sweeps
    def sweep(self, now: datetime) -> list[CheckResult]:
        """Source facts to metrics, then the checks that judge time and facts (staleness, lag)."""
        try:
            facts = self.source.facts() if self.started else SourceFacts(observed_at=now, up=False)
        except Exception:
            log.exception("reading source facts of %s failed", self.name)
            facts = SourceFacts(observed_at=now, up=False, error="facts unavailable")
        self.last_facts = facts
        self.metrics.observe_facts(self.pipeline.pipeline, self.dataset.name, facts)
        with self._engine_lock:
            results = self.engine.sweep(now, facts)
        if results:
            self.publish(self.pipeline, self.dataset, results, None)
        return results
