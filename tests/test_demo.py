"""`dqmon demo` in short mode, as CI runs it: every scripted incident is detected, quickly,
and nothing fires on the clean stretch. Real tansu broker (embedded by the demo itself) and
the local PostgreSQL for the features view when one is reachable."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import pytest

from dqmon.demo.broker import free_port
from dqmon.demo.run import DemoReport, run_demo

ROOT = Path(__file__).resolve().parent.parent
MAX_DETECTION_DELAY = 40.0  # seconds from injection to the firing alert


@pytest.mark.slow
@pytest.mark.broker
@pytest.mark.timeout(420)
def test_short_demo_detects_every_incident_without_false_alerts() -> None:
    port = free_port()
    reports: list[DemoReport] = []
    demo = threading.Thread(
        target=lambda: reports.append(run_demo(ROOT / "checks", short=True, live=False, http_port=port))
    )
    demo.start()
    # while it runs, the demo serves dqmon's metrics on the port it was given
    scraped = ""
    deadline = time.monotonic() + 120

    def trades_counted(text: str) -> bool:
        return any(
            line.startswith("dqmon_rows_seen_total{")
            and 'dataset="trades"' in line
            and not line.endswith(" 0.0")
            for line in text.splitlines()
        )

    while not trades_counted(scraped) and time.monotonic() < deadline:
        time.sleep(2)
        try:
            scraped = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
        except httpx.HTTPError:
            continue
    demo.join(400)
    assert "dqmon_check_status{" in scraped and 'dqmon_rows_seen_total{dataset="trades"' in scraped
    (report,) = reports
    judge = report.judge
    table = [
        (o.incident.name, o.detected_by, None if o.delay is None else round(o.delay, 1), sorted(o.alerts))
        for o in judge.outcomes
    ]
    print("demo outcomes:", table, "false alerts:", judge.false_alerts)
    assert [o.incident.name for o in judge.outcomes] == [
        "producer stall",
        "volume drop",
        "schema change",
        "distribution shift",
        "null spike",
    ]
    assert judge.all_detected, table
    assert not judge.false_alerts, judge.false_alerts
    for outcome in judge.outcomes:
        assert outcome.delay is not None and outcome.delay < MAX_DETECTION_DELAY, table
    assert report.ok
