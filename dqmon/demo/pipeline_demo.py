"""The pipeline demo (issue 12): a trades topic, a feature job keeping a counts view and per-symbol
features (offline history in PostgreSQL, online store in Redis), and dqmon watching the stages with
pipeline links. Scripted incidents: the feature job falls behind the topic (latency), the online
store serves stale values for some keys (parity), a backfill rewrites offline history (parity).
Ends with incidents injected vs detected, judged like `dqmon demo`.

Kept apart from the market demo (run.py, scenario.py): it needs Redis as well as PostgreSQL.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]
from rich.console import Console

from dqmon.config.loader import load_checks
from dqmon.config.settings import Settings
from dqmon.demo.broker import EmbeddedBroker, free_port
from dqmon.demo.counts_job import CountsJob
from dqmon.demo.run import DemoReport, DemoTiming
from dqmon.demo.scenario import Incident, Judge
from dqmon.demo.stream import SYMBOLS, TRADES_TOPIC, MarketStream, StreamKnobs
from dqmon.runtime.app import Runtime
from dqmon.state.outbox import NewNotification

PIPELINE = "trades-pipeline"
SHORT = DemoTiming(warmup=25, incident=18, recovery=15)
FULL = DemoTiming(warmup=60, incident=30, recovery=30)
CHECKS = """\
pipeline: {pipeline}
owner: "#ml-platform-alerts"
alerts: {{for: 3s, repeat_interval: 1h, flap: {{window: 10m, max_transitions: 50}}}}
datasets:
  - name: trades
    source:
      kind: kafka
      topic: {topic}
      mode: assign
      start: latest
    event_time: event_ts
    window: 1s
    checks:
      - freshness: {{max_lag: 10s, stat: newest}}
  - name: trade_counts_mv
    source:
      kind: sql
      dsn: ${{FEATURES_DSN}}
      query: "select bin_start, trades, newest_event from {schema}.trade_counts_mv"
      every: 1s
      timeout: 2s
    event_time: bin_start
    window: 1s
    fed_by: [trades]
links:
  - latency:
      upstream: trades
      downstream: trade_counts_mv
      downstream_column: newest_event
      max_behind: 8s
      stage: feature job
  - reconcile:
      upstream: trades
      downstream: trade_counts_mv
      bin: 5s
      grace: 5s
      downstream_count: trades
      tolerance: 0.01
      stage: feature job
  - parity:
      entity: symbol
      features: [last_price, trades_total]
      keys: [{keys}]
      sample: {n_keys}
      every: 1s
      online: {{kind: redis, url: "${{DQMON_DEMO_REDIS_URL}}", key_prefix: "{prefix}", socket_timeout: 1s}}
      offline: {{kind: sql, dsn: "${{FEATURES_DSN}}", table: {schema}.features_history, timeout: 2s}}
      tolerance: 0.000001
      max_mismatch_rate: 0.1
      stage: online feature store
"""


def incidents(job: CountsJob, duration: float) -> list[Incident]:
    """The pipeline incidents; `inject` turns the feature job's knobs (the market stream stays clean)."""

    def knob(action: Callable[[CountsJob], None]) -> Callable[[StreamKnobs], None]:
        return lambda _stream: action(job)

    def behind(j: CountsJob) -> None:
        j.paused = True

    def stale(j: CountsJob) -> None:
        j.stale_symbols = {"ETH-USDT", "SOL-USDT"}

    def backfill(j: CountsJob) -> None:
        j.backfill_factor = 1.02

    return [
        Incident(
            "feature job behind",
            "the feature job stops consuming",
            "trade_counts_mv",
            ("latency",),
            knob(behind),
            duration,
        ),
        Incident(
            "stale online values",
            "2 of 5 symbols served frozen values",
            "online_store",
            ("parity",),
            knob(stale),
            duration,
        ),
        Incident(
            "offline backfill",
            "the last minute of offline history rewritten +2%",
            "online_store",
            ("parity",),
            knob(backfill),
            duration,
        ),
    ]


def reset(job: CountsJob) -> None:
    job.paused, job.drop_share, job.stale_symbols, job.backfill_factor = False, 0.0, set(), 1.0


@contextlib.contextmanager
def _components(dsn: str) -> Iterator[tuple[EmbeddedBroker, str]]:
    import psycopg

    schema = f"dqmon_demo_pipeline_{uuid.uuid4().hex[:8]}"
    broker = EmbeddedBroker()
    broker.start()
    try:
        admin = AdminClient({"bootstrap.servers": broker.bootstrap_servers})
        for future in admin.create_topics(
            [NewTopic(TRADES_TOPIC, num_partitions=3, replication_factor=1)]
        ).values():
            future.result(15)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {schema}")
        try:
            yield broker, schema
        finally:
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute(f"DROP SCHEMA {schema} CASCADE")
    finally:
        broker.stop()


def run_pipeline_demo(
    dsn: str,
    redis_url: str,
    *,
    short: bool = True,
    http_port: int = 0,
    console: Console | None = None,
) -> DemoReport:
    console = console or Console(stderr=True)
    timing = SHORT if short else FULL
    judge = Judge()
    t0 = time.monotonic()
    prefix = f"dqmon-demo:{uuid.uuid4().hex[:8]}:"

    def say(text: str) -> None:
        console.print(f"[t+{time.monotonic() - t0:5.0f}s] {text}")

    def on_notifications(items: Sequence[NewNotification]) -> None:
        for item in {(i.fingerprint, i.event): i for i in items}.values():
            p = item.payload
            judge.alert(item.event, str(p.get("dataset")), str(p.get("check")), time.monotonic())

    with _components(dsn) as (broker, schema), tempfile.TemporaryDirectory(prefix="dqmon-pdemo-") as tmp:
        checks = Path(tmp) / "checks"
        checks.mkdir()
        keys = ", ".join(SYMBOLS)
        text = CHECKS.format(
            pipeline=PIPELINE,
            topic=TRADES_TOPIC,
            schema=schema,
            prefix=prefix,
            keys=keys,
            n_keys=len(SYMBOLS),
        )
        (checks / "pipeline.yaml").write_text(text)
        env = {"FEATURES_DSN": dsn, "DQMON_DEMO_REDIS_URL": redis_url}
        config = load_checks(checks, env=env)
        knobs = StreamKnobs()
        stream = MarketStream(broker.bootstrap_servers, knobs)
        job = CountsJob(
            broker.bootstrap_servers,
            TRADES_TOPIC,
            dsn,
            schema,
            5.0,
            redis_url=redis_url,
            redis_prefix=prefix,
            from_beginning=True,  # the topic is new: the job reads all of it, whatever dqmon skips
        )
        settings = Settings(
            data_dir=Path(tmp) / "data",
            kafka_bootstrap_servers=broker.bootstrap_servers,
            http_host="127.0.0.1",
            http_port=free_port(preferred=http_port),
        )
        runtime = Runtime(checks, settings, config=config, watch_files=False)
        runtime.on_notifications.append(on_notifications)
        stream.start()
        job.start()
        runtime.start()
        try:
            health = f"{runtime.server.url}/api/v1/health"
            say(f"pipeline demo: topic -> feature job -> counts view + online store; health on {health}")
            time.sleep(5)  # the first batches, and reconcile's first complete bins
            judge.clean_from = time.monotonic()
            say(f"clean stretch: {timing.warmup:.0f}s (no alert should fire)")
            time.sleep(timing.warmup)
            for incident in incidents(job, timing.incident):
                say(f"incident: {incident.name} ({incident.description})")
                outcome = judge.start(incident, time.monotonic())
                incident.inject(knobs)
                time.sleep(incident.duration)
                reset(job)
                outcome.ended = time.monotonic()
                say(f"recovered from {incident.name}")
                time.sleep(timing.recovery)
        finally:
            runtime.stop()
            job.stop()
            stream.stop()
            _forget(redis_url, prefix)
    return DemoReport(judge, True, f"{settings.http_host}:{settings.http_port}/metrics")


def _forget(redis_url: str, prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(redis_url, socket_timeout=2)
    with contextlib.suppress(redis.RedisError):
        keys = list(client.scan_iter(match=prefix + "*"))
        if keys:
            client.delete(*keys)
    client.close()
