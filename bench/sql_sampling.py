"""SQL source cost per poll: what the server reads for each sample method on a large view.

Builds a materialized view of `--rows` rows (default 2M, ~1 s with generate_series), runs one poll
of a SqlSource per method, then `EXPLAIN (ANALYZE, BUFFERS)` of exactly the statements that poll
sent (SqlSource.last_statements), and prints buffers, temp blocks and rows read per poll next to
the statement dqmon sent before issue 15 (`count(*) OVER ()` over the whole view).

    python bench/sql_sampling.py [--rows 2000000] [--row-limit 10000] [--dsn postgresql://...]

tests/test_sql_sampling.py imports the view, the methods and the EXPLAIN reader from here, so the
figures in docs/performance.md and the test bounds come from the same code.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql

from dqmon.batch import MicroBatch
from dqmon.config.models import Pipeline
from dqmon.sources.sql import SqlSource
from dqmon.sources.sql_sampling import Statement
from dqmon.state.store import MemoryStateStore

VIEW = "big_mv"
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)  # updated_at of row g is EPOCH + g ms
CURSOR_BACKLOG = 5_000  # rows behind the newest where the steady-state cursor poll starts

# Each method's source settings (the view's `id` is its key, `updated_at` its event time).
METHODS: dict[str, dict[str, Any]] = {
    "system": {"relation": VIEW, "sample": {"method": "system"}},
    "bernoulli": {"relation": VIEW, "sample": {"method": "bernoulli"}},
    "key_ranges": {"relation": VIEW, "sample": {"method": "key_ranges", "key": "id", "ranges": 20}},
    "cursor": {"relation": VIEW, "sample": {"method": "cursor", "column": "updated_at"}},
    "full": {"relation": VIEW, "sample": {"method": "full"}},
    "first": {"query": f"SELECT * FROM {VIEW}"},
}

_SCANS = ("Seq Scan", "Sample Scan", "Index Scan", "Index Only Scan", "Bitmap Heap Scan", "Tid Range Scan")


@dataclass(frozen=True)
class ViewInfo:
    rows: int
    pages: int
    rows_per_page: int


@dataclass(frozen=True)
class Cost:
    """What the server did for some statements, from EXPLAIN (ANALYZE, BUFFERS)."""

    buffers: int = 0  # shared blocks hit or read
    temp_blocks: int = 0  # temp blocks read or written (a spill)
    rows_scanned: int = 0  # rows the scan nodes produced or filtered out
    rows_returned: int = 0

    def __add__(self, other: Cost) -> Cost:
        return Cost(
            self.buffers + other.buffers,
            self.temp_blocks + other.temp_blocks,
            self.rows_scanned + other.rows_scanned,
            self.rows_returned + other.rows_returned,
        )


def create_view(conn: psycopg.Connection[Any], rows: int) -> ViewInfo:
    """A view whose physical order is its key order and correlated with `x` (x = id / rows)."""
    conn.execute(
        sql.SQL(
            "CREATE MATERIALIZED VIEW {v} AS SELECT g::bigint AS id, g::float8 / {n} AS x,"
            " (g % 100)::int AS seg, {epoch}::timestamptz + g * interval '1 millisecond' AS updated_at"
            " FROM generate_series(1, {n}) AS g"
        ).format(v=sql.Identifier(VIEW), n=sql.Literal(rows), epoch=sql.Literal(EPOCH))
    )
    conn.execute(sql.SQL("CREATE UNIQUE INDEX ON {} (id)").format(sql.Identifier(VIEW)))
    conn.execute(sql.SQL("CREATE INDEX ON {} (updated_at)").format(sql.Identifier(VIEW)))
    conn.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(VIEW)))
    row = conn.execute(
        "SELECT relpages, (SELECT count(*) FROM big_mv WHERE ctid < '(1,0)'::tid)"
        " FROM pg_class WHERE oid = 'big_mv'::regclass"
    ).fetchone()
    assert row is not None
    return ViewInfo(rows=rows, pages=int(row[0]), rows_per_page=int(row[1]))


def explain(conn: psycopg.Connection[Any], statement: Statement) -> Cost:
    query = sql.SQL("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {}").format(statement.query)
    row = conn.execute(query, statement.params).fetchone()
    assert row is not None
    doc = row[0] if isinstance(row[0], list) else json.loads(row[0])
    root = doc[0]["Plan"]
    scanned = 0
    stack = [root]
    while stack:
        node = stack.pop()
        if node["Node Type"] in _SCANS:
            scanned += int(node["Actual Rows"] * node["Actual Loops"]) + int(
                node.get("Rows Removed by Filter", 0)
            )
        stack.extend(node.get("Plans", []))
    return Cost(
        buffers=int(root.get("Shared Hit Blocks", 0) + root.get("Shared Read Blocks", 0)),
        temp_blocks=int(root.get("Temp Read Blocks", 0) + root.get("Temp Written Blocks", 0)),
        rows_scanned=scanned,
        rows_returned=int(root["Actual Rows"] * root["Actual Loops"]),
    )


def make_source(dsn: str, method: str, *, row_limit: int, rows: int, seed: int = 7) -> SqlSource:
    """A started source for `method` on the view; the cursor starts CURSOR_BACKLOG rows behind."""
    settings = {"kind": "sql", "dsn": dsn, "row_limit": row_limit, "timeout": "30s", **METHODS[method]}
    if "sample" in settings:
        settings["sample"] = {**settings["sample"], "seed": seed}
    pipeline = Pipeline.model_validate(
        {
            "pipeline": "bench",
            "datasets": [
                {"name": VIEW, "source": settings, "event_time": "updated_at", "max_rows": row_limit}
            ],
        }
    )
    store = MemoryStateStore()
    if method == "cursor":
        position = EPOCH + timedelta(milliseconds=rows - CURSOR_BACKLOG)
        key = f"bench/{VIEW}/source/sql/cursor"
        store.put_state(key, {"type": "datetime", "value": position.isoformat(), "column": "updated_at"})
    src = SqlSource(pipeline, pipeline.datasets[0], store=store)
    src.start()
    return src


def old_statement(row_limit: int) -> Statement:
    """What every poll sent before issue 15."""
    query = sql.SQL("SELECT q.*, count(*) OVER () AS n FROM (SELECT * FROM {}) AS q LIMIT %s").format(
        sql.Identifier(VIEW)
    )
    return Statement("sample", query, (row_limit,))


def poll_cost(conn: psycopg.Connection[Any], src: SqlSource) -> tuple[Cost, MicroBatch, float]:
    """One poll's cost summed over the statements it sent, its batch and wall time."""
    started = time.perf_counter()
    batch = src.poll_batch(0)
    elapsed = time.perf_counter() - started
    if batch is None:
        raise RuntimeError(f"poll failed: {src.facts().error}")
    total = Cost()
    for statement in src.last_statements:
        total += explain(conn, statement)
    return total, batch, elapsed


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--row-limit", type=int, default=10_000)
    parser.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)  # the sources' one-time warnings would split the table
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(args.dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    params = psycopg.conninfo.conninfo_to_dict(args.dsn)
    params["options"] = f"-c search_path={schema}"
    dsn = psycopg.conninfo.make_conninfo(**params)  # type: ignore[arg-type]
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            started = time.perf_counter()
            info = create_view(conn, args.rows)
            print(
                f"view: {info.rows:,} rows, {info.pages:,} pages ({info.rows_per_page} rows/page), "
                f"built in {time.perf_counter() - started:.1f} s; row_limit {args.row_limit:,}\n"
            )
            columns = ["method", "statements", "buffers", "temp blocks", "rows scanned", "rows sampled"]
            print("| " + " | ".join([*columns, "rows_seen", "poll"]) + " |")
            print("|---|---|---|---|---|---|---|---|")
            for method in METHODS:
                src = make_source(dsn, method, row_limit=args.row_limit, rows=args.rows)
                try:
                    cost, batch, elapsed = poll_cost(conn, src)
                    purposes = ", ".join(s.purpose for s in src.last_statements)
                finally:
                    src.close()
                print(
                    f"| {method} | {purposes} | {cost.buffers:,} | {cost.temp_blocks:,} | "
                    f"{cost.rows_scanned:,} | {batch.rows_sampled:,} | "
                    f"{batch.rows_seen:,} ({batch.rows_seen_basis}) | {elapsed * 1000:.0f} ms |"
                )
            before = old_statement(args.row_limit)
            started = time.perf_counter()
            conn.execute(before.query, before.params).fetchall()
            elapsed = time.perf_counter() - started
            old = explain(conn, before)
            print(
                f"| before (count(*) OVER ()) | sample | {old.buffers:,} | {old.temp_blocks:,} | "
                f"{old.rows_scanned:,} | {old.rows_returned:,} | {args.rows:,} (window count) "
                f"| {elapsed * 1000:.0f} ms |"
            )
    finally:
        with psycopg.connect(args.dsn, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


if __name__ == "__main__":
    main()
