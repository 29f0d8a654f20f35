"""DQMON_STATE_DSN: the runtime keeps baselines, alert states and the outbox in real PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from dqmon.config.settings import Settings
from dqmon.runtime.app import Runtime
from tests.e2e_helpers import wait_until, write_replay_checks, write_trades


@pytest.mark.postgres
def test_runtime_state_lives_in_postgresql(tmp_path: Path, pg_schema_dsn: str) -> None:
    checks = tmp_path / "checks"
    write_replay_checks(checks, extra_checks="      - validity: {not_null: [price]}\n")
    write_trades(checks / "trades.ndjson", null_every=5)
    settings = Settings(
        data_dir=tmp_path / "data", http_host="127.0.0.1", http_port=0, state_dsn=SecretStr(pg_schema_dsn)
    )
    runtime = Runtime(checks, settings, registry=CollectorRegistry(), watch_files=False)
    runtime.start()

    def rows(sql: str) -> list[tuple[object, ...]]:
        with psycopg.connect(pg_schema_dsn) as conn:
            return conn.execute(sql).fetchall()

    try:
        wait_until(
            lambda: rows("SELECT count(*) FROM outbox WHERE status = 'delivered'")[0][0] >= 1,
            20,
            "the not_null alert delivered through the PostgreSQL outbox",
        )
        states = rows("SELECT pipeline, state FROM alert_states")
        assert ("replayed", "firing") in states
        assert rows("SELECT count(*) FROM baselines WHERE key = 'replayed/trades/schema/schema'")[0][0] == 1
    finally:
        runtime.stop(timeout=5)
    assert not (tmp_path / "data" / "state.db").exists()  # nothing went to the SQLite default
