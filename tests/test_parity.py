"""Online/offline parity: the as-of matching against a plain-Python reference (hypothesis), and the
link on real stores — Redis hashes or a PostgreSQL relation online, a PostgreSQL history table or
Parquet offline: exact at tolerance 0 on identical stores, the injected share of stale keys measured
within sampling error, a dead store an error result with source_up down."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import psycopg
import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st

from dqmon.config.loader import load_checks
from dqmon.config.settings import Settings
from dqmon.pipeline.asof import ENTITY, OFFLINE_TS, SUFFIX, TS, asof_match, compare
from dqmon.pipeline.evaluator import PipelineLinks
from dqmon.results import Status
from dqmon.runtime.wiring import secret_values

T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


# --------------------------------------------------------------------------- as-of matching


def _reference(online: list[tuple[str, float | None]], offline: list[tuple[str, float, int]]) -> list[Any]:
    """Plain Python: per online row, the value of the latest offline row of its entity at or before
    its time (the last one listed among equal times), or None."""
    out: list[Any] = []
    for entity, at in online:
        best: tuple[float, int] | None = None
        if at is not None:
            for position, (e, t, value) in enumerate(offline):
                if e == entity and t <= at and (best is None or (t, position) >= (best[0], best[2])):
                    best = (t, value, position)  # type: ignore[assignment]
        out.append(None if best is None else best[1])
    return out


entities = st.sampled_from(["a", "b", "c", "d"])
times = st.integers(0, 50).map(float)


@settings(max_examples=200, deadline=None)
@given(
    online=st.lists(st.tuples(entities, st.one_of(st.none(), times)), max_size=30),
    offline=st.lists(st.tuples(entities, times, st.integers(0, 1000)), max_size=60),
)
def test_asof_match_equals_the_plain_reference(
    online: list[tuple[str, float | None]], offline: list[tuple[str, float, int]]
) -> None:
    on = pl.DataFrame(
        {ENTITY: [e for e, _ in online], TS: [t for _, t in online], "f": [0] * len(online)},
        schema={ENTITY: pl.String, TS: pl.Float64, "f": pl.Int64},
    )
    off = pl.DataFrame(
        {ENTITY: [e for e, _, _ in offline], TS: [t for _, t, _ in offline], "f": [v for *_, v in offline]},
        schema={ENTITY: pl.String, TS: pl.Float64, "f": pl.Int64},
    )
    matched = asof_match(on, off, ["f"])
    assert matched.get_column(ENTITY).to_list() == [e for e, _ in online]  # online order kept
    assert matched.get_column("f" + SUFFIX).to_list() == _reference(online, offline)


def test_compare_applies_tolerances_and_lists_the_worst_keys_bounded() -> None:
    matched = pl.DataFrame(
        {
            ENTITY: ["a", "b", "c", "d", "e"],
            TS: [10.0] * 5,
            "x": [1.0, 2.0, 3.5, None, 9.0],
            "x" + SUFFIX: [1.0, 2.05, 3.0, 4.0, 9.0],
            OFFLINE_TS: [5.0, 5.0, 5.0, 5.0, None],
        }
    )
    [exact] = compare(matched, ["x"], worst=2)
    # b, c differ; d is null online only; e has no offline row at or before its time
    assert (exact.mismatches, exact.compared, len(exact.worst)) == (4, 5, 2)
    [loose] = compare(matched, ["x"], tolerance=0.1)
    assert loose.mismatches == 3 and {w["key"] for w in loose.worst} == {"c", "d", "e"}
    [relative] = compare(matched, ["x"], rel_tolerance=0.2)
    assert relative.mismatches == 2


# --------------------------------------------------------------------------- on real stores

KEYS = [f"acct-{i:03d}" for i in range(200)]


def _history(conn: psycopg.Connection[Any], schema: str) -> dict[str, tuple[datetime, float, float]]:
    """An offline history table: 3 rows per key, the newest at T0 + key offset; returns the newest."""
    conn.execute(
        f"CREATE TABLE {schema}.features_history (account text, event_ts timestamptz, "
        "spend_1h double precision, txn_count_1h double precision)"
    )
    rng = random.Random(3)
    rows, newest = [], {}
    for i, key in enumerate(KEYS):
        for age in (120, 60, 0):
            at = T0 + timedelta(seconds=i - age)
            values = (round(rng.uniform(0, 500), 4), float(rng.randint(0, 40)))
            rows.append((key, at, *values))
            newest[key] = (at, *values)
    with conn.cursor() as cur:
        cur.executemany(f"INSERT INTO {schema}.features_history VALUES (%s, %s, %s, %s)", rows)
    return newest


def _fill_redis(
    url: str, prefix: str, newest: dict[str, tuple[datetime, float, float]], stale: set[str]
) -> None:
    client = redis.Redis.from_url(url)
    pipe = client.pipeline(transaction=False)
    for key, (at, spend, count) in newest.items():
        # a stale key keeps serving an older value under the current timestamp
        served = spend + 17.0 if key in stale else spend
        pipe.hset(
            prefix + key, mapping={"event_ts": at.isoformat(), "spend_1h": served, "txn_count_1h": count}
        )
    pipe.execute()
    client.close()


def _links(tmp: Path, online: str, offline: str, extra: str = "") -> PipelineLinks:
    (tmp / "p.yaml").write_text(
        f"""\
pipeline: p
datasets:
  - name: trades
    source: {{kind: replay, path: x.ndjson}}
links:
  - parity:
      entity: account
      features: [spend_1h, txn_count_1h]
      online: {online}
      offline: {offline}
      every: 30s
{extra}"""
    )
    config = load_checks(tmp, env={})
    return PipelineLinks(config.pipeline("p"), base_dir=tmp, clock=lambda: T0 + timedelta(minutes=5))


def _poll(links: PipelineLinks) -> Any:
    [link] = links.scheduled()
    [result] = link.poll(T0 + timedelta(minutes=5))
    return link, result


@pytest.mark.postgres
def test_identical_stores_match_exactly_at_tolerance_zero(
    tmp_path: Path, pg_conn: Any, pg_schema: str, pg_dsn: str, redis_url: str, redis_prefix: str
) -> None:
    newest = _history(pg_conn, pg_schema)
    _fill_redis(redis_url, redis_prefix, newest, stale=set())
    # half the keys hold their timestamp as epoch milliseconds, the common alternative to ISO text
    client = redis.Redis.from_url(redis_url)
    for key in KEYS[::2]:
        client.hset(redis_prefix + key, "event_ts", str(int(newest[key][0].timestamp() * 1000)))
    client.close()
    links = _links(
        tmp_path,
        f"{{kind: redis, url: '{redis_url}', key_prefix: '{redis_prefix}'}}",
        f"{{kind: sql, dsn: '{pg_dsn}', table: {pg_schema}.features_history}}",
        "      sample: 50\n",
    )
    link, result = _poll(links)
    assert result.status == Status.OK and result.value == 0.0, result.message
    assert result.dataset == "online_store" and link.source_up() is True
    assert result.details["sampled"] == 50 and result.details["missing_online"] == 0
    assert result.details["age_gap_seconds"]["gap_max"] == 0.0


@pytest.mark.postgres
def test_mismatch_rate_equals_the_injected_share_within_sampling_error(
    tmp_path: Path, pg_conn: Any, pg_schema: str, pg_dsn: str, redis_url: str, redis_prefix: str
) -> None:
    newest = _history(pg_conn, pg_schema)
    stale = set(random.Random(9).sample(KEYS, 50))  # a quarter of the keys serve stale values
    _fill_redis(redis_url, redis_prefix, newest, stale)
    links = _links(
        tmp_path,
        f"{{kind: redis, url: '{redis_url}', key_prefix: '{redis_prefix}'}}",
        f"{{kind: sql, dsn: '{pg_dsn}', table: {pg_schema}.features_history}}",
        "      sample: 80\n      tolerance: 0.001\n      max_mismatch_rate: 0.05\n"
        "      stage: feature server\n",
    )
    _link, result = _poll(links)
    rate = result.details["mismatch_rate"]
    # 80 of 200 keys without replacement: hypergeometric sd = sqrt(p(1-p)/n * (N-n)/(N-1))
    sd = math.sqrt(0.25 * 0.75 / 80 * (200 - 80) / 199)
    assert abs(rate["spend_1h"] - 0.25) < 4 * sd, rate
    assert rate["txn_count_1h"] == 0.0
    assert result.status == Status.FAIL and "stage feature server" in result.message
    worst = result.details["worst_keys"]["spend_1h"]
    assert len(worst) == 5 and all(w["key"] in stale and abs(w["diff"] - 17.0) < 1e-6 for w in worst)


@pytest.mark.postgres
def test_sql_online_relation_and_parquet_offline(
    tmp_path: Path, pg_conn: Any, pg_schema: str, pg_dsn: str
) -> None:
    newest = _history(pg_conn, pg_schema)
    pg_conn.execute(
        f"CREATE VIEW {pg_schema}.features_online AS SELECT DISTINCT ON (account) * "
        f"FROM {pg_schema}.features_history ORDER BY account, event_ts DESC"
    )
    history = pl.read_database(f"SELECT * FROM {pg_schema}.features_history", pg_conn)
    # the backfill rewrote one key's offline history: its newest value no longer matches
    history = history.with_columns(
        pl.when(
            (pl.col("account") == "acct-007")
            & (pl.col("event_ts") == pl.col("event_ts").max().over("account"))
        )
        .then(pl.col("spend_1h") + 1)
        .otherwise(pl.col("spend_1h"))
        .alias("spend_1h")
    )
    history.write_parquet(tmp_path / "history.parquet")
    keys = ", ".join(f"'{k}'" for k in list(newest)[:20])
    links = _links(
        tmp_path,
        f"{{kind: sql, dsn: '{pg_dsn}', relation: {pg_schema}.features_online, timeout: 2s}}",
        "{kind: parquet, path: history.parquet}",
        f"      keys: [{keys}]\n      sample: 20\n",
    )
    _link, result = _poll(links)
    assert result.details["mismatch_rate"] == {"spend_1h": 0.05, "txn_count_1h": 0.0}
    assert result.details["worst_keys"]["spend_1h"][0]["key"] == "acct-007"


def test_a_dead_online_store_is_an_error_result_and_source_down(tmp_path: Path) -> None:
    history = pl.DataFrame({"account": ["a"], "event_ts": [T0], "spend_1h": [1.0], "txn_count_1h": [1.0]})
    history.write_parquet(tmp_path / "history.parquet")
    links = _links(
        tmp_path,
        "{kind: redis, url: 'redis://:hunter2@127.0.0.1:1/0', socket_timeout: 1s}",
        "{kind: parquet, path: history.parquet}",
    )
    link, result = _poll(links)
    assert result.status == Status.ERROR and link.source_up() is False
    assert "online store (redis)" in result.message and "hunter2" not in result.message
    # the store URL is a secret the log redactor learns
    config = load_checks(tmp_path, env={})
    assert "redis://:hunter2@127.0.0.1:1/0" in secret_values(Settings(), config)


def test_max_age_catches_keys_the_online_store_stopped_updating(
    tmp_path: Path, redis_url: str, redis_prefix: str
) -> None:
    keys = [f"k{i}" for i in range(10)]
    old, new = T0 - timedelta(hours=1), T0
    history = pl.DataFrame(
        {
            "account": keys * 2,
            "event_ts": [old] * 10 + [new] * 10,
            "spend_1h": [1.0] * 10 + [2.0] * 10,
            "txn_count_1h": [1.0] * 20,
        }
    )
    history.write_parquet(tmp_path / "history.parquet")
    # three keys still serve the hour-old row: consistent with offline as of that time, but stale
    served = {k: (old, 1.0, 1.0) if k in ("k1", "k4", "k7") else (new, 2.0, 1.0) for k in keys}
    _fill_redis(redis_url, redis_prefix, served, stale=set())
    online = f"{{kind: redis, url: '{redis_url}', key_prefix: '{redis_prefix}'}}"
    offline = "{kind: parquet, path: history.parquet}"
    listed = ", ".join(keys)
    _link, without = _poll(_links(tmp_path, online, offline, f"      keys: [{listed}]\n      sample: 10\n"))
    assert without.status == Status.OK and without.value == 0.0
    _link, with_age = _poll(
        _links(tmp_path, online, offline, f"      keys: [{listed}]\n      sample: 10\n      max_age: 10m\n")
    )
    assert with_age.status == Status.FAIL and with_age.details["stale_rate"] == 0.3
    assert sorted(with_age.details["stale_keys"]) == ["k1", "k4", "k7"]
    assert "stale rows (older than 10m) for 30.0%" in with_age.message


def test_a_slow_online_store_is_cut_off_by_its_socket_timeout(tmp_path: Path) -> None:
    """A server that accepts and never answers: the poll ends with an error, not a hang."""
    import socket

    history = pl.DataFrame({"account": ["a"], "event_ts": [T0], "spend_1h": [1.0], "txn_count_1h": [1.0]})
    history.write_parquet(tmp_path / "history.parquet")
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        port = server.getsockname()[1]
        links = _links(
            tmp_path,
            f"{{kind: redis, url: 'redis://127.0.0.1:{port}/0', socket_timeout: 300ms}}",
            "{kind: parquet, path: history.parquet}",
            "      keys: [a]\n",
        )
        link, result = _poll(links)
    assert result.status == Status.ERROR and link.source_up() is False
    assert "online store (redis)" in result.message and "imeout" in result.message, result.message


@pytest.mark.postgres
def test_a_slow_sql_store_is_cancelled_by_its_statement_timeout(
    tmp_path: Path, pg_conn: Any, pg_schema: str, pg_dsn: str
) -> None:
    _history(pg_conn, pg_schema)
    pg_conn.execute(
        f"CREATE VIEW {pg_schema}.slow_online AS SELECT h.* FROM {pg_schema}.features_history h, pg_sleep(30)"
    )
    links = _links(
        tmp_path,
        f"{{kind: sql, dsn: '{pg_dsn}', relation: {pg_schema}.slow_online, timeout: 1s}}",
        f"{{kind: sql, dsn: '{pg_dsn}', table: {pg_schema}.features_history}}",
        "      keys: [acct-001]\n",
    )
    link, result = _poll(links)
    assert result.status == Status.ERROR and link.source_up() is False
    assert "statement timeout of 1s exceeded" in result.message, result.message
