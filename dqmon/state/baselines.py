"""Baselines and window-count history as SQL shared by the SQLite and PostgreSQL stores."""

from __future__ import annotations

import json
from abc import abstractmethod
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any

from dqmon.state.outbox import Cursor


def baseline_schema_sql(id_column: str, real: str) -> list[str]:
    """DDL in the store's dialect: `id_column` for the sequence, `real` for floating point."""
    return [
        "CREATE TABLE IF NOT EXISTS baselines ("
        " key TEXT PRIMARY KEY, value TEXT NOT NULL, updated_at TEXT NOT NULL)",
        f"CREATE TABLE IF NOT EXISTS window_counts (seq {id_column},"
        f" series TEXT NOT NULL, at TEXT NOT NULL, count {real} NOT NULL)",
        "CREATE INDEX IF NOT EXISTS window_counts_series ON window_counts(series, seq)",
    ]


class BaselineTablesMixin:
    """Key-value state (table `baselines`, its historical name) and window counts over `_tx()`,
    with `?` placeholders."""

    @abstractmethod
    def _tx(self) -> AbstractContextManager[Cursor]: ...

    def get_state(self, key: str) -> Any | None:
        with self._tx() as cur:
            cur.execute("SELECT value FROM baselines WHERE key = ?", (key,))
            rows = cur.fetchall()
        return json.loads(rows[0][0]) if rows else None

    def put_state(self, key: str, value: Any) -> None:
        with self._tx() as cur:
            cur.execute(
                "INSERT INTO baselines(key, value, updated_at) VALUES (?, ?, ?) ON CONFLICT(key)"
                " DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                (key, json.dumps(value), datetime.now(UTC).isoformat()),
            )

    def append_count(self, series: str, at: datetime, count: float, keep: int) -> None:
        with self._tx() as cur:
            cur.execute(
                "INSERT INTO window_counts(series, at, count) VALUES (?, ?, ?)",
                (series, at.isoformat(), float(count)),
            )
            cur.execute(
                "DELETE FROM window_counts WHERE series = ? AND seq <= ("
                " SELECT seq FROM window_counts WHERE series = ? ORDER BY seq DESC LIMIT 1 OFFSET ?)",
                (series, series, keep),
            )

    def counts(self, series: str, limit: int) -> list[tuple[datetime, float]]:
        with self._tx() as cur:
            cur.execute(
                "SELECT at, count FROM window_counts WHERE series = ? ORDER BY seq DESC LIMIT ?",
                (series, limit),
            )
            rows = cur.fetchall()
        return [(datetime.fromisoformat(at), float(c)) for at, c in reversed(rows)]
