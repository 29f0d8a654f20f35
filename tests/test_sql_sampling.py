"""SQL sample methods on real PostgreSQL: what each poll makes the server read, whether the sample
is fair, freshness from max(), and the read-only/timeout guarantees for every statement.

The 2M-row view is built once for the module (bench/sql_sampling.py builds the same one and
prints the figures recorded in docs/performance.md).
"""

from __future__ import annotations

import logging
import math
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import psycopg
import pytest
from hypothesis import given
from hypothesis import strategies as st
from psycopg import sql
from scipy import stats

from bench.sql_sampling import METHODS, ViewInfo, create_view, explain, make_source, old_statement
from dqmon.config.models import Pipeline
from dqmon.engine import DatasetEngine
from dqmon.results import Status
from dqmon.sources.sql import SqlSource
from dqmon.sources.sql_sampling import BLOCK_TARGET, BlockRate, estimated_rows, random_starts
from dqmon.state.store import MemoryStateStore

pytestmark = pytest.mark.postgres

ROWS = 2_000_000
ROW_LIMIT = 10_000
ALPHA = 0.001


@dataclass(frozen=True)
class BigView:
    dsn: str
    info: ViewInfo


@pytest.fixture(scope="module")
def big(pg_dsn: str) -> Iterator[BigView]:
    schema = f"t_big_{uuid.uuid4().hex[:10]}"
    params = psycopg.conninfo.conninfo_to_dict(pg_dsn)
    params["options"] = f"-c search_path={schema}"
    dsn = psycopg.conninfo.make_conninfo(**params)  # type: ignore[arg-type]
    with psycopg.connect(pg_dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            info = create_view(conn, ROWS)
        yield BigView(dsn, info)
    finally:
        with psycopg.connect(pg_dsn, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


@pytest.fixture
def big_conn(big: BigView) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(big.dsn, autocommit=True) as conn:
        yield conn


def poll(src: SqlSource) -> Any:
    src._next_due = 0.0  # due now (the tests do not wait for `every`)
    batch = src.poll_batch(0)
    assert batch is not None, src.facts().error
    return batch


# --------------------------------------------------------------------------- cost per poll


@pytest.mark.parametrize("method", ["system", "key_ranges", "cursor", "full", "first"])
def test_a_poll_reads_a_small_multiple_of_row_limit_and_never_spills(
    big: BigView, big_conn: psycopg.Connection[Any], method: str
) -> None:
    src = make_source(big.dsn, method, row_limit=ROW_LIMIT, rows=ROWS)
    try:
        batch = poll(src)
        statements = list(src.last_statements)
    finally:
        src.close()
    assert 0 < batch.rows_sampled <= ROW_LIMIT
    purposes = [s.purpose for s in statements]
    assert "sample" in purposes and "freshness" in purposes
    assert not any("OVER" in s.template() for s in statements)
    budget_blocks = 3 * ROW_LIMIT / big.info.rows_per_page + 64
    total_buffers = 0
    for statement in statements:
        cost = explain(big_conn, statement)
        assert cost.temp_blocks == 0, (statement.purpose, cost)
        assert cost.rows_scanned <= 3 * ROW_LIMIT, (statement.purpose, cost)
        total_buffers += cost.buffers
    assert total_buffers <= budget_blocks, (method, total_buffers)


def test_bernoulli_reads_every_block_once_without_spilling(
    big: BigView, big_conn: psycopg.Connection[Any]
) -> None:
    """Row-level sampling is the fair one, and it costs a pass over the relation (documented)."""
    src = make_source(big.dsn, "bernoulli", row_limit=ROW_LIMIT, rows=ROWS)
    try:
        batch = poll(src)
        (sample,) = [s for s in src.last_statements if s.purpose == "sample"]
    finally:
        src.close()
    assert batch.rows_sampled < ROW_LIMIT  # aimed below the limit, so LIMIT never cuts the tail off
    cost = explain(big_conn, sample)
    assert cost.temp_blocks == 0
    assert 0.95 * big.info.pages <= cost.buffers <= big.info.pages + 16


def test_the_statement_before_issue_15_scanned_the_whole_view_and_spilled(
    big_conn: psycopg.Connection[Any],
) -> None:
    cost = explain(big_conn, old_statement(ROW_LIMIT))
    assert cost.rows_scanned >= ROWS
    assert cost.temp_blocks > 0


def test_volume_comes_from_the_catalog_or_the_cursor_without_a_scan(big: BigView) -> None:
    src = make_source(big.dsn, "system", row_limit=ROW_LIMIT, rows=ROWS)
    cursor = make_source(big.dsn, "cursor", row_limit=ROW_LIMIT, rows=ROWS)
    try:
        batch, increment = poll(src), poll(cursor)
    finally:
        src.close()
        cursor.close()
    assert (batch.rows_seen, batch.rows_seen_basis, batch.partial) == (ROWS, "catalog", False)
    # the cursor started 5,000 rows behind the newest: exactly the rows it read
    assert (increment.rows_seen, increment.rows_seen_basis, increment.partial) == (5_000, "cursor", False)


# --------------------------------------------------------------------------- fairness


def _ks_bound(n: int, m: int) -> float:
    """Two-sample KS critical value at ALPHA (asymptotic)."""
    return math.sqrt(-0.5 * math.log(ALPHA / 2)) * math.sqrt((n + m) / (n * m))


def _independent_units(method: str, ids: np.ndarray, rows_per_page: int) -> int:
    """The sample size the KS bound is computed for: rows for Bernoulli sampling; for cluster
    samples the clusters drawn (pages for SYSTEM, runs of consecutive keys for key ranges), since
    `x` follows the physical and key order and so the rows of one cluster are not independent."""
    if method == "bernoulli":
        return len(ids)
    if method == "system":
        return len(np.unique((ids - 1) // rows_per_page))
    ordered = np.sort(np.unique(ids))
    return int(1 + np.count_nonzero(np.diff(ordered) > 1))


@pytest.mark.parametrize("method", ["system", "bernoulli", "key_ranges"])
def test_samples_over_several_polls_match_the_whole_view_where_the_first_rows_do_not(
    big: BigView, big_conn: psycopg.Connection[Any], method: str
) -> None:
    polls = 5
    src = make_source(big.dsn, method, row_limit=ROW_LIMIT, rows=ROWS, seed=11)
    xs, units = [], 0
    try:
        for _ in range(polls):
            batch = poll(src)
            xs.append(batch.df["x"].to_numpy())
            units += _independent_units(method, batch.df["id"].to_numpy(), big.info.rows_per_page)
    finally:
        src.close()
    sample = np.concatenate(xs)
    whole = np.arange(1, ROWS + 1, dtype=np.float64) / ROWS  # the view's x, exactly
    bound = _ks_bound(units, ROWS)
    statistic = stats.ks_2samp(sample, whole).statistic
    print(f"{method}: {len(sample)} rows, {units} independent units, KS {statistic:.4f} < {bound:.4f}")
    assert statistic < bound, (method, statistic, bound, units)

    # the read before issue 15: the same first rows every poll, judged at the same sample size
    per_poll = len(sample) // polls
    rows = big_conn.execute(old_statement(per_poll).query, (per_poll,)).fetchall()
    first_rows = np.tile(np.array([r[1] for r in rows], dtype=np.float64), polls)
    assert stats.ks_2samp(first_rows, whole).statistic > bound


# --------------------------------------------------------------------------- freshness


@pytest.fixture
def feed(pg_conn: psycopg.Connection[Any]) -> tuple[datetime, datetime]:
    """A materialized view of 1,000 keys; the first 500 (its physically first rows) stopped
    updating an hour ago, the rest were updated 5 s ago."""
    pg_conn.execute("CREATE TABLE feed_src (id int PRIMARY KEY, updated_at timestamptz NOT NULL)")
    pg_conn.execute(
        "INSERT INTO feed_src SELECT g, CASE WHEN g <= 500 THEN now() - interval '1 hour'"
        " ELSE now() - interval '5 seconds' END FROM generate_series(1, 1000) g"
    )
    pg_conn.execute("CREATE MATERIALIZED VIEW feed AS SELECT * FROM feed_src ORDER BY id")
    pg_conn.execute("CREATE UNIQUE INDEX ON feed (id)")  # REFRESH ... CONCURRENTLY needs one
    pg_conn.execute("CREATE INDEX ON feed (updated_at)")  # what makes max() one index probe
    row = pg_conn.execute("SELECT min(updated_at), max(updated_at) FROM feed").fetchone()
    assert row is not None
    return row[0].astimezone(UTC), row[1].astimezone(UTC)


class Clock:
    def __init__(self) -> None:
        self.at = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.at


def _feed_source(dsn: str, clock: Clock, **source: Any) -> tuple[SqlSource, DatasetEngine]:
    # by default the first 100 rows: the corner a first-rows read (or an unlucky sample) keeps returning
    settings = {
        "kind": "sql",
        "dsn": dsn,
        "relation": "feed",
        "sample": {"method": "first"},
        "row_limit": 100,
    }
    pipeline = Pipeline.model_validate(
        {
            "pipeline": "p",
            "datasets": [
                {
                    "name": "feed",
                    "event_time": "updated_at",
                    "source": {**settings, **source},
                    "checks": [{"freshness": {"max_lag": "10m", "stat": "newest"}}],
                }
            ],
        }
    )
    dataset = pipeline.datasets[0]
    src = SqlSource(pipeline, dataset, store=MemoryStateStore(), clock=clock)
    src.start()
    return src, DatasetEngine(pipeline, dataset, store=MemoryStateStore(), clock=clock)


def test_freshness_is_the_views_max_not_the_newest_row_of_the_sample(
    feed: tuple[datetime, datetime], pg_conn: psycopg.Connection[Any], pg_schema_dsn: str
) -> None:
    stale, fresh = feed
    clock = Clock()
    src, engine = _feed_source(pg_schema_dsn, clock)
    by_sample, sample_engine = _feed_source(pg_schema_dsn, clock, freshness="sample")
    try:
        batch = poll(src)
        assert batch.df["id"].max() == 100  # the sampled corner: all stopped an hour ago
        assert batch.df["updated_at"].max() == stale
        freshness = [s for s in src.last_statements if s.purpose == "freshness"]
        assert [s.template() for s in freshness] == ['SELECT max("updated_at") AS newest FROM "feed"']
        assert src.facts().newest_record_time == fresh
        assert engine.sweep(clock(), src.facts()) == []  # the feed is alive: no staleness
        # nor does the batch's own freshness result page for the stale corner it sampled
        (per_batch,) = engine.evaluate(batch)
        assert per_batch.status == Status.OK, per_batch.message
        assert per_batch.value is not None and per_batch.value < 60
        # the same corner judged by its own newest row looks an hour stale
        poll(by_sample)
        assert by_sample.facts().newest_record_time == stale
        (judged,) = sample_engine.sweep(clock(), by_sample.facts())
        assert judged.status == Status.FAIL

        # the whole feed stops: two hours later the view's max() is two hours old
        clock.at += timedelta(hours=2)
        poll(src)
        assert src.facts().newest_record_time == fresh
        (stopped,) = engine.sweep(clock(), src.facts())
        assert stopped.status == Status.FAIL
        assert "stale" in stopped.message

        # it resumes outside the sampled corner: the sample is unchanged, freshness follows max()
        pg_conn.execute("UPDATE feed_src SET updated_at = %s WHERE id = 1000", (clock.at,))
        pg_conn.execute("REFRESH MATERIALIZED VIEW CONCURRENTLY feed")
        again = poll(src)
        assert again.df["updated_at"].max() == stale
        assert src.facts().newest_record_time == clock.at
        assert engine.sweep(clock(), src.facts()) == []
    finally:
        src.close()
        by_sample.close()


_GUARDED = (
    "current_setting('transaction_read_only') = 'on' AND current_setting('statement_timeout') = '1500ms'"
)


def test_every_statement_runs_read_only_under_the_statement_timeout(pg_schema_dsn: str) -> None:
    src, _ = _feed_source(
        pg_schema_dsn,
        Clock(),
        relation=None,
        sample=None,
        query="SELECT current_setting('transaction_read_only') AS ro,"
        " current_setting('statement_timeout') AS timeout",
        count_query=f"SELECT CASE WHEN {_GUARDED} THEN 7 ELSE 0 END",
        freshness_query=f"SELECT CASE WHEN {_GUARDED} THEN timestamptz '2026-01-01 00:00Z' END",
        timeout="1500ms",
    )
    try:
        batch = poll(src)
    finally:
        src.close()
    assert batch.df.rows() == [("on", "1500ms")]
    assert (batch.rows_seen, batch.rows_seen_basis) == (7, "count_query")
    assert src.facts().newest_record_time == datetime(2026, 1, 1, tzinfo=UTC)
    assert [s.purpose for s in src.last_statements] == ["setup", "describe", "sample", "volume", "freshness"]


@pytest.mark.parametrize(
    ("source", "code", "statement"),
    [
        ({"count_query": "SELECT count(*) FROM pg_sleep(5)"}, "statement_timeout", "volume"),
        ({"freshness_query": "SELECT now() FROM pg_sleep(5)"}, "statement_timeout", "freshness"),
        ({"count_query": "SELECT sneaky_write()"}, "read_only", "volume"),
    ],
)
def test_a_slow_or_writing_side_statement_is_an_error_reason_not_a_hang(
    feed: tuple[datetime, datetime],
    pg_conn: psycopg.Connection[Any],
    pg_schema_dsn: str,
    source: dict[str, Any],
    code: str,
    statement: str,
) -> None:
    pg_conn.execute("CREATE TABLE victims (x int)")
    pg_conn.execute(
        "CREATE FUNCTION sneaky_write() RETURNS int LANGUAGE sql"
        " AS 'INSERT INTO victims VALUES (1) RETURNING x'"
    )
    src, _ = _feed_source(pg_schema_dsn, Clock(), timeout="300ms", **source)
    try:
        assert src.poll_batch(0) is None
        assert src.last_error is not None
        assert src.last_error.code == code
        assert f"the {statement} statement" in str(src.last_error)
        assert src.error_counts == {code: 1}
        assert src.facts().up is False
    finally:
        src.close()
    assert pg_conn.execute("SELECT count(*) FROM victims").fetchone() == (0,)


def test_each_statement_is_logged_once_per_dataset_without_the_password(
    feed: tuple[datetime, datetime], pg_schema_dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="dqmon.sources.sql")
    dsn = pg_schema_dsn + " password=Sup3rS3cretPw"  # trust auth ignores it; the log must too
    src, _ = _feed_source(dsn, Clock(), sample={"method": "key_ranges", "key": "id", "ranges": 4})
    try:
        for _ in range(3):
            poll(src)
        templates = {s.template() for s in src.last_statements}
    finally:
        src.close()
    sent = [r.getMessage() for r in caplog.records if " sends (" in r.getMessage()]
    assert len(sent) == len(templates) == 6  # setup, estimate, key_bounds, describe, sample, freshness
    assert all(any(t in line for t in templates) for line in sent)
    assert "Sup3rS3cretPw" not in caplog.text


def test_key_ranges_drop_rows_of_overlapping_ranges_and_handle_an_empty_relation(
    pg_conn: psycopg.Connection[Any], pg_schema_dsn: str
) -> None:
    pg_conn.execute("CREATE TABLE feed (id int PRIMARY KEY, updated_at timestamptz NOT NULL)")
    src, _ = _feed_source(pg_schema_dsn, Clock(), sample={"method": "key_ranges", "key": "id", "ranges": 30})
    try:
        empty = poll(src)
        assert empty.df.height == 0 and empty.df.columns == ["id", "updated_at"]
        pg_conn.execute("INSERT INTO feed SELECT g, now() FROM generate_series(1, 40) g")
        batch = poll(src)
    finally:
        src.close()
    ids = batch.df["id"].to_list()
    assert len(ids) == len(set(ids)) > 0  # 30 ranges of 4 rows over 40 keys overlap


def test_a_relation_never_analyzed_is_block_sampled_at_one_percent_and_counted_by_rows_read(
    pg_conn: psycopg.Connection[Any], pg_schema_dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    # no index and no autovacuum: nothing fills in pg_class.reltuples (-1 until ANALYZE)
    pg_conn.execute(
        "CREATE TABLE feed WITH (autovacuum_enabled = false) AS"
        " SELECT g AS id, now() AS updated_at FROM generate_series(1, 20000) g"
    )
    src, _ = _feed_source(pg_schema_dsn, Clock(), sample={"method": "system"}, row_limit=10_000)
    whole, _ = _feed_source(pg_schema_dsn, Clock(), sample={"method": "full"}, row_limit=30_000)
    try:
        batch = poll(src)
        (sample,) = [s for s in src.last_statements if s.purpose == "sample"]
        everything = poll(whole)
    finally:
        src.close()
        whole.close()
    assert sample.params[0] == 1.0  # percent
    assert (batch.rows_seen_basis, batch.rows_seen) == ("rows_read", batch.rows_sampled)
    assert "no catalog estimate" in caplog.text
    # a small relation read whole: exact, complete
    assert (everything.rows_seen, everything.rows_seen_basis, everything.partial) == (
        20_000,
        "rows_read",
        False,
    )


# --------------------------------------------------------------------------- the random choices


@given(st.integers(-(10**12), 10**12), st.integers(0, 10**12), st.integers(0, 2**32))
def test_random_integer_starts_lie_within_the_key_bounds(lo: int, span: int, seed: int) -> None:
    starts = random_starts(lo, lo + span, 25, random.Random(seed))
    assert len(starts) == 25
    assert all(isinstance(s, int) and lo <= s <= lo + span for s in starts)


@given(
    st.datetimes(max_value=datetime(9000, 1, 1), timezones=st.just(UTC)),
    st.timedeltas(timedelta(0), timedelta(days=3650)),
    st.integers(0, 99),
)
def test_random_time_starts_lie_within_the_key_bounds(lo: datetime, span: timedelta, seed: int) -> None:
    hi = lo + span
    for start in random_starts(lo, hi, 10, random.Random(seed)):
        assert lo <= start <= hi
    day = lo.date()
    for start in random_starts(day, day + timedelta(days=span.days), 10, random.Random(seed)):
        assert isinstance(start, date) and day <= start <= day + timedelta(days=span.days)


def test_text_keys_have_no_random_points() -> None:
    with pytest.raises(TypeError):
        random_starts("a", "z", 3, random.Random(1))


@given(
    st.floats(1, 1e12),
    st.integers(1, 1_000_000),
    st.lists(st.integers(0, 2_000_000), max_size=12),
)
def test_block_rate_aims_below_the_limit_and_backs_off_after_truncation(
    estimate: float, row_limit: int, polls: list[int]
) -> None:
    rate = BlockRate(None, row_limit)
    correction = 1.0  # the plain reference: halve on a full poll, double back on a small one
    for rows in polls:
        expected = min(100.0, max(1e-4, 100 * BLOCK_TARGET * row_limit / estimate * correction))
        assert rate.percent(estimate) == pytest.approx(expected)
        assert rate.observe(rows) == (rows >= row_limit)
        if rows >= row_limit:
            correction /= 2
        elif rows < BLOCK_TARGET * row_limit / 2:
            correction = min(1.0, correction * 2)


def test_catalog_estimate_scales_to_the_current_size_and_is_unknown_before_analyze() -> None:
    assert estimated_rows(-1.0, 0, 10) is None
    assert estimated_rows(1000.0, 10, 20) == 2000.0  # the relation doubled since ANALYZE
    assert estimated_rows(0.0, 0, 0) == 0.0


def test_methods_cover_every_config_choice() -> None:
    assert set(METHODS) == {"system", "bernoulli", "key_ranges", "cursor", "full", "first"}
