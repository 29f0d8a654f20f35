"""Helpers for the end-to-end and runtime tests: a trades producer with incident knobs, the
`dqmon run` subprocess, deadline polling, and reading alerts off the Slack API test double.

Everything here drives real components (tansu broker, PostgreSQL, dqmon as a process); the only
stand-in is the Slack Web API test double of tests/fixtures/slack_api.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from confluent_kafka import Producer
from prometheus_client.parser import text_string_to_metric_families

from tests.fixtures.slack_api import FakeSlack

ROOT = Path(__file__).resolve().parent.parent
SYMBOLS = {"BTC-USDT": 65000.0, "ETH-USDT": 3200.0, "SOL-USDT": 150.0}
# tansu holds the first JoinGroup for session.timeout.ms / 2 (see ENV.md)
FAST_GROUP_JOIN = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 1500}


def wait_until(condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.2) -> Any:
    """Poll until `condition()` is truthy and return its value; fail naming `what` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


# --------------------------------------------------------------------------- producer


@dataclass
class Knobs:
    """What the trades producer does now; tests turn these to inject incidents."""

    per_second: float = 200.0
    stalled: bool = False
    volume_factor: float = 1.0
    schema_change: bool = False  # price retyped to string, fee_bps added
    shifted_symbol: str | None = None
    shift_factor: float = 1.0
    null_share: float = 0.0

    def reset(self) -> None:
        for name, value in vars(Knobs()).items():
            setattr(self, name, value)


def trade_records(knobs: Knobs, count: int, rng: np.random.Generator, prefix: str, start: int) -> list[bytes]:
    """`count` JSON trades; the random draws are vectorised, only the JSON encoding is per record."""
    names = np.array(list(SYMBOLS))
    which = rng.integers(0, names.size, count)
    symbols = names[which]
    levels = np.array(list(SYMBOLS.values()))[which]
    prices = levels * (1 + rng.normal(0, 0.002, count))
    if knobs.shifted_symbol is not None:
        prices = np.where(symbols == knobs.shifted_symbol, prices * knobs.shift_factor, prices)
    nulls = rng.random(count) < knobs.null_share
    qty = rng.exponential(0.5, count) + 0.001
    now = datetime.now(UTC)
    out = []
    for i in range(count):
        price: Any = None if nulls[i] else round(float(prices[i]), 6)
        record: dict[str, Any] = {
            "trade_id": f"{prefix}-{start + i}",
            "symbol": str(symbols[i]),
            "price": price,
            "qty": round(float(qty[i]), 6),
            "event_ts": (now - timedelta(milliseconds=50)).isoformat().replace("+00:00", "Z"),
        }
        if knobs.schema_change:
            record["price"] = None if price is None else f"{price:.6f}"
            record["fee_bps"] = 2.5
        out.append(json.dumps(record).encode())
    return out


class TradesProducer:
    """Writes JSON trades to a topic continuously, in its own thread, batched (linger.ms 50)."""

    TICK = 0.05

    def __init__(self, bootstrap: str, topic: str, knobs: Knobs | None = None) -> None:
        self.topic = topic
        self.knobs = knobs or Knobs()
        self.produced = 0
        self.failures = 0
        # batches of many messages: tansu's fetch cost grows with the number of record batches
        self.producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 50, "log_level": 3})
        self._rng = np.random.default_rng(11)
        self._prefix = uuid.uuid4().hex[:8]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="e2e-trades", daemon=True)

    def start(self) -> TradesProducer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.producer.flush(5)

    def _delivered(self, err: Any, _msg: Any) -> None:
        if err is not None:
            self.failures += 1

    def _loop(self) -> None:
        carry = 0.0
        next_tick = time.monotonic()
        while not self._stop.is_set():
            k = self.knobs
            if not k.stalled:
                carry += k.per_second * k.volume_factor * self.TICK
                count, carry = int(carry), carry - int(carry)
                for value in trade_records(k, count, self._rng, self._prefix, self.produced):
                    try:
                        self.producer.produce(self.topic, value, on_delivery=self._delivered)
                    except BufferError:
                        self.producer.poll(0.05)
                    self.produced += 1
            self.producer.poll(0)
            next_tick += self.TICK
            time.sleep(max(0.0, next_tick - time.monotonic()))


# --------------------------------------------------------------------------- replay files


def write_trades(path: Path, rows: int = 200, null_every: int = 0) -> None:
    """NDJSON trades of one symbol; every `null_every`-th row has no price."""
    lines = []
    for i in range(rows):
        price = None if null_every and i % null_every == 0 else 100.0 + (i % 17)
        lines.append(json.dumps({"trade_id": f"t{i}", "symbol": "BTC-USDT", "price": price, "qty": 1.0}))
    path.write_text("\n".join(lines) + "\n")


def write_replay_checks(checks: Path, extra_checks: str = "", window: str = "200ms") -> None:
    """A pipeline `replayed` whose dataset `trades` replays trades.ndjson in a loop."""
    checks.mkdir(exist_ok=True)
    (checks / "replay.yaml").write_text(
        f"""\
pipeline: replayed
owner: "#replay-alerts"
alerts: {{for: 0s}}
datasets:
  - name: trades
    source: {{kind: replay, path: trades.ndjson, batch_rows: 50, loop: true}}
    window: {window}
    checks:
      - schema: {{on_drift: fail}}
      - volume: {{min: 1}}
{extra_checks}"""
    )


# --------------------------------------------------------------------------- dqmon run


class DqmonProcess:
    """`dqmon run --checks DIR --no-live` as a child process; stderr (JSON logs) goes to a file."""

    def __init__(self, checks_dir: Path, env: Mapping[str, str], log_path: Path, http_port: int) -> None:
        self.checks_dir = checks_dir
        self.env = {**os.environ, **env}
        self.log_path = log_path
        self.http_port = http_port
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def start(self) -> DqmonProcess:
        argv = [
            sys.executable,
            "-c",
            "from dqmon.cli import main; main()",
            "run",
            "--checks",
            str(self.checks_dir),
            "--no-live",
        ]
        argv += ["--http-port", str(self.http_port)]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(argv, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        return self

    def get(self, path: str) -> httpx.Response | None:
        try:
            return httpx.get(self.url + path, timeout=2)
        except httpx.HTTPError:
            return None

    def wait_ready(self, timeout: float = 60.0) -> None:
        def ready() -> bool:
            assert self.proc is not None and self.proc.poll() is None, f"dqmon exited:\n{self.log_tail()}"
            response = self.get("/readyz")
            return response is not None and response.status_code == 200

        wait_until(ready, timeout, "dqmon /readyz to answer 200")

    def metric(self, name: str, **labels: str) -> float | None:
        """One sample from /metrics (the text format), None when absent."""
        response = self.get("/metrics")
        if response is None or response.status_code != 200:
            return None
        for family in text_string_to_metric_families(response.text):
            for sample in family.samples:
                if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                    return float(sample.value)
        return None

    def wait_rows_flowing(self, dataset: str, timeout: float = 60.0) -> None:
        """Until the dataset's consumer has joined its group and reads rows."""

        def flowing() -> bool:
            return (self.metric("dqmon_rows_seen_total", dataset=dataset) or 0) > 0

        wait_until(flowing, timeout, f"rows of {dataset} to be read")

    def terminate(self, timeout: float = 10.0) -> tuple[int | None, float]:
        """SIGTERM; the exit code (None if it did not exit in time) and the seconds it took."""
        assert self.proc is not None
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            code: int | None = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            code = None
        return code, time.monotonic() - started

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_text()[-chars:]

    def log_records(self) -> list[dict[str, Any]]:
        """The JSON log lines (other lines, e.g. librdkafka's own stderr, are skipped)."""
        records = []
        for line in self.log_text().splitlines():
            if line.startswith("{"):
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
        return records


# --------------------------------------------------------------------------- Slack test double


@dataclass(frozen=True)
class SlackAlert:
    ts: str
    text: str
    channel: str


def top_level_posts(slack: FakeSlack) -> list[SlackAlert]:
    """Every top-level chat.postMessage as first sent, with the ts the test double gave it.

    The double stores messages by ts in posting order (chat.update edits them in place, so a
    resolved parent no longer reads [FIRING]); the recorded calls keep the original bodies.
    """
    with slack.lock:
        posted = [c.body for c in slack.calls if c.method == "chat.postMessage"]
        stamps = list(slack.messages)
    return [
        SlackAlert(ts, str(body.get("text", "")), str(body.get("channel", "")))
        for ts, body in zip(stamps, posted, strict=True)
        if not body.get("thread_ts")
    ]


def fired(slack: FakeSlack, where: str) -> list[SlackAlert]:
    """Top-level FIRING messages for `pipeline/dataset/check`, oldest first."""
    # fallback text: "[FIRING] [page] pipeline/dataset/check: message" (notifiers/slack.py)
    return [a for a in top_level_posts(slack) if a.text.startswith("[FIRING]") and f" {where}: " in a.text]


def resolved_replies(slack: FakeSlack, parent: SlackAlert) -> list[dict[str, Any]]:
    """[RESOLVED] replies posted in the alert's thread."""
    return [c.body for c in slack.replies(parent.ts) if str(c.body.get("text", "")).startswith("[RESOLVED]")]


def open_alerts(slack: FakeSlack) -> list[str]:
    """Texts of firing messages whose thread has no resolve reply yet."""
    return [
        a.text
        for a in top_level_posts(slack)
        if a.text.startswith("[FIRING]") and not resolved_replies(slack, a)
    ]
