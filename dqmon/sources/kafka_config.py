"""librdkafka settings for dqmon's consumers, and keeping their secrets out of logs and errors."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from datetime import timedelta
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


# librdkafka's defaults pre-fetch up to 64 MiB and 100k messages per partition: a sidecar reading
# a 200 msg/s topic needs a small fraction of that. Bounds derived from one window's reads:
_EST_MESSAGE_BYTES = 1024  # a generous average record size; only sets the byte bound
_MIN_QUEUED_KB, _MAX_QUEUED_KB = 1024, 16 * 1024
_MIN_QUEUED, _MAX_QUEUED = 1_000, 100_000
_PARTITION_FETCH_BYTES = 1024 * 1024  # librdkafka's default; one partition's fetch response


def prefetch_bounds(source: KafkaSourceConfig, *, window: timedelta, max_rows: int) -> dict[str, int]:
    """librdkafka pre-fetch limits sized to what one micro-batch window can read.

    A window closes at `window` or when `min(max_rows, sample.max_rows_per_batch)` sampled rows
    are in, so it reads at most `reads = cap / rate` messages. The pre-fetch queue only has to
    keep the consumer busy while a batch is evaluated, so one window's reads bound it:
      queued.min.messages        = clamp(reads, 1k, 100k)            (per partition)
      queued.max.messages.kbytes = clamp(reads x 1 KiB, 1 MiB, 16 MiB) (per partition)
      fetch.max.bytes            = queued.max.messages.kbytes (a fetch never overshoots the queue)
    `window` only enters through the cap (a longer window does not read more than cap/rate).
    """
    cap = min(max_rows, source.sample.max_rows_per_batch)
    reads = math.ceil(cap / source.sample.rate) if window > timedelta(0) else cap
    queued = max(_MIN_QUEUED, min(_MAX_QUEUED, reads))
    kbytes = max(_MIN_QUEUED_KB, min(_MAX_QUEUED_KB, math.ceil(reads * _EST_MESSAGE_BYTES / 1024)))
    return {
        "queued.min.messages": queued,
        "queued.max.messages.kbytes": kbytes,
        "fetch.max.bytes": kbytes * 1024,
        "max.partition.fetch.bytes": min(_PARTITION_FETCH_BYTES, kbytes * 1024),
    }


def consumer_config(
    source: KafkaSourceConfig,
    settings: Settings,
    *,
    group_id: str,
    error_cb: Callable[[Any], None] | None = None,
    window: timedelta | None = None,
    max_rows: int | None = None,
) -> dict[str, Any]:
    """Consumer settings: the user's `client:` passthrough plus dqmon's fixed, never-commit choices.

    With `window`/`max_rows` (the dataset's), librdkafka's pre-fetch queue is bounded by
    `prefetch_bounds`; a user's `client:` entry for any of those keys still wins.
    """
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
    if window is not None and max_rows is not None:
        config.update(prefetch_bounds(source, window=window, max_rows=max_rows))
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
