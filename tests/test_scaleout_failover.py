"""Scale-out alerting: one incident is one Slack thread however many replicas read the topic, the
judge's death (SIGKILL of a `dqmon run` process) moves judging to a survivor and the thread
continues; replicas joining and leaving a clean stream raise no alert.

Real tansu broker, real PostgreSQL (DQMON_STATE_DSN), `dqmon run` subprocesses; Slack is the
Web API test double.
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from dqmon.config.settings import Settings
from dqmon.demo.broker import free_port
from dqmon.runtime.app import Runtime
from tests.e2e_helpers import (
    DqmonProcess,
    Knobs,
    TradesProducer,
    fired,
    resolved_replies,
    top_level_posts,
    wait_until,
)
from tests.fixtures.slack_api import TOKEN, FakeSlack
from tests.scaleout_helpers import assigned, checks_yaml, judging, write_checks

pytestmark = [pytest.mark.broker, pytest.mark.postgres, pytest.mark.slow]
PARTITIONS = 6


def _env(tmp: Path, name: str, dsn: str, slack: FakeSlack) -> dict[str, str]:
    return {
        "DQMON_STATE_DSN": dsn,
        "DQMON_DATA_DIR": str(tmp / f"data-{name}"),
        "DQMON_SLACK_TOKEN": TOKEN,
        "DQMON_SLACK_API_URL": slack.api_url,
        "DQMON_LOG_FORMAT": "json",
        "DQMON_HTTP_HOST": "127.0.0.1",
    }


def test_one_thread_per_incident_and_the_thread_survives_the_judge(
    tmp_path, bootstrap, topic_factory, pg_schema_dsn, slack_api
):
    topic = topic_factory(PARTITIONS)
    pipeline = f"fail-{uuid.uuid4().hex[:6]}"
    checks = write_checks(tmp_path / "checks", checks_yaml(pipeline, topic, bootstrap, for_="2s"))
    knobs = Knobs(per_second=150)
    producer = TradesProducer(bootstrap, topic, knobs).start()
    procs = [
        DqmonProcess(checks, _env(tmp_path, n, pg_schema_dsn, slack_api), tmp_path / f"{n}.log", free_port())
        for n in ("a", "b")
    ]
    where = f"{pipeline}/trades/validity"  # one alert per check: its not_null part fails
    try:
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.wait_ready()
            proc.wait_rows_flowing("trades")

        def judges() -> list[DqmonProcess]:
            return [p for p in procs if p.metric("dqmon_scaleout_judge", pipeline=pipeline) == 1.0]

        judge = wait_until(lambda: judges(), 30, "a judge elected")
        assert len(judge) == 1
        time.sleep(4)  # two clean windows
        assert top_level_posts(slack_api) == []

        knobs.null_share = 0.5
        first = wait_until(lambda: fired(slack_api, where), 30, "the not_null alert posted")
        assert len(first) == 1
        judge[0].kill()  # SIGKILL mid-incident: its PostgreSQL session drops, so does the lock
        survivor = next(p for p in procs if p is not judge[0])
        wait_until(
            lambda: survivor.metric("dqmon_scaleout_judge", pipeline=pipeline) == 1.0,
            6 + 2,  # the bound: the session timeout plus a window
            "the survivor to take over judging",
        )
        # the survivor judges the still-failing check: the episode continues, nothing new is posted;
        # wait for the group to give it the dead replica's partitions (session timeout 6 s)
        wait_until(
            lambda: (survivor.metric("dqmon_scaleout_windows_judged_total", pipeline=pipeline) or 0) >= 4,
            30,
            "the survivor to judge windows",
        )
        time.sleep(8)
        knobs.reset()
        knobs.per_second = 150
        wait_until(lambda: resolved_replies(slack_api, first[0]), 40, "the resolve reply in the first thread")
        assert len(fired(slack_api, where)) == 1  # one thread for the incident, across the failover
        notes = [c.body for c in slack_api.posts() if where in str(c.body.get("text", ""))]
        assert all(c.get("thread_ts") == first[0].ts for c in notes[1:])
        errors = [r["msg"] for r in survivor.log_records() if r.get("level") in ("error", "critical")]
        assert errors == []
        took_over = [
            r for r in survivor.log_records() if str(r.get("msg", "")).startswith("judging pipeline")
        ]
        assert took_over
    finally:
        producer.stop()
        for proc in procs:
            proc.kill()


def test_replicas_joining_and_leaving_a_clean_stream_raise_no_alert(
    tmp_path, bootstrap, topic_factory, pg_schema_dsn, slack_api
):
    """A joins, B joins, A (the judge) leaves, C joins, B leaves: judging moves twice, no alert,
    no SLO burn. DQMON_SCALEOUT_SOAK_SECONDS lengthens every stage (a documented long run)."""
    soak = float(os.environ.get("DQMON_SCALEOUT_SOAK_SECONDS", "0"))
    topic = topic_factory(PARTITIONS)
    pipeline = f"calm-{uuid.uuid4().hex[:6]}"
    checks = write_checks(tmp_path / "checks", checks_yaml(pipeline, topic, bootstrap, for_="2s", slo=True))
    producer = TradesProducer(bootstrap, topic, Knobs(per_second=150)).start()

    def replica(name: str) -> Runtime:
        settings = Settings(
            data_dir=tmp_path / name,
            http_host="127.0.0.1",
            http_port=0,
            state_dsn=SecretStr(pg_schema_dsn),
            slack_token=SecretStr(TOKEN),
            slack_api_url=slack_api.api_url,
        )
        return Runtime(checks, settings, registry=CollectorRegistry(), watch_files=False)

    def judged(runtime: Runtime) -> float:
        value = runtime.metrics.registry.get_sample_value(
            "dqmon_scaleout_windows_judged_total", {"pipeline": pipeline, "dataset": "trades"}
        )
        return value or 0.0

    a, b, c = replica("a"), replica("b"), replica("c")
    try:
        a.start()
        wait_until(lambda: len(assigned(a)) == PARTITIONS, 30, "the first replica to read everything")
        wait_until(lambda: judged(a) >= 3, 20, "the first replica to judge")
        time.sleep(2 + soak)
        b.start()  # joins: the group rebalances
        wait_until(lambda: assigned(b), 30, "the second replica to get partitions")
        time.sleep(4 + soak)
        a.stop(timeout=5)  # the judge leaves: b takes the lock and, after a rebalance, everything
        wait_until(lambda: judging([b]) == [0], 10, "b to judge")
        wait_until(lambda: len(assigned(b)) == PARTITIONS, 30, "the partitions on b")
        c.start()
        wait_until(lambda: assigned(c), 30, "the third replica to get partitions")
        time.sleep(4 + soak)
        b.stop(timeout=5)
        wait_until(lambda: judging([c]) == [0], 10, "c to judge")
        wait_until(lambda: len(assigned(c)) == PARTITIONS, 30, "the partitions back on c")
        wait_until(lambda: judged(c) >= 3, 20, "c to judge windows")
        time.sleep(2 + soak)
        assert judged(a) >= 3 and judged(b) >= 3
        assert top_level_posts(slack_api) == [], [p.text for p in top_level_posts(slack_api)]
        for status in c.managers[pipeline].slo_status():
            assert status.budget_remaining == 1.0  # not one bad window
    finally:
        producer.stop()
        for runtime in (a, b, c):
            runtime.stop(timeout=5)
