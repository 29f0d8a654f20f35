"""Reads for the parity link: entity keys to sample, current online values, offline history.

Every read is bounded (at most the sampled keys, or `max_rows` offline rows) and time-limited
(socket timeout on Redis, connect and statement timeouts on SQL; SQL reads run in READ ONLY
transactions). A failing store raises `StoreError` with a message free of secrets; the link turns
it into an error result and `source_up=0`. Frames come back with `__entity`, `__ts` (epoch
seconds) and the feature columns.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from dqmon.checks.timecols import epoch_seconds
from dqmon.config.links import ParquetOffline, RedisOnline, SqlOffline, SqlOnline
from dqmon.errors import DqmonError
from dqmon.pipeline.asof import ENTITY, TS
from dqmon.secrets import Redactor


class StoreError(DqmonError):
    """A store could not be read (down, timed out, misconfigured)."""


def _with_epoch(frame: pl.DataFrame) -> pl.DataFrame:
    """`__ts` as epoch seconds: a datetime, an ISO string, or epoch s/ms/µs/ns (Redis holds strings)."""
    dtype = frame.schema[TS]
    ts = epoch_seconds(TS, dtype)
    if dtype == pl.String:
        numeric = frame.select(pl.col(TS).cast(pl.Float64, strict=False).alias("__n"))
        frame = frame.with_columns(numeric.to_series())
        ts = pl.coalesce(epoch_seconds("__n", pl.Float64()), ts)
    return frame.with_columns(ts.alias(TS), pl.col(ENTITY).cast(pl.String)).drop("__n", strict=False)


def _relation(name: str) -> Any:
    from psycopg import sql

    return sql.SQL(".").join(sql.Identifier(part) for part in name.split("."))


@contextlib.contextmanager
def _read_only(dsn: str, timeout: float, what: str) -> Iterator[Any]:
    """A cursor in a READ ONLY transaction with a statement timeout; errors become StoreError."""
    import psycopg

    redactor = Redactor([dsn])
    try:
        with psycopg.connect(dsn, connect_timeout=max(1, int(timeout)), application_name="dqmon") as conn:
            conn.read_only = True
            with conn.transaction(), conn.cursor() as cur:
                cur.execute(
                    "SELECT set_config('statement_timeout', %s, true), set_config('TimeZone', 'UTC', true)",
                    (str(max(1, int(timeout * 1000))),),
                )
                yield cur
    except psycopg.errors.QueryCanceled:
        raise StoreError(f"{what}: statement timeout of {timeout:g}s exceeded") from None
    except psycopg.Error as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise StoreError(f"{what}: {redactor.redact(first)[:300]}") from None


class RedisOnlineStore:
    """Hashes `key_prefix + entity` holding the features and a timestamp field."""

    def __init__(self, config: RedisOnline, features: Sequence[str]) -> None:
        import redis

        self.config = config
        self.features = list(features)
        timeout = config.socket_timeout.total_seconds()
        self._redactor = Redactor([config.url.get_secret_value()])
        self.client = redis.Redis.from_url(
            config.url.get_secret_value(),
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            decode_responses=True,
            retry_on_timeout=False,
        )

    def read(self, keys: Sequence[str]) -> pl.DataFrame:
        import redis

        fields = [self.config.timestamp_field, *self.features]
        try:
            pipe = self.client.pipeline(transaction=False)
            for key in keys:  # one round trip for all N keys
                pipe.hmget(self.config.key_prefix + key, fields)
            rows = pipe.execute()
        except redis.RedisError as exc:
            raise StoreError(f"online store (redis): {self._redactor.redact(str(exc))[:300]}") from None
        columns: dict[str, list[Any]] = {name: [r[i] for r in rows] for i, name in enumerate(fields)}
        frame = pl.DataFrame(
            {ENTITY: list(keys), TS: columns.pop(self.config.timestamp_field), **columns},
            schema={ENTITY: pl.String, TS: pl.String, **dict.fromkeys(self.features, pl.String)},
        )
        present = pl.any_horizontal(pl.col(c).is_not_null() for c in (TS, *self.features))
        return _with_epoch(frame.filter(present))

    def close(self) -> None:
        self.client.close()


class SqlOnlineStore:
    def __init__(self, config: SqlOnline, entity: str, features: Sequence[str]) -> None:
        self.config = config
        self.entity = entity
        self.features = list(features)

    def read(self, keys: Sequence[str]) -> pl.DataFrame:
        from psycopg import sql

        query = sql.SQL("SELECT {e}::text, {ts}, {f} FROM {rel} WHERE {e}::text = ANY(%s) LIMIT %s").format(
            e=sql.Identifier(self.entity),
            ts=sql.Identifier(self.config.timestamp_column),
            f=sql.SQL(", ").join(sql.Identifier(f) for f in self.features),
            rel=_relation(self.config.relation),
        )
        dsn = self.config.dsn.get_secret_value()
        with _read_only(dsn, self.config.timeout.total_seconds(), "online store (sql)") as cur:
            cur.execute(query, (list(keys), len(keys)))
            rows = cur.fetchall()
        return _with_epoch(pl.DataFrame(rows, schema=[ENTITY, TS, *self.features], orient="row"))

    def close(self) -> None:
        return None


class SqlOfflineStore:
    def __init__(self, config: SqlOffline, entity: str, features: Sequence[str]) -> None:
        self.config = config
        self.entity = entity
        self.features = list(features)

    def _run(self, query: Any, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        dsn = self.config.dsn.get_secret_value()
        with _read_only(dsn, self.config.timeout.total_seconds(), "offline store (sql)") as cur:
            cur.execute(query, params)
            rows: list[tuple[Any, ...]] = cur.fetchall()
        return rows

    def sample_keys(self, n: int) -> list[str]:
        from psycopg import sql

        query = sql.SQL(
            "SELECT k FROM (SELECT DISTINCT {e}::text AS k FROM {t}) d ORDER BY random() LIMIT %s"
        ).format(e=sql.Identifier(self.entity), t=_relation(self.config.table))
        return [str(r[0]) for r in self._run(query, (n,))]

    def history(self, keys: Sequence[str], until: float) -> pl.DataFrame:
        """Rows of these keys at or before `until`, newest first, at most `max_rows`."""
        from psycopg import sql

        query = sql.SQL(
            "SELECT {e}::text, {ts}, {f} FROM {t} WHERE {e}::text = ANY(%s) AND {ts} <= %s "
            "ORDER BY {ts} DESC LIMIT %s"
        ).format(
            e=sql.Identifier(self.entity),
            ts=sql.Identifier(self.config.timestamp_column),
            f=sql.SQL(", ").join(sql.Identifier(f) for f in self.features),
            t=_relation(self.config.table),
        )
        rows = self._run(query, (list(keys), datetime.fromtimestamp(until, UTC), self.config.max_rows))
        return _with_epoch(pl.DataFrame(rows, schema=[ENTITY, TS, *self.features], orient="row"))


class ParquetOfflineStore:
    def __init__(self, config: ParquetOffline, entity: str, features: Sequence[str], base_dir: Path) -> None:
        self.config = config
        self.entity = entity
        self.features = list(features)
        path = Path(config.path)
        self.path = str(path if path.is_absolute() else base_dir / path)

    def _scan(self) -> pl.LazyFrame:
        try:
            return pl.scan_parquet(self.path)
        except (OSError, pl.exceptions.PolarsError) as exc:
            raise StoreError(f"offline store (parquet): {exc}") from None

    def sample_keys(self, n: int) -> list[str]:
        try:
            keys = self._scan().select(pl.col(self.entity).cast(pl.String).unique()).collect()
        except (OSError, pl.exceptions.PolarsError) as exc:
            raise StoreError(f"offline store (parquet): {str(exc)[:300]}") from None
        values = keys.get_column(self.entity).drop_nulls().to_list()
        rng = np.random.default_rng()
        return [str(v) for v in rng.permutation(np.array(values, dtype=object))[:n]]

    def history(self, keys: Sequence[str], until: float) -> pl.DataFrame:
        ts = self.config.timestamp_column
        try:
            lazy = self._scan()
            schema = lazy.collect_schema()
            frame = (
                lazy.select(
                    pl.col(self.entity).cast(pl.String).alias(ENTITY),
                    epoch_seconds(ts, schema[ts]).alias(TS),
                    *[pl.col(f) for f in self.features],
                )
                .filter(pl.col(ENTITY).is_in(list(keys)) & (pl.col(TS) <= until))
                .collect()
            )
        except (OSError, pl.exceptions.PolarsError, TypeError) as exc:
            raise StoreError(f"offline store (parquet): {str(exc)[:300]}") from None
        return frame
