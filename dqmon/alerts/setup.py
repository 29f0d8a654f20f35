"""Build the notifiers and the delivery worker from runtime Settings (secrets from env or files).

`slack_token` / `slack_webhook_url` come from DQMON_SLACK_TOKEN / DQMON_SLACK_WEBHOOK_URL, or
from the files named by DQMON_SLACK_TOKEN_FILE / DQMON_SLACK_WEBHOOK_URL_FILE (a Kubernetes
secret mounted as a file); the environment wins when both are set. A bot token is preferred to a
webhook (threads need chat.postMessage). The log notifier is always available.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from pydantic import SecretStr

from dqmon.alerts.delivery import DeliveryWorker, RetryPolicy
from dqmon.alerts.notifiers.base import Notifier
from dqmon.alerts.notifiers.log import LogNotifier
from dqmon.alerts.notifiers.slack import SlackBotNotifier, SlackWebhookNotifier
from dqmon.alerts.notifiers.webhook import WebhookNotifier
from dqmon.config.settings import Settings
from dqmon.errors import NotifyError
from dqmon.state.store import StateStore


def read_secret(value: SecretStr | None, file: Path | None) -> str | None:
    if value is not None and value.get_secret_value().strip():
        return value.get_secret_value().strip()
    if file is None:
        return None
    try:
        text = file.read_text(encoding="utf-8").strip()
    except OSError as exc:
        # the path is configuration, not a secret; the content never reaches the message
        raise NotifyError(f"cannot read secret file {file}: {exc.strerror}", permanent=True) from None
    return text or None


def build_notifiers(settings: Settings) -> dict[str, Notifier]:
    notifiers: dict[str, Notifier] = {"log": LogNotifier()}
    token = read_secret(settings.slack_token, settings.slack_token_file)
    webhook = read_secret(settings.slack_webhook_url, settings.slack_webhook_url_file)
    if token:
        notifiers["slack"] = SlackBotNotifier(
            token, base_url=settings.slack_api_url, default_channel=settings.slack_default_channel
        )
    elif webhook:
        notifiers["slack"] = SlackWebhookNotifier(webhook)
    if settings.webhook_urls:
        notifiers["webhook"] = WebhookNotifier(
            {name: url.get_secret_value() for name, url in settings.webhook_urls.items()}
        )
    return notifiers


def build_delivery(
    settings: Settings,
    store: StateStore,
    *,
    concurrency: int = 4,
    retry: RetryPolicy | None = None,
    on_outcome: Callable[[str, str], None] | None = None,
) -> DeliveryWorker:
    """A worker over all configured notifiers; with PostgreSQL (shared by replicas) leases of
    other replicas are left to expire instead of being released at start."""
    return DeliveryWorker(
        store,
        build_notifiers(settings),
        concurrency=concurrency,
        retry=retry,
        on_outcome=on_outcome,
        release_leases_on_start=settings.state_dsn is None,
    )
