"""Notifiers configured the way a deployment configures them: DQMON_* environment variables and
`*_FILE` secrets (a mounted Kubernetes secret), built by `build_delivery(Settings(), store)` and
delivering to the Slack API test double (which checks the bot token and records headers) and
to the PagerDuty Events API test double (which checks the routing key).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from dqmon.alerts.delivery import DeliveryWorker
from dqmon.alerts.manager import AlertManager
from dqmon.alerts.setup import build_delivery
from dqmon.config.settings import Settings
from dqmon.results import Status
from dqmon.runtime.wiring import secret_values
from dqmon.state.store import SqliteStateStore
from tests.fixtures.pagerduty_api import OTHER_KEY, ROUTING_KEY, FakePagerDuty
from tests.fixtures.slack_api import TOKEN, FakeSlack
from tests.test_notifier_slack import FAST, make_pipeline, result, wait_for

T0 = 1_800_000_000.0
_ENV = (
    "DQMON_SLACK_TOKEN",
    "DQMON_SLACK_TOKEN_FILE",
    "DQMON_SLACK_WEBHOOK_URL",
    "DQMON_SLACK_WEBHOOK_URL_FILE",
    "DQMON_WEBHOOK_URLS",
    "DQMON_STATE_DSN",
    "DQMON_PAGERDUTY_ROUTING_KEY",
    "DQMON_PAGERDUTY_ROUTING_KEY_FILE",
    "DQMON_PAGERDUTY_ROUTING_KEYS",
    "DQMON_PAGERDUTY_API_URL",
)


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in _ENV:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStateStore]:
    s = SqliteStateStore(tmp_path / "state.db")
    yield s
    s.close()


def deliver(store: SqliteStateStore, routes: list[str]) -> DeliveryWorker:
    """Build the worker from the environment, fire one alert routed to `routes`, drain the outbox."""
    worker = build_delivery(Settings(), store, retry=FAST)
    worker.poll_interval = 0.05
    pipeline = make_pipeline(routes=[{"notify": routes}])
    manager = AlertManager(pipeline, store, slack_configured="slack" in worker.notifiers)
    manager.observe([result("volume", Status.FAIL)], T0)
    worker.start()
    try:
        wait_for(lambda: worker.pending() == 0)
    finally:
        worker.stop()
    return worker


def test_bot_token_file_and_webhook_urls_from_the_environment(
    env: pytest.MonkeyPatch, slack_api: FakeSlack, store: SqliteStateStore, tmp_path: Path
) -> None:
    token_file = tmp_path / "slack-token"
    token_file.write_text(TOKEN + "\n")  # mounted secrets often end with a newline
    env.setenv("DQMON_SLACK_TOKEN_FILE", str(token_file))
    env.setenv("DQMON_SLACK_API_URL", slack_api.api_url)
    env.setenv("DQMON_WEBHOOK_URLS", json.dumps({"ops": slack_api.webhook_url}))
    worker = deliver(store, ["slack:#oncall", "webhook:ops"])
    # the double answers invalid_auth unless the bearer token is the one in the file
    (post,) = slack_api.posts()
    assert post.body["channel"] == "#oncall"
    (hook,) = slack_api.hooks()
    assert hook.body["event"] == "firing"
    assert hook.body["alert"]["check"] == "volume"
    slack_item, hook_item = store.outbox_items("delivered")
    assert slack_item.target == "slack:#oncall"
    assert hook_item.target == "webhook:ops"
    assert hook.headers["idempotency-key"] == f"{hook_item.id}-{hook_item.fingerprint}"
    assert hook.body["id"] == hook_item.id
    assert worker.stats.snapshot() == {("slack", "delivered"): 1, ("webhook", "delivered"): 1}


def test_environment_token_wins_over_the_file(
    env: pytest.MonkeyPatch, slack_api: FakeSlack, store: SqliteStateStore, tmp_path: Path
) -> None:
    stale = tmp_path / "slack-token"
    stale.write_text("xoxb-stale-token")
    env.setenv("DQMON_SLACK_TOKEN", TOKEN)
    env.setenv("DQMON_SLACK_TOKEN_FILE", str(stale))
    env.setenv("DQMON_SLACK_API_URL", slack_api.api_url)
    worker = deliver(store, ["slack:#oncall"])
    assert len(slack_api.posts()) == 1
    assert worker.stats.snapshot() == {("slack", "delivered"): 1}


def test_incoming_webhook_url_file(
    env: pytest.MonkeyPatch, slack_api: FakeSlack, store: SqliteStateStore, tmp_path: Path
) -> None:
    url_file = tmp_path / "slack-webhook"
    url_file.write_text(slack_api.webhook_url)
    env.setenv("DQMON_SLACK_WEBHOOK_URL_FILE", str(url_file))
    worker = deliver(store, ["slack"])
    (hook,) = slack_api.hooks()
    assert "volume" in hook.body["text"]
    assert hook.body["blocks"]
    assert worker.stats.snapshot() == {("slack", "delivered"): 1}


def test_pagerduty_incident_fires_and_resolves_from_the_environment(
    env: pytest.MonkeyPatch, pagerduty_api: FakePagerDuty, store: SqliteStateStore, tmp_path: Path
) -> None:
    key_file = tmp_path / "pagerduty-routing-key"
    key_file.write_text(ROUTING_KEY + "\n")  # a mounted Kubernetes secret
    env.setenv("DQMON_PAGERDUTY_ROUTING_KEY_FILE", str(key_file))
    env.setenv("DQMON_PAGERDUTY_ROUTING_KEYS", json.dumps({"db": OTHER_KEY}))
    env.setenv("DQMON_PAGERDUTY_API_URL", pagerduty_api.api_url)
    settings = Settings()
    assert {ROUTING_KEY, OTHER_KEY} <= set(secret_values(settings, None))  # the log redactor knows them
    worker = build_delivery(settings, store, retry=FAST)
    assert set(worker.notifiers) == {"log", "pagerduty"}
    worker.poll_interval = 0.05
    manager = AlertManager(make_pipeline(routes=[{"notify": ["pagerduty"]}]), store, slack_configured=False)
    worker.start()
    try:
        manager.observe([result("freshness", Status.FAIL, slo="features-fresh")], T0)
        worker.wake()
        wait_for(lambda: worker.pending() == 0 and len(pagerduty_api.accepted()) == 1)
        manager.observe([result("freshness", Status.OK, slo="features-fresh")], T0 + 60)
        worker.wake()
        wait_for(lambda: worker.pending() == 0 and len(pagerduty_api.accepted()) == 2)
    finally:
        worker.stop()
    trigger, resolve = pagerduty_api.accepted()
    firing_item, resolved_item = store.outbox_items("delivered")
    assert (firing_item.event, resolved_item.event) == ("firing", "resolved")
    assert (trigger["event_action"], resolve["event_action"]) == ("trigger", "resolve")
    assert trigger["dedup_key"] == resolve["dedup_key"] == firing_item.fingerprint
    assert trigger["routing_key"] == resolve["routing_key"] == ROUTING_KEY  # the file's key, stripped
    assert trigger["payload"]["severity"] == "critical"  # the freshness check pages
    assert pagerduty_api.alerts == {(ROUTING_KEY, firing_item.fingerprint): "resolved"}
    assert worker.stats.snapshot() == {("pagerduty", "delivered"): 2}
