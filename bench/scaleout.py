"""Scale-out benchmark: what partial states cost, at 1, 2 and 3 replicas.

For each window, N ~150-byte JSON trades over P partitions are built as real confluent-kafka
Message objects and split between R replicas by partition (as the group would). Each replica
does what it does anyway (decode the sampled records: `messages_to_frame`) plus the partial work
(per-partition counters, undecodable records, split, Arrow IPC + zstd, upsert into PostgreSQL).
The judge loads the window's partials, merges them and runs the engine. Printed, in one run:
* decode and engine CPU per record (what a single sidecar spends anyway: the yardstick),
* replica-side partial CPU per record and judge-side load+merge CPU per record,
* bytes stored per window per partition (compressed rows + counters), and per sampled row.
CPU is process time (Polars threads included); PostgreSQL's own CPU is not counted.

Usage: python bench/scaleout.py [--records 60000] [--partitions 6] [--rate 1.0] [--windows 5]
       (DQMON_BENCH_PG_DSN, default postgresql://postgres@127.0.0.1:5432/test)
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
import uuid
from datetime import UTC, datetime
from itertools import compress

import numpy as np
import psycopg
from confluent_kafka import Message

from dqmon.batch import MicroBatch
from dqmon.config.models import Pipeline
from dqmon.decoders.json import JsonDecoder
from dqmon.engine import DatasetEngine
from dqmon.scaleout.partials import merge_window, split_batch
from dqmon.scaleout.store import PartialStore
from dqmon.sources.kafka_frame import messages_to_frame
from dqmon.sources.kafka_partitions import PartitionTally, rejects_frame
from dqmon.sources.sampling import keep_mask

SYMBOLS = ["BTC-USD", "ETH-USD", "SOL-USD", "ADA-USD", "XRP-USD"]
DSN = os.environ.get("DQMON_BENCH_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")


def window_messages(n: int, partitions: int, base: int, now_ms: int) -> list[Message]:
    rng = random.Random(base)
    out = []
    for i in range(n):
        trade = {
            "trade_id": base + i,
            "symbol": SYMBOLS[i % 5],
            "side": "buy" if i % 2 else "sell",
            "price": round(rng.uniform(10, 60000), 2),
            "qty": round(rng.uniform(0.001, 5), 4),
            "event_ts": now_ms,
            "venue": "bench",
        }
        p = i % partitions
        out.append(
            Message(
                topic="t",
                partition=p,
                offset=(base + i) // partitions,
                value=json.dumps(trade).encode(),
                timestamp=(1, now_ms),
            )
        )
    return out


def pipeline() -> Pipeline:
    return Pipeline.model_validate(
        {
            "pipeline": "bench",
            "datasets": [
                {
                    "name": "trades",
                    "window": "1s",
                    "max_rows": 1_000_000,
                    "event_time": "event_ts",
                    "source": {"kind": "kafka", "topic": "t", "mode": "group"},
                    "checks": [
                        {
                            "validity": {
                                "not_null": ["trade_id", "price"],
                                "range": {"price": {"gt": 0}},
                                "in_set": {"symbol": SYMBOLS},
                                "unique": ["trade_id"],
                            }
                        },
                        {"freshness": {"max_lag": "30s"}},
                        {"volume": {"min": 1}},
                    ],
                }
            ],
        }
    )


def run(
    records: int, partitions: int, rate: float, windows: int, replicas: int, dsn: str
) -> dict[str, float]:
    p = pipeline()
    dataset = p.datasets[0]
    store = PartialStore(dsn)
    engine = DatasetEngine(p, dataset)
    decoder = JsonDecoder.from_source(dataset.source)  # type: ignore[arg-type]
    cpu = {"decode": 0.0, "partials": 0.0, "merge": 0.0, "engine": 0.0}
    stored_bytes = sampled_rows = 0
    now_ms = int(time.time() * 1000)
    for w in range(windows):
        start = 1_700_000_000.0 + w
        messages = window_messages(records, partitions, w * records, now_ms)
        owners = {q: q % replicas for q in range(partitions)}
        for r in range(replicas):
            mine = [m for m in messages if owners[int(m.partition() or 0)] == r]
            t0 = time.process_time()
            parts = np.fromiter(map(Message.partition, mine), np.int64, len(mine))
            offs = np.fromiter(map(Message.offset, mine), np.int64, len(mine))
            t1 = time.process_time()  # (the source extracts these anyway when it samples, rate < 1)
            # the source reads broker timestamps of every chunk anyway (newest record time)
            stamps = np.fromiter((t[1] for t in map(Message.timestamp, mine)), np.int64, len(mine))
            t2 = time.process_time()
            tally = PartitionTally()
            tally.take(parts, offs, stamps)
            t3 = time.process_time()
            sampled = list(compress(mine, keep_mask(parts, offs, rate))) if rate < 1 else mine
            t4 = time.process_time()
            df, errors, offsets = messages_to_frame(sampled, decoder, ())
            t5 = time.process_time()
            held = [q for q, o in owners.items() if o == r]
            marks = {q: 0 for q in held}
            batch = MicroBatch(
                pipeline="bench",
                dataset="trades",
                df=df,
                window_start=datetime.fromtimestamp(start, UTC),
                window_end=datetime.fromtimestamp(start + 1, UTC),
                rows_seen=len(mine),
                rows_sampled=len(sampled),
                decode_errors=errors,
                offsets=offsets,
                partitions=tally.close(held, marks, {q: records // partitions for q in held}),
                rejects=rejects_frame(sampled, df, errors),
            )
            stored_bytes += store.put_partials("bench", "trades", split_batch(batch, f"r{r}"), time.time())
            t6 = time.process_time()
            cpu["decode"] += t5 - t4
            extract = (t1 - t0) if rate >= 1 else 0.0
            cpu["partials"] += extract + (t3 - t2) + (t6 - t5)
            sampled_rows += len(sampled)
        j0 = time.process_time()
        merged = merge_window("bench", "trades", store.partials("bench", "trades", start), range(partitions))
        j1 = time.process_time()
        engine.evaluate(merged.batch)
        j2 = time.process_time()
        store.drop_judged("bench", "trades", start)
        cpu["merge"] += j1 - j0
        cpu["engine"] += j2 - j1
        assert merged.batch.rows_seen == records
        assert not merged.missing
    store.close()
    total = records * windows
    return {
        **{f"{k}_us_per_record": v / total * 1e6 for k, v in cpu.items()},
        "partials_ms_per_replica_window": cpu["partials"] / (windows * replicas) * 1e3,
        "merge_ms_per_window": cpu["merge"] / windows * 1e3,
        "bytes_per_window_partition": stored_bytes / (windows * partitions),
        "bytes_per_sampled_row": stored_bytes / max(1, sampled_rows),
    }


def raw_consume_us_per_record(n: int, partitions: int) -> float:
    """CPU per record of a bare confluent-kafka consumer (the cost every replica pays anyway)."""
    from confluent_kafka.admin import AdminClient, NewTopic

    from bench.ingest import produce, raw_rate
    from dqmon.demo.broker import EmbeddedBroker

    broker = EmbeddedBroker()
    broker.start()
    try:
        topic = f"bench-{uuid.uuid4().hex[:8]}"
        admin = AdminClient({"bootstrap.servers": broker.bootstrap_servers})
        admin.create_topics([NewTopic(topic, partitions, 1)])[topic].result(10)
        produce(broker.bootstrap_servers, topic, n)
        began = time.process_time()
        raw_rate(broker.bootstrap_servers, topic, partitions, n)
        return (time.process_time() - began) / n * 1e6
    finally:
        broker.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=60_000, help="records per window (whole topic)")
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--rate", type=float, default=1.0, help="sampling rate")
    parser.add_argument("--windows", type=int, default=5)
    parser.add_argument("--no-broker", action="store_true", help="skip the raw consume yardstick")
    args = parser.parse_args()
    raw = 0.0
    if not args.no_broker:
        raw = raw_consume_us_per_record(args.records * args.windows, args.partitions)
        print(f"raw consume (bare confluent-kafka consumer, embedded tansu): {raw:.2f} µs CPU per record")
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(DSN, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    params = psycopg.conninfo.conninfo_to_dict(DSN)
    params["options"] = f"-c search_path={schema}"
    dsn = psycopg.conninfo.make_conninfo(**params)  # type: ignore[arg-type]
    try:
        print(
            f"{args.records} records/window over {args.partitions} partitions, rate {args.rate}, "
            f"{args.windows} windows; CPU µs per record (whole topic), bytes per window per partition"
        )
        print(
            f"{'replicas':>8} {'decode':>7} {'engine':>7} {'partials':>9} {'merge':>7} {'overhead':>9} "
            f"{'B/win/part':>11} {'B/row':>6} {'ms/replica-window':>18} {'judge ms/window':>16}"
        )
        for replicas in (1, 2, 3):
            m = run(args.records, args.partitions, args.rate, args.windows, replicas, dsn)
            # overhead against what one sidecar spends anyway: consume (if measured), decode, checks
            base = raw + m["decode_us_per_record"] + m["engine_us_per_record"]
            extra = m["partials_us_per_record"] + m["merge_us_per_record"]
            print(
                f"{replicas:>8} {m['decode_us_per_record']:>7.2f} {m['engine_us_per_record']:>7.2f} "
                f"{m['partials_us_per_record']:>9.2f} {m['merge_us_per_record']:>7.2f} {extra / base:>8.0%} "
                f"{m['bytes_per_window_partition']:>11,.0f} {m['bytes_per_sampled_row']:>6.1f} "
                f"{m['partials_ms_per_replica_window']:>18.1f} {m['merge_ms_per_window']:>16.1f}"
            )
    finally:
        with psycopg.connect(DSN, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


if __name__ == "__main__":
    main()
