"""The runtime's periodic jobs on APScheduler: staleness/lag sweeps, alert and SLO gauges,
outbox pruning, and noticing edited checks files."""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path

from dqmon.alerts.manager import AlertManager
from dqmon.config.loader import checks_files
from dqmon.runtime.status import StatusBoard
from dqmon.runtime.worker import DatasetWorker
from dqmon.state.store import OutboxStore
from dqmon.telemetry.metrics import DqmonMetrics

log = logging.getLogger(__name__)
OUTBOX_RETENTION = timedelta(days=7)


def sweep(workers: Sequence[DatasetWorker], board: StatusBoard, now: datetime) -> None:
    """Judge source facts (silence, lag) of every dataset, even when no batch arrives."""
    for worker in workers:
        worker.sweep(now)
        board.source_up(worker.name, bool(worker.last_facts and worker.last_facts.up))


def alert_gauges(
    managers: Mapping[str, AlertManager], metrics: DqmonMetrics, board: StatusBoard, now: datetime
) -> None:
    firing = 0
    for manager in managers.values():
        counts = manager.firing_counts()
        statuses = manager.slo_status(now)
        for (pipeline, severity), count in counts.items():
            metrics.set_alerts_firing(pipeline, severity, count)
            firing += count
        for status in statuses:
            rates: dict[str, float] = {}
            for burn in status.burn_rates:
                long_window, _, short_window = burn.window.partition("/")
                rates[long_window] = burn.long_rate
                rates[short_window or long_window] = burn.short_rate
            metrics.set_slo(status.pipeline, status.slo, status.budget_remaining, rates)
    board.alerts_firing = firing


def prune_outbox(store: OutboxStore, metrics: DqmonMetrics, now: datetime) -> None:
    try:
        store.prune_outbox((now - OUTBOX_RETENTION).timestamp())
    except Exception:
        log.exception("pruning the outbox failed")
        metrics.count_state_store_error("write")


class ChecksFileWatch:
    """Sets `changed` when a checks file is added, removed or modified (a reload follows)."""

    def __init__(self, checks_dir: Path, changed: threading.Event) -> None:
        self.checks_dir = checks_dir
        self.changed = changed
        self._signature = self.signature()

    def signature(self) -> tuple[tuple[str, float], ...]:
        try:
            return tuple((str(f), f.stat().st_mtime) for f in checks_files(self.checks_dir))
        except OSError:
            return ()

    def __call__(self) -> None:
        signature = self.signature()
        if signature != self._signature:
            self._signature = signature
            log.info("checks files changed: reloading")
            self.changed.set()
