"""`dqmon demo`: an embedded broker, a synthetic exchange with scripted incidents, and dqmon
watching it with the example checks; ends with incidents injected vs detected."""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from dqmon.config.loader import ChecksConfig, load_checks
from dqmon.config.models import Dataset, KafkaSource, Pipeline
from dqmon.config.settings import Settings
from dqmon.demo.broker import EmbeddedBroker, free_port
from dqmon.demo.features_app import FeaturesApp, postgres_reachable
from dqmon.demo.scenario import Judge, incidents
from dqmon.demo.stream import ORDERBOOK_TOPIC, TRADES_TOPIC, MarketStream, StreamKnobs
from dqmon.results import CheckResult
from dqmon.runtime.app import Runtime
from dqmon.state.outbox import NewNotification

log = logging.getLogger(__name__)
DEFAULT_FEATURES_DSN = "postgresql://postgres@127.0.0.1:5432/test"


@dataclass(frozen=True)
class DemoTiming:
    warmup: float
    incident: float
    recovery: float


FULL = DemoTiming(warmup=70, incident=30, recovery=30)
# recovery covers a resolve: the partial window after a stall, then `clear` (two windows)
SHORT = DemoTiming(warmup=35, incident=22, recovery=28)


@dataclass
class DemoReport:
    judge: Judge
    features_view: bool
    metrics_url: str
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.judge.all_detected and not self.judge.false_alerts


def _demo_config(config: ChecksConfig, with_features_view: bool) -> ChecksConfig:
    """The example checks, tuned for the embedded broker (faster first group join)."""
    pipelines: list[Pipeline] = []
    for pipeline in config.pipelines:
        datasets: list[Dataset] = []
        for dataset in pipeline.datasets:
            if dataset.source.kind == "sql" and not with_features_view:
                continue
            if isinstance(dataset.source, KafkaSource):
                client = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 1500, **dataset.source.client}
                dataset = dataset.model_copy(
                    update={"source": dataset.source.model_copy(update={"client": client})}
                )
            datasets.append(dataset)
        pipelines.append(pipeline.model_copy(update={"datasets": datasets}))
    return ChecksConfig(tuple(pipelines), config.files, config.base_dirs)


@contextlib.contextmanager
def _broker() -> Iterator[EmbeddedBroker]:
    broker = EmbeddedBroker()
    broker.start()
    try:
        admin = AdminClient({"bootstrap.servers": broker.bootstrap_servers})
        futures = admin.create_topics(
            [
                NewTopic(TRADES_TOPIC, num_partitions=3, replication_factor=1),
                NewTopic(ORDERBOOK_TOPIC, num_partitions=1, replication_factor=1),
            ]
        )
        for future in futures.values():
            future.result(15)
        yield broker
    finally:
        broker.stop()


def _scenario_panel(phase: str, started: float) -> Text:
    return Text(f"demo: {phase}   t+{time.monotonic() - started:5.0f}s", style="bold cyan")


def run_demo(
    checks_dir: Path,
    *,
    short: bool = False,
    http_port: int = 9464,
    console: Console | None = None,
    live: bool | None = None,
) -> DemoReport:
    console = console or Console(stderr=True)
    timing = SHORT if short else FULL
    show_live = console.is_terminal if live is None else live
    dsn = os.environ.get("FEATURES_DSN", DEFAULT_FEATURES_DSN)
    with_view = postgres_reachable(dsn)
    env = {**os.environ, "FEATURES_DSN": dsn}
    config = _demo_config(load_checks(checks_dir, env=env), with_view)
    notes = (
        [] if with_view else ["no PostgreSQL reachable at FEATURES_DSN: the features_mv dataset is skipped"]
    )
    judge = Judge()
    knobs = StreamKnobs()
    phase = ["starting"]
    first_data = threading.Event()
    t0 = time.monotonic()

    def on_notifications(items: Sequence[NewNotification]) -> None:
        seen: set[tuple[str, str]] = set()
        for item in items:
            if (item.fingerprint, item.event) in seen:
                continue
            seen.add((item.fingerprint, item.event))
            p = item.payload
            judge.alert(item.event, str(p.get("dataset")), str(p.get("check")), time.monotonic())

    def on_results(pipeline: Pipeline, dataset: Dataset, results: Sequence[CheckResult]) -> None:
        if dataset.name == "trades" and any(r.kind == "volume" and (r.value or 0) > 0 for r in results):
            first_data.set()

    def say(text: str) -> None:
        phase[0] = text
        if not show_live:
            console.print(f"[t+{time.monotonic() - t0:5.0f}s] {text}")

    with tempfile.TemporaryDirectory(prefix="dqmon-demo-") as data_dir, _broker() as broker:
        settings = Settings(
            data_dir=Path(data_dir),
            kafka_bootstrap_servers=broker.bootstrap_servers,
            http_host="127.0.0.1",
            http_port=free_port(preferred=http_port),
        )
        say(f"embedded broker on {broker.bootstrap_servers}; starting the market stream and the feature job")
        stream = MarketStream(broker.bootstrap_servers, knobs)
        app = FeaturesApp(broker.bootstrap_servers, dsn if with_view else None)
        stream.start()
        app.start()
        runtime = Runtime(checks_dir, settings, config=config, watch_files=False)
        runtime.on_notifications.append(on_notifications)
        runtime.on_results.append(on_results)
        runtime.start()
        metrics_url = f"{runtime.server.url}/metrics"
        say(f"dqmon running, metrics on {metrics_url}; waiting for the first trades batch")
        display = Live(console=console, refresh_per_second=2, transient=False) if show_live else None

        def refresh() -> None:
            if display is not None:
                display.update(Group(_scenario_panel(phase[0], t0), runtime.board.render()))

        def wait(seconds: float) -> None:
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                refresh()
                time.sleep(min(0.5, max(0.0, end - time.monotonic())))

        try:
            if display is not None:
                display.start()
            deadline = time.monotonic() + 90
            while not first_data.is_set() and time.monotonic() < deadline:
                wait(0.5)
            judge.clean_from = time.monotonic()
            say(f"clean stretch: {timing.warmup:.0f}s of normal trading (no alert should fire)")
            wait(timing.warmup)
            for incident in incidents(timing.incident):
                say(f"incident: {incident.name} ({incident.description})")
                outcome = judge.start(incident, time.monotonic())
                incident.inject(knobs)
                wait(incident.duration)
                for name, value in vars(StreamKnobs()).items():
                    setattr(knobs, name, value)
                outcome.ended = time.monotonic()
                say(f"recovered from {incident.name}")
                wait(timing.recovery)
            say("done")
            refresh()
        finally:
            if display is not None:
                display.stop()
            runtime.stop()
            app.stop()
            stream.stop()
    return DemoReport(judge, with_view, metrics_url, notes)


def report_table(report: DemoReport) -> Table:
    table = Table(title="dqmon demo: incidents injected vs detected")
    for column in ("incident", "what was injected", "detected", "by check", "detection delay", "resolved"):
        table.add_column(column)
    for o in report.judge.outcomes:
        table.add_row(
            o.incident.name,
            o.incident.description,
            "[green]yes[/]" if o.detected_at is not None else "[red]NO[/]",
            o.detected_by or "-",
            f"{o.delay:.1f}s" if o.delay is not None else "-",
            "yes" if o.resolved_at is not None else "-",
        )
    clean = ", ".join(report.judge.false_alerts) or "none"
    table.caption = (
        f"alerts fired on the clean stretch: {clean}\n"
        "resolved: a resolve notification went out before the demo ended (an alert resolves once "
        "its check passed for two windows, see docs/alerting.md)"
    )
    return table
