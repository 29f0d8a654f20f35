"""The health verdict API over a real loopback socket, served from a status board (no data query)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from prometheus_client import CollectorRegistry

from dqmon.config.loader import load_checks
from dqmon.results import CheckResult, Status
from dqmon.runtime.health import health_report
from dqmon.runtime.status import StatusBoard
from dqmon.telemetry.server import TelemetryServer

T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
YAML = """\
pipeline: serving
datasets:
  - name: trades
    source: {kind: kafka, topic: t}
    event_time: event_ts
  - name: features_mv
    source: {kind: sql, dsn: "postgresql://x/y", query: "select 1"}
    event_time: updated_at
links:
  - latency: {upstream: trades, downstream: features_mv, max_behind: 30s}
---
pipeline: other
datasets:
  - name: orders
    source: {kind: replay, path: x.ndjson}
"""


def _result(
    dataset: str, check: str, status: Status, at: datetime, value: float | None = None
) -> CheckResult:
    return CheckResult(
        "serving",
        dataset,
        check,
        check,
        status,
        value,
        "<= 30s",
        f"{check} says {status.label}",
        evaluated_at=at,
    )


def test_health_flips_between_ok_degraded_and_failing_with_since(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(YAML)
    config = load_checks(tmp_path, env={})
    board = StatusBoard()
    for name in ("serving/trades", "serving/features_mv", "other/orders"):
        board.source_up(name, True)
    # before any result: degraded ("no results yet"), never ok
    report = health_report(config, board.snapshot())
    assert report is not None and report["status"] == "degraded"

    board.results("serving/trades", [_result("trades", "freshness", Status.OK, T0)])
    board.results("serving/features_mv", [_result("features_mv", "latency", Status.OK, T0, 1.0)])
    board.results("other/orders", [_result("orders", "volume", Status.OK, T0)])
    with TelemetryServer(
        CollectorRegistry(), port=0, health=lambda p: health_report(config, board.snapshot(), p)
    ) as server:
        ok = httpx.get(f"{server.url}/api/v1/health", timeout=5)
        assert ok.status_code == 200 and ok.json()["status"] == "ok"
        assert [p["pipeline"] for p in ok.json()["pipelines"]] == ["serving", "other"]

        for second in range(3):  # failing for three evaluations: since is the first of them
            at = T0 + timedelta(seconds=10 + second)
            board.results(
                "serving/features_mv", [_result("features_mv", "latency", Status.FAIL, at, 45.0 + second)]
            )
        failing = httpx.get(f"{server.url}/api/v1/health/serving", timeout=5)
        assert failing.status_code == 503
        body = failing.json()
        assert body["pipeline"] == "serving" and body["status"] == "failing"
        mv = next(d for d in body["datasets"] if d["dataset"] == "features_mv")
        assert mv["status"] == "failing" and mv["since"] == (T0 + timedelta(seconds=10)).isoformat()
        [check] = mv["failing_checks"]
        assert (check["check"], check["value"], check["threshold"]) == ("latency", 47.0, "<= 30s")
        # the other pipeline is unaffected
        assert httpx.get(f"{server.url}/api/v1/health/other", timeout=5).json()["status"] == "ok"
        assert httpx.get(f"{server.url}/api/v1/health/nope", timeout=5).status_code == 404

        board.results(
            "serving/features_mv",
            [_result("features_mv", "latency", Status.WARN, T0 + timedelta(seconds=20))],
        )
        assert httpx.get(f"{server.url}/api/v1/health/serving", timeout=5).json()["status"] == "degraded"
        board.results(
            "serving/features_mv", [_result("features_mv", "latency", Status.OK, T0 + timedelta(seconds=30))]
        )
        back = httpx.get(f"{server.url}/api/v1/health/serving", timeout=5).json()
        assert back["status"] == "ok" and back["since"] is None

        board.source_up("serving/trades", False)
        down = httpx.get(f"{server.url}/api/v1/health/serving", timeout=5)
        trades = next(d for d in down.json()["datasets"] if d["dataset"] == "trades")
        assert down.status_code == 503 and trades["source_up"] is False and trades["since"] is not None


def test_without_a_health_probe_the_api_is_not_found() -> None:
    with TelemetryServer(CollectorRegistry(), port=0) as server:
        assert httpx.get(f"{server.url}/api/v1/health", timeout=5).status_code == 404
