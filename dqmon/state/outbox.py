"""Alert states and the notification outbox, as SQL shared by the SQLite and PostgreSQL stores.

Why an outbox: a state change and the notifications it causes are written in one transaction
(`commit_alerts`), and a delivery worker sends them later. A notification is marked delivered
only after the notifier succeeded, so a crash between enqueue and delivery loses nothing, and a
firing alert whose state was committed is never announced twice as new.

Items of one (thread_key, target) are delivered in order: a Slack resolve reply needs the
thread of the firing message, so `claim` never hands out an item while an older one of the same
thread and target is still pending.

Times are float epoch seconds (cheap to compare in both SQL dialects).
"""

from __future__ import annotations

import json
from abc import abstractmethod
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

OutboxStatus = Literal["pending", "delivered", "failed"]


@dataclass(frozen=True)
class NewNotification:
    """A notification to enqueue: `payload` is what notifiers render (JSON-serialisable)."""

    fingerprint: str
    thread_key: str
    target: str
    event: str
    payload: Mapping[str, Any]
    created_at: float


@dataclass(frozen=True)
class OutboxItem:
    id: int
    fingerprint: str
    thread_key: str
    target: str
    event: str
    payload: Mapping[str, Any]
    created_at: float
    status: OutboxStatus = "pending"
    attempts: int = 0
    next_attempt_at: float = 0.0
    delivered_at: float | None = None
    last_error: str | None = None


@dataclass(frozen=True)
class StoredAlertState:
    fingerprint: str
    pipeline: str
    state: str
    body: Mapping[str, Any] = field(default_factory=dict)


OUTBOX_COLUMNS = (
    "id, fingerprint, thread_key, target, event, payload, created_at, status, attempts, "
    "next_attempt_at, delivered_at, last_error"
)


def schema_sql(id_column: str) -> list[str]:
    """DDL for alert states, threads and outbox; `id_column` is the dialect's auto-increment key."""
    return [
        "CREATE TABLE IF NOT EXISTS alert_states ("
        " fingerprint TEXT PRIMARY KEY, pipeline TEXT NOT NULL, state TEXT NOT NULL,"
        " body TEXT NOT NULL, updated_at DOUBLE PRECISION NOT NULL)",
        "CREATE INDEX IF NOT EXISTS alert_states_pipeline ON alert_states(pipeline)",
        "CREATE TABLE IF NOT EXISTS alert_threads ("
        " thread_key TEXT NOT NULL, target TEXT NOT NULL, ref TEXT NOT NULL,"
        " created_at DOUBLE PRECISION NOT NULL, PRIMARY KEY (thread_key, target))",
        f"CREATE TABLE IF NOT EXISTS outbox ( id {id_column},"
        " fingerprint TEXT NOT NULL, thread_key TEXT NOT NULL, target TEXT NOT NULL, event TEXT NOT NULL,"
        " payload TEXT NOT NULL, created_at DOUBLE PRECISION NOT NULL,"
        " status TEXT NOT NULL DEFAULT 'pending', attempts INTEGER NOT NULL DEFAULT 0,"
        " next_attempt_at DOUBLE PRECISION NOT NULL DEFAULT 0,"
        " lease_until DOUBLE PRECISION NOT NULL DEFAULT 0, lease_owner TEXT,"
        " delivered_at DOUBLE PRECISION, last_error TEXT)",
        "CREATE INDEX IF NOT EXISTS outbox_pending ON outbox(status, next_attempt_at)",
        "CREATE INDEX IF NOT EXISTS outbox_thread ON outbox(thread_key, target, id)",
    ]


class Cursor(Protocol):
    """The slice of a DB-API cursor the shared SQL needs."""

    def execute(self, sql: str, params: Sequence[Any] = (), /) -> Any: ...
    def fetchall(self) -> list[Any]: ...


class AlertTablesMixin:
    """Alert-state, thread and outbox operations over `_tx()`; SQL uses `?` placeholders.

    Subclasses provide `_tx()`, a context manager yielding a cursor inside one transaction, and
    `_claim_lock_clause` (PostgreSQL adds `FOR UPDATE SKIP LOCKED` so replicas share the outbox).
    """

    _claim_lock_clause: str = ""

    @abstractmethod
    def _tx(self) -> AbstractContextManager[Cursor]: ...

    # ------------------------------------------------------------------ alert states
    def load_alert_states(self, pipeline: str) -> dict[str, StoredAlertState]:
        with self._tx() as cur:
            cur.execute(
                "SELECT fingerprint, pipeline, state, body FROM alert_states WHERE pipeline = ?", (pipeline,)
            )
            rows = cur.fetchall()
        return {fp: StoredAlertState(fp, p, s, json.loads(b)) for fp, p, s, b in rows}

    def commit_alerts(
        self, states: Sequence[StoredAlertState], notifications: Sequence[NewNotification], now: float
    ) -> None:
        """Write changed alert states and their notifications atomically."""
        if not states and not notifications:
            return
        with self._tx() as cur:
            for st in states:
                cur.execute(
                    "INSERT INTO alert_states(fingerprint, pipeline, state, body, updated_at)"
                    " VALUES (?, ?, ?, ?, ?) ON CONFLICT(fingerprint) DO UPDATE SET"
                    " pipeline = excluded.pipeline, state = excluded.state, body = excluded.body,"
                    " updated_at = excluded.updated_at",
                    (st.fingerprint, st.pipeline, st.state, json.dumps(st.body, default=str), now),
                )
            for n in notifications:
                cur.execute(
                    "INSERT INTO outbox(fingerprint, thread_key, target, event, payload, created_at,"
                    " next_attempt_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        n.fingerprint,
                        n.thread_key,
                        n.target,
                        n.event,
                        json.dumps(n.payload, default=str),
                        n.created_at,
                        0.0,  # due at once, whatever the delivery worker's clock says
                    ),
                )

    # ------------------------------------------------------------------ threads
    def get_thread(self, thread_key: str, target: str) -> str | None:
        with self._tx() as cur:
            cur.execute(
                "SELECT ref FROM alert_threads WHERE thread_key = ? AND target = ?", (thread_key, target)
            )
            rows = cur.fetchall()
        return str(rows[0][0]) if rows else None

    # ------------------------------------------------------------------ outbox
    def claim_outbox(self, now: float, limit: int, lease_seconds: float, owner: str) -> list[OutboxItem]:
        """Lease up to `limit` due items, oldest first, at most one per (thread_key, target)."""
        with self._tx() as cur:
            cur.execute(
                "UPDATE outbox SET lease_until = ?, lease_owner = ? WHERE id IN ("
                " SELECT o.id FROM outbox o WHERE o.status = 'pending' AND o.next_attempt_at <= ?"
                " AND o.lease_until <= ? AND NOT EXISTS (SELECT 1 FROM outbox p WHERE p.status = 'pending'"
                " AND p.thread_key = o.thread_key AND p.target = o.target AND p.id < o.id)"
                f" ORDER BY o.id LIMIT ?{self._claim_lock_clause})"
                f" RETURNING {OUTBOX_COLUMNS}",
                (now + lease_seconds, owner, now, now, limit),
            )
            rows = cur.fetchall()
        return sorted((_item(r) for r in rows), key=lambda i: i.id)

    def complete_outbox(
        self, item: OutboxItem, now: float, thread_ref: str | None, message_key: str | None = None
    ) -> None:
        """Mark delivered; remember the thread a firing message opened (the first message of a
        thread key owns it) and, under `message_key`, the message itself (edited in place later)."""
        with self._tx() as cur:
            cur.execute(
                "UPDATE outbox SET status = 'delivered', delivered_at = ?, attempts = attempts + 1,"
                " lease_until = 0, last_error = NULL WHERE id = ?",
                (now, item.id),
            )
            keys = [item.thread_key]
            if message_key and message_key != item.thread_key:
                keys.append(message_key)
            for key in keys if thread_ref is not None else []:
                cur.execute(
                    "INSERT INTO alert_threads(thread_key, target, ref, created_at) VALUES (?, ?, ?, ?)"
                    " ON CONFLICT(thread_key, target) DO NOTHING",
                    (key, item.target, thread_ref, now),
                )

    def retry_outbox(self, item: OutboxItem, next_attempt_at: float, error: str) -> None:
        with self._tx() as cur:
            cur.execute(
                "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?, lease_until = 0,"
                " last_error = ? WHERE id = ?",
                (next_attempt_at, error[:500], item.id),
            )

    def fail_outbox(self, item: OutboxItem, now: float, error: str) -> None:
        with self._tx() as cur:
            cur.execute(
                "UPDATE outbox SET status = 'failed', attempts = attempts + 1, delivered_at = ?,"
                " lease_until = 0, last_error = ? WHERE id = ?",
                (now, error[:500], item.id),
            )

    def release_outbox_leases(self, owner: str | None = None) -> int:
        """Make leased items claimable again (all of them, or one owner's) after a restart."""
        with self._tx() as cur:
            if owner is None:
                cur.execute("UPDATE outbox SET lease_until = 0 WHERE status = 'pending' AND lease_until > 0")
            else:
                cur.execute(
                    "UPDATE outbox SET lease_until = 0 WHERE status = 'pending' AND lease_owner = ?", (owner,)
                )
            return int(getattr(cur, "rowcount", 0) or 0)

    def outbox_items(self, status: OutboxStatus | None = None) -> list[OutboxItem]:
        with self._tx() as cur:
            if status is None:
                cur.execute(f"SELECT {OUTBOX_COLUMNS} FROM outbox ORDER BY id")
            else:
                cur.execute(f"SELECT {OUTBOX_COLUMNS} FROM outbox WHERE status = ? ORDER BY id", (status,))
            rows = cur.fetchall()
        return [_item(r) for r in rows]

    def outbox_counts(self) -> dict[str, int]:
        with self._tx() as cur:
            cur.execute("SELECT status, COUNT(*) FROM outbox GROUP BY status")
            rows = cur.fetchall()
        return {str(s): int(c) for s, c in rows}

    def prune_outbox(self, before: float) -> int:
        """Delete delivered and failed items finished before `before` (bounded storage)."""
        with self._tx() as cur:
            cur.execute("DELETE FROM outbox WHERE status <> 'pending' AND delivered_at < ?", (before,))
            return int(getattr(cur, "rowcount", 0) or 0)


def _item(row: Sequence[Any]) -> OutboxItem:
    (id_, fp, thread_key, target, event, payload, created, status, attempts, next_at, delivered, err) = row
    return OutboxItem(
        id=int(id_),
        fingerprint=fp,
        thread_key=thread_key,
        target=target,
        event=event,
        payload=json.loads(payload),
        created_at=float(created),
        status=status,
        attempts=int(attempts),
        next_attempt_at=float(next_at),
        delivered_at=None if delivered is None else float(delivered),
        last_error=err,
    )
