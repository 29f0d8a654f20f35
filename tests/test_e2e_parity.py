"""End to end (issue 12): the parity link through `dqmon run` against a real Redis online store and
a PostgreSQL offline history table, alerting to the Slack Web API test double. Clean stores: no
alert. A third of the keys served stale: a FIRING post naming the stage (and /api/v1/health says
failing), resolved once the online store is repaired. The keys vanishing from the online store: a
new alert. (A dead Redis server, an error result with source_up 0, is tested in test_parity.py.)"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
import redis

from dqmon.demo.broker import free_port
from tests.e2e_helpers import (
    DqmonProcess,
    fired,
    open_alerts,
    resolved_replies,
    top_level_posts,
    wait_until,
    write_trades,
)
from tests.fixtures.slack_api import TOKEN, FakeSlack
from tests.test_parity import KEYS, _fill_redis, _history

CHECKS = """\
pipeline: serving
owner: "#serving-alerts"
alerts: {{for: 1s, repeat_interval: 1h}}
datasets:
  - name: trades
    source: {{kind: replay, path: trades.ndjson, batch_rows: 50, loop: true}}
    window: 500ms
    checks:
      - volume: {{min: 1}}
links:
  - parity:
      entity: account
      features: [spend_1h, txn_count_1h]
      online: {{kind: redis, url: "${{E2E_REDIS_URL}}", key_prefix: "{prefix}", socket_timeout: 1s}}
      offline: {{kind: sql, dsn: "${{E2E_PG_DSN}}", table: {schema}.features_history, timeout: 2s}}
      sample: 60
      every: 1s
      tolerance: 0.001
      max_mismatch_rate: 0.05
      stage: feature server
"""


@pytest.mark.postgres
@pytest.mark.timeout(180)
def test_parity_fires_on_stale_online_values_and_resolves(
    tmp_path: Path,
    slack_api: FakeSlack,
    pg_conn: Any,
    pg_schema: str,
    pg_dsn: str,
    redis_url: str,
    redis_prefix: str,
) -> None:
    newest = _history(pg_conn, pg_schema)
    _fill_redis(redis_url, redis_prefix, newest, stale=set())
    checks = tmp_path / "checks"
    checks.mkdir()
    (checks / "serving.yaml").write_text(CHECKS.format(prefix=redis_prefix, schema=pg_schema))
    write_trades(checks / "trades.ndjson")
    env = {
        "DQMON_DATA_DIR": str(tmp_path / "data"),
        "DQMON_HTTP_HOST": "127.0.0.1",
        "DQMON_SLACK_TOKEN": TOKEN,
        "DQMON_SLACK_API_URL": slack_api.api_url,
        "DQMON_LOG_FORMAT": "json",
        "E2E_PG_DSN": pg_dsn,
        "E2E_REDIS_URL": redis_url,
    }
    proc = DqmonProcess(checks, env, tmp_path / "dqmon.log", free_port()).start()
    where = "serving/online_store/parity"
    try:
        proc.wait_ready(30)
        wait_until(
            lambda: proc.metric("dqmon_check_status", dataset="online_store", check="parity") == 0.0,
            20,
            "parity to report ok",
        )
        assert proc.metric("dqmon_source_up", dataset="online_store") == 1.0
        wait_until(
            lambda: (
                (
                    proc.metric(
                        "dqmon_check_evaluations_total", dataset="online_store", check="parity", status="ok"
                    )
                    or 0
                )
                >= 5
            ),
            20,
            "five clean polls",
        )
        assert not top_level_posts(slack_api), [a.text for a in top_level_posts(slack_api)]

        stale = set(random.Random(4).sample(KEYS, 70))
        _fill_redis(redis_url, redis_prefix, newest, stale)
        alert = wait_until(lambda: fired(slack_api, where), 30, f"a FIRING post for {where}")[0]
        assert "stage feature server" in alert.text and "spend_1h" in alert.text, alert.text
        assert alert.channel == "#serving-alerts"
        health = proc.get("/api/v1/health/serving")
        assert health is not None and health.status_code == 503

        _fill_redis(redis_url, redis_prefix, newest, stale=set())
        wait_until(lambda: resolved_replies(slack_api, alert), 30, "the parity alert to resolve")
        assert not open_alerts(slack_api)

        # the online store goes away (a flushed prefix is a store that serves nothing)
        client = redis.Redis.from_url(redis_url)
        client.delete(*[redis_prefix + k for k in KEYS])
        client.close()
        wait_until(lambda: len(fired(slack_api, where)) == 2, 30, "a second FIRING post: keys missing online")
        assert "none of 60 sampled keys is in the online store" in fired(slack_api, where)[1].text
        code, seconds = proc.terminate()
        assert code == 0 and seconds < 10, proc.log_tail()
    finally:
        proc.kill()
