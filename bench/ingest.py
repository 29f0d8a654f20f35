"""Ingest benchmark: raw confluent-kafka consume rate vs dqmon (KafkaSource + decode + checks).

Produces N ~150-byte JSON trades to an embedded tansu broker, then in the same run measures
(1) a bare Consumer reading them all and (2) KafkaSource at 100% sampling feeding every
micro-batch to a DatasetEngine with a standard suite (validity, freshness, volume).
Usage: python bench/ingest.py [--messages N] [--partitions P]
"""

from __future__ import annotations

import argparse
import json
import random
import time
import uuid

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from dqmon.config.models import Pipeline
from dqmon.config.settings import Settings
from dqmon.demo.broker import EmbeddedBroker
from dqmon.engine import DatasetEngine
from dqmon.sources.kafka import KafkaSource

SYMBOLS = ["BTC-USD", "ETH-USD", "SOL-USD", "ADA-USD", "XRP-USD"]
FETCH = {"fetch.max.bytes": 52_428_800, "max.partition.fetch.bytes": 10_485_760, "fetch.wait.max.ms": 100}


def produce(bootstrap: str, topic: str, n: int) -> float:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 50, "batch.size": 1_000_000,
                         "compression.type": "lz4", "queue.buffering.max.messages": 1_000_000})  # fmt: skip
    rng = random.Random(7)
    now_ms = int(time.time() * 1000)
    began = time.perf_counter()
    for i in range(n):
        trade = {
            "trade_id": i, "symbol": SYMBOLS[i % 5], "side": "buy" if i % 2 else "sell",
            "price": round(rng.uniform(10, 60000), 2), "qty": round(rng.uniform(0.001, 5), 4),
            "event_ts": now_ms + i // 1000, "venue": "bench",
        }  # fmt: skip
        while True:
            try:
                producer.produce(topic, json.dumps(trade).encode())
                break
            except BufferError:
                producer.poll(0.01)
    producer.flush(60)
    return time.perf_counter() - began


def raw_rate(bootstrap: str, topic: str, partitions: int, n: int) -> float:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-raw", "enable.auto.commit": False,
                         "log_level": 3, **FETCH})  # fmt: skip
    consumer.assign([TopicPartition(topic, p, -2) for p in range(partitions)])
    seen = 0
    began = time.perf_counter()
    while seen < n:
        seen += sum(1 for m in consumer.consume(10_000, 1.0) if m.error() is None)
    took = time.perf_counter() - began
    consumer.close()
    return n / took


def dqmon_rate(bootstrap: str, topic: str, n: int) -> tuple[float, int, int]:
    pipeline = Pipeline.model_validate(
        {
            "pipeline": "bench",
            "datasets": [
                {
                    "name": "trades",
                    "window": "5s",
                    "max_rows": 100_000,
                    "event_time": "event_ts",
                    "source": {
                        "kind": "kafka",
                        "topic": topic,
                        "bootstrap_servers": bootstrap,
                        "mode": "assign",
                        "start": "earliest",
                        "client": FETCH,
                    },
                    "checks": [
                        {
                            "validity": {
                                "not_null": ["trade_id", "symbol", "price"],
                                "range": {"price": {"gt": 0}},
                                "in_set": {"side": ["buy", "sell"]},
                            }
                        },
                        {"freshness": {"max_lag": "1h", "column": "_timestamp"}},
                        {"volume": {"min": 1}},
                    ],
                }
            ],
        }
    )
    dataset = pipeline.datasets[0]
    source = KafkaSource(pipeline, dataset, Settings())
    engine = DatasetEngine(pipeline, dataset)
    source.start()
    seen = results = errors = 0
    began = time.perf_counter()
    while seen < n:
        batch = source.poll_batch(1.0)
        if batch is None:
            continue
        seen += batch.rows_seen
        errors += batch.decode_error_count
        results += len(engine.evaluate(batch))
    took = time.perf_counter() - began
    source.close()
    return n / took, results, errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--partitions", type=int, default=4)
    args = parser.parse_args()
    with EmbeddedBroker() as broker:
        bootstrap, topic = broker.bootstrap_servers, f"bench-{uuid.uuid4().hex[:8]}"
        admin = AdminClient({"bootstrap.servers": bootstrap})
        admin.create_topics([NewTopic(topic, args.partitions, 1)])[topic].result(10)
        took = produce(bootstrap, topic, args.messages)
        print(f"produced {args.messages:,} messages in {took:.1f}s ({args.messages / took:,.0f} msg/s)")
        raw = raw_rate(bootstrap, topic, args.partitions, args.messages)
        print(f"raw confluent-kafka consume: {raw:,.0f} msg/s")
        ours, results, errors = dqmon_rate(bootstrap, topic, args.messages)
        print(f"dqmon (KafkaSource + JSON decode + checks, 100% sampled): {ours:,.0f} msg/s "
              f"({results} check results, {errors} decode errors)")  # fmt: skip
        print(f"ratio dqmon/raw: {ours / raw:.0%} (goal >= 50%)")


if __name__ == "__main__":
    main()
