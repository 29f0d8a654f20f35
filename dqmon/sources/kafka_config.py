"""librdkafka settings for dqmon's consumers, and keeping their secrets out of logs and errors."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from dqmon.config.models import KafkaSource as KafkaSourceConfig
from dqmon.config.settings import Settings
from dqmon.secrets import REDACTED, Redactor, is_secret_key

# settings dqmon decides; a `client:` entry may not override them (they guard "never commit")
_FIXED = {"enable.auto.commit", "enable.auto.offset.store", "group.id"}


def redact(config: Mapping[str, Any]) -> dict[str, Any]:
    """A copy safe to log: values under password/secret/token/key-like names hidden, callbacks left out."""
    return {k: (REDACTED if is_secret_key(k) else v) for k, v in config.items() if not callable(v)}


def scrub(text: str, config: Mapping[str, Any]) -> str:
    """Remove any secret value of `config` that appears in a message (librdkafka errors may echo them)."""
    return Redactor(str(value) for key, value in config.items() if is_secret_key(key)).redact(text)


def consumer_config(
    source: KafkaSourceConfig,
    settings: Settings,
    *,
    group_id: str,
    error_cb: Callable[[Any], None] | None = None,
) -> dict[str, Any]:
    """Consumer settings: the user's `client:` passthrough plus dqmon's fixed, never-commit choices."""
    config: dict[str, Any] = {
        "bootstrap.servers": source.bootstrap_servers or settings.kafka_bootstrap_servers,
        "client.id": "dqmon",
        "log_level": 3,  # librdkafka floods stderr while a broker is down; error_cb reports it instead
        "reconnect.backoff.ms": 100,
        "reconnect.backoff.max.ms": 2000,  # resume within seconds of the broker's return
        "topic.metadata.refresh.interval.ms": 5000,  # notice deleted/re-created topics quickly
        "fetch.wait.max.ms": 100,
        "socket.connection.setup.timeout.ms": 3000,
    }
    config.update({k: v for k, v in source.client.items() if k not in _FIXED})
    config["enable.auto.commit"] = False
    config["enable.auto.offset.store"] = False
    config["auto.offset.reset"] = "earliest" if source.start == "earliest" else "latest"
    config["group.id"] = group_id  # confluent-kafka requires one even for assign(); never committed
    if error_cb is not None:
        config["error_cb"] = error_cb
    return config


def admin_config(consumer: Mapping[str, Any]) -> dict[str, Any]:
    """AdminClient settings derived from the consumer's (connection and security settings only)."""
    consumer_only = {
        "enable.auto.commit", "enable.auto.offset.store", "auto.offset.reset", "group.id",
        "fetch.wait.max.ms", "topic.metadata.refresh.interval.ms",
    }  # fmt: skip
    return {k: v for k, v in consumer.items() if k not in consumer_only}
