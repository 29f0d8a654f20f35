"""Builders that turn settings and checks into live parts: state store, sources, secrets."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from dqmon.config.loader import ChecksConfig
from dqmon.config.models import Dataset, Pipeline
from dqmon.config.settings import Settings
from dqmon.errors import NotifyError
from dqmon.registry import SOURCES
from dqmon.secrets import read_secret
from dqmon.sources.base import Source, SourceContext
from dqmon.state.store import SqliteStateStore, StateStore

log = logging.getLogger(__name__)


def open_store(settings: Settings) -> StateStore:
    """PostgreSQL when DQMON_STATE_DSN is set (replicas share alert states), else SQLite in the data dir."""
    if settings.state_dsn is not None:
        from dqmon.state.postgres import PostgresStateStore

        return PostgresStateStore(settings.state_dsn.get_secret_value())
    return SqliteStateStore(settings.data_dir / "state.db")


def build_source(
    pipeline: Pipeline,
    dataset: Dataset,
    settings: Settings,
    store: StateStore,
    base_dir: Path,
    clock: Callable[[], datetime],
) -> Source:
    """The registered Source class of the dataset's source kind, built from the common context."""
    ctx = SourceContext(pipeline, dataset, settings, store, base_dir, clock)
    return SOURCES.get(dataset.source.kind).from_context(ctx)


def secret_values(settings: Settings, config: ChecksConfig | None) -> list[str]:
    """Every configured secret, so the log redactor can scrub them wherever they appear."""
    values = [
        s.get_secret_value()
        for s in (
            settings.slack_token,
            settings.slack_webhook_url,
            settings.state_dsn,
            settings.pagerduty_routing_key,
        )
        if s is not None
    ]
    files = (settings.slack_token_file, settings.slack_webhook_url_file, settings.pagerduty_routing_key_file)
    for file in files:
        with contextlib.suppress(NotifyError):  # an unreadable file is reported by the notifier setup
            values.append(read_secret(None, file) or "")
    values += [v.get_secret_value() for v in settings.webhook_urls.values()]
    values += [v.get_secret_value() for v in settings.pagerduty_routing_keys.values()]
    if config is not None:
        for _pipeline, dataset in config.datasets():
            values += dataset.source.secrets()
        for pipeline in config.pipelines:
            for link in pipeline.links:
                values += link.spec.secrets()
    return [v for v in values if v]
