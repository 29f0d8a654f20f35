"""Where each evaluation's results go: metrics, the status board, the pipeline's alert manager
(whose notifications wake the delivery worker), the pipeline links that read the dataset's
batches, and any hooks (the demo's judge, tests)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime

from dqmon.alerts.delivery import DeliveryWorker
from dqmon.alerts.manager import AlertManager
from dqmon.batch import MicroBatch
from dqmon.config.models import Dataset, Pipeline
from dqmon.results import CheckResult
from dqmon.runtime.status import StatusBoard
from dqmon.state.outbox import NewNotification
from dqmon.telemetry.metrics import DqmonMetrics

log = logging.getLogger(__name__)
ResultsHook = Callable[[Pipeline, Dataset, Sequence[CheckResult]], None]
NotificationsHook = Callable[[Sequence[NewNotification]], None]
BatchObserver = Callable[[str, str, MicroBatch], None]


class ResultFanout:
    """Called by every dataset worker after an evaluation (batch) or a sweep (facts only), and by
    the links runner with the results of cross-dataset checks."""

    def __init__(
        self,
        metrics: DqmonMetrics,
        board: StatusBoard,
        delivery: DeliveryWorker,
        managers: Callable[[], Mapping[str, AlertManager]],
        clock: Callable[[], datetime],
        observe_batch: BatchObserver | None = None,
    ) -> None:
        self.metrics = metrics
        self.board = board
        self.delivery = delivery
        self.managers = managers  # read on every call: a reload replaces the managers
        self.clock = clock
        self.observe_batch = observe_batch
        self.on_results: list[ResultsHook] = []
        self.on_notifications: list[NotificationsHook] = []

    def __call__(
        self, pipeline: Pipeline, dataset: Dataset, results: Sequence[CheckResult], batch: MicroBatch | None
    ) -> None:
        name = f"{pipeline.pipeline}/{dataset.name}"
        if batch is not None:
            self.board.batch(name, batch.rows_seen, batch.window_end)
            if self.observe_batch is not None:
                self.observe_batch(pipeline.pipeline, dataset.name, batch)
        # sweeps (no batch) move alerts; only dataset evaluations are SLO events
        notifications = self._record(pipeline, name, results, slo_events=batch is not None)
        for hook in self.on_results:
            hook(pipeline, dataset, results)
        self._notified(notifications)

    def links(self, pipeline: Pipeline, results: Sequence[CheckResult]) -> None:
        """Results of cross-dataset checks (on the downstream or a pseudo-dataset)."""
        for dataset in sorted({r.dataset for r in results}):
            mine = [r for r in results if r.dataset == dataset]
            # judged on the sweep, like staleness: they move alerts but are not SLO events
            self._notified(self._record(pipeline, f"{pipeline.pipeline}/{dataset}", mine, slo_events=False))

    def link_source_up(self, pipeline: str, dataset: str, up: bool) -> None:
        self.metrics.set_source_up(pipeline, dataset, up)
        self.board.source_up(f"{pipeline}/{dataset}", up)

    def _notified(self, notifications: Sequence[NewNotification]) -> None:
        if notifications:
            for notification_hook in self.on_notifications:
                notification_hook(notifications)

    def _record(
        self, pipeline: Pipeline, name: str, results: Sequence[CheckResult], *, slo_events: bool
    ) -> Sequence[NewNotification]:
        """Results to metrics, the status board and the pipeline's alerts."""
        self.metrics.record_results(results)
        self.board.results(name, results)
        manager = self.managers().get(pipeline.pipeline)
        notifications: Sequence[NewNotification] = []
        if manager is not None:
            try:  # AlertManager serialises its own callers
                notifications = manager.observe(results, self.clock(), slo_events=slo_events)
            except Exception:
                log.exception("alert evaluation for %s failed", pipeline.pipeline)
                self.metrics.count_state_store_error("write")
        if notifications:
            self.board.notifications += len(notifications)
            self.delivery.wake()
        return notifications
