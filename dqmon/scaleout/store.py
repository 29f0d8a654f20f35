"""The partials table in the shared PostgreSQL store (DQMON_STATE_DSN), and what the judge keeps.

* `scaleout_partials`: one row per (pipeline, dataset, window_start, partition, replica); a
  replica upserts its accumulated view of the window, so re-sending is idempotent.
* `scaleout_facts`: each replica's latest source facts per dataset (the judge's staleness sweep).
* `scaleout_judged`: windows already judged, claimed with an insert so a window is judged once
  even if two replicas briefly both believe they hold the lock; it carries the offsets counted
  so far per partition, so a new judge never counts a record twice across windows.

Its own connection (the state store's is busy with alert states and the outbox); the DSN is a
secret and never appears in errors.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # psycopg (libpq, ~20 MB RSS) loads only when scale-out is configured
    import psycopg

from dqmon.errors import StateError
from dqmon.scaleout.partials import Partial, decode, encode

SCHEMA = [
    "CREATE TABLE IF NOT EXISTS scaleout_partials ("
    " pipeline TEXT NOT NULL, dataset TEXT NOT NULL, window_start DOUBLE PRECISION NOT NULL,"
    " partition INTEGER NOT NULL, replica TEXT NOT NULL, window_end DOUBLE PRECISION NOT NULL,"
    " counters TEXT NOT NULL, rows BYTEA NOT NULL, updated_at DOUBLE PRECISION NOT NULL,"
    " PRIMARY KEY (pipeline, dataset, window_start, partition, replica))",
    "CREATE TABLE IF NOT EXISTS scaleout_facts ("
    " pipeline TEXT NOT NULL, dataset TEXT NOT NULL, replica TEXT NOT NULL, body TEXT NOT NULL,"
    " observed_at DOUBLE PRECISION NOT NULL, PRIMARY KEY (pipeline, dataset, replica))",
    "CREATE TABLE IF NOT EXISTS scaleout_judged ("
    " pipeline TEXT NOT NULL, dataset TEXT NOT NULL, window_start DOUBLE PRECISION NOT NULL,"
    " judge TEXT NOT NULL, judged_at DOUBLE PRECISION NOT NULL, through TEXT NOT NULL,"
    " PRIMARY KEY (pipeline, dataset, window_start))",
]


@dataclass(frozen=True)
class ReplicaFacts:
    replica: str
    observed_at: float
    body: Mapping[str, Any]


class PartialStore:
    def __init__(self, dsn: str, *, connect_timeout: float = 10.0) -> None:
        self._dsn = dsn
        self._timeout = connect_timeout
        self._lock = threading.Lock()
        self._conn: psycopg.Connection[Any] | None = None
        with self._cursor() as cur:
            from dqmon.state.postgres import DDL_LOCK_KEY

            cur.execute("SELECT pg_advisory_xact_lock(%s)", (DDL_LOCK_KEY,))  # replicas start together
            for statement in SCHEMA:
                cur.execute(statement)

    def __repr__(self) -> str:  # never show the DSN
        return "PartialStore()"

    @contextmanager
    def _cursor(self) -> Iterator[psycopg.Cursor[Any]]:
        import psycopg

        with self._lock:
            try:
                if self._conn is None or self._conn.closed or self._conn.broken:
                    self._conn = psycopg.connect(
                        self._dsn, autocommit=True, connect_timeout=int(self._timeout)
                    )
                with self._conn.transaction(), self._conn.cursor() as cur:
                    yield cur
            except psycopg.Error as exc:
                state = getattr(exc, "sqlstate", None)
                detail = type(exc).__name__ + (f" (SQLSTATE {state})" if state else "")
                raise StateError(f"scale-out partials store: {detail}") from None

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    # ------------------------------------------------------------------ replicas write
    def put_partials(self, pipeline: str, dataset: str, parts: Sequence[Partial], now: float) -> int:
        """Upsert; returns the bytes of rows written (for the cost metric)."""
        rows = []
        for part in parts:
            counters, blob = encode(part)
            key = (pipeline, dataset, part.window_start, part.partition, part.replica)
            rows.append((*key, part.window_end, counters, blob, now))
        with self._cursor() as cur:
            cur.executemany(  # pipelined: one round trip for the window's partitions
                "INSERT INTO scaleout_partials(pipeline, dataset, window_start, partition, replica,"
                " window_end, counters, rows, updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (pipeline, dataset, window_start, partition, replica) DO UPDATE SET"
                " window_end = excluded.window_end, counters = excluded.counters, rows = excluded.rows,"
                " updated_at = excluded.updated_at",
                rows,
            )
        return sum(len(r[6]) + len(r[7]) for r in rows)

    def put_facts(
        self, pipeline: str, dataset: str, replica: str, body: Mapping[str, Any], now: float
    ) -> None:
        with self._cursor() as cur:
            cur.execute(
                "INSERT INTO scaleout_facts(pipeline, dataset, replica, body, observed_at)"
                " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (pipeline, dataset, replica) DO UPDATE SET"
                " body = excluded.body, observed_at = excluded.observed_at",
                (pipeline, dataset, replica, json.dumps(body), now),
            )

    # ------------------------------------------------------------------ the judge reads
    def windows(self, pipeline: str, dataset: str, after: float) -> dict[float, dict[int, float]]:
        """Windows newer than `after` with partials: per partition reported, the latest window end
        a replica reached (a window the size bound closed early is not finished yet)."""
        with self._cursor() as cur:
            cur.execute(
                "SELECT window_start, partition, max(window_end) FROM scaleout_partials"
                " WHERE pipeline = %s AND dataset = %s AND window_start > %s"
                " GROUP BY window_start, partition ORDER BY window_start",
                (pipeline, dataset, after),
            )
            out: dict[float, dict[int, float]] = {}
            for start, partition, end in cur.fetchall():
                out.setdefault(float(start), {})[int(partition)] = float(end)
            return out

    def partials(self, pipeline: str, dataset: str, window_start: float) -> list[Partial]:
        with self._cursor() as cur:
            cur.execute(
                "SELECT partition, replica, counters, rows FROM scaleout_partials"
                " WHERE pipeline = %s AND dataset = %s AND window_start = %s",
                (pipeline, dataset, window_start),
            )
            rows = cur.fetchall()
        return [decode(int(p), window_start, str(r), str(c), bytes(b)) for p, r, c, b in rows]

    def facts(self, pipeline: str, dataset: str, since: float) -> list[ReplicaFacts]:
        with self._cursor() as cur:
            cur.execute(
                "SELECT replica, observed_at, body FROM scaleout_facts"
                " WHERE pipeline = %s AND dataset = %s AND observed_at >= %s",
                (pipeline, dataset, since),
            )
            return [ReplicaFacts(str(r), float(t), json.loads(b)) for r, t, b in cur.fetchall()]

    def last_judged(self, pipeline: str, dataset: str) -> tuple[float, dict[int, int]] | None:
        with self._cursor() as cur:
            cur.execute(
                "SELECT window_start, through FROM scaleout_judged WHERE pipeline = %s AND dataset = %s"
                " ORDER BY window_start DESC LIMIT 1",
                (pipeline, dataset),
            )
            row = cur.fetchone()
        if row is None:
            return None
        return float(row[0]), {int(k): int(v) for k, v in json.loads(row[1]).items()}

    def claim_window(
        self,
        pipeline: str,
        dataset: str,
        window_start: float,
        judge: str,
        through: Mapping[int, int],
        now: float,
    ) -> bool:
        """True if this judge is the first to judge the window (then it must publish the verdict)."""
        with self._cursor() as cur:
            cur.execute(
                "INSERT INTO scaleout_judged(pipeline, dataset, window_start, judge, judged_at, through)"
                " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                (pipeline, dataset, window_start, judge, now, json.dumps(through)),
            )
            return cur.rowcount == 1

    def drop_judged(self, pipeline: str, dataset: str, through_window: float) -> None:
        """Partials of judged windows are not needed any more (late re-sends land after retention)."""
        with self._cursor() as cur:
            cur.execute(
                "DELETE FROM scaleout_partials WHERE pipeline = %s AND dataset = %s AND window_start <= %s",
                (pipeline, dataset, through_window),
            )

    def prune(self, before: float) -> None:
        """Drop partials and judged marks of windows older than `before` (retention)."""
        with self._cursor() as cur:
            cur.execute("DELETE FROM scaleout_partials WHERE window_start < %s", (before,))
            # keep each dataset's newest judged mark: it carries the offsets counted so far
            cur.execute(
                "DELETE FROM scaleout_judged j WHERE window_start < %s AND window_start < ("
                " SELECT max(window_start) FROM scaleout_judged k"
                " WHERE k.pipeline = j.pipeline AND k.dataset = j.dataset)",
                (before,),
            )
            cur.execute("DELETE FROM scaleout_facts WHERE observed_at < %s", (before,))
