"""Helpers for the scale-out tests: checks files, burst producers and verdict recorders.

Bursts are produced in the middle of an epoch-aligned window, so every reader (each replica,
and the single reference reader) consumes a burst inside the same window despite the broker's
0.1-0.5 s fetch delay; verdicts can then be compared window by window.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
from confluent_kafka import Producer

from dqmon.batch import MicroBatch
from dqmon.config.models import Dataset, Pipeline
from dqmon.results import CheckResult
from dqmon.runtime.app import Runtime
from tests.fixtures.broker import produce

WINDOW = 2.0
GROUP_CLIENT = "{session.timeout.ms: 6000, heartbeat.interval.ms: 1000}"


# every other row-based kind, for the window-by-window comparison (ref.parquet: see write_checks)
EVERY_KIND = """\
      - schema: {on_drift: warn}
      - distribution: {column: price, metric: ks, max: 0.5, min_rows: 20, reference: "file:ref.parquet"}
      - sql: {query: "select max(price) - min(price) as value from batch", max: 30}
"""


def checks_yaml(
    pipeline: str,
    topic: str,
    bootstrap: str,
    *,
    mode: str = "group",
    for_: str = "0s",
    extra: str = "",
    slo: bool = False,
) -> str:
    slos = "slos: [{name: fresh, objective: 99.0, window: 1h}]\n" if slo else ""
    bound = ", slo: fresh" if slo else ""
    return f"""\
pipeline: {pipeline}
owner: "#scale-alerts"
{slos}alerts:
  for: {for_}
  repeat_interval: 1h
  flap: {{window: 10m, max_transitions: 50}}
datasets:
  - name: trades
    source:
      kind: kafka
      topic: {topic}
      bootstrap_servers: "{bootstrap}"
      mode: {mode}
      start: latest
      client: {GROUP_CLIENT}
    event_time: event_ts
    window: {WINDOW:g}s
    checks:
      - freshness: {{max_lag: 5s, stat: newest, max_silence: 8s{bound}}}
      - volume: {{min: 100{bound}}}
      - validity: {{not_null: [trade_id, price], unique: [trade_id]}}
{extra}"""


def write_checks(directory: Path, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "checks.yaml").write_text(text)
    pl.DataFrame({"price": [100.0 + i % 13 for i in range(1000)]}).write_parquet(directory / "ref.parquet")
    return directory


def trades(
    count: int,
    *,
    prefix: str,
    null_every: int = 0,
    dup_from: int | None = None,
    age_seconds: float = 0.05,
    price_factor: float = 1.0,
    bad_every: int = 0,
) -> list[bytes]:
    """`count` JSON trades; `dup_from` repeats the ids of the first half in the second half."""
    stamp = (datetime.now(UTC) - timedelta(seconds=age_seconds)).isoformat().replace("+00:00", "Z")
    out = []
    for i in range(count):
        ident = i - dup_from if dup_from is not None and i >= dup_from else i
        price = None if null_every and i % null_every == 0 else (100.0 + i % 13) * price_factor
        if bad_every and i % bad_every == 1:
            out.append(b'{"trade_id": "broken')  # undecodable
            continue
        out.append(json.dumps({"trade_id": f"{prefix}-{ident}", "price": price, "event_ts": stamp}).encode())
    return out


def sleep_to_window_phase(phase: float = 0.5) -> float:
    """Sleep until `phase` seconds into the next aligned window; returns that window's start."""
    now = time.time()
    start = (now // WINDOW + 1) * WINDOW
    if now % WINDOW < phase - 0.05:  # still early enough in the current window
        start -= WINDOW
    time.sleep(max(0.0, start + phase - time.time()))
    return start


def produce_spread(producer: Producer, topic: str, values: Sequence[bytes], partitions: int) -> None:
    """Round-robin over partitions, one produce call per partition's share."""
    for p in range(partitions):
        produce(producer, topic, list(values[p::partitions]), partition=p)


@dataclass
class Verdict:
    batch: MicroBatch
    results: list[CheckResult]

    def statuses(self) -> dict[str, str]:
        return {r.check: r.status.label for r in self.results if not r.check.startswith("scaleout:")}

    def value(self, check: str) -> float | None:
        return next((r.value for r in self.results if r.check == check), None)


@dataclass
class Recorder:
    """Verdicts by window start (epoch seconds), from whichever replica judged."""

    verdicts: dict[float, Verdict] = field(default_factory=dict)
    judges: dict[float, str] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def wrap(self, name: str, publish: Callable[..., None]) -> Callable[..., None]:
        def recording(
            pipeline: Pipeline, dataset: Dataset, results: Sequence[CheckResult], batch: MicroBatch | None
        ) -> None:
            if batch is not None:
                with self.lock:
                    self.verdicts[batch.window_start.timestamp()] = Verdict(batch, list(results))
                    self.judges[batch.window_start.timestamp()] = name
            publish(pipeline, dataset, results, batch)

        return recording


def record_judges(runtime: Runtime, recorder: Recorder, name: str) -> None:
    for judge in runtime.replicas.judges:
        judge.publish = recorder.wrap(name, judge.publish)


def assigned(runtime: Runtime) -> set[int]:
    return set(getattr(runtime.workers[0].source, "_assigned", []))


def judging(runtimes: Sequence[Runtime]) -> list[int]:
    return [i for i, r in enumerate(runtimes) if any(j.elected for j in r.replicas.judges)]


def any_of(values: Sequence[Any]) -> Any:
    return values[0] if values else None
