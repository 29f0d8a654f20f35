"""Label values come from configuration or fixed vocabularies, never from records or secrets.

Real checks run on batches whose every string value is a unique marker; the exposition
served over HTTP must contain none of them, nor the configured DSN.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import httpx
import polars as pl
from prometheus_client import CollectorRegistry

from dqmon.batch import MicroBatch
from dqmon.config.models import Pipeline
from dqmon.engine import DatasetEngine
from dqmon.facts import ConsumerLag, SourceFacts
from dqmon.telemetry.metrics import BATCH_STAGES, NOTIFICATION_OUTCOMES, DqmonMetrics, decode_error_reasons
from dqmon.telemetry.server import TelemetryServer

DSN = "postgresql://dqmon:Xq9-secret-pw@pg.internal:5432/features"
PIPELINE = {
    "pipeline": "trades-features",
    "datasets": [
        {
            "name": "trades",
            "source": {"kind": "kafka", "topic": "market.trades.v1", "consumer_groups": ["features-writer"]},
            "event_time": "ts",
            "checks": [
                {"validity": {"not_null": ["price"], "in_set": {"symbol": ["BTC-USD"]}, "unique": ["id"]}},
                {"volume": {"min": 1}},
                {"freshness": {"max_lag": "30s"}},
                {
                    "distribution": {
                        "column": "price",
                        "by": "symbol",
                        "metric": "psi",
                        "max": 0.2,
                        "reference": "rolling_1h",
                        "min_rows": 1,
                    }
                },
                {"sql": {"name": "max_price", "query": "select max(price) as value from batch", "max": 1e6}},
            ],
        },
        {
            "name": "features_mv",
            "source": {"kind": "sql", "dsn": DSN, "query": "select * from mv"},
            "checks": [{"volume": {"min": 1}}],
        },
    ],
}
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def marked_batch(index: int) -> MicroBatch:
    now = datetime.now(UTC)
    n = 50
    df = pl.DataFrame(
        {
            "id": [f"MARKid{index}x{i}" for i in range(n)],
            "symbol": [f"MARKsym{index}x{i % 7}" for i in range(n)],
            "price": [float(i) if i % 9 else None for i in range(n)],
            "ts": [now - timedelta(seconds=i) for i in range(n)],
        }
    )
    # a decoder that (wrongly) reports record content as its reason
    errors = {f"MARKreason{index}: unexpected token in {{'id': 'MARKid'}}": 2, "invalid_json": 1}
    return MicroBatch("trades-features", "trades", df, now, now, n + 3, n + 3, decode_errors=errors)


def test_no_label_value_comes_from_records_and_no_secret_is_exported() -> None:
    pipeline = Pipeline.model_validate(PIPELINE)
    metrics = DqmonMetrics(CollectorRegistry())
    engines = [DatasetEngine(pipeline, d) for d in pipeline.datasets]
    for dataset in pipeline.datasets:
        metrics.declare_dataset(pipeline.pipeline, dataset.name)
    metrics.declare_notifier("slack")
    for index in range(3):
        batch = marked_batch(index)
        results = engines[0].evaluate(batch)
        metrics.observe_batch(batch, {"fetch": 0.01, "decode": 0.002, "check": 0.003})
        metrics.record_results(results)
        facts = SourceFacts(
            observed_at=batch.window_end,
            newest_record_time=batch.window_end,
            consumer_lag={"features-writer": ConsumerLag(12, 0.5)},
        )
        metrics.observe_facts("trades-features", "trades", facts)
        metrics.record_results(engines[0].sweep(batch.window_end, facts))
    now = datetime.now(UTC)
    mv = MicroBatch("trades-features", "features_mv", pl.DataFrame({"x": [1]}), now, now, 1, 1)
    metrics.record_results(engines[1].evaluate(mv))
    assert any(r.failed for r in engines[0].evaluate(marked_batch(9)))  # the markers did reach the checks

    with TelemetryServer(metrics.registry, port=0) as server:
        exposition = httpx.get(f"{server.url}/metrics", timeout=5).text
    assert "MARK" not in exposition
    for secret in ("Xq9-secret-pw", "pg.internal", DSN):
        assert secret not in exposition

    allowed = {
        "pipeline": {pipeline.pipeline},
        "dataset": {d.name for d in pipeline.datasets},
        "group": {"features-writer"},
        "notifier": {"slack"},
        "reason": set(decode_error_reasons()),
        "stage": set(BATCH_STAGES),
        "outcome": set(NOTIFICATION_OUTCOMES),
        "status": {"ok", "warn", "fail", "error"},
        "operation": {"read", "write", "connect", "other"},
        "kind": {"validity", "volume", "freshness", "distribution", "sql"},
    }
    seen: dict[str, set[str]] = {}
    for line in exposition.splitlines():
        if line.startswith("#"):
            continue
        for name, value in LABEL.findall(line):
            seen.setdefault(name, set()).add(value)
    check_names = seen.pop("check")
    seen.pop("le", None)
    for name, values in seen.items():
        assert values <= allowed[name], (name, values - allowed[name])
    # check labels are configured names, optionally with a configured column in parentheses
    columns = {"price", "symbol", "id"}
    for check in check_names:
        match = re.fullmatch(r"([a-z_]+)(?:\((\w+)\))?", check)
        assert match, check
        assert match.group(2) is None or match.group(2) in columns, check
    assert {"max_price", "volume", "freshness", "distribution"} <= check_names
