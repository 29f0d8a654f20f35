"""`dqmon run`: sources → engine → state, alerts and telemetry, with a clean lifecycle.

Threads: per dataset a fetch thread (streaming sources) and an evaluation thread; APScheduler
for periodic work (SQL view sampling, staleness/lag sweeps, SLO and alert gauges, outbox
upkeep, checks-file watching); the delivery worker for notifications; the telemetry server.
SIGTERM/SIGINT stop everything within 10 s, giving pending notifications a chance to go out
(what is still undelivered stays in the persisted outbox for the next start). SIGHUP, or a
changed checks file, reloads the checks: an invalid new version is logged and ignored, a
valid one replaces the workers; baselines and alert states live in the store and survive.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler
from prometheus_client import CollectorRegistry

from dqmon.alerts.delivery import DeliveryWorker
from dqmon.alerts.manager import AlertManager
from dqmon.alerts.setup import build_notifiers
from dqmon.batch import MicroBatch
from dqmon.config.loader import ChecksConfig, checks_files, load_checks
from dqmon.config.models import Dataset, Pipeline, SqlSource
from dqmon.config.settings import Settings
from dqmon.engine import DatasetEngine
from dqmon.errors import ConfigError
from dqmon.results import CheckResult, utcnow
from dqmon.runtime.status import StatusBoard
from dqmon.runtime.wiring import build_source, open_store, secret_values
from dqmon.runtime.worker import DatasetWorker
from dqmon.state.outbox import NewNotification
from dqmon.telemetry.logging import SecretRedactor
from dqmon.telemetry.metrics import DqmonMetrics
from dqmon.telemetry.server import Readiness, TelemetryServer
from dqmon.telemetry.tracing import install_tracing

log = logging.getLogger(__name__)
ResultsHook = Callable[[Pipeline, Dataset, Sequence[CheckResult]], None]
NotificationsHook = Callable[[Sequence[NewNotification]], None]
SHUTDOWN_SECONDS = 10.0
OUTBOX_RETENTION = timedelta(days=7)


class Runtime:
    def __init__(
        self,
        checks_dir: Path,
        settings: Settings | None = None,
        *,
        registry: CollectorRegistry | None = None,
        clock: Callable[[], datetime] = utcnow,
        redactor: SecretRedactor | None = None,
        config: ChecksConfig | None = None,
        sweep_seconds: float = 1.0,
        watch_files: bool = True,
    ) -> None:
        self.checks_dir = checks_dir
        self.settings = settings or Settings()
        self.clock = clock
        self.redactor = redactor
        self.sweep_seconds = sweep_seconds
        self.watch_files = watch_files
        self.config: ChecksConfig = config if config is not None else load_checks(checks_dir)
        self.metrics = DqmonMetrics(registry)
        self.board = StatusBoard()
        self.on_results: list[ResultsHook] = []
        self.on_notifications: list[NotificationsHook] = []
        self.workers: list[DatasetWorker] = []
        self.managers: dict[str, AlertManager] = {}
        self._workers_lock = threading.RLock()
        self._stopped = threading.Event()
        self._reload_requested = threading.Event()
        self._stopped_requested = threading.Event()
        self._files_signature = self._signature()
        self.store = open_store(self.settings)
        self.notifiers = build_notifiers(self.settings)
        for name in self.notifiers:
            self.metrics.declare_notifier(name)
        self.delivery = DeliveryWorker(
            self.store,
            self.notifiers,
            on_outcome=self.metrics.count_notification,
            # with PostgreSQL other replicas may hold leases: let them expire instead
            release_leases_on_start=self.settings.state_dsn is None,
        )
        self.server = TelemetryServer(
            self.metrics.registry,
            host=self.settings.http_host,
            port=self.settings.http_port,
            readiness=self.readiness,
        )
        self.scheduler = BackgroundScheduler(
            timezone=UTC, job_defaults={"coalesce": True, "max_instances": 1}
        )
        self._tracer_provider: Any = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        if self.redactor is not None:
            self.redactor.add(secret_values(self.settings, self.config))
        self._tracer_provider = install_tracing()
        self.server.start()
        self.delivery.start()
        self._build(self.config)
        self.scheduler.add_job(self._sweep, "interval", seconds=self.sweep_seconds, id="sweep")
        self.scheduler.add_job(self._alert_gauges, "interval", seconds=5, id="alert-gauges")
        self.scheduler.add_job(self._upkeep, "interval", minutes=10, id="upkeep")
        if self.watch_files:
            self.scheduler.add_job(self._watch_files, "interval", seconds=2, id="watch-checks")
        self.scheduler.start()
        log.info(
            "dqmon running: %d pipeline(s), %d dataset(s); telemetry on %s",
            len(self.config.pipelines),
            len(self.workers),
            self.server.url,
        )

    def stop(self, timeout: float = SHUTDOWN_SECONDS) -> None:
        """Stop within `timeout` seconds; undelivered notifications stay in the outbox."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        deadline = time.monotonic() + timeout
        self.scheduler.shutdown(wait=False)
        self._stop_workers(timeout=min(4.0, timeout / 2))
        # last chance for notifications produced by the final batches
        self.delivery.wake()
        while self.delivery.pending() and time.monotonic() < deadline - 3.0:
            time.sleep(0.1)
        self.delivery.stop(timeout=max(0.5, min(3.0, deadline - time.monotonic() - 0.5)))
        self.server.stop()
        if self._tracer_provider is not None:
            self._tracer_provider.shutdown()
        self.store.close()
        log.info("dqmon stopped")

    def run_forever(self, on_tick: Callable[[], None] | None = None) -> None:
        """Block until SIGTERM/SIGINT; SIGHUP reloads the checks. Call from the main thread."""
        signal.signal(signal.SIGTERM, lambda *_: self._stopped_requested.set())
        signal.signal(signal.SIGINT, lambda *_: self._stopped_requested.set())
        if hasattr(signal, "SIGHUP"):
            signal.signal(signal.SIGHUP, lambda *_: self._reload_requested.set())
        while not self._stopped_requested.wait(0.25):
            if self._reload_requested.is_set():
                self._reload_requested.clear()
                self.reload()
            if on_tick is not None:
                on_tick()
        self.stop()

    def readiness(self) -> Readiness:
        reasons = [
            f"{w.name}: source not connected"
            for w in list(self.workers)
            if w.last_facts is None or not w.last_facts.up
        ]
        if not self.workers:
            reasons.append("no datasets configured")
        return Readiness(not reasons, tuple(reasons))

    # ------------------------------------------------------------------ (re)building workers
    def _build(self, config: ChecksConfig) -> None:
        with self._workers_lock:
            self.managers = {
                p.pipeline: AlertManager(
                    p,
                    self.store,
                    slack_configured="slack" in self.notifiers,
                    slack_default_channel=self.settings.slack_default_channel,
                    grafana_url=self.settings.grafana_url,
                )
                for p in config.pipelines
            }
            for pipeline, dataset in config.datasets():
                base_dir = config.base_dir(pipeline.pipeline)
                engine = DatasetEngine(
                    pipeline, dataset, base_dir=base_dir, store=self.store, clock=self.clock
                )
                source = build_source(pipeline, dataset, self.settings, self.store, base_dir, self.clock)
                worker = DatasetWorker(
                    pipeline,
                    dataset,
                    source,
                    engine,
                    self.metrics,
                    self._publish,
                    max_queue=self.settings.max_queue_batches,
                )
                self.metrics.declare_dataset(pipeline.pipeline, dataset.name)
                self.board.declare(worker.name)
                try:
                    worker.start()
                except Exception:
                    log.exception("starting the source of %s failed; it stays down", worker.name)
                self.workers.append(worker)
                if isinstance(dataset.source, SqlSource) and worker.started:
                    self.scheduler.add_job(
                        worker.poll_once,
                        "interval",
                        seconds=min(1.0, dataset.source.every.total_seconds()),
                        id=f"sample:{worker.name}",
                        next_run_time=datetime.now(UTC),
                    )

    def _stop_workers(self, timeout: float) -> None:
        with self._workers_lock:
            workers, self.workers = self.workers, []
            for worker in workers:
                if worker.scheduled and self.scheduler.running:
                    try:
                        self.scheduler.remove_job(f"sample:{worker.name}")
                    except Exception:  # noqa: BLE001 - job may not exist if the source never started
                        log.debug("no sampling job for %s", worker.name)
            threads = [threading.Thread(target=w.stop, args=(timeout,)) for w in workers]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout + 1)
            for worker in workers:
                self.metrics.forget_dataset(worker.pipeline.pipeline, worker.dataset.name)

    def reload(self) -> bool:
        """Load the checks again; keep running the old ones if the new ones are invalid."""
        try:
            config = load_checks(self.checks_dir)
        except ConfigError as exc:
            log.error(
                "checks reload rejected, still running the previous checks:\n%s",
                "\n".join(str(p) for p in exc.problems),
            )
            return False
        if self.redactor is not None:
            self.redactor.add(secret_values(self.settings, config))
        self._stop_workers(timeout=4.0)
        self.config = config
        self._build(config)
        log.info("checks reloaded: %d dataset(s)", len(self.workers))
        return True

    # ------------------------------------------------------------------ results
    def _publish(
        self, pipeline: Pipeline, dataset: Dataset, results: Sequence[CheckResult], batch: MicroBatch | None
    ) -> None:
        name = f"{pipeline.pipeline}/{dataset.name}"
        self.metrics.record_results(results)
        if batch is not None:
            self.board.batch(name, batch.rows_seen, batch.window_end)
        self.board.results(name, results)
        manager = self.managers.get(pipeline.pipeline)
        notifications: Sequence[NewNotification] = []
        if manager is not None:
            try:  # AlertManager serialises its own callers
                # sweeps (no batch) move alerts; only dataset evaluations are SLO events
                notifications = manager.observe(results, self.clock(), slo_events=batch is not None)
            except Exception:
                log.exception("alert evaluation for %s failed", pipeline.pipeline)
                self.metrics.count_state_store_error("write")
        if notifications:
            self.board.notifications += len(notifications)
            self.delivery.wake()
        for hook in self.on_results:
            hook(pipeline, dataset, results)
        if notifications:
            for notification_hook in self.on_notifications:
                notification_hook(notifications)

    # ------------------------------------------------------------------ periodic jobs
    def _sweep(self) -> None:
        now = self.clock()
        for worker in list(self.workers):
            worker.sweep(now)
            self.board.source_up(worker.name, bool(worker.last_facts and worker.last_facts.up))

    def _alert_gauges(self) -> None:
        now = self.clock()
        firing = 0
        for manager in list(self.managers.values()):
            counts = manager.firing_counts()
            statuses = manager.slo_status(now)
            for (pipeline, severity), count in counts.items():
                self.metrics.set_alerts_firing(pipeline, severity, count)
                firing += count
            for status in statuses:
                rates: dict[str, float] = {}
                for burn in status.burn_rates:
                    long_window, _, short_window = burn.window.partition("/")
                    rates[long_window] = burn.long_rate
                    rates[short_window or long_window] = burn.short_rate
                self.metrics.set_slo(status.pipeline, status.slo, status.budget_remaining, rates)
        self.board.alerts_firing = firing

    def _upkeep(self) -> None:
        cutoff = (self.clock() - OUTBOX_RETENTION).timestamp()
        try:
            self.store.prune_outbox(cutoff)
        except Exception:
            log.exception("pruning the outbox failed")
            self.metrics.count_state_store_error("write")

    def _signature(self) -> tuple[tuple[str, float], ...]:
        try:
            files = checks_files(self.checks_dir)
            return tuple((str(f), f.stat().st_mtime) for f in files)
        except OSError:
            return ()

    def _watch_files(self) -> None:
        signature = self._signature()
        if signature != self._files_signature:
            self._files_signature = signature
            log.info("checks files changed: reloading")
            self._reload_requested.set()


def live_display_enabled() -> bool:
    return sys.stderr.isatty()
