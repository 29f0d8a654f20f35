"""The pipeline demo in short mode: the feature job falling behind, stale online values and an
offline backfill are each detected by the pipeline link meant for them, and nothing fires on the
clean stretch. Real tansu broker (embedded by the demo), PostgreSQL and Redis."""

from __future__ import annotations

import pytest
from rich.console import Console

from dqmon.demo.pipeline_demo import run_pipeline_demo


@pytest.mark.slow
@pytest.mark.broker
@pytest.mark.postgres
@pytest.mark.timeout(400)
def test_pipeline_demo_detects_its_incidents_without_false_alerts(pg_dsn: str, redis_url: str) -> None:
    report = run_pipeline_demo(
        pg_dsn, redis_url, short=True, console=Console(stderr=True, force_terminal=False)
    )
    outcomes = {o.incident.name: o for o in report.judge.outcomes}
    summary = {
        n: (o.detected_by, o.delay and round(o.delay, 1), sorted(o.alerts)) for n, o in outcomes.items()
    }
    print("pipeline demo:", summary, "false alerts:", report.judge.false_alerts)
    assert not report.judge.false_alerts, report.judge.false_alerts
    assert report.judge.all_detected, summary
    assert outcomes["feature job behind"].detected_by == "latency"
    assert outcomes["stale online values"].detected_by == "parity"
    assert outcomes["offline backfill"].detected_by == "parity"
