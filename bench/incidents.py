"""The incident scenario: a seeded, scripted feature stream on the embedded broker, dqmon watching
it with checks written from docs/checks.md, and a scorer reading what reached the Slack API
double (bench/incident_score.py). Real time, real broker, real dqmon runtime; only Slack is a
double.

    python -m bench.incidents            # the full scenario (~40 min: 20-min clean run, 11 incidents)
    python -m bench.incidents --short    # the CI version (~3 min: a revert and a back-to-back pair)
    python -m bench.incidents --integrity  # the stream-integrity incidents (~12 min: 5-min clean run)
    python -m bench.incidents --json     # the scores as JSON

The stream (dqmon/demo/stream.py) trades 100 records/s over 3 partitions; the checks run on 5-s
windows with `for: 10s`, so the delay target is one window + `for` + 2 s = 17 s.

Hook for later incident kinds: incidents that need the stream-integrity checks (a duplicate
burst, partition-level checks) are added to `EXTRA_INCIDENTS` with their checks in
`EXTRA_CHECKS` (YAML list items, indented like the others); both scripts run them.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path

from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from bench.incident_score import Injected, ScenarioScore, messages, resolved_parents, score, table
from bench.slack_double import TOKEN, FakeSlack, start_fake_slack
from dqmon.config.settings import Settings
from dqmon.demo.broker import EmbeddedBroker, free_port
from dqmon.demo.stream import ORDERBOOK_TOPIC, TRADES_TOPIC, MarketStream, StreamKnobs
from dqmon.runtime.app import Runtime

WINDOW_SECONDS = 5.0
FOR_SECONDS = 10.0
PARTITIONS = 3
# venue shares of the healthy stream: okx is the rare category
BASELINE_VENUES = (0.5, 0.3, 0.18, 0.02)

CHECKS = """\
pipeline: scenario
owner: "#scenario-alerts"
slos:
  - {name: fresh, objective: 99.9, window: 28d}
alerts:
  for: 10s
  repeat_interval: 1h
  group_by: pipeline
datasets:
  - name: trades
    source:
      kind: kafka
      topic: market.trades.v1
      mode: assign
      start: latest
    event_time: event_ts
    window: 5s
    checks:
      - freshness: {max_lag: 30s, stat: p99, max_silence: 10s, slo: fresh}
      - volume: {min: 375, count: seen}
      - schema:
          contract:
            fields:
              trade_id: {type: string}
              symbol: {type: string}
              side: {type: string}
              price: {type: number}
              qty: {type: number}
              event_ts: {type: string}
              venue: {type: string}
          on_drift: warn
          max_decode_error_rate: 0.01
      # references span 30 minutes: a 40-s incident is ~2% of them, so once it ends the clean data
      # matches again at once (with 5 minutes, the absorbed incident kept the alert up for 5 minutes)
      - distribution:
          {name: price_shift, column: price, by: symbol, metric: psi, max: 0.5,
           reference: {rolling: 30m, max_rows: 200000}, min_rows: 50}
      - distribution:
          {name: venue_mix, column: venue, metric: psi, max: 0.25,
           reference: {rolling: 30m, max_rows: 200000}, min_rows: 200, categorical: true}
      - validity: {not_null: [trade_id, symbol], null_rate: {price: 0.05}}
"""


@dataclass(frozen=True)
class Incident:
    name: str
    expected: tuple[str, ...]  # dataset/check names whose alert counts as detecting it
    inject: Callable[[StreamKnobs], None]
    duration: float = 40.0
    gap: float = 60.0  # clean seconds after it


def _set(**values: object) -> Callable[[StreamKnobs], None]:
    def inject(knobs: StreamKnobs) -> None:
        for name, value in values.items():
            setattr(knobs, name, value)

    return inject


# stream-integrity incidents and the checks that see them (docs/checks.md, "Stream integrity")
EXTRA_INCIDENTS: list[Incident] = [
    Incident("duplicate burst", ("trades/duplicates",), _set(duplicate_share=0.2)),
    Incident("0.5% of events 2 min late", ("trades/late_arrivals",), _set(late_share=0.005)),
    Incident("feature leakage", ("trades/point_in_time",), _set(leak_share=0.05)),
]
EXTRA_CHECKS: list[str] = [
    "- partitions: {stall_after: 10s, max_timestamp_lag: 30s}",
    "- duplicates: {key: [trade_id], horizon: 10m, max_rate: 0.001}",
    "- late_arrivals: {column: event_ts, max_delay: 60s, max_rate: 0.001}",
    "- point_in_time: {feature_time: feature_ts, event_time: event_ts, max_feature_age: 5m, max_rate: 0.001}",
]


def integrity_script() -> list[Incident]:
    """The stream-integrity incidents alone, and the silent partition the `partitions` check names."""
    return [
        Incident("one partition silent", ("trades/partitions",), _set(silent_partition=1)),
        *EXTRA_INCIDENTS,
    ]


def full_script() -> list[Incident]:
    """Every kind the issue lists; the stall, the silent partition and the drop follow each other
    as in the report whose third volume incident was swallowed as flapping."""
    return [
        Incident("full stall", ("trades/volume", "trades/freshness"), _set(stalled=True)),
        Incident("one partition silent", ("trades/volume", "trades/partitions"), _set(silent_partition=1)),
        Incident("volume drop 40%", ("trades/volume",), _set(volume_factor=0.6)),
        Incident("volume drop 40%, again", ("trades/volume",), _set(volume_factor=0.6)),
        Incident("qty retyped, then reverted", ("trades/schema",), _set(retyped_field="qty")),
        Incident(
            "field added, another removed",
            ("trades/schema",),
            _set(added_field="fee_bps", removed_field="side"),
        ),
        Incident(
            "numeric shift", ("trades/price_shift",), _set(shifted_symbol="ETH-USDT", shift_factor=1.25)
        ),
        Incident("rare category shift", ("trades/venue_mix",), _set(venue_weights=(0.35, 0.25, 0.15, 0.25))),
        Incident("null spike", ("trades/validity",), _set(null_share=0.3)),
        Incident("late data", ("trades/freshness",), _set(event_lag_seconds=180.0)),
        Incident("malformed records", ("trades/schema",), _set(malformed_share=0.05)),
        *EXTRA_INCIDENTS,
    ]


def short_script() -> list[Incident]:
    """CI: the revert and a back-to-back pair of the same kind (the two defects that swallowed
    incidents), short enough for a test."""
    return [
        Incident("qty retyped, then reverted", ("trades/schema",), _set(retyped_field="qty"), 20, 30),
        Incident("volume drop 40%", ("trades/volume",), _set(volume_factor=0.6), 20, 30),
        Incident("volume drop 40%, again", ("trades/volume",), _set(volume_factor=0.6), 20, 30),
    ]


@dataclass
class ScenarioRun:
    score: ScenarioScore
    injected: list[Injected]
    seconds: float


def baseline_knobs() -> StreamKnobs:
    return StreamKnobs(trades_per_second=100.0, venue_weights=BASELINE_VENUES, feature_times=True)


def _reset(knobs: StreamKnobs) -> None:
    healthy = baseline_knobs()
    for f in fields(StreamKnobs):
        setattr(knobs, f.name, getattr(healthy, f.name))


def _create_topics(bootstrap: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics(
        [
            NewTopic(TRADES_TOPIC, num_partitions=PARTITIONS, replication_factor=1),
            NewTopic(ORDERBOOK_TOPIC, num_partitions=1, replication_factor=1),
        ]
    )
    for future in futures.values():
        future.result(15)


def run_scenario(
    script: Sequence[Incident],
    *,
    clean_seconds: float,
    seed: int = 7,
    tail_seconds: float = 420.0,
    log: Callable[[str], None] = print,
    dump: Path | None = None,
) -> ScenarioRun:
    """Run the script in real time and score what reached Slack."""
    began = time.monotonic()
    slack, server = start_fake_slack()
    broker = EmbeddedBroker()
    broker.start()
    try:
        _create_topics(broker.bootstrap_servers)
        with tempfile.TemporaryDirectory(prefix="dqmon-incidents-") as tmp:
            checks = Path(tmp) / "checks"
            checks.mkdir()
            extra = "".join(f"      {c.strip()}\n" for c in EXTRA_CHECKS)
            (checks / "scenario.yaml").write_text(CHECKS + extra)
            settings = Settings(
                data_dir=Path(tmp) / "data",
                kafka_bootstrap_servers=broker.bootstrap_servers,
                http_host="127.0.0.1",
                http_port=free_port(),
                slack_token=TOKEN,
                slack_api_url=slack.api_url,
            )
            knobs = baseline_knobs()
            # long linger: few record batches, so the broker stays cheap over a 40-minute run
            stream = MarketStream(broker.bootstrap_servers, knobs, seed, partitions=PARTITIONS, linger_ms=500)
            stream.start()
            first_rows = threading.Event()
            runtime = Runtime(checks, settings, watch_files=False)
            runtime.on_results.append(
                lambda _p, d, results: (
                    first_rows.set()
                    if any(r.kind == "volume" and (r.value or 0) > 0 for r in results)
                    else None
                )
            )
            runtime.start()
            injected: list[Injected] = []
            try:
                first_rows.wait(60)
                # one more window: the first one may have started before the stream reached dqmon
                time.sleep(2 * WINDOW_SECONDS)
                clean_from = time.time()
                log(f"clean run: {clean_seconds:.0f}s")
                time.sleep(clean_seconds)
                clean_until = time.time()
                for incident in script:
                    log(f"incident: {incident.name} ({incident.duration:.0f}s)")
                    start = time.time()
                    incident.inject(knobs)
                    time.sleep(incident.duration)
                    _reset(knobs)
                    injected.append(Injected(incident.name, incident.expected, start, time.time()))
                    time.sleep(incident.gap)
                # alerts that legitimately outlast the last gap (an SLO burn's short window): wait
                deadline = time.monotonic() + tail_seconds
                while open_threads(slack) and time.monotonic() < deadline:
                    time.sleep(1.0)
            finally:
                runtime.stop()
                stream.stop()
    finally:
        broker.stop()
        server.shutdown()
        server.server_close()
    if dump is not None:
        dump.write_text(
            json.dumps(
                {
                    "injected": [vars(i) for i in injected],
                    "clean": [clean_from, clean_until],
                    "calls": [
                        {"method": c.method, "at": c.at, "ts": c.ts, "body": c.body} for c in slack.calls
                    ],
                },
                default=str,
            )
        )
    grace = WINDOW_SECONDS + FOR_SECONDS + 10
    result = score(
        injected, messages(slack), resolved_parents(slack), clean=(clean_from, clean_until), grace=grace
    )
    return ScenarioRun(result, injected, time.monotonic() - began)


def open_threads(slack: FakeSlack) -> list[str]:
    """Threads with a FIRING message whose check has no RESOLVED reply there yet."""
    fired: dict[str, set[str]] = {}
    resolved: dict[str, set[str]] = {}
    for m in messages(slack):
        book = fired if m.event == "FIRING" else resolved if m.event == "RESOLVED" else None
        if book is not None:
            book.setdefault(m.thread_ts or m.ts, set()).add(m.check)
    return [t for t, checks in fired.items() if not checks <= resolved.get(t, set())]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--short", action="store_true", help="the CI version (~3 min)")
    parser.add_argument(
        "--integrity", action="store_true", help="the stream-integrity incidents only (~12 min)"
    )
    parser.add_argument(
        "--clean", type=float, default=None, help="seconds of clean run (default 1200; short 15)"
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--dump", type=Path, default=None, help="write injections and Slack calls here")
    args = parser.parse_args(argv)
    script = short_script() if args.short else integrity_script() if args.integrity else full_script()
    clean = (
        args.clean
        if args.clean is not None
        else (15.0 if args.short else 300.0 if args.integrity else 1200.0)
    )
    run = run_scenario(script, clean_seconds=clean, seed=args.seed, dump=args.dump)
    target = WINDOW_SECONDS + FOR_SECONDS + 2
    if args.json:
        print(json.dumps({**run.score.summary(), "incidents": [s.row() for s in run.score.incidents]}))
    else:
        print(table(run.score))
        met = run.score.meets(target)
        print(f"targets met (median delay <= {target:.0f}s): {met}; ran {run.seconds:.0f}s")
    return 0 if run.score.meets(target) else 1


if __name__ == "__main__":
    raise SystemExit(main())
