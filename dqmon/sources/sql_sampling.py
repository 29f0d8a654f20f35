"""The statements the SQL source sends, one builder per purpose, and the random choices they need.

Every statement is a `Statement` (purpose, SQL, parameters) so the source can log it once and
tests can `EXPLAIN (ANALYZE, BUFFERS)` exactly what was sent. docs/sql-source.md lists each one
with its cost model. Names (relation, columns) are quoted as given, so they are case-sensitive.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal

from psycopg import sql

from dqmon.config.models import SqlSource as SqlSourceConfig

Purpose = Literal["setup", "describe", "sample", "key_bounds", "estimate", "volume", "freshness"]

# Block sampling aims below row_limit: past the limit, LIMIT keeps the blocks that come first
# in physical order, which is exactly the corner-of-the-view bias sampling is meant to remove.
BLOCK_TARGET = 0.8
DEFAULT_PERCENT = 1.0  # block sampling without a catalog estimate
_MIN_PERCENT = 1e-4
_NOTHING = sql.SQL("")


@dataclass(frozen=True)
class Statement:
    purpose: Purpose
    query: sql.Composed
    params: tuple[Any, ...] = ()

    def template(self) -> str:
        """The SQL text without parameter values (what the debug log shows)."""
        return self.query.as_string()


def _user_sql(text: str) -> sql.SQL:
    # `%` in the user's SQL must not be read as a placeholder by psycopg
    return sql.SQL(text.strip().rstrip(";").replace("%", "%%"))


def quoted_relation(name: str) -> str:
    """`schema.name` as a quoted identifier text (for `::regclass`)."""
    return ".".join('"' + part.replace('"', '""') + '"' for part in name.split("."))


class StatementBuilder:
    """The statements of one dataset's config; the source supplies the per-poll values."""

    def __init__(self, config: SqlSourceConfig, *, freshness_column: str | None, row_limit: int) -> None:
        self.config = config
        self.row_limit = row_limit
        self.freshness_column = freshness_column
        if config.relation is not None:
            self._from: sql.Composable = sql.Identifier(*config.relation.split("."))
            self._alias: str | None = None
            self._select: sql.Composable = (
                sql.SQL(", ").join(sql.Identifier(c) for c in config.columns)
                if config.columns
                else sql.SQL("*")
            )
        else:
            self._from = sql.SQL("({}) AS q").format(_user_sql(config.query or ""))
            self._alias = "q"
            self._select = sql.SQL("q.*")

    def col(self, name: str) -> sql.Identifier:
        return sql.Identifier(self._alias, name) if self._alias else sql.Identifier(name)

    def _rows(self, tail: sql.Composable = _NOTHING) -> sql.Composed:
        return sql.SQL("SELECT {} FROM {}{}").format(self._select, self._from, tail)

    def setup(self, timeout_ms: int) -> Statement:
        """SET LOCAL (`set_config(..., true)`): holds for every statement of the poll's
        transaction, and ends with it."""
        query = sql.SQL(
            "SELECT set_config('statement_timeout', %s, true), set_config('TimeZone', 'UTC', true)"
        )
        return Statement("setup", sql.Composed([query]), (str(timeout_ms),))

    # ------------------------------------------------------------------ samples
    def first(self) -> Statement:
        return Statement("sample", self._rows(sql.SQL(" LIMIT %s")), (self.row_limit,))

    def full(self) -> Statement:
        # one row past the limit tells a complete read from a truncated one
        return Statement("sample", self._rows(sql.SQL(" LIMIT %s")), (self.row_limit + 1,))

    def block(self, method: Literal["system", "bernoulli"], percent: float, seed: int) -> Statement:
        tail = sql.SQL(" TABLESAMPLE {} (%s) REPEATABLE (%s) LIMIT %s").format(sql.SQL(method.upper()))
        return Statement("sample", self._rows(tail), (percent, seed, self.row_limit))

    def key_bounds(self, key: str) -> Statement:
        k = self.col(key)
        probe = "(SELECT {k} FROM {src} WHERE {k} IS NOT NULL ORDER BY {k} {order} LIMIT 1)"
        query = sql.SQL("SELECT {lo} AS lo, {hi} AS hi").format(
            lo=sql.SQL(probe).format(k=k, src=self._from, order=sql.SQL("ASC")),
            hi=sql.SQL(probe).format(k=k, src=self._from, order=sql.SQL("DESC")),
        )
        return Statement("key_bounds", query)

    def key_ranges(self, key: str, starts: list[Any]) -> Statement:
        per_range = self.per_range(len(starts))
        one = sql.SQL("({})").format(
            self._rows(sql.SQL(" WHERE {k} >= %s ORDER BY {k} LIMIT %s").format(k=self.col(key)))
        )
        query = sql.SQL(" UNION ALL ").join([one] * len(starts))
        params = tuple(value for start in starts for value in (start, per_range))
        return Statement("sample", query, params)

    def per_range(self, ranges: int) -> int:
        return max(1, math.ceil(self.row_limit / max(1, ranges)))

    def empty(self) -> Statement:
        """No rows, typed columns: the sample of an empty relation."""
        return Statement("sample", self._rows(sql.SQL(" LIMIT 0")))

    def cursor(self, column: str, after: Any) -> Statement:
        c = self.col(column)
        if after is None:
            # the newest rows first (re-sorted ascending after the fetch), like a consumer at latest
            tail = sql.SQL(" ORDER BY {c} DESC LIMIT %s").format(c=c)
            return Statement("sample", self._rows(tail), (self.row_limit,))
        tail = sql.SQL(" WHERE {c} > %s ORDER BY {c} LIMIT %s").format(c=c)
        return Statement("sample", self._rows(tail), (after, self.row_limit))

    # ------------------------------------------------------------------ volume and freshness
    def estimate(self) -> Statement:
        """PostgreSQL's own row estimate: reltuples scaled to the relation's current size, as the
        planner does, so growth since the last ANALYZE is counted. Reads the catalog only."""
        query = sql.Composed(
            [
                sql.SQL(
                    "SELECT c.reltuples::float8 AS reltuples, c.relpages::bigint AS relpages,"
                    " (pg_relation_size(c.oid) / current_setting('block_size')::int)::bigint AS pages"
                    " FROM pg_class c WHERE c.oid = %s::regclass"
                )
            ]
        )
        return Statement("estimate", query, (quoted_relation(self.config.relation or ""),))

    def count(self) -> Statement:
        return Statement("volume", sql.Composed([_user_sql(self.config.count_query or "")]))

    def freshness(self) -> Statement | None:
        if self.config.freshness_query is not None:
            return Statement("freshness", sql.Composed([_user_sql(self.config.freshness_query)]))
        if self.freshness_column is None:
            return None
        query = sql.SQL("SELECT max({c}) AS newest FROM {src}").format(
            c=self.col(self.freshness_column), src=self._from
        )
        return Statement("freshness", query)


def estimated_rows(reltuples: float | None, relpages: int | None, pages: int | None) -> float | None:
    """Rows from the catalog: None when the relation was never analyzed (reltuples -1)."""
    if reltuples is None or reltuples < 0:
        return None
    if relpages and pages is not None:
        return reltuples / relpages * pages
    return reltuples


class BlockRate:
    """The TABLESAMPLE percent of each poll: aimed at BLOCK_TARGET * row_limit from the estimate,
    halved after a poll the limit truncated (the estimate was low), recovering as polls fit."""

    def __init__(self, configured: float | None, row_limit: int) -> None:
        self.configured = configured
        self.row_limit = row_limit
        self._correction = 1.0

    def percent(self, estimate: float | None) -> float:
        if self.configured is not None:
            base = self.configured
        elif estimate is None:
            base = DEFAULT_PERCENT
        elif estimate <= 0:
            base = 100.0
        else:
            base = 100.0 * BLOCK_TARGET * self.row_limit / estimate
        return min(100.0, max(_MIN_PERCENT, base * self._correction))

    def observe(self, rows: int) -> bool:
        """Record a poll's row count; True when the limit truncated it."""
        truncated = rows >= self.row_limit
        if truncated:
            self._correction /= 2
        elif rows < BLOCK_TARGET * self.row_limit / 2:
            self._correction = min(1.0, self._correction * 2)
        return truncated


NUMERIC_OID = 1700  # PostgreSQL's numeric, which the SQL source reads as float


def range_starts(lo: Any, hi: Any, count: int, rng: random.Random, *, key_oid: int) -> list[Any]:
    """`random_starts` in the key's own type: a numeric key is compared with numerics, or its
    index cannot serve the ranges."""
    starts = random_starts(lo, hi, count, rng)
    return [Decimal(repr(float(v))) for v in starts] if key_oid == NUMERIC_OID else starts


def random_starts(lo: Any, hi: Any, count: int, rng: random.Random) -> list[Any]:
    """`count` start points drawn uniformly between the key's bounds (numbers, dates, times)."""
    if isinstance(lo, bool) or type(lo) is not type(hi):
        raise TypeError(f"key bounds of type {type(lo).__name__}")
    if isinstance(lo, int):
        return [rng.randint(lo, hi) for _ in range(count)]
    if isinstance(lo, float | Decimal):
        low, span = float(lo), float(hi) - float(lo)
        return [low + rng.random() * span for _ in range(count)]
    if isinstance(lo, datetime):
        return [lo + (hi - lo) * rng.random() for _ in range(count)]
    if isinstance(lo, date):
        days = (hi - lo).days
        return [date.fromordinal(lo.toordinal() + rng.randint(0, days)) for _ in range(count)]
    raise TypeError(f"key of type {type(lo).__name__}: key_ranges needs numbers, dates or timestamps")
