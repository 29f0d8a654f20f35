"""PostgreSQL state store: the option for several replicas sharing alert states and one outbox.

Same contract as the SQLite store (state/store.py). Replicas claim outbox items with
`FOR UPDATE SKIP LOCKED` plus a lease, so two replicas never send the same item at once.
The DSN is a secret: it never appears in errors or logs (errors carry the SQLSTATE only).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg

from dqmon.errors import StateError
from dqmon.state.baselines import BaselineTablesMixin, baseline_schema_sql
from dqmon.state.outbox import AlertTablesMixin, Cursor, schema_sql
from dqmon.state.store import StateStore

DDL_LOCK_KEY = 0x64716D6F6E444C  # "dqmonDL": serialises dqmon's CREATE TABLE IF NOT EXISTS
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class _QmarkCursor:
    """Adapts the shared `?`-placeholder SQL to psycopg's `%s`."""

    def __init__(self, cur: psycopg.Cursor[Any]) -> None:
        self._cur = cur

    def execute(self, sql: str, params: Any = (), /) -> Any:
        return self._cur.execute(sql.replace("?", "%s"), tuple(params))

    def fetchall(self) -> list[Any]:
        return self._cur.fetchall()

    @property
    def rowcount(self) -> int:
        return self._cur.rowcount


class PostgresStateStore(BaselineTablesMixin, AlertTablesMixin, StateStore):
    """One connection guarded by a lock, reconnected when broken; `schema` isolates installs/tests."""

    _claim_lock_clause = " FOR UPDATE OF o SKIP LOCKED"

    def __init__(self, dsn: str, *, schema: str | None = None, connect_timeout: float = 10.0) -> None:
        if schema is not None and not _SCHEMA_NAME.match(schema):
            raise StateError(f"invalid PostgreSQL schema name {schema!r}: use lowercase letters, digits, _")
        self._dsn = dsn
        self._schema = schema
        self._timeout = connect_timeout
        self._lock = threading.RLock()
        self._conn: psycopg.Connection[Any] | None = None
        with self._tx() as cur:
            # replicas starting together would race on CREATE TABLE IF NOT EXISTS (a unique
            # violation in the catalog): one transaction at a time creates the schema
            cur.execute("SELECT pg_advisory_xact_lock(?)", (DDL_LOCK_KEY,))
            identity = "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY"
            for statement in baseline_schema_sql(identity, "DOUBLE PRECISION") + schema_sql(identity):
                cur.execute(statement)

    def __repr__(self) -> str:  # never show the DSN
        return f"PostgresStateStore(schema={self._schema!r})"

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed or self._conn.broken:
            try:
                conn = psycopg.connect(self._dsn, autocommit=True, connect_timeout=int(self._timeout))
                if self._schema is not None:
                    conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self._schema}"')
                    conn.execute(f'SET search_path TO "{self._schema}"')
            except psycopg.Error as exc:
                raise StateError(f"cannot connect to the PostgreSQL state store: {_describe(exc)}") from None
            self._conn = conn
        return self._conn

    @contextmanager
    def _tx(self) -> Iterator[Cursor]:
        with self._lock:
            conn = self._connection()
            try:
                with conn.transaction(), conn.cursor() as cur:
                    yield _QmarkCursor(cur)
            except psycopg.Error as exc:
                raise StateError(f"PostgreSQL state store: {_describe(exc)}") from None

    def drop_schema(self) -> None:
        """Remove this store's schema and everything in it (tests, uninstall)."""
        if self._schema is None:
            raise StateError("drop_schema needs a store opened with schema=...")
        with self._tx() as cur:
            cur.execute(f'DROP SCHEMA IF EXISTS "{self._schema}" CASCADE')

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


def _describe(exc: psycopg.Error) -> str:
    # psycopg messages can echo connection parameters; keep the class and SQLSTATE only
    state = getattr(exc, "sqlstate", None)
    return f"{type(exc).__name__}" + (f" (SQLSTATE {state})" if state else "")
