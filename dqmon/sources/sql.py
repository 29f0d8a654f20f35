"""The SQL source: samples a materialized view or table over the Postgres wire protocol.

PostgreSQL, RisingWave and Materialize all speak it. Each poll, due every `every`, is one
READ ONLY transaction with a local statement timeout (for each of its statements) that picks at
most `row_limit` rows by the dataset's sample method (sql_sampling.py builds the statements),
then reads the volume (cursor increment, catalog estimate or `count_query`) and the freshness
(`max()` of the event-time column) each in its own cheap statement. No statement scans the
relation unless the config asks for it (`full`, `bernoulli`, an unindexed column).

Faults never escape `poll_batch`: an unreachable server or a failed statement returns None,
reports `up=False` with a redacted reason in `facts()`, and is retried with backoff. The DSN
is a secret: it is never logged and is scrubbed from every message this module produces.
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import polars as pl
import psycopg
from psycopg.types.numeric import FloatLoader

from dqmon.batch import MicroBatch
from dqmon.config.models import Dataset, Pipeline
from dqmon.config.models import SqlSource as SqlSourceConfig
from dqmon.errors import SourceError
from dqmon.facts import SourceFacts
from dqmon.registry import SOURCES
from dqmon.sources.base import Source, SourceContext
from dqmon.sources.sql_cursor import CursorStore
from dqmon.sources.sql_decode import DecodeError, as_utc, describe_query, newest_time, read_frame
from dqmon.sources.sql_faults import connect_error, redact, statement_error
from dqmon.sources.sql_sampling import BlockRate, Statement, StatementBuilder, estimated_rows, range_starts
from dqmon.state.store import KeyValueState

log = logging.getLogger(__name__)

_MAX_BACKOFF_S = 60.0


@dataclass(frozen=True)
class _Fetched:
    df: pl.DataFrame
    rows_seen: int
    basis: str
    partial: bool
    newest: datetime | None
    queried_at: datetime
    cursor: Any = None  # the cursor's new position, stored once the whole poll succeeded


@SOURCES.add("sql")
class SqlSource(Source):
    """A `kind: sql` dataset: a scheduled, read-only, bounded sample into a MicroBatch.

    `last_statements` holds the statements of the latest poll, as sent (tests EXPLAIN them).
    """

    config_type = SqlSourceConfig

    @classmethod
    def from_context(cls, ctx: SourceContext) -> SqlSource:
        return cls(ctx.pipeline, ctx.dataset, store=ctx.store, clock=ctx.clock)

    def schedule_seconds(self) -> float:
        # poll_batch paces itself to `every`; ticking at most once a second keeps it punctual
        return min(1.0, self.config.every.total_seconds())

    def __init__(
        self,
        pipeline: Pipeline,
        dataset: Dataset,
        *,
        store: KeyValueState,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        monotonic: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        if not isinstance(dataset.source, SqlSourceConfig):
            raise TypeError(f"dataset {dataset.name!r} is not a sql source")
        self.pipeline = pipeline.pipeline
        self.dataset = dataset
        self.config: SqlSourceConfig = dataset.source
        self.sampling = self.config.sampling
        self._clock = clock
        self._monotonic = monotonic
        self._rng = rng or random.Random(self.sampling.seed)
        self._closed = threading.Event()
        self._conn: psycopg.Connection[tuple[Any, ...]] | None = None
        self._next_due = 0.0
        self._backoff = 0.0
        self._last_poll: datetime | None = None
        self._up = False
        self._error: str | None = None
        self._newest: datetime | None = None
        self._cursor = CursorStore(
            store, f"{self.pipeline}/{dataset.name}/source/sql/cursor", self.sampling.column
        )
        freshness_column = None
        if self.config.freshness == "aggregate":
            freshness_column = self.config.freshness_column or dataset.event_time or self.sampling.column
        # the column whose dataset-wide newest value the freshness statement reads (for checks)
        self._newest_column = freshness_column if self.config.freshness_query is None else dataset.event_time
        self.statements = StatementBuilder(
            self.config, freshness_column=freshness_column, row_limit=self.row_limit
        )
        self._block_rate = BlockRate(self.sampling.percent, self.row_limit)
        self._logged: set[str] = set()
        self._warned: set[str] = set()
        self._first_cursor_poll, self._freshness_off = False, False
        self._pending_cursor: Any = None
        self.last_statements: list[Statement] = []
        self.last_error: SourceError | None = None
        # failures by bounded reason (connect, statement_timeout, read_only, query, decode)
        self.error_counts: dict[str, int] = {}

    # ------------------------------------------------------------------ lifecycle
    @property
    def row_limit(self) -> int:
        return min(self.config.row_limit, self.dataset.max_rows)

    @property
    def cursor_key(self) -> str:
        return self._cursor.key

    def start(self) -> None:
        self._closed.clear()
        restored = self._cursor.restore()
        self._newest = as_utc(restored) or self._newest
        self._next_due = self._monotonic()
        if self.sampling.method == "first":
            self._warn_once(
                "first",
                "sample method first reads the same first rows every poll: "
                "not a fair sample; give relation: and a sample method (docs/sql-source.md)",
            )

    def close(self) -> None:
        self._closed.set()
        self._disconnect()

    def facts(self) -> SourceFacts:
        return SourceFacts(
            observed_at=self._clock(), up=self._up, newest_record_time=self._newest, error=self._error
        )

    def poll_batch(self, timeout: float) -> MicroBatch | None:
        """Run the poll when its `every` tick is due within `timeout` seconds, else None."""
        wait = self._next_due - self._monotonic()
        if wait > timeout:
            self._closed.wait(max(timeout, 0.0))
            return None
        if wait > 0 and self._closed.wait(wait):
            return None
        if self._closed.is_set():
            return None
        every = self.config.every.total_seconds()
        try:
            fetched = self._fetch()
        except SourceError as exc:
            self._fail(exc)
            self._backoff = min(max(self._backoff * 2, 1.0), every, _MAX_BACKOFF_S)
            self._next_due = self._monotonic() + self._backoff
            return None
        self._backoff = 0.0
        # keep the cadence fixed; skip ticks missed while a slow query ran
        self._next_due = max(self._next_due + every, self._monotonic())
        self._up, self._error, self.last_error = True, None, None
        return self._to_batch(fetched)

    # ------------------------------------------------------------------ logging and faults
    def _fail(self, exc: SourceError) -> None:
        reason = exc.code or "query"
        self.error_counts[reason] = self.error_counts.get(reason, 0) + 1
        self._up, self._error, self.last_error = False, str(exc), exc
        log.warning(
            "sql source failed",
            extra={
                "pipeline": self.pipeline,
                "dataset": self.dataset.name,
                "reason": reason,
                "error": str(exc),
            },
        )

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning("sql source %s/%s: %s", self.pipeline, self.dataset.name, message)

    def _secret(self) -> str:
        return self.config.dsn.get_secret_value()

    def _sent(self, statement: Statement) -> None:
        """Remember a statement of this poll; log each distinct one once per dataset."""
        self.last_statements.append(statement)
        template = statement.template()
        if template not in self._logged:
            self._logged.add(template)
            log.debug(
                "sql source %s/%s sends (%s): %s",
                self.pipeline,
                self.dataset.name,
                statement.purpose,
                redact(template, self._secret()),
            )

    # ------------------------------------------------------------------ connection
    def _connect(self) -> psycopg.Connection[tuple[Any, ...]]:
        if self._conn is not None and not self._conn.closed:
            return self._conn
        connect_timeout = max(1, min(10, int(self.config.timeout.total_seconds())))
        try:
            conn = psycopg.connect(
                self._secret(), autocommit=True, connect_timeout=connect_timeout, application_name="dqmon"
            )
        except Exception as exc:  # noqa: BLE001 - never crash the monitor
            raise connect_error(exc, self.dataset.name, self._secret()) from None
        conn.read_only = True  # every transaction starts as BEGIN READ ONLY
        conn.adapters.register_loader("numeric", FloatLoader)
        self._conn = conn
        return conn

    def _disconnect(self) -> None:
        if self._conn is not None:
            # closing a broken connection may fail; there is nothing left to release then
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None

    # ------------------------------------------------------------------ one poll
    def _fetch(self) -> _Fetched:
        conn = self._connect()
        timeout_ms = max(1, int(self.config.timeout.total_seconds() * 1000))
        queried_at = self._clock()
        self.last_statements = []
        try:
            with conn.transaction(), conn.cursor() as cur:
                self._one(cur, self.statements.setup(timeout_ms))
                return self._poll(cur, queried_at)
        except psycopg.Error as exc:
            if isinstance(exc, psycopg.OperationalError) or conn.closed or conn.broken:
                self._disconnect()
            purpose = self.last_statements[-1].purpose if self.last_statements else "setup"
            raise statement_error(
                exc,
                dataset=self.dataset.name,
                statement=purpose,
                timeout_s=self.config.timeout.total_seconds(),
                secret=self._secret(),
            ) from None
        except DecodeError as exc:
            raise SourceError(
                f"rows of dataset {self.dataset.name!r} could not be converted: {exc}", code="decode"
            ) from None

    def _poll(self, cur: psycopg.Cursor[tuple[Any, ...]], queried_at: datetime) -> _Fetched:
        basis = self.config.volume_basis
        method = self.sampling.method
        estimate = None
        if basis == "catalog" or (method in ("system", "bernoulli") and self.sampling.percent is None):
            estimate = self._estimate(cur)
        df, truncated = self._sample(cur, estimate)
        rows_seen, partial = df.height, truncated
        if basis == "count_query":
            rows_seen, partial = self._count(cur), False
        elif basis == "catalog" and estimate is not None:
            rows_seen, partial = round(estimate), False
        elif basis == "catalog":
            basis = "rows_read"
            self._warn_once("estimate", "no catalog estimate (never analyzed?): rows_seen counts rows read")
        elif basis == "cursor":
            # the first poll has no previous position: its rows are not an increment
            partial = truncated or self._first_cursor_poll
        newest = self._freshness(cur)
        if newest is None and self.config.freshness == "sample":
            newest = newest_time(df, (self.sampling.column, self.dataset.event_time))
        return _Fetched(df, rows_seen, basis, partial, newest, queried_at, self._pending_cursor)

    def _rows(self, cur: psycopg.Cursor[tuple[Any, ...]], statement: Statement) -> pl.DataFrame:
        self._sent(Statement("describe", describe_query(statement.query), statement.params))
        self._sent(statement)
        return read_frame(cur, statement.query, statement.params)

    def _one(self, cur: psycopg.Cursor[tuple[Any, ...]], statement: Statement) -> tuple[Any, ...] | None:
        self._sent(statement)
        cur.execute(statement.query, statement.params)
        return cur.fetchone()

    def _sample(
        self, cur: psycopg.Cursor[tuple[Any, ...]], estimate: float | None
    ) -> tuple[pl.DataFrame, bool]:
        """The poll's rows, and whether row_limit cut them short."""
        s, method = self.statements, self.sampling.method
        self._first_cursor_poll, self._pending_cursor = False, None
        if method in ("system", "bernoulli"):
            percent = self._block_rate.percent(estimate)
            df = self._rows(cur, s.block(method, percent, self._rng.randrange(2**31)))
            truncated = self._block_rate.observe(df.height)
            if truncated:
                self._warn_once("block", "the sample filled row_limit: percent lowered for later polls")
            return df, truncated
        if method == "key_ranges":
            return self._key_ranges(cur), False
        if method == "cursor":
            column = self.sampling.column or ""
            after = self._cursor.value
            self._first_cursor_poll = after is None
            df = self._rows(cur, s.cursor(column, after))
            if after is None and df.height:
                df = df.reverse()
            if df.height and column in df.columns:
                self._pending_cursor = df[column].max()
            return df, df.height >= self.row_limit
        if method == "full":
            df = self._rows(cur, s.full())
            if df.height > self.row_limit:
                self._warn_once(
                    "full", f"the relation has more than row_limit={self.row_limit} rows: read truncated"
                )
                return df.head(self.row_limit), True
            return df, False
        df = self._rows(cur, s.first())
        return df, df.height >= self.row_limit

    def _key_ranges(self, cur: psycopg.Cursor[tuple[Any, ...]]) -> pl.DataFrame:
        key = self.sampling.key or ""
        row = self._one(cur, self.statements.key_bounds(key))
        key_oid = cur.description[0].type_code if cur.description else 0
        if row is None or row[0] is None:
            return self._rows(cur, self.statements.empty())
        try:
            starts = range_starts(row[0], row[1], self.sampling.ranges, self._rng, key_oid=key_oid)
        except TypeError as exc:
            raise SourceError(
                f"dataset {self.dataset.name!r}: {exc}", code="query", retriable=False
            ) from None
        df = self._rows(cur, self.statements.key_ranges(key, starts))
        # ranges that overlap return some rows twice; keep one of each
        return df.unique(subset=[key], maintain_order=True) if key in df.columns else df

    def _estimate(self, cur: psycopg.Cursor[tuple[Any, ...]]) -> float | None:
        row = self._one(cur, self.statements.estimate())
        return estimated_rows(*row) if row is not None else None

    def _count(self, cur: psycopg.Cursor[tuple[Any, ...]]) -> int:
        row = self._one(cur, self.statements.count())
        try:
            return int(row[0]) if row is not None else 0
        except (TypeError, ValueError):
            raise SourceError(
                f"count_query of dataset {self.dataset.name!r} must return one number", code="query"
            ) from None

    def _freshness(self, cur: psycopg.Cursor[tuple[Any, ...]]) -> datetime | None:
        statement = self.statements.freshness()
        if statement is None or self._freshness_off:
            return None
        row = self._one(cur, statement)
        value = row[0] if row else None
        newest = as_utc(value)
        if value is not None and newest is None:
            # e.g. a numeric cursor column: no freshness to read, so stop asking
            self._freshness_off = True
            self._warn_once("freshness", f"max() gives a {type(value).__name__}, not a time: not sent again")
        return newest

    def _to_batch(self, fetched: _Fetched) -> MicroBatch:
        self._cursor.advance(fetched.cursor)
        if fetched.newest is not None and (self._newest is None or fetched.newest > self._newest):
            self._newest = fetched.newest
        start = self._last_poll or fetched.queried_at - self.config.every
        self._last_poll = fetched.queried_at
        return MicroBatch(
            pipeline=self.pipeline,
            dataset=self.dataset.name,
            df=fetched.df,
            window_start=start,
            window_end=fetched.queried_at,
            rows_seen=fetched.rows_seen,
            rows_sampled=fetched.df.height,
            rows_seen_basis=fetched.basis,
            partial=fetched.partial,
            newest_by_column=(
                {self._newest_column: fetched.newest}
                if self._newest_column is not None
                and fetched.newest is not None
                and self.config.freshness == "aggregate"
                else {}
            ),
        )
