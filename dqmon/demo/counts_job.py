"""A small real stream processor for the pipeline demo and tests: the "feature job".

It consumes a trades topic (all partitions, assigned, never committed), counts trades per event-time
bin into a PostgreSQL materialized view (bin start, trades, newest event) and, when asked, keeps per-
symbol features (last price, trades so far) in an offline history table and an online Redis store.
Incident knobs: `paused` (falls behind the topic), `drop_share` (loses events), `stale_symbols`
(the online store keeps serving frozen values under fresh timestamps) and `backfill_factor` (a
backfill rewrites the last minute of offline history).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import random
import threading
import time
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

import psycopg
from confluent_kafka import OFFSET_END, Consumer, TopicPartition

log = logging.getLogger(__name__)
SETUP = """
CREATE TABLE {s}.trade_counts (bin_start timestamptz PRIMARY KEY, trades bigint NOT NULL,
                               newest_event timestamptz NOT NULL);
CREATE MATERIALIZED VIEW {s}.trade_counts_mv AS SELECT * FROM {s}.trade_counts;
CREATE UNIQUE INDEX ON {s}.trade_counts_mv (bin_start);
CREATE TABLE {s}.features_history (symbol text NOT NULL, event_ts timestamptz NOT NULL,
    last_price double precision, trades_total bigint, backfilled boolean NOT NULL DEFAULT false);
CREATE INDEX ON {s}.features_history (symbol, event_ts);
"""
UPSERT = """
INSERT INTO {s}.trade_counts VALUES (%s, %s, %s)
ON CONFLICT (bin_start) DO UPDATE SET trades = excluded.trades, newest_event = excluded.newest_event
"""
HISTORY = (
    "INSERT INTO {s}.features_history (symbol, event_ts, last_price, trades_total) VALUES (%s, %s, %s, %s)"
)
BACKFILL = """
UPDATE {s}.features_history SET last_price = last_price * %s, backfilled = true
WHERE NOT backfilled AND event_ts >= now() - interval '1 minute'
"""


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


class CountsJob:
    """Consumes `topic` and maintains the views in PostgreSQL schema `schema` (and Redis, optional)."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        dsn: str,
        schema: str,
        bin_seconds: float = 2.0,
        *,
        redis_url: str | None = None,
        redis_prefix: str = "",
        from_beginning: bool = False,
    ) -> None:
        self.schema = schema
        self.bin_seconds = bin_seconds
        self.interval = 0.5
        self.paused = False
        self.drop_share = 0.0
        self.stale_symbols: set[str] = set()
        self.backfill_factor = 1.0
        self.consumed = 0
        self.dropped = 0
        self.conn = psycopg.connect(dsn, autocommit=True)
        self.conn.execute(SETUP.format(s=schema))
        self.consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"feature-job-{schema}",
                "enable.auto.commit": False,
                "log_level": 3,
            }
        )
        partitions = self.consumer.list_topics(topic, timeout=10).topics[topic].partitions
        start = -2 if from_beginning else OFFSET_END  # -2: OFFSET_BEGINNING
        self.consumer.assign([TopicPartition(topic, p, start) for p in sorted(partitions)])
        self.redis: Any = None
        self.redis_prefix = redis_prefix
        if redis_url is not None:
            import redis

            self.redis = redis.Redis.from_url(redis_url, socket_timeout=2)
        self.counts: dict[int, int] = defaultdict(int)
        self.newest: dict[int, float] = {}
        self.features: dict[str, tuple[float, float, int]] = {}  # symbol → (event time, price, total)
        self.served: dict[str, tuple[float, int]] = {}  # what the online store serves for a stale symbol
        self._dirty: set[int] = set()
        self._dirty_symbols: set[str] = set()
        self._rng = random.Random(5)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="feature-job", daemon=True)

    def start(self) -> CountsJob:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.consumer.close()
        self.conn.close()
        if self.redis is not None:
            self.redis.close()

    def _loop(self) -> None:
        flushed = time.monotonic()
        while not self._stop.is_set():
            if self.paused:
                time.sleep(0.1)
                continue
            for msg in self.consumer.consume(500, 0.2):
                value = msg.value()
                if msg.error() or value is None:
                    continue
                self.consumed += 1
                if self.drop_share and self._rng.random() < self.drop_share:
                    self.dropped += 1
                    continue
                with contextlib.suppress(ValueError, KeyError, TypeError):
                    self._fold(json.loads(value))
            if time.monotonic() - flushed >= self.interval:
                try:
                    self._flush()
                except (psycopg.Error, OSError) as exc:
                    log.warning("feature job: flush failed: %s", type(exc).__name__)
                flushed = time.monotonic()

    def _fold(self, trade: dict[str, Any]) -> None:
        at = _epoch(trade["event_ts"])
        b = math.floor(at / self.bin_seconds)
        self.counts[b] += 1
        self.newest[b] = max(self.newest.get(b, at), at)
        self._dirty.add(b)
        if self.redis is not None and trade.get("price") is not None:
            symbol = str(trade["symbol"])
            _, _, total = self.features.get(symbol, (0.0, 0.0, 0))
            previous = self.features.get(symbol, (at, 0.0, 0))[0]
            self.features[symbol] = (max(at, previous), float(trade["price"]), total + 1)
            self._dirty_symbols.add(symbol)

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
        symbols, self._dirty_symbols = sorted(self._dirty_symbols), set()
        history = [
            (s, datetime.fromtimestamp(self.features[s][0], UTC), self.features[s][1], self.features[s][2])
            for s in symbols
        ]
        with self.conn.cursor() as cur:
            if rows:
                cur.executemany(UPSERT.format(s=self.schema), rows)
            if history:
                cur.executemany(HISTORY.format(s=self.schema), history)
            if self.backfill_factor != 1.0:
                cur.execute(BACKFILL.format(s=self.schema), (self.backfill_factor,))
            cur.execute(f"REFRESH MATERIALIZED VIEW CONCURRENTLY {self.schema}.trade_counts_mv")
        if self.redis is not None and history:
            pipe = self.redis.pipeline(transaction=False)
            for symbol, at, price, total in history:
                if symbol in self.stale_symbols:
                    price, total = self.served.setdefault(symbol, (price, total))
                else:
                    self.served.pop(symbol, None)
                pipe.hset(
                    self.redis_prefix + symbol,
                    mapping={"event_ts": at.isoformat(), "last_price": repr(price), "trades_total": total},
                )
            pipe.execute()
