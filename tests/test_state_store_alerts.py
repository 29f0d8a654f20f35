"""Alert states, threads and outbox: the same contract on SQLite, in-memory and the real PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from dqmon.state.outbox import NewNotification, StoredAlertState
from dqmon.state.postgres import PostgresStateStore
from dqmon.state.store import MemoryStateStore, SqliteStateStore, StateStore


@pytest.fixture(params=["sqlite", "memory", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StateStore]:
    if request.param == "sqlite":
        s: StateStore = SqliteStateStore(tmp_path / "state.db")
    elif request.param == "memory":
        s = MemoryStateStore()
    else:
        s = PostgresStateStore(request.getfixturevalue("pg_dsn"), schema=request.getfixturevalue("pg_schema"))
    yield s
    s.close()


def note(
    fp: str, thread: str, target: str = "log", event: str = "firing", at: float = 100.0
) -> NewNotification:
    return NewNotification(fp, thread, target, event, {"check": fp, "value": 1.5}, at)


def test_baselines_and_counts_round_trip(store: StateStore) -> None:
    store.put_state("a/b", {"x": [1, 2]})
    store.put_state("a/b", {"x": [3]})
    assert store.get_state("a/b") == {"x": [3]}
    assert store.get_state("missing") is None
    for i in range(5):
        store.append_count("s", datetime(2026, 1, 1, 0, i, tzinfo=UTC), float(i), keep=3)
    assert [c for _, c in store.counts("s", 10)] == [2.0, 3.0, 4.0]


def test_alert_states_and_notifications_commit_together(store: StateStore) -> None:
    st = StoredAlertState("fp1", "pipe", "firing", {"labels": {"check": "c"}, "phase": "firing"})
    store.commit_alerts([st], [note("fp1", "fp1:1"), note("fp1", "fp1:1", target="slack:#a")], now=100.0)
    loaded = store.load_alert_states("pipe")
    assert set(loaded) == {"fp1"}
    assert loaded["fp1"].state == "firing"
    assert loaded["fp1"].body["labels"] == {"check": "c"}
    assert store.load_alert_states("other") == {}
    items = store.outbox_items("pending")
    assert [(i.target, i.payload["value"]) for i in items] == [("log", 1.5), ("slack:#a", 1.5)]
    store.commit_alerts([StoredAlertState("fp1", "pipe", "resolved", {"phase": "resolved"})], [], now=101.0)
    assert store.load_alert_states("pipe")["fp1"].state == "resolved"


def test_claim_orders_one_thread_and_leases(store: StateStore) -> None:
    store.commit_alerts([], [note("a", "a:1"), note("a", "a:1", event="resolved"), note("b", "b:1")], 100.0)
    first = store.claim_outbox(now=100.0, limit=10, lease_seconds=30, owner="w1")
    # the resolve of thread a:1 waits for its firing message; b:1 goes in parallel
    assert [(i.thread_key, i.event) for i in first] == [("a:1", "firing"), ("b:1", "firing")]
    assert store.claim_outbox(now=101.0, limit=10, lease_seconds=30, owner="w2") == []  # leased
    store.complete_outbox(first[0], now=102.0, thread_ref="C1 123.4")
    assert store.get_thread("a:1", "log") == "C1 123.4"
    nxt = store.claim_outbox(now=102.0, limit=10, lease_seconds=30, owner="w1")
    assert [(i.thread_key, i.event) for i in nxt] == [("a:1", "resolved")]
    # an expired lease makes b:1 claimable again (its worker died)
    again = store.claim_outbox(now=200.0, limit=10, lease_seconds=30, owner="w3")
    assert {i.thread_key for i in again} == {"b:1", "a:1"}


def test_retry_fail_release_and_prune(store: StateStore) -> None:
    store.commit_alerts([], [note("a", "a:1"), note("b", "b:1")], 100.0)
    a, b = store.claim_outbox(100.0, 10, 30, "w")
    store.retry_outbox(a, next_attempt_at=150.0, error="HTTP 500")
    store.fail_outbox(b, now=101.0, error="HTTP 404")
    assert store.claim_outbox(120.0, 10, 30, "w") == []  # not due yet
    (again,) = store.claim_outbox(150.0, 10, 30, "w")
    assert again.attempts == 1
    assert again.last_error == "HTTP 500"
    assert store.release_outbox_leases() == 1
    assert store.outbox_counts() == {"pending": 1, "failed": 1}
    assert store.prune_outbox(before=200.0) == 1
    assert [i.fingerprint for i in store.outbox_items()] == ["a"]


def test_concurrent_claims_never_hand_out_an_item_twice(store: StateStore) -> None:
    store.commit_alerts([], [note(f"f{i}", f"t{i}") for i in range(60)], 100.0)
    claimed: list[int] = []
    lock = threading.Lock()

    def worker(name: str) -> None:
        while True:
            items = store.claim_outbox(100.0, 3, 30, name)
            if not items:
                return
            with lock:
                claimed.extend(i.id for i in items)
            for i in items:
                store.complete_outbox(i, 101.0, None)

    threads = [threading.Thread(target=worker, args=(f"w{n}",)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(claimed) == 60
    assert len(set(claimed)) == 60
    assert store.outbox_counts() == {"delivered": 60}


@pytest.mark.postgres
def test_postgres_errors_never_show_the_dsn(pg_dsn: str) -> None:
    from dqmon.errors import StateError

    secret_dsn = "postgresql://dqmon:hunter2-SECRET@127.0.0.1:1/nowhere"
    with pytest.raises(StateError) as info:
        PostgresStateStore(secret_dsn, connect_timeout=2)
    assert "hunter2" not in str(info.value)
    assert "nowhere" not in str(info.value)


@pytest.mark.postgres
def test_postgres_replicas_share_one_outbox_without_double_claims(pg_dsn: str, pg_schema: str) -> None:
    replicas = [PostgresStateStore(pg_dsn, schema=pg_schema) for _ in range(3)]
    replicas[0].commit_alerts([], [note(f"f{i}", f"t{i}") for i in range(90)], 100.0)
    claimed: list[int] = []
    lock = threading.Lock()

    def replica(store: StateStore, name: str) -> None:
        while items := store.claim_outbox(100.0, 4, 30, name):
            with lock:
                claimed.extend(i.id for i in items)
            for i in items:
                store.complete_outbox(i, 101.0, None)

    threads = [threading.Thread(target=replica, args=(s, f"r{n}")) for n, s in enumerate(replicas)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(claimed) == sorted(set(claimed))
    assert len(claimed) == 90
    for s in replicas:
        s.close()


def test_baselines_and_bounded_counts(store: StateStore) -> None:
    from datetime import UTC, datetime, timedelta

    assert store.get_state("p/d/schema") is None
    store.put_state("p/d/schema", {"fields": {"price": "number"}, "drift_since": None})
    store.put_state("p/d/schema", {"fields": {"price": "string"}, "drift_since": "x"})
    assert store.get_state("p/d/schema") == {"fields": {"price": "string"}, "drift_since": "x"}
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for i in range(12):
        store.append_count("p/d/volume/counts", start + timedelta(seconds=5 * i), i, keep=5)
    store.append_count("other", start, 99.0, keep=5)
    counts = store.counts("p/d/volume/counts", limit=100)
    assert [c for _, c in counts] == [7.0, 8.0, 9.0, 10.0, 11.0]
    assert counts[0][0] == start + timedelta(seconds=35)
    assert [c for _, c in store.counts("p/d/volume/counts", limit=2)] == [10.0, 11.0]
