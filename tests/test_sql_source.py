"""SqlSource against the real PostgreSQL: materialized views refreshed mid-test, cursors, limits, faults."""

from __future__ import annotations

import logging
import math
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import psycopg
import pytest
from psycopg.types.numeric import FloatLoader

from dqmon.config.models import Pipeline
from dqmon.sources.sql import SqlSource, redact
from dqmon.state.store import MemoryStateStore, SqliteStateStore, StateStore

pytestmark = pytest.mark.postgres


class FakeMonotonic:
    """A monotonic clock the test advances, so `every` ticks are due without sleeping."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_source(
    dsn: str,
    query: str | None = None,
    *,
    store: StateStore | None = None,
    monotonic: FakeMonotonic | None = None,
    **source: Any,
) -> tuple[SqlSource, FakeMonotonic]:
    pipeline = Pipeline.model_validate(
        {
            "pipeline": "features",
            "datasets": [
                {
                    "name": "features_mv",
                    "source": {"kind": "sql", "dsn": dsn, **({"query": query} if query else {}), **source},
                }
            ],
        }
    )
    tick = monotonic or FakeMonotonic()
    src = SqlSource(pipeline, pipeline.datasets[0], store=store or MemoryStateStore(), monotonic=tick)
    src.start()
    return src, tick


def poll_now(src: SqlSource, tick: FakeMonotonic) -> Any:
    tick.now += 3600  # past any every/backoff
    return src.poll_batch(0)


@pytest.fixture
def trades(pg_conn: psycopg.Connection[Any]) -> psycopg.Connection[Any]:
    pg_conn.execute(
        "CREATE TABLE trades (id bigserial PRIMARY KEY, symbol text NOT NULL, price numeric(12,4),"
        " ts timestamptz NOT NULL)"
    )
    pg_conn.execute(
        "INSERT INTO trades (symbol, price, ts) VALUES"
        " ('BTC', 100.5, now() - interval '3 min'), ('BTC', 101.5, now() - interval '2 min'),"
        " ('ETH', 10.25, now() - interval '2 min')"
    )
    pg_conn.execute(
        "CREATE MATERIALIZED VIEW features_mv AS SELECT symbol, count(*) AS trades, avg(price) AS avg_price,"
        " max(ts) AS updated_at FROM trades GROUP BY symbol"
    )
    # CONCURRENTLY needs a unique index on the view
    pg_conn.execute("CREATE UNIQUE INDEX ON features_mv (symbol)")
    return pg_conn


def test_snapshot_of_a_materialized_view_follows_concurrent_refreshes(
    trades: psycopg.Connection[Any], pg_schema_dsn: str
) -> None:
    src, tick = make_source(pg_schema_dsn, "SELECT * FROM features_mv ORDER BY symbol", every="30s")
    try:
        first = src.poll_batch(0)
        assert first is not None
        assert first.df["symbol"].to_list() == ["BTC", "ETH"]
        assert first.df["trades"].to_list() == [2, 1]
        assert first.df.schema["avg_price"] == pl.Float64
        assert first.df.schema["updated_at"] == pl.Datetime("us", "UTC")
        assert (first.rows_seen, first.rows_sampled) == (2, 2)
        # not due again until `every` has passed
        tick.now += 29
        assert src.poll_batch(0) is None

        trades.execute("INSERT INTO trades (symbol, price, ts) VALUES ('SOL', 5, now()), ('BTC', 99, now())")
        trades.execute("REFRESH MATERIALIZED VIEW CONCURRENTLY features_mv")
        tick.now += 1
        second = src.poll_batch(0)
        assert second is not None
        assert second.df["symbol"].to_list() == ["BTC", "ETH", "SOL"]
        assert second.df["trades"].to_list() == [3, 1, 1]
        assert second.window_start == first.window_end
        assert src.facts().up
    finally:
        src.close()


def test_row_limit_bounds_the_sample_and_rows_seen_says_where_its_count_came_from(
    trades: psycopg.Connection[Any], pg_schema_dsn: str
) -> None:
    trades.execute(
        "INSERT INTO trades (symbol, price, ts) SELECT 'X', g, now() FROM generate_series(1, 997) g"
    )
    trades.execute("ANALYZE trades")
    cases: list[tuple[dict[str, Any], int, str, bool]] = [
        # the first rows of a query: a count of rows read, which the limit cut short
        ({"query": "select * from trades;"}, 50, "rows_read", True),
        # the user's count statement, exact
        (
            {"query": "select * from trades", "count_query": "select count(*) from trades"},
            1000,
            "count_query",
            False,
        ),
        # PostgreSQL's catalog estimate of the relation (exact right after ANALYZE)
        ({"relation": "trades", "sample": {"method": "full"}, "volume": "catalog"}, 1000, "catalog", False),
        # a full read past row_limit is truncated, and says so
        ({"relation": "trades", "sample": {"method": "full"}}, 50, "rows_read", True),
    ]
    for source, seen, basis, partial in cases:
        src, _ = make_source(pg_schema_dsn, row_limit=50, **source)
        try:
            batch = src.poll_batch(0)
            assert batch is not None, source
            assert (batch.rows_seen, batch.rows_seen_basis, batch.partial) == (seen, basis, partial), source
            assert batch.rows_sampled == batch.df.height == 50
        finally:
            src.close()


def test_incremental_cursor_reads_only_new_rows_and_survives_a_restart(
    trades: psycopg.Connection[Any], pg_schema_dsn: str, tmp_path: Path
) -> None:
    store = SqliteStateStore(tmp_path / "state.db")
    query = "SELECT id, symbol, price, ts FROM trades WHERE price > 0"
    src, tick = make_source(pg_schema_dsn, query, store=store, cursor_column="id", row_limit=2)
    try:
        # first poll starts at the newest rows (like a consumer at `latest`), ascending
        first = src.poll_batch(0)
        assert first is not None
        assert first.df["id"].to_list() == [2, 3]
        # the newest rows are no increment: a volume check must not judge them
        assert (first.rows_seen, first.rows_seen_basis, first.partial) == (2, "cursor", True)

        trades.execute("INSERT INTO trades (symbol, price, ts) VALUES ('A', 1, now()), ('B', 2, now())")
        second = poll_now(src, tick)
        assert second is not None
        assert second.df["id"].to_list() == [4, 5]
        # exactly row_limit new rows: maybe more are waiting, so the count is only a lower bound
        assert (second.rows_seen, second.partial) == (2, True)

        empty = poll_now(src, tick)
        assert empty is not None
        assert empty.df.height == 0
        assert (empty.rows_seen, empty.partial) == (0, False)
        assert empty.df.columns == ["id", "symbol", "price", "ts"]
        assert empty.df.schema["price"] == pl.Float64
    finally:
        src.close()

    # a new process with the same state store continues after id 5
    trades.execute("INSERT INTO trades (symbol, price, ts) VALUES ('C', 3, now()), ('D', -1, now())")
    restarted, _ = make_source(pg_schema_dsn, query, store=store, cursor_column="id", row_limit=2)
    try:
        batch = restarted.poll_batch(0)
        assert batch is not None
        assert batch.df["id"].to_list() == [6]
    finally:
        restarted.close()
        store.close()


def test_timestamp_cursor_sets_newest_record_time_even_when_no_new_rows(
    trades: psycopg.Connection[Any], pg_schema_dsn: str
) -> None:
    src, tick = make_source(pg_schema_dsn, "SELECT * FROM features_mv", cursor_column="updated_at")
    try:
        assert src.poll_batch(0) is not None
        newest = trades.execute("SELECT max(updated_at) FROM features_mv").fetchone()
        assert newest is not None
        assert src.facts().newest_record_time == newest[0].astimezone(UTC)
        later = poll_now(src, tick)
        assert later is not None
        assert later.df.height == 0
        assert src.facts().newest_record_time == newest[0].astimezone(UTC)

        trades.execute("INSERT INTO trades (symbol, price, ts) VALUES ('BTC', 1, now() + interval '1 min')")
        trades.execute("REFRESH MATERIALIZED VIEW CONCURRENTLY features_mv")
        refreshed = poll_now(src, tick)
        assert refreshed is not None
        assert refreshed.df["symbol"].to_list() == ["BTC"]
        newest_after = src.facts().newest_record_time
        assert newest_after is not None
        assert newest_after > datetime.now(UTC)
    finally:
        src.close()


def test_statement_timeout_cancels_a_slow_query_without_crashing(pg_schema_dsn: str) -> None:
    src, tick = make_source(pg_schema_dsn, "SELECT pg_sleep(5) AS slept", timeout="300ms")
    try:
        started = time.monotonic()
        assert src.poll_batch(0) is None
        assert time.monotonic() - started < 2.5
        facts = src.facts()
        assert facts.up is False
        assert facts.error is not None
        assert "statement timeout" in facts.error
        assert src.last_error is not None
        assert src.last_error.code == "statement_timeout"
        assert src.error_counts == {"statement_timeout": 1}
        # the connection is still usable: the next poll fails the same way, not with a broken link
        assert poll_now(src, tick) is None
        assert src.error_counts == {"statement_timeout": 2}
    finally:
        src.close()


def test_queries_run_read_only(pg_conn: psycopg.Connection[Any], pg_schema_dsn: str) -> None:
    pg_conn.execute("CREATE TABLE victims (x int)")
    pg_conn.execute(
        "CREATE FUNCTION sneaky_write() RETURNS int LANGUAGE sql AS"
        " 'INSERT INTO victims VALUES (1) RETURNING x'"
    )
    src, _tick = make_source(pg_schema_dsn, "SELECT sneaky_write() AS x")
    try:
        assert src.poll_batch(0) is None
        assert src.last_error is not None
        assert src.last_error.code == "read_only"
        assert "read-only" in (src.facts().error or "")
        row = pg_conn.execute("SELECT count(*) FROM victims").fetchone()
        assert row == (0,)
    finally:
        src.close()


def test_a_broken_query_is_reported_not_raised(pg_schema_dsn: str) -> None:
    src, _ = make_source(pg_schema_dsn, "SELECT no_such_column FROM pg_class")
    try:
        assert src.poll_batch(0) is None
        assert src.last_error is not None
        assert src.last_error.code == "query"
        assert "no_such_column" in (src.facts().error or "")
    finally:
        src.close()


def test_reconnects_after_the_server_drops_the_connection(
    trades: psycopg.Connection[Any], pg_schema_dsn: str
) -> None:
    src, tick = make_source(pg_schema_dsn, "SELECT * FROM features_mv")
    try:
        assert src.poll_batch(0) is not None
        trades.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'dqmon'"
        )
        assert poll_now(src, tick) is None
        assert src.facts().up is False
        assert src.last_error is not None
        assert src.last_error.code == "connect"
        # backoff then a fresh connection
        tick.now += 1.0
        batch = src.poll_batch(0)
        assert batch is not None
        assert batch.df.height == 2
        assert src.facts().up is True
        assert src.facts().error is None
    finally:
        src.close()


@pytest.mark.parametrize(
    "secret_dsn",
    [
        "postgresql://dqmon:Sup3rS3cretPw@127.0.0.1:1/test?sslmode=disable",
        # libpq quotes a malformed URI whole in its error message
        "postgresql://dqmon:Sup3rS3cretPw@[::1/test",
    ],
)
def test_the_dsn_never_appears_in_errors_or_logs(caplog: pytest.LogCaptureFixture, secret_dsn: str) -> None:
    caplog.set_level(logging.DEBUG)
    src, tick = make_source(secret_dsn, "SELECT 1", timeout="2s")
    try:
        assert src.poll_batch(0) is None
        assert src.facts().up is False
        assert src.last_error is not None
        assert src.last_error.code == "connect"
        # the retry waits for its backoff
        assert src.poll_batch(0) is None
        assert src.error_counts == {"connect": 1}
        tick.now += 1.0
        assert src.poll_batch(0) is None
        assert src.error_counts == {"connect": 2}
        texts = [src.facts().error or "", str(src.last_error), caplog.text, repr(src.config)]
        for text in texts:
            assert "Sup3rS3cretPw" not in text
            assert secret_dsn not in text
    finally:
        src.close()


def test_redact_scrubs_dsn_shapes() -> None:
    dsn = "host=db password='p@ss word' user=me"
    assert "p@ss word" not in redact(f"invalid dsn: {dsn}", dsn)
    assert redact("to postgresql://u:pw@h/db failed", "") == "to postgresql://***@h/db failed"
    assert redact("password=hunter2 user=x", "") == "password=*** user=x"


def test_window_bounds_follow_the_clock(trades: psycopg.Connection[Any], pg_schema_dsn: str) -> None:
    src, _tick = make_source(pg_schema_dsn, "SELECT * FROM features_mv", every="1m")
    try:
        batch = src.poll_batch(0)
        assert batch is not None
        assert batch.window_end - batch.window_start == timedelta(minutes=1)
        assert src.poll_batch(0) is None  # it paces itself: the next poll is a minute away
    finally:
        src.close()


_ALL_TYPES = """
SELECT * FROM (VALUES
  (1::int2, 2::int4, 3::int8, 1.5::float4, 'NaN'::float8, 12.25::numeric(8,2), E'a,"b"\\nc'::text,
   ''::varchar, 'x'::char(3), true, '2024-01-02'::date, '10:11:12.5'::time,
   '2024-01-02 03:04:05'::timestamp, '2024-01-02 03:04:05.123+02'::timestamptz),
  (NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, false, NULL, NULL, NULL, NULL)
) AS v(i2, i4, i8, f4, f8, num, txt, empty, chr, flag, day, tod, ts, tstz)
"""


def test_the_bulk_copy_path_gives_the_rows_and_types_psycopg_gives(pg_schema_dsn: str) -> None:
    src, _tick = make_source(pg_schema_dsn, _ALL_TYPES)
    try:
        batch = src.poll_batch(0)
    finally:
        src.close()
    assert batch is not None
    with psycopg.connect(pg_schema_dsn) as conn:
        conn.adapters.register_loader("numeric", FloatLoader)
        conn.execute("SET TimeZone = 'UTC'")
        expected = conn.execute(_ALL_TYPES).fetchall()
    df = batch.df
    assert df.schema == pl.Schema(
        {
            "i2": pl.Int16, "i4": pl.Int32, "i8": pl.Int64, "f4": pl.Float32, "f8": pl.Float64,
            "num": pl.Float64, "txt": pl.String, "empty": pl.String, "chr": pl.String, "flag": pl.Boolean,
            "day": pl.Date, "tod": pl.Time, "ts": pl.Datetime("us"), "tstz": pl.Datetime("us", "UTC"),
        }
    )  # fmt: skip
    assert math.isnan(df["f8"][0])
    assert df.drop("f8").rows() == [row[:4] + row[5:] for row in expected]


def test_columns_of_other_types_take_the_row_path(pg_schema_dsn: str) -> None:
    query = "SELECT 1 AS n, '{\"a\": [1, 2]}'::jsonb AS doc, ARRAY[1, 2] AS xs"
    src, _tick = make_source(pg_schema_dsn, query)
    try:
        batch = src.poll_batch(0)
    finally:
        src.close()
    assert batch is not None
    assert batch.df.rows() == [(1, {"a": [1, 2]}, [1, 2])]
