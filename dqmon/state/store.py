"""The state store: what must survive restarts, behind one narrow interface per consumer.

SQLite in the data dir by default. Values are JSON; every series is bounded by its caller.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from dqmon.errors import StateError
from dqmon.state.baselines import BaselineTablesMixin, baseline_schema_sql
from dqmon.state.outbox import (
    AlertTablesMixin,
    Cursor,
    NewNotification,
    OutboxItem,
    OutboxStatus,
    StoredAlertState,
    schema_sql,
)


class KeyValueState(ABC):
    """Small JSON values by key that must survive a restart: learned baselines, rolling
    references, a SQL source's cursor, a check's last arrival, SLO buckets, a pipeline's open
    Slack thread. Keys are `<pipeline>/<dataset>/<owner>/...`; each owner bounds its values."""

    @abstractmethod
    def get_state(self, key: str) -> Any | None: ...

    @abstractmethod
    def put_state(self, key: str, value: Any) -> None: ...


class CountHistory(ABC):
    """Bounded series of window counts (volume anomaly history)."""

    @abstractmethod
    def append_count(self, series: str, at: datetime, count: float, keep: int) -> None:
        """Record one window count; keep only the newest `keep` of the series."""

    @abstractmethod
    def counts(self, series: str, limit: int) -> list[tuple[datetime, float]]:
        """The newest `limit` window counts of a series, oldest first."""


class CheckState(KeyValueState, CountHistory, ABC):
    """What checks may keep across windows."""


class AlertStateStore(ABC):
    """Alert states, and the notifications their changes cause, written in one transaction
    (implemented once in state/outbox.py:AlertTablesMixin; see there for the delivery contract)."""

    @abstractmethod
    def load_alert_states(self, pipeline: str) -> dict[str, StoredAlertState]: ...

    @abstractmethod
    def commit_alerts(
        self, states: Sequence[StoredAlertState], notifications: Sequence[NewNotification], now: float
    ) -> None:
        """Write changed alert states and the notifications they cause in one transaction."""


class AlertStore(KeyValueState, AlertStateStore, ABC):
    """What an AlertManager uses: alert states plus its own small values (SLO buckets, threads)."""


class OutboxStore(ABC):
    """The persisted outbox the delivery worker drains: claims with leases, retries, threads."""

    @abstractmethod
    def get_thread(self, thread_key: str, target: str) -> str | None: ...

    @abstractmethod
    def claim_outbox(self, now: float, limit: int, lease_seconds: float, owner: str) -> list[OutboxItem]: ...

    @abstractmethod
    def complete_outbox(
        self, item: OutboxItem, now: float, thread_ref: str | None, message_key: str | None = None
    ) -> None: ...

    @abstractmethod
    def retry_outbox(self, item: OutboxItem, next_attempt_at: float, error: str) -> None: ...

    @abstractmethod
    def fail_outbox(self, item: OutboxItem, now: float, error: str) -> None: ...

    @abstractmethod
    def release_outbox_leases(self, owner: str | None = None) -> int: ...

    @abstractmethod
    def outbox_items(self, status: OutboxStatus | None = None) -> list[OutboxItem]: ...

    @abstractmethod
    def outbox_counts(self) -> dict[str, int]: ...

    @abstractmethod
    def prune_outbox(self, before: float) -> int: ...


class StateStore(CheckState, AlertStore, OutboxStore, ABC):
    """One store (SQLite, memory or PostgreSQL) implementing every consumer's interface; each
    consumer is typed with the narrow interface it uses."""

    def close(self) -> None:
        """Release connections."""


@contextmanager
def sqlite_transaction(db: sqlite3.Connection, lock: threading.RLock, where: str) -> Iterator[Cursor]:
    """One IMMEDIATE transaction (the connection is in autocommit mode), errors as StateError."""
    with lock:
        cur = db.cursor()
        try:
            cur.execute("BEGIN IMMEDIATE")
            yield cur
            cur.execute("COMMIT")
        except sqlite3.Error as exc:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise StateError(f"state store {where}: {exc}") from exc
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        finally:
            cur.close()


_SQLITE_ID = "INTEGER PRIMARY KEY AUTOINCREMENT"


class MemoryStateStore(AlertTablesMixin, StateStore):
    """A store that forgets on exit: for `dqmon check`, tests of users' checks, and backtests."""

    def __init__(self) -> None:
        self._baselines: dict[str, str] = {}
        self._counts: dict[str, list[tuple[datetime, float]]] = {}
        # alert states and outbox: an in-memory SQLite database, so the semantics are the real ones
        self._lock = threading.RLock()
        self._db = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
        for statement in schema_sql(_SQLITE_ID):
            self._db.execute(statement)

    @contextmanager
    def _tx(self) -> Iterator[Cursor]:
        with sqlite_transaction(self._db, self._lock, ":memory:") as cur:
            yield cur

    def get_state(self, key: str) -> Any | None:
        raw = self._baselines.get(key)
        return None if raw is None else json.loads(raw)

    def put_state(self, key: str, value: Any) -> None:
        self._baselines[key] = json.dumps(value)

    def append_count(self, series: str, at: datetime, count: float, keep: int) -> None:
        values = self._counts.setdefault(series, [])
        values.append((at, float(count)))
        del values[: max(0, len(values) - keep)]

    def counts(self, series: str, limit: int) -> list[tuple[datetime, float]]:
        return list(self._counts.get(series, [])[-limit:])


class SqliteStateStore(BaselineTablesMixin, AlertTablesMixin, StateStore):
    """Embedded default. One connection guarded by a lock: dqmon's writes are small and rare."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.RLock()
        try:
            self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            # 512 KiB of page cache, not 2 MiB: a sidecar reads its state back once, at start, and
            # writes a window's worth at a time; the cache was ~1.5 MB of its heap, and the OS
            # page cache still holds the file
            self._db.execute("PRAGMA cache_size=-512")
            for statement in baseline_schema_sql(_SQLITE_ID, "REAL") + schema_sql(_SQLITE_ID):
                self._db.execute(statement)
        except sqlite3.Error as exc:
            raise StateError(f"cannot open state store {path}: {exc}") from exc

    @contextmanager
    def _tx(self) -> Iterator[Cursor]:
        with sqlite_transaction(self._db, self._lock, str(self.path)) as cur:
            yield cur

    @property
    def connection(self) -> sqlite3.Connection:
        return self._db

    @property
    def lock(self) -> threading.RLock:
        return self._lock

    def close(self) -> None:
        with self._lock:
            self._db.close()
