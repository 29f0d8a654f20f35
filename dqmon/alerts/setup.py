"""Build the notifiers and the delivery worker from runtime Settings (secrets from env or files).

Every registered notifier (dqmon.registry.NOTIFIERS) is asked to build itself from the settings;
those that are not configured (no token, no URL) answer None and are left out. The log notifier
is always available.
"""

from __future__ import annotations

from collections.abc import Callable

from dqmon.alerts.delivery import DeliveryWorker, RetryPolicy
from dqmon.alerts.notifiers.base import Notifier
from dqmon.config.settings import Settings
from dqmon.registry import NOTIFIERS
from dqmon.state.store import OutboxStore


def build_notifiers(settings: Settings) -> dict[str, Notifier]:
    notifiers: dict[str, Notifier] = {}
    for name, factory in NOTIFIERS.items():
        notifier = factory(settings)
        if notifier is not None:
            notifiers[name] = notifier
    return notifiers


def build_delivery(
    settings: Settings,
    store: OutboxStore,
    *,
    notifiers: dict[str, Notifier] | None = None,
    concurrency: int = 4,
    retry: RetryPolicy | None = None,
    on_outcome: Callable[[str, str], None] | None = None,
) -> DeliveryWorker:
    """A worker over all configured notifiers; with PostgreSQL (shared by replicas) leases of
    other replicas are left to expire instead of being released at start."""
    return DeliveryWorker(
        store,
        notifiers if notifiers is not None else build_notifiers(settings),
        concurrency=concurrency,
        retry=retry,
        on_outcome=on_outcome,
        release_leases_on_start=settings.state_dsn is None,
    )
