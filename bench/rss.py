"""Sidecar footprint: RSS of `dqmon run` watching the demo's synthetic trades stream.

Starts the embedded broker (tansu), then `dqmon run` as a subprocess with a 9-check suite on
the trades topic, samples its RSS while idle (no stream yet), then starts the demo's market
stream at `--rate` msg/s and samples RSS every `--every` seconds for `--minutes`. Reports
idle RSS, steady RSS (median after the warm-up), its 95th percentile and maximum, and its slope
(least squares, MB/hour).

Sample well inside a window: each 5 s window's evaluation allocates and frees memory that the
allocators return within ~2 s, so samples every 5 or 10 s land on one phase of that cycle and read
a trough or a peak depending on when the run started.

    PYTHONPATH=. python bench/rss.py --minutes 10            # the default
    PYTHONPATH=. python bench/rss.py --minutes 60 --out rss.jsonl
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from dqmon.demo.broker import EmbeddedBroker, free_port
from dqmon.demo.stream import ORDERBOOK_TOPIC, TRADES_TOPIC, MarketStream, StreamKnobs

ROOT = Path(__file__).resolve().parent.parent

# nine checks on the trades topic: the example suite plus duplicates and a KS distribution
SUITE = """\
pipeline: rss-bench
owner: "#bench"
datasets:
  - name: trades
    source:
      kind: kafka
      topic: market.trades.v1
      format: json
      sample: {rate: 1.0, max_rows_per_batch: 50000}
      consumer_groups: [trades-features-app]
      client: {session.timeout.ms: 6000, heartbeat.interval.ms: 1500}
    event_time: event_ts
    window: 5s
    checks:
      - freshness: {max_lag: 30s, stat: p99, max_silence: 10s}
      - volume: {min: 50, anomaly: {method: mad, sensitivity: 5, min_history: 12}}
      - schema: {contract: contracts/trade.json, on_drift: warn, max_decode_error_rate: 0.01}
      - distribution: {column: price, by: symbol, metric: psi, max: 0.5, reference: rolling_5m,
                       min_rows: 50, severity: warn}
      - distribution: {name: qty_ks, column: qty, metric: ks, max: 0.3, reference: rolling_5m,
                       min_rows: 50, severity: warn}
      - validity:
          not_null: [trade_id, symbol, price, qty]
          null_rate: {venue: 0.2}
          range: {price: {gt: 0}, qty: {gt: 0, le: 1000}}
          in_set: {side: [buy, sell]}
          regex: {symbol: "^[A-Z]{2,5}-USDT?$"}
          unique: trade_id
      - sql:
          name: crossed_notional
          query: "select count(*) as value from batch where price * qty > 5000000"
          max: 0
          severity: warn
      - lag: {group: trades-features-app, max_messages: 100000, max_seconds: 60s}
      - duplicates: {key: trade_id, horizon: 5m}
"""


def _rss_mb(process: psutil.Process) -> float:
    return float(process.memory_info().rss) / 2**20


def _split_mb(pid: int) -> dict[str, float]:
    """RSS split into private (anon: heaps, Polars' jemalloc, librdkafka buffers) and file-backed
    (shared-library code pages: clean, shared with other processes, reclaimable)."""
    fields = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key in ("RssAnon", "RssFile"):
                fields[key.lower()] = int(value.split()[0]) / 1024
    return fields


def _drop_page_cache() -> bool:
    """Start from a cold page cache (root only). A file page counts in a process's RSS once mapped,
    and the kernel maps up to 16 already-cached neighbours of each page a process faults in, so a
    warm cache (the test suite ran Polars a minute ago) adds ~35 MB of shared-library pages the
    sidecar never touched."""
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError:
        return False
    return True


def _slope_mb_per_hour(samples: list[tuple[float, float]]) -> float:
    if len(samples) < 2:
        return 0.0
    ts = [t for t, _ in samples]
    ys = [y for _, y in samples]
    mt, my = statistics.fmean(ts), statistics.fmean(ys)
    den = sum((t - mt) ** 2 for t in ts)
    return 0.0 if den == 0 else sum((t - mt) * (y - my) for t, y in samples) / den * 3600


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[round(q * (len(ordered) - 1))]


def _split_text(sample: dict[str, Any]) -> str:
    return f"(private {float(sample['rssanon']):.1f}, shared-library pages {float(sample['rssfile']):.1f})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10.0, help="streamed duration")
    ap.add_argument("--rate", type=float, default=200.0, help="trades per second")
    ap.add_argument("--every", type=float, default=1.0, help="seconds between RSS samples")
    ap.add_argument("--idle", type=float, default=20.0, help="seconds of running before the stream")
    ap.add_argument("--warmup", type=float, default=0.2, help="share of the run before 'steady'")
    ap.add_argument("--out", type=Path, help="write every sample as JSON lines")
    args = ap.parse_args()
    # SIGTERM unwinds like Ctrl-C, so the broker and `dqmon run` are stopped on the way out
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    cold = _drop_page_cache()
    with tempfile.TemporaryDirectory(prefix="dqmon-rss-") as tmp, EmbeddedBroker() as broker:
        checks = Path(tmp) / "checks"
        (checks / "contracts").mkdir(parents=True)
        shutil.copy(ROOT / "checks" / "contracts" / "trade.json", checks / "contracts" / "trade.json")
        (checks / "rss.yaml").write_text(SUITE)
        admin = AdminClient({"bootstrap.servers": broker.bootstrap_servers})
        topics = [NewTopic(TRADES_TOPIC, num_partitions=3), NewTopic(ORDERBOOK_TOPIC, num_partitions=1)]
        for future in admin.create_topics(topics).values():
            future.result(15)
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
            "DQMON_KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
            "DQMON_DATA_DIR": str(Path(tmp) / "state"),
            "DQMON_LOG_LEVEL": "WARNING",
        }
        argv = [
            sys.executable,
            "-c",
            "from dqmon.cli import app; app()",
            "run",
            "--checks",
            str(checks),
            "--no-live",
        ]
        argv += ["--http-port", str(free_port())]
        log = (Path(tmp) / "dqmon.log").open("wb")
        proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
        monitor = psutil.Process(proc.pid)
        samples: list[dict[str, Any]] = []
        t0 = time.monotonic()
        try:
            time.sleep(args.idle)
            if proc.poll() is not None:
                raise SystemExit(f"dqmon run exited: {(Path(tmp) / 'dqmon.log').read_text()[-2000:]}")
            idle = _rss_mb(monitor)
            idle_split = _split_mb(proc.pid)
            samples.append({"t": time.monotonic() - t0, "phase": "idle", "rss_mb": idle, **idle_split})
            stream = MarketStream(broker.bootstrap_servers, StreamKnobs(trades_per_second=args.rate))
            stream.start()
            started = time.monotonic()
            end = started + args.minutes * 60
            while time.monotonic() < end and proc.poll() is None:
                time.sleep(args.every)
                samples.append(
                    {
                        "t": time.monotonic() - started,
                        "phase": "stream",
                        "rss_mb": _rss_mb(monitor),
                        "cpu_s": sum(monitor.cpu_times()[:2]),
                        **_split_mb(proc.pid),
                    }
                )
            stream.stop()
            produced = stream.produced
        finally:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
            log.close()
        streamed = [(float(s["t"]), float(s["rss_mb"])) for s in samples if s["phase"] == "stream"]
        steady = [(t, y) for t, y in streamed if t >= args.warmup * args.minutes * 60]
        if args.out:
            args.out.write_text("".join(json.dumps(s) + "\n" for s in samples))
        if not steady:
            raise SystemExit("no samples after the warm-up (dqmon run exited early?)")
        ys = [y for _, y in steady]
        print(f"dqmon run, 9 checks, {args.rate:.0f} msg/s for {args.minutes:g} min ({produced} messages)")
        print(
            "  page cache                     "
            + ("dropped before the start" if cold else "warm (not root): shared-library pages read high")
        )
        last = samples[-1]
        print(f"  idle RSS (before the stream)   {idle:7.1f} MB", _split_text(idle_split))
        print(f"  steady RSS (median after {args.warmup:.0%})  {statistics.median(ys):7.1f} MB")
        print(f"  95th percentile after warm-up  {_percentile(ys, 0.95):7.1f} MB")
        print(f"  min / max after warm-up        {min(ys):7.1f} / {max(ys):.1f} MB")
        print(f"  last sample                    {float(last['rss_mb']):7.1f} MB", _split_text(last))
        after = [s for s in samples if s["phase"] == "stream" and s["t"] >= args.warmup * args.minutes * 60]
        medians = {k: statistics.median(float(s[k]) for s in after) for k in ("rssanon", "rssfile")}
        print(f"  medians after warm-up          {'':7s}   ", _split_text(medians))
        print(f"  slope after warm-up            {_slope_mb_per_hour(steady):+7.1f} MB/hour")
        anon = [(float(s["t"]), float(s["rssanon"])) for s in after]
        print(f"  slope of the private part      {_slope_mb_per_hour(anon):+7.1f} MB/hour")
        print(f"  CPU                            {float(samples[-1]['cpu_s']):7.1f} s")


if __name__ == "__main__":
    main()
