"""The demo's synthetic crypto exchange: trades and top-of-book snapshots, with knobs for incidents.

Prices are stationary around each symbol's level, so a clean stretch gives the distribution
checks nothing to find; the incident knobs bend the stream the way real pipelines break.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from confluent_kafka import Producer

TRADES_TOPIC = "market.trades.v1"
ORDERBOOK_TOPIC = "market.orderbook.v1"
SYMBOLS = {"BTC-USDT": 65000.0, "ETH-USDT": 3200.0, "SOL-USDT": 150.0, "XRP-USDT": 0.6, "DOGE-USDT": 0.15}
VENUES = ["binance", "coinbase", "kraken", "okx"]
TICK_SECONDS = 0.1


@dataclass
class StreamKnobs:
    """What the producer does now; the scenario turns these during incidents."""

    trades_per_second: float = 200.0
    stalled: bool = False
    volume_factor: float = 1.0
    schema_change: bool = False
    shifted_symbol: str | None = None
    shift_factor: float = 1.0
    null_share: float = 0.0
    # knobs of the incident scenario (bench/incidents.py); the defaults change nothing
    silent_partition: int | None = None  # this trades partition's records are not sent (needs `partitions`)
    retyped_field: str | None = None  # this field's values are sent as strings
    added_field: str | None = None  # a new numeric field appears
    removed_field: str | None = None  # this field disappears
    venue_weights: tuple[float, ...] | None = None  # shares of VENUES (None: uniform)
    event_lag_seconds: float = 0.0  # event times this far behind the wall clock
    malformed_share: float = 0.0  # share of trades sent as truncated JSON or binary garbage
    duplicate_share: float = 0.0  # share of trades the producer sends twice (a retry burst)
    late_share: float = 0.0  # share of trades whose event time is `late_seconds` old
    late_seconds: float = 120.0
    feature_times: bool = False  # add `feature_ts`, when the trade's features were computed
    leak_share: float = 0.0  # share of trades whose features were computed after the event


class MarketStream:
    """Produces trades every tick and order-book snapshots twice a second, in its own thread."""

    def __init__(
        self,
        bootstrap_servers: str,
        knobs: StreamKnobs,
        seed: int = 7,
        *,
        partitions: int | None = None,
        linger_ms: int = 100,
    ) -> None:
        self.knobs = knobs
        self.rng = np.random.default_rng(seed)
        self.run_id = uuid.uuid4().hex[:8]
        self.sequence = 0
        self.produced = 0
        # with `partitions`, trades go round-robin to explicit partitions (so one can fall silent)
        self.partitions = partitions
        self._next_partition = 0
        self.producer = Producer(
            {
                "bootstrap.servers": bootstrap_servers,
                "linger.ms": linger_ms,
                "log_level": 3,
                "compression.type": "lz4",
            }
        )
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="demo-market", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.producer.flush(5)

    def _loop(self) -> None:
        next_tick = time.monotonic()
        tick = 0
        carry = 0.0
        while not self._stop.is_set():
            knobs = self.knobs
            if not knobs.stalled:
                carry += knobs.trades_per_second * knobs.volume_factor * TICK_SECONDS
                count, carry = int(carry), carry - int(carry)
                previous: tuple[bytes, int | None] | None = None
                for value in self.trades(count):
                    # a producer's retry re-sends a record to the partition it went to the first time
                    resent = previous is not None and previous[0] == value
                    partition = previous[1] if previous is not None and resent else self._trade_partition()
                    previous = (value, partition)
                    if partition is not None and partition == knobs.silent_partition:
                        continue  # that partition's producer is down; the others go on
                    self._send(TRADES_TOPIC, value, partition)
            if tick % 5 == 0:
                for value in self.orderbook():
                    self._send(ORDERBOOK_TOPIC, value)
            self.producer.poll(0)
            tick += 1
            next_tick += TICK_SECONDS
            time.sleep(max(0.0, next_tick - time.monotonic()))

    def _trade_partition(self) -> int | None:
        if self.partitions is None:
            return None
        partition = self._next_partition
        self._next_partition = (self._next_partition + 1) % self.partitions
        return partition

    def _send(self, topic: str, value: bytes, partition: int | None = None) -> None:
        try:
            if partition is None:
                self.producer.produce(topic, value)
            else:
                self.producer.produce(topic, value, partition=partition)
            self.produced += 1
        except BufferError:
            self.producer.poll(0.05)

    def trades(self, count: int) -> list[bytes]:
        if count <= 0:
            return []
        knobs = self.knobs
        rng = self.rng
        names = list(SYMBOLS)
        symbols = rng.choice(names, count)
        levels = np.array([SYMBOLS[s] for s in symbols])
        prices = levels * (1 + rng.normal(0, 0.002, count))
        if knobs.shifted_symbol is not None:
            prices = np.where(symbols == knobs.shifted_symbol, prices * knobs.shift_factor, prices)
        qty = np.minimum(rng.exponential(0.5, count) + 0.001, 999.0)
        now = datetime.now(UTC) - timedelta(seconds=knobs.event_lag_seconds)
        lags = rng.uniform(0.0, 0.8, count)
        nulls = rng.random(count) < knobs.null_share
        shares = knobs.venue_weights
        weights = None if shares is None else np.asarray(shares, dtype=np.float64) / sum(shares)
        venues = rng.choice(VENUES, count, p=weights)
        malformed = rng.random(count) < knobs.malformed_share
        duplicated = rng.random(count) < knobs.duplicate_share
        late = rng.random(count) < knobs.late_share
        # features are computed 0.2-3 s before the event that uses them; leaked ones 30-90 s after
        feature_offsets = np.where(
            rng.random(count) < knobs.leak_share,
            rng.uniform(30.0, 90.0, count),
            -rng.uniform(0.2, 3.0, count),
        )
        venue_nulls = rng.random(count) < 0.05
        out = []
        for i in range(count):
            self.sequence += 1
            record: dict[str, Any] = {
                "trade_id": f"{self.run_id}-{self.sequence}",
                "symbol": str(symbols[i]),
                "side": "buy" if rng.random() < 0.5 else "sell",
                "price": None if nulls[i] else round(float(prices[i]), 6),
                "qty": round(float(qty[i]), 6),
                "event_ts": (now - timedelta(seconds=float(lags[i]))).isoformat().replace("+00:00", "Z"),
                "venue": None if venue_nulls[i] or nulls[i] else str(venues[i]),
            }
            if late[i]:
                event = now - timedelta(seconds=float(lags[i]) + knobs.late_seconds)
                record["event_ts"] = event.isoformat().replace("+00:00", "Z")
            if knobs.feature_times:
                event = datetime.fromisoformat(str(record["event_ts"]).replace("Z", "+00:00"))
                feature = event + timedelta(seconds=float(feature_offsets[i]))
                record["feature_ts"] = feature.isoformat().replace("+00:00", "Z")
            if knobs.schema_change:
                record["price"] = None if record["price"] is None else f"{record['price']:.6f}"
                record["fee_bps"] = 2.5
            if knobs.retyped_field is not None and record.get(knobs.retyped_field) is not None:
                record[knobs.retyped_field] = str(record[knobs.retyped_field])
            if knobs.added_field is not None:
                record[knobs.added_field] = round(float(qty[i]) * 0.01, 6)
            if knobs.removed_field is not None:
                record.pop(knobs.removed_field, None)
            value = json.dumps(record).encode()
            if malformed[i]:
                value = value[: len(value) // 2] if i % 2 else bytes(rng.integers(0, 256, 24, dtype=np.uint8))
            out.append(value)
            if duplicated[i]:
                out.append(value)  # the same record again, as a retrying producer sends it
        return out

    def orderbook(self) -> list[bytes]:
        now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        out = []
        for symbol, level in SYMBOLS.items():
            mid = level * (1 + float(self.rng.normal(0, 0.001)))
            out.append(
                json.dumps(
                    {
                        "symbol": symbol,
                        "bid": round(mid * 0.9995, 6),
                        "ask": round(mid * 1.0005, 6),
                        "bid_size": round(float(self.rng.exponential(3)), 4),
                        "ask_size": round(float(self.rng.exponential(3)), 4),
                        "event_ts": now,
                    }
                ).encode()
            )
        return out
