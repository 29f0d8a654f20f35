"""The integrity checks on the real tansu broker: a clean stream raises nothing; a duplicate
burst, a sequence gap, late data and feature leakage are each caught by their check."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from dqmon.config.models import Pipeline
from dqmon.config.settings import Settings
from dqmon.engine import DatasetEngine
from dqmon.results import CheckResult, Status
from dqmon.sources.kafka import KafkaSource
from dqmon.state.store import MemoryStateStore
from tests.fixtures.broker import make_producer, produce

pytestmark = pytest.mark.broker
CHECKS = [
    {"duplicates": {"key": ["symbol", "seq"], "horizon": "10m"}},
    {"sequence": {"column": "seq", "by": "symbol"}},
    {"late_arrivals": {"max_delay": "1m", "max_rate": 0.01}},
    {"point_in_time": {"feature_time": "feature_ts", "max_feature_age": "5m"}},
    {"partitions": {"stall_after": "5s", "max_timestamp_lag": "10m"}},
]


class Feed:
    """Per partition one symbol (keys stay on their partition) counting up its sequence."""

    def __init__(self, producer: Any, topic: str) -> None:
        self.producer, self.topic = producer, topic
        self.seq = {p: 0 for p in range(3)}
        self.sent: dict[int, list[bytes]] = {p: [] for p in range(3)}

    def tick(self, *, skip: int = 0, event_age_ms: int = 0, feature_lead_ms: int = -1000) -> None:
        now = int(time.time() * 1000)
        for p in range(3):
            values = []
            for _ in range(3):
                self.seq[p] += 1 + (skip if p == 0 else 0)
                event = now - (event_age_ms if p == 1 else 0)
                record = {
                    "symbol": f"S{p}",
                    "seq": self.seq[p],
                    "event_ts": event,
                    "feature_ts": event + (feature_lead_ms if p == 2 else -1000),
                }
                values.append(json.dumps(record).encode())
            skip = 0
            produce(self.producer, self.topic, values, partition=p)
            self.sent[p].extend(values)

    def resend(self, partition: int, n: int) -> None:
        produce(self.producer, self.topic, self.sent[partition][-n:], partition=partition)


def run(
    source: KafkaSource, eng: DatasetEngine, seconds: float, step: Callable[[], None]
) -> list[CheckResult]:
    results: list[CheckResult] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        step()
        batch = source.poll_batch(0.25)
        if batch is not None:
            results.extend(eng.evaluate(batch))
    return results


def failing(results: list[CheckResult]) -> set[str]:
    return {r.check for r in results if r.status != Status.OK}


def test_each_integrity_defect_is_caught_on_the_broker_and_the_clean_stream_is_quiet(
    bootstrap: str, topic_factory: Any
) -> None:
    topic = topic_factory(3)
    p = Pipeline.model_validate(
        {
            "pipeline": "integrity",
            "datasets": [
                {
                    "name": "trades",
                    "window": "1s",
                    "event_time": "event_ts",
                    "source": {
                        "kind": "kafka",
                        "topic": topic,
                        "bootstrap_servers": bootstrap,
                        "mode": "assign",
                    },
                    "checks": CHECKS,
                }
            ],
        }
    )
    source = KafkaSource(p, p.datasets[0], Settings())
    source.start()
    eng = DatasetEngine(p, p.datasets[0], store=MemoryStateStore())
    feed = Feed(make_producer(bootstrap, exact=False), topic)
    try:
        clean = run(source, eng, 4.0, feed.tick)
        assert clean and not failing(clean), [r.message for r in clean if r.status != Status.OK]
        burst = run(source, eng, 2.5, lambda: (feed.tick(), feed.resend(0, 6)))
        assert "duplicates" in failing(burst)
        dup = next(r for r in burst if r.check == "duplicates" and r.status != Status.OK)
        assert dup.details["exact_resends"] == dup.details["duplicates"] > 0
        settle = run(source, eng, 1.5, feed.tick)  # records of the last phase still in flight
        gap = run(source, eng, 2.5, lambda: feed.tick(skip=4))
        assert "sequence" in failing(gap) and "duplicates" not in failing(gap)
        assert any(r.details.get("missing", 0) >= 4 for r in gap if r.check == "sequence")
        settle += run(source, eng, 1.5, feed.tick)
        late = run(source, eng, 2.5, lambda: feed.tick(event_age_ms=300_000))
        assert "late_arrivals" in failing(late)
        settle += run(source, eng, 1.5, feed.tick)
        leak = run(source, eng, 2.5, lambda: feed.tick(feature_lead_ms=10_000))
        assert "point_in_time:leakage" in failing(leak) and "point_in_time:stale" not in failing(leak)
        # none of these is a partition problem: every partition kept advancing
        assert "partitions" not in failing(burst + settle + gap + late + leak)
    finally:
        source.close()
