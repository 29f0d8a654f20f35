"""Builders that turn settings and checks into live parts: state store, sources, secrets."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from dqmon.alerts.setup import read_secret
from dqmon.config.loader import ChecksConfig
from dqmon.config.models import Dataset, KafkaSource, Pipeline, ReplaySource, SqlSource
from dqmon.config.settings import Settings
from dqmon.errors import NotifyError
from dqmon.sources.base import Source
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
    source = dataset.source
    if isinstance(source, KafkaSource):
        from dqmon.sources.kafka import KafkaSource as KafkaReader

        return KafkaReader(pipeline, dataset, settings, clock=clock)
    if isinstance(source, SqlSource):
        from dqmon.sources.sql import SqlSource as SqlReader

        return SqlReader(pipeline, dataset, store=store, clock=clock)
    if isinstance(source, ReplaySource):
        from dqmon.sources.replay import ReplaySource as ReplayReader

        return ReplayReader(pipeline, dataset, base_dir, clock=clock)
    raise TypeError(f"no source for kind {source.kind!r}")  # pragma: no cover - the union is closed


def secret_values(settings: Settings, config: ChecksConfig | None) -> list[str]:
    """Every configured secret, so the log redactor can scrub them wherever they appear."""
    values = [
        s.get_secret_value()
        for s in (settings.slack_token, settings.slack_webhook_url, settings.state_dsn)
        if s is not None
    ]
    for file in (settings.slack_token_file, settings.slack_webhook_url_file):
        with contextlib.suppress(NotifyError):  # an unreadable file is reported by the notifier setup
            values.append(read_secret(None, file) or "")
    values += [v.get_secret_value() for v in settings.webhook_urls.values()]
    if config is not None:
        for _pipeline, dataset in config.datasets():
            source = dataset.source
            if isinstance(source, SqlSource):
                values.append(source.dsn.get_secret_value())
            if isinstance(source, KafkaSource):
                values += [
                    str(v)
                    for k, v in source.client.items()
                    if any(word in k for word in ("password", "secret", "token", "key"))
                ]
                if source.schema_registry and source.schema_registry.basic_auth:
                    values.append(source.schema_registry.basic_auth.get_secret_value())
    return [v for v in values if v]
