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
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler
from prometheus_client import CollectorRegistry

from dqmon.alerts.manager import AlertManager
from dqmon.alerts.routing import unconfigured_targets
from dqmon.alerts.setup import build_delivery, build_notifiers
from dqmon.config.loader import ChecksConfig, load_checks
from dqmon.config.models import Dataset, Pipeline
from dqmon.config.settings import Settings
from dqmon.engine import DatasetEngine
from dqmon.errors import ConfigError
from dqmon.results import utcnow
from dqmon.runtime import jobs, memory
from dqmon.runtime.fanout import ResultFanout
from dqmon.runtime.health import health_report
from dqmon.runtime.jobs import ChecksFileWatch
from dqmon.runtime.links import LinksRunner
from dqmon.runtime.replicas import Replicas
from dqmon.runtime.status import StatusBoard
from dqmon.runtime.wiring import build_source, open_store, secret_values
from dqmon.runtime.worker import DatasetWorker
from dqmon.scaleout.judge import Evaluator
from dqmon.telemetry.logging import SecretRedactor
from dqmon.telemetry.metrics import DqmonMetrics
from dqmon.telemetry.server import Readiness, TelemetryServer
from dqmon.telemetry.tracing import install_tracing

log = logging.getLogger(__name__)
SHUTDOWN_SECONDS = 10.0


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
        self.workers: list[DatasetWorker] = []
        self.managers: dict[str, AlertManager] = {}
        self.links = LinksRunner(
            lambda p, r: self.publish.links(p, r),
            clock,
            lambda p, d, up: self.publish.link_source_up(p, d, up),
        )
        self._workers_lock = threading.RLock()
        self._managers_lock = threading.Lock()
        self._stopped = threading.Event()
        self._reload_requested = threading.Event()
        self._stopped_requested = threading.Event()
        self.watch = ChecksFileWatch(checks_dir, self._reload_requested)
        self.notifiers = build_notifiers(self.settings)
        try:
            self._accept(self.config)
        except ConfigError:
            for notifier in self.notifiers.values():
                notifier.close()
            raise
        self.store = open_store(self.settings)
        for name in self.notifiers:
            self.metrics.declare_notifier(name)
        self.delivery = build_delivery(
            self.settings, self.store, notifiers=self.notifiers, on_outcome=self.metrics.count_notification
        )
        self.publish = ResultFanout(
            self.metrics, self.board, self.delivery, lambda: self.managers, self.clock, self.links.observe
        )
        self.on_results = self.publish.on_results
        self.on_notifications = self.publish.on_notifications
        # scale-out: replicas publish partial states, one elected judge per pipeline gives verdicts
        self.replicas = Replicas(
            self.settings, self.metrics.registry, self.publish, self._engine, self._install_manager, clock
        )
        self.server = TelemetryServer(
            self.metrics.registry,
            host=self.settings.http_host,
            port=self.settings.http_port,
            readiness=self.readiness,
            health=self.health,
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
        add = self.scheduler.add_job
        add(
            self._sweep,
            "interval",
            seconds=self.sweep_seconds,
            id="sweep",
        )
        add(
            lambda: jobs.alert_gauges(dict(self.managers), self.metrics, self.board, self.clock()),
            "interval",
            seconds=5,
            id="alert-gauges",
        )
        add(
            lambda: jobs.prune_outbox(self.store, self.metrics, self.clock()),
            "interval",
            minutes=10,
            id="upkeep",
        )
        if self.watch_files:
            add(self.watch, "interval", seconds=2, id="watch-checks")
        if self.settings.trim_startup_pages_after > 0:
            settled = datetime.now(UTC) + timedelta(seconds=self.settings.trim_startup_pages_after)
            add(memory.trim_startup_pages, "date", run_date=settled, id="trim-startup-pages")
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
        self.replicas.close()
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

    def health(self, pipeline: str | None = None) -> dict[str, Any] | None:
        """The health verdict document (served at /api/v1/health), from the latest results."""
        return health_report(self.config, self.board.snapshot(), pipeline)

    def _sweep(self) -> None:
        now = self.clock()
        jobs.sweep(list(self.workers), self.board, now)
        self.links.sweep(now)

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
            # a scaled-out pipeline's alert manager runs only in its judge (installed on election)
            self.managers = {
                p.pipeline: self._alert_manager(p)
                for p in config.pipelines
                if not self.replicas.elects_judge(p)
            }
            reported = self.links.build(config, self.scheduler)
            for pipeline_name, name in reported:
                self.metrics.declare_dataset(pipeline_name, name)
                self.board.declare(f"{pipeline_name}/{name}")
            self.board.retain(
                {f"{p}/{d}" for p, d in reported} | {f"{p.pipeline}/{d.name}" for p, d in config.datasets()}
            )
            for pipeline, dataset in config.datasets():
                base_dir = config.base_dir(pipeline.pipeline)
                source = build_source(pipeline, dataset, self.settings, self.store, base_dir, self.clock)
                engine: Evaluator = (
                    self.replicas.publisher(pipeline, dataset, source)
                    if self.replicas.scaled_out(dataset)
                    else self._engine(pipeline, dataset, self.clock)
                )
                worker = DatasetWorker(
                    pipeline,
                    dataset,
                    source,
                    engine,
                    self.metrics,
                    self.publish,
                    max_queue=self.settings.max_queue_batches,
                )
                self.metrics.declare_dataset(pipeline.pipeline, dataset.name)
                self.board.declare(worker.name)
                try:
                    worker.start()
                except Exception:
                    log.exception("starting the source of %s failed; it stays down", worker.name)
                self.workers.append(worker)
                if worker.schedule_seconds is not None and worker.started:
                    self.scheduler.add_job(
                        worker.poll_once,
                        "interval",
                        seconds=worker.schedule_seconds,
                        id=f"sample:{worker.name}",
                        next_run_time=datetime.now(UTC),
                    )
            self.replicas.start_judges(config)

    def _alert_manager(self, pipeline: Pipeline) -> AlertManager:
        return AlertManager(
            pipeline,
            self.store,
            slack_configured="slack" in self.notifiers,
            slack_default_channel=self.settings.slack_default_channel,
            grafana_url=self.settings.grafana_url,
        )

    def _engine(self, pipeline: Pipeline, dataset: Dataset, clock: Callable[[], datetime]) -> DatasetEngine:
        base_dir = self.config.base_dir(pipeline.pipeline)
        return DatasetEngine(pipeline, dataset, base_dir=base_dir, store=self.store, clock=clock)

    def _install_manager(self, pipeline: Pipeline, elected: bool) -> None:
        """The judge thread's election (True) or demotion (False): the fresh manager loads the
        pipeline's alert states from the shared store, so the episode continues."""
        with self._managers_lock:  # judges of several pipelines may change it at once
            managers = dict(self.managers)  # replaced whole: the fan-out reads it without a lock
            if elected:
                managers[pipeline.pipeline] = self._alert_manager(pipeline)
            else:
                managers.pop(pipeline.pipeline, None)
            self.managers = managers
        if not elected:  # verdict gauges belong to the judge: a demoted replica stops exporting them
            for dataset in pipeline.datasets:
                if self.replicas.scaled_out(dataset):
                    self.metrics.forget_dataset(pipeline.pipeline, dataset.name)
            for severity in ("warn", "page"):
                self.metrics.set_alerts_firing(pipeline.pipeline, severity, 0)

    def _stop_workers(self, timeout: float) -> None:
        with self._workers_lock:
            workers, self.workers = self.workers, []
            for worker in workers:
                if worker.schedule_seconds is not None and self.scheduler.running:
                    try:
                        self.scheduler.remove_job(f"sample:{worker.name}")
                    except Exception:  # noqa: BLE001 - job may not exist if the source never started
                        log.debug("no sampling job for %s", worker.name)
            self.replicas.stop_judges(timeout)
            threads = [threading.Thread(target=w.stop, args=(timeout,)) for w in workers]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout + 1)
            for worker in workers:
                self.metrics.forget_dataset(worker.pipeline.pipeline, worker.dataset.name)
            self.links.stop(self.scheduler)

    def reload(self) -> bool:
        """Load the checks again; keep running the old ones if the new ones are invalid."""
        try:
            config = self._accept(load_checks(self.checks_dir))
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

    def _accept(self, config: ChecksConfig) -> ChecksConfig:
        """Checks routing to a notifier these settings do not configure are rejected like any
        other config problem (alerts/routing.py::unconfigured_targets)."""
        problems = unconfigured_targets(config, self.notifiers)
        self.metrics.unconfigured_targets.set(len(problems))
        if problems:
            raise ConfigError(problems)
        return config


def live_display_enabled() -> bool:
    return sys.stderr.isatty()
