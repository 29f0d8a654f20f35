"""The pipeline dqmon watches in the demo: a feature job that consumes trades in its own group,
commits its offsets, and keeps a features materialized view in PostgreSQL (when one is reachable)."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import defaultdict, deque
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import Consumer

from dqmon.demo.stream import TRADES_TOPIC

log = logging.getLogger(__name__)
APP_GROUP = "trades-features-app"
SETUP_SQL = """
CREATE TABLE IF NOT EXISTS dqmon_demo_features (
    symbol text PRIMARY KEY, vwap_1m double precision, trade_count_1m integer,
    volatility_1m double precision, updated_at timestamptz NOT NULL);
-- rows left by an earlier run are minutes old: dqmon's first sample would count them as stale
TRUNCATE dqmon_demo_features;
DROP MATERIALIZED VIEW IF EXISTS trade_features_mv;
CREATE MATERIALIZED VIEW trade_features_mv AS SELECT * FROM dqmon_demo_features;
CREATE UNIQUE INDEX IF NOT EXISTS trade_features_mv_symbol ON trade_features_mv(symbol);
"""
UPSERT_SQL = """
INSERT INTO dqmon_demo_features(symbol, vwap_1m, trade_count_1m, volatility_1m, updated_at)
VALUES (%s, %s, %s, %s, %s)
ON CONFLICT (symbol) DO UPDATE SET vwap_1m = excluded.vwap_1m, trade_count_1m = excluded.trade_count_1m,
    volatility_1m = excluded.volatility_1m, updated_at = excluded.updated_at
"""


def postgres_reachable(dsn: str) -> bool:
    import psycopg

    try:
        with psycopg.connect(dsn, connect_timeout=2):
            return True
    except psycopg.Error:
        return False


class FeaturesApp:
    """Consumes trades (group `trades-features-app`), commits, and refreshes the features view."""

    def __init__(self, bootstrap_servers: str, dsn: str | None) -> None:
        self.dsn = dsn
        self.consumer = Consumer(
            {
                "bootstrap.servers": bootstrap_servers,
                "group.id": APP_GROUP,
                "auto.offset.reset": "latest",
                "enable.auto.commit": True,
                "auto.commit.interval.ms": 1000,
                "log_level": 3,
                # tansu holds the first JoinGroup for half the session timeout
                "session.timeout.ms": 6000,
                "heartbeat.interval.ms": 1500,
            }
        )
        self.window: dict[str, deque[tuple[float, float, float]]] = defaultdict(deque)
        self.consumed = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="demo-features-app", daemon=True)

    def start(self) -> None:
        if self.dsn is not None:
            import psycopg

            with psycopg.connect(self.dsn, autocommit=True) as conn:
                conn.execute("SELECT pg_advisory_lock(4242)")
                conn.execute(SETUP_SQL)
                conn.execute("SELECT pg_advisory_unlock(4242)")
        self.consumer.subscribe([TRADES_TOPIC])
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.consumer.close()

    def _loop(self) -> None:
        last_refresh = 0.0
        while not self._stop.is_set():
            for message in self.consumer.consume(500, timeout=0.5):
                value = message.value()
                if message.error() or not value:
                    continue
                self.consumed += 1
                try:
                    trade: dict[str, Any] = json.loads(value)
                    price, qty = float(trade["price"]), float(trade["qty"])
                except (ValueError, TypeError, KeyError):
                    continue  # the feature job skips what it cannot read; dqmon is the one that notices
                self.window[str(trade["symbol"])].append((time.time(), price, qty))
            if self.dsn is not None and time.monotonic() - last_refresh >= 5:
                last_refresh = time.monotonic()
                self._refresh()

    def _refresh(self) -> None:
        import psycopg

        cutoff = time.time() - 60
        rows = []
        for symbol, trades in self.window.items():
            while trades and trades[0][0] < cutoff:
                trades.popleft()
            if not trades:
                continue
            notional = sum(p * q for _, p, q in trades)
            volume = sum(q for _, _, q in trades)
            prices = [p for _, p, _ in trades]
            mean = sum(prices) / len(prices)
            volatility = (sum((p - mean) ** 2 for p in prices) / len(prices)) ** 0.5
            rows.append((symbol, notional / volume, len(trades), volatility, datetime.now(UTC)))
        if not rows:
            return
        try:
            with psycopg.connect(self.dsn or "", autocommit=True) as conn:
                with conn.cursor() as cur:
                    cur.executemany(UPSERT_SQL, rows)
                conn.execute("REFRESH MATERIALIZED VIEW CONCURRENTLY trade_features_mv")
        except psycopg.Error as exc:
            log.warning("features view refresh failed: %s", type(exc).__name__)
