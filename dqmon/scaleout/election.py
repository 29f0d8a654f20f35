"""Who judges a pipeline: the replica holding a PostgreSQL session advisory lock on it.

`pg_try_advisory_lock` never waits; the lock lives as long as the session, on a connection used
for nothing else. When the holder dies its connection drops and PostgreSQL releases the lock, so
another replica takes it on its next try (see docs/design-notes.md for why not a Kafka group).
Advisory locks are database-wide, so the key hashes the schema too: installations (and tests)
in separate schemas of one database never contend.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # psycopg (libpq, ~20 MB RSS) loads only when scale-out is configured
    import psycopg

log = logging.getLogger(__name__)


def lock_key(schema: str, pipeline: str) -> int:
    digest = hashlib.blake2b(f"dqmon-judge/{schema}/{pipeline}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class JudgeLock:
    def __init__(self, dsn: str, pipeline: str, *, connect_timeout: float = 5.0) -> None:
        self._dsn = dsn
        self.pipeline = pipeline
        self._timeout = connect_timeout
        self._conn: psycopg.Connection[Any] | None = None
        self._held = False
        self._lock = threading.Lock()

    def __repr__(self) -> str:  # never show the DSN
        return f"JudgeLock(pipeline={self.pipeline!r}, held={self._held})"

    @property
    def held(self) -> bool:
        return self._held

    def try_acquire(self) -> bool:
        """Take the lock if free; True while held. Never raises (an unreachable store = not held)."""
        import psycopg

        with self._lock:
            try:
                if self._conn is None or self._conn.closed or self._conn.broken:
                    self._held = False
                    self._conn = psycopg.connect(
                        self._dsn, autocommit=True, connect_timeout=int(self._timeout)
                    )
                if self._held:
                    self._conn.execute("SELECT 1")  # still our session: the lock is still ours
                    return True
                schema = self._conn.execute("SELECT current_schema()").fetchone()
                key = lock_key(str(schema[0] if schema else ""), self.pipeline)
                row = self._conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
                self._held = bool(row and row[0])
            except psycopg.Error as exc:
                log.warning("judge lock for %s: %s", self.pipeline, type(exc).__name__)
                self._drop()
            return self._held

    def release(self) -> None:
        """Give the lock up (closing the session releases it)."""
        with self._lock:
            self._drop()

    def _drop(self) -> None:
        self._held = False
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:  # a broken connection may fail to close
                log.debug("closing the judge lock connection failed", exc_info=True)
            self._conn = None
