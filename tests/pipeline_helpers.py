"""A real stream processor for the pipeline tests: the "counts job" consumes the trades topic
(assign, from the beginning), counts trades per event-time bin and keeps a PostgreSQL materialized
view of them (bin start, trades, newest event), refreshed every `interval` like the demo's feature
job. Incident knobs: `paused` (the job falls behind the topic) and `drop_share` (it loses events).
"""

from __future__ import annotations

import json
import math
import random
import threading
import time
from collections import defaultdict
from datetime import UTC, datetime

import psycopg
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

SETUP = """
CREATE TABLE {s}.trade_counts (bin_start timestamptz PRIMARY KEY, trades bigint NOT NULL,
                               newest_event timestamptz NOT NULL);
CREATE MATERIALIZED VIEW {s}.trade_counts_mv AS SELECT * FROM {s}.trade_counts;
CREATE UNIQUE INDEX ON {s}.trade_counts_mv (bin_start);
"""
UPSERT = """
INSERT INTO {s}.trade_counts VALUES (%s, %s, %s)
ON CONFLICT (bin_start) DO UPDATE SET trades = excluded.trades, newest_event = excluded.newest_event
"""


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


class CountsJob:
    def __init__(self, bootstrap: str, topic: str, dsn: str, schema: str, bin_seconds: float = 2.0) -> None:
        self.schema = schema
        self.bin_seconds = bin_seconds
        self.interval = 0.5
        self.paused = False
        self.drop_share = 0.0
        self.consumed = 0
        self.dropped = 0
        self.conn = psycopg.connect(dsn, autocommit=True)
        self.conn.execute(SETUP.format(s=schema))
        self.consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"counts-job-{schema}",
                "enable.auto.commit": False,
                "log_level": 3,
            }
        )
        self.consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        self.counts: dict[int, int] = defaultdict(int)
        self.newest: dict[int, float] = {}
        self._dirty: set[int] = set()
        self._rng = random.Random(5)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="counts-job", daemon=True)

    def start(self) -> CountsJob:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.consumer.close()
        self.conn.close()

    def _loop(self) -> None:
        flushed = time.monotonic()
        while not self._stop.is_set():
            if self.paused:
                time.sleep(0.1)
                continue
            for msg in self.consumer.consume(500, 0.2):
                if msg.error() or msg.value() is None:
                    continue
                self.consumed += 1
                if self.drop_share and self._rng.random() < self.drop_share:
                    self.dropped += 1
                    continue
                at = _epoch(json.loads(msg.value())["event_ts"])
                b = math.floor(at / self.bin_seconds)
                self.counts[b] += 1
                self.newest[b] = max(self.newest.get(b, at), at)
                self._dirty.add(b)
            if time.monotonic() - flushed >= self.interval:
                self._flush()
                flushed = time.monotonic()

    def _flush(self) -> None:
        rows = [
            (
                datetime.fromtimestamp(b * self.bin_seconds, UTC),
                self.counts[b],
                datetime.fromtimestamp(self.newest[b], UTC),
            )
            for b in sorted(self._dirty)
        ]
        self._dirty.clear()
        with self.conn.cursor() as cur:
            if rows:
                cur.executemany(UPSERT.format(s=self.schema), rows)
            cur.execute(f"REFRESH MATERIALIZED VIEW CONCURRENTLY {self.schema}.trade_counts_mv")
