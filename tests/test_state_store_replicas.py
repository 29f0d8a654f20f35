"""Replicas sharing one outbox in the real PostgreSQL: delivery workers built the way `dqmon run`
builds them (`build_delivery` with DQMON_STATE_DSN set) send every notification to the Slack
API test double exactly once, replies in their parent's thread, and a dead replica's lease
delays its item until the lease expires instead of being released by a starting replica.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from dqmon.alerts.delivery import DeliveryWorker
from dqmon.alerts.manager import AlertManager
from dqmon.alerts.setup import build_delivery
from dqmon.config.settings import Settings
from dqmon.results import Status
from dqmon.state.postgres import PostgresStateStore
from tests.fixtures.slack_api import TOKEN, FakeSlack
from tests.test_notifier_slack import FAST, failing_all, make_pipeline, result, wait_for

pytestmark = pytest.mark.postgres
T0 = 1_800_000_000.0


@pytest.fixture
def replicas(pg_dsn: str, pg_schema: str) -> Iterator[list[PostgresStateStore]]:
    stores = [PostgresStateStore(pg_dsn, schema=pg_schema) for _ in range(2)]
    yield stores
    for s in stores:
        s.close()


def replica_worker(store: PostgresStateStore, slack: FakeSlack, pg_dsn: str) -> DeliveryWorker:
    settings = Settings(state_dsn=pg_dsn, slack_token=TOKEN, slack_api_url=slack.api_url)
    worker = build_delivery(settings, store, concurrency=2, retry=FAST)
    worker.poll_interval = 0.05
    return worker


def test_two_replicas_deliver_each_notification_once_in_thread_order(
    replicas: list[PostgresStateStore], slack_api: FakeSlack, pg_dsn: str
) -> None:
    slack_api.delay = 0.1  # slow enough that both replicas hold items at once
    pipeline = make_pipeline(routes=[{"notify": [f"slack:#c{i}" for i in range(4)]}])
    manager = AlertManager(pipeline, replicas[0], slack_configured=True)  # one manager per pipeline
    manager.observe(failing_all(), T0)  # 3 alerts x 4 channels
    manager.observe([result("freshness", Status.OK, slo="features-fresh")], T0 + 60)  # 4 resolves
    workers = [replica_worker(s, slack_api, pg_dsn) for s in replicas]
    for w in workers:
        w.start()
    try:
        wait_for(lambda: all(w.pending() == 0 for w in workers), timeout=30)
    finally:
        for w in workers:
            w.stop()
    parents = slack_api.top_level()
    assert len(parents) == 12
    assert len({(p.body["channel"], p.body["text"]) for p in parents}) == 12
    resolves = [c for c in slack_api.posts() if c.body.get("thread_ts")]
    assert len(resolves) == 4
    # each resolve answers a different freshness parent: one per channel, none elsewhere
    freshness_parents = {
        ts for ts, m in slack_api.messages.items() if not m.get("thread_ts") and "/freshness:" in m["text"]
    }
    assert len(freshness_parents) == 4
    assert sorted(c.body["thread_ts"] for c in resolves) == sorted(freshness_parents)
    assert len(slack_api.updates()) == 4
    delivered = [w.stats.get("slack", "delivered") for w in workers]
    assert sum(delivered) == 16
    assert all(n > 0 for n in delivered)  # both replicas took part
    assert replicas[1].outbox_counts() == {"delivered": 16}


def test_a_dead_replicas_lease_expires_and_is_not_released_by_another(
    replicas: list[PostgresStateStore], slack_api: FakeSlack, pg_dsn: str
) -> None:
    manager = AlertManager(make_pipeline(), replicas[0], slack_configured=True)
    manager.observe([result("volume", Status.FAIL)], T0)
    lease = 2.0
    (item,) = replicas[0].claim_outbox(time.time(), 10, lease, owner="replica-that-died")
    leased_at = time.monotonic()
    worker = replica_worker(replicas[1], slack_api, pg_dsn)
    worker.start()
    try:
        time.sleep(lease / 2)
        assert slack_api.posts() == []  # still leased by the dead replica
        wait_for(lambda: len(slack_api.posts()) == 1, timeout=10)
        waited = time.monotonic() - leased_at
    finally:
        worker.stop()
    assert waited >= lease * 0.9
    (done,) = replicas[1].outbox_items("delivered")
    assert done.id == item.id
    assert worker.stats.snapshot() == {("slack", "delivered"): 1}
