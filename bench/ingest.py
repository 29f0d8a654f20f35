"""Ingest benchmark: dqmon (KafkaSource + decode + checks) against the raw consume rate, per format.

For each wire format (JSON, Avro and Protobuf in the Confluent framing, the Schema Registry being
the test double of tests/fixtures/schema_registry.py) it produces the same N trades to its own
topic on an embedded tansu broker, then measures in the same run (1) a bare confluent-kafka
Consumer reading that topic and (2) KafkaSource at 100% sampling feeding every micro-batch to a
DatasetEngine (validity, freshness, volume). A fourth run reads the JSON topic at 1% sampling
(batches capped at 1,000 sampled rows, so each still spans 100k messages). Each topic holds
N + 100k messages, so the batch that crosses N closes by size instead of waiting out its window.
Each dqmon rate is reported as a ratio to the better raw read of the same topic just before and
after it, with the CPU seconds
(process time: Python, librdkafka and Polars threads; the broker's own CPU not counted) per
100k messages.

    PYTHONPATH=. python bench/ingest.py [--messages N] [--partitions P] [--formats json avro protobuf]
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import random
import struct
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from dqmon.config.models import Pipeline
from dqmon.config.settings import Settings
from dqmon.demo.broker import EmbeddedBroker
from dqmon.engine import DatasetEngine
from dqmon.sources.kafka import KafkaSource

SYMBOLS = ["BTC-USD", "ETH-USD", "SOL-USD", "ADA-USD", "XRP-USD"]
FETCH = {"fetch.max.bytes": 52_428_800, "max.partition.fetch.bytes": 10_485_760, "fetch.wait.max.ms": 100}
AVRO_ID, PROTO_ID = 41, 42
# messages beyond N: dqmon's last timed batch closes by size, not by waiting out its window
TAIL = 100_000
AVRO_SCHEMA = {
    "type": "record",
    "name": "Trade",
    "fields": [
        {"name": "trade_id", "type": "long"},
        {"name": "symbol", "type": "string"},
        {"name": "side", "type": "string"},
        {"name": "price", "type": "double"},
        {"name": "qty", "type": "double"},
        {"name": "event_ts", "type": "long"},
        {"name": "venue", "type": "string"},
    ],
}
TRADE_PROTO = """
syntax = "proto3";
package bench.v1;
message Trade {
  int64 trade_id = 1;
  string symbol = 2;
  string side = 3;
  double price = 4;
  double qty = 5;
  int64 event_ts = 6;
  string venue = 7;
}
"""


def trades(n: int) -> Iterator[dict[str, Any]]:
    rng = random.Random(7)
    now_ms = int(time.time() * 1000)
    for i in range(n):
        yield {
            "trade_id": i, "symbol": SYMBOLS[i % 5], "side": "buy" if i % 2 else "sell",
            "price": round(rng.uniform(10, 60000), 2), "qty": round(rng.uniform(0.001, 5), 4),
            "event_ts": now_ms + i // 1000, "venue": "bench",
        }  # fmt: skip


def json_encoder() -> Callable[[dict[str, Any]], bytes]:
    return lambda trade: json.dumps(trade).encode()


def avro_encoder() -> Callable[[dict[str, Any]], bytes]:
    import fastavro

    schema = fastavro.parse_schema(AVRO_SCHEMA)
    head = b"\x00" + struct.pack(">I", AVRO_ID)

    def encode(trade: dict[str, Any]) -> bytes:
        out = io.BytesIO()
        fastavro.schemaless_writer(out, schema, trade)
        return head + out.getvalue()

    return encode


def _proto_files() -> Any:
    from tests.protobuf_helpers import compile_proto

    return compile_proto(TRADE_PROTO, "bench_trade.proto")


def protobuf_encoder() -> Callable[[dict[str, Any]], bytes]:
    from google.protobuf import descriptor_pool, message_factory

    pool = descriptor_pool.DescriptorPool()
    for file in _proto_files().file:
        pool.Add(file)
    trade_class = message_factory.GetMessageClass(pool.FindMessageTypeByName("bench.v1.Trade"))
    head = b"\x00" + struct.pack(">I", PROTO_ID) + b"\x00"  # message indexes [0], short form

    return lambda trade: head + trade_class(**trade).SerializeToString()


@contextmanager
def registry() -> Iterator[str]:
    """The Schema Registry TEST DOUBLE serving the Avro and Protobuf trade schemas."""
    from tests.fixtures.schema_registry import SchemaRegistryDouble

    double = SchemaRegistryDouble()
    double.add(AVRO_ID, json.dumps(AVRO_SCHEMA))
    serialized = base64.standard_b64encode(_proto_files().file[-1].SerializeToString()).decode("ascii")
    double.add(PROTO_ID, TRADE_PROTO, "PROTOBUF", serialized=serialized)
    with double.serve() as url:
        yield url


def produce(bootstrap: str, topic: str, n: int, encode: Callable[[dict[str, Any]], bytes]) -> int:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 50, "batch.size": 1_000_000,
                         "compression.type": "lz4", "queue.buffering.max.messages": 1_000_000})  # fmt: skip
    size = 0
    for trade in trades(n):
        value = encode(trade)
        size += len(value)
        while True:
            try:
                producer.produce(topic, value)
                break
            except BufferError:
                producer.poll(0.01)
    producer.flush(60)
    return size // n


@dataclass
class Measured:
    rate: float  # messages per second
    cpu_per_100k: float  # process CPU seconds per 100k messages


def _measure(n: int, body: Callable[[], int | None]) -> Measured:
    wall, cpu = time.perf_counter(), time.process_time()
    read = body() or n
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return Measured(read / wall, cpu / read * 100_000)


def raw(bootstrap: str, topic: str, partitions: int, n: int) -> Measured:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-raw-{uuid.uuid4().hex[:6]}",
                         "enable.auto.commit": False, "log_level": 3, **FETCH})  # fmt: skip
    consumer.assign([TopicPartition(topic, p, -2) for p in range(partitions)])

    def body() -> int:
        seen = 0
        while seen < n:
            seen += sum(1 for m in consumer.consume(10_000, 1.0) if m.error() is None)
        return seen

    try:
        return _measure(n, body)
    finally:
        consumer.close()


def dqmon(
    bootstrap: str, topic: str, n: int, fmt: str, registry_url: str, rate: float
) -> tuple[Measured, int]:
    source_config: dict[str, Any] = {
        "kind": "kafka", "topic": topic, "bootstrap_servers": bootstrap, "mode": "assign",
        "start": "earliest", "client": FETCH, "format": fmt,
        # the same 100k messages read per batch at any rate: a batch closes by size, not by its window
        "sample": {"rate": rate, "max_rows_per_batch": max(1, round(100_000 * rate))},
    }  # fmt: skip
    if fmt != "json":
        source_config["schema_registry"] = {"url": registry_url}
    pipeline = Pipeline.model_validate(
        {
            "pipeline": "bench",
            "datasets": [
                {
                    "name": "trades",
                    "window": "5s",
                    "max_rows": 100_000,
                    "source": source_config,
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
    counts = {"errors": 0, "decoded": 0}

    def body() -> int:
        seen = 0
        while seen < n:
            batch = source.poll_batch(1.0)
            if batch is None:
                continue
            seen += batch.rows_seen
            counts["errors"] += batch.decode_error_count
            counts["decoded"] += batch.rows_decoded
            engine.evaluate(batch)
        return seen  # the batch that crosses n closes by size: the topic holds a batch more (TAIL)

    try:
        measured = _measure(n, body)
    finally:
        source.close()
    if counts["errors"]:
        raise SystemExit(f"{fmt}: {counts['errors']} decode errors")
    return measured, counts["decoded"]


def _faster(a: Measured, b: Measured) -> Measured:
    """The raw reads just before and after a dqmon read: the better one is the limit (the first
    read of a topic is slower while the broker warms up)."""
    return a if a.rate >= b.rate else b


ENCODERS = {"json": json_encoder, "avro": avro_encoder, "protobuf": protobuf_encoder}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=500_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--formats", nargs="+", choices=list(ENCODERS), default=list(ENCODERS))
    parser.add_argument("--sample-rate", type=float, default=0.01, help="the sampled run (on the JSON topic)")
    args = parser.parse_args()
    n = args.messages
    rows: list[tuple[str, int, Measured, Measured, int]] = []
    with ExitStack() as stack:
        broker = stack.enter_context(EmbeddedBroker())
        url = stack.enter_context(registry()) if set(args.formats) - {"json"} else ""
        bootstrap = broker.bootstrap_servers
        admin = AdminClient({"bootstrap.servers": bootstrap})
        for fmt in args.formats:
            topic = f"bench-{fmt}-{uuid.uuid4().hex[:6]}"
            admin.create_topics([NewTopic(topic, args.partitions, 1)])[topic].result(10)
            size = produce(bootstrap, topic, n + TAIL, ENCODERS[fmt]())
            before = raw(bootstrap, topic, args.partitions, n)
            ours, decoded = dqmon(bootstrap, topic, n, fmt, url, 1.0)
            after = raw(bootstrap, topic, args.partitions, n)
            rows.append((f"{fmt} 100%", size, _faster(before, after), ours, decoded))
            if fmt == "json" and args.sample_rate < 1:
                sampled, decoded = dqmon(bootstrap, topic, n, fmt, url, args.sample_rate)
                again = raw(bootstrap, topic, args.partitions, n)
                rows.append((f"json {args.sample_rate:.0%}", size, _faster(after, again), sampled, decoded))
    print(f"{n:,} messages per topic, {args.partitions} partitions, 100k-row batches")
    print(f"{'run':12s} {'bytes':>5s} {'raw msg/s':>10s} {'dqmon msg/s':>12s} {'ratio':>6s} "
          f"{'CPU s/100k raw':>14s} {'dqmon':>6s} {'decoded':>9s}")  # fmt: skip
    for name, size, base, ours, decoded in rows:
        print(f"{name:12s} {size:5d} {base.rate:10,.0f} {ours.rate:12,.0f} {ours.rate / base.rate:6.0%} "
              f"{base.cpu_per_100k:14.2f} {ours.cpu_per_100k:6.2f} {decoded:9,}")  # fmt: skip


if __name__ == "__main__":
    main()
