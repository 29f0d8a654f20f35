"""Start positions and lag arithmetic (offsets_for_times cannot be proven on tansu: it answers 0)."""

from __future__ import annotations

from dqmon.sources.kafka_config import consumer_config, redact, scrub
from dqmon.sources.kafka_offsets import (
    OFFSET_BEGINNING,
    OFFSET_END,
    lag_messages,
    produced_between,
    start_offsets,
    start_timestamp_ms,
)


def test_start_positions():
    assert start_offsets("earliest", [0, 1], lambda ms, ps: {}) == {0: OFFSET_BEGINNING, 1: OFFSET_BEGINNING}
    assert start_offsets("latest", [0], lambda ms, ps: {}) == {0: OFFSET_END}
    asked = []

    def lookup(ms, partitions):
        asked.append((ms, list(partitions)))
        return {0: 42, 1: -1}  # partition 1 has no message at or after the time

    assert start_offsets("2024-01-01T00:00:00Z", [0, 1, 2], lookup) == {0: 42, 1: OFFSET_END, 2: OFFSET_END}
    assert asked == [(1704067200000, [0, 1, 2])]
    assert start_timestamp_ms("2024-01-01T00:00:00") == 1704067200000  # naive means UTC


def test_lag_the_apache_kafka_way():
    assert lag_messages({0: 10, 1: 5}, {0: 4, 1: 5}) == 6
    assert lag_messages({0: 10}, {0: -1001}) is None  # never committed: no number, not zero
    assert produced_between({0: 10, 1: 3}, {0: 15, 1: 2}) == 5 + 2  # partition 1 re-created from 0


def test_secrets_never_leave_the_config():
    from dqmon.config.models import KafkaSource
    from dqmon.config.settings import Settings

    source = KafkaSource.model_validate(
        {
            "kind": "kafka",
            "topic": "t",
            "client": {
                "security.protocol": "SASL_SSL",
                "sasl.password": "hunter2-secret",
                "ssl.key.password": "kp-123",
                "enable.auto.commit": True,
            },
        }
    )
    config = consumer_config(source, Settings(), group_id="dqmon.p.d")
    assert config["enable.auto.commit"] is False  # a passthrough cannot switch commits on
    shown = str(redact(config))
    assert "hunter2" not in shown
    assert "kp-123" not in shown
    assert "SASL_SSL" in shown
    assert scrub("auth failed for hunter2-secret", source.client) == "auth failed for ***"


def test_prefetch_queue_is_bounded_by_one_windows_reads_and_client_settings_win():
    from datetime import timedelta

    from confluent_kafka import Consumer

    from dqmon.config.models import KafkaSource as KafkaSourceConfig
    from dqmon.config.settings import Settings
    from dqmon.sources.kafka_config import prefetch_bounds

    def source(rate: float, cap: int, client: dict | None = None) -> KafkaSourceConfig:
        return KafkaSourceConfig.model_validate(
            {
                "kind": "kafka",
                "topic": "t",
                "sample": {"rate": rate, "max_rows_per_batch": cap},
                "client": client or {},
            }
        )

    window = timedelta(seconds=5)
    small = prefetch_bounds(source(1.0, 500), window=window, max_rows=100_000)
    assert small == {
        "queued.min.messages": 1_000,  # floor
        "queued.max.messages.kbytes": 1024,
        "fetch.max.bytes": 1024 * 1024,
        "max.partition.fetch.bytes": 1024 * 1024,
    }
    # 2,000 sampled rows at 10% is 20,000 messages read: ~20 MB at 1 KiB, capped at 16 MiB
    mid = prefetch_bounds(source(0.1, 2_000), window=window, max_rows=100_000)
    assert mid["queued.min.messages"] == 20_000
    assert mid["queued.max.messages.kbytes"] == 16 * 1024
    # the dataset's max_rows caps too: 5,000 rows at 100% is 5,000 messages
    assert (
        prefetch_bounds(source(1.0, 100_000), window=window, max_rows=5_000)["queued.min.messages"] == 5_000
    )
    assert (
        prefetch_bounds(source(0.001, 100_000), window=window, max_rows=100_000)["queued.min.messages"]
        == 100_000
    )

    config = consumer_config(
        source(1.0, 500, {"queued.max.messages.kbytes": 4096}),
        Settings(),
        group_id="g",
        window=window,
        max_rows=10,
    )
    assert config["queued.max.messages.kbytes"] == 4096  # the user's client: entry overrides
    assert config["queued.min.messages"] == 1_000
    assert "queued.min.messages" not in consumer_config(source(1.0, 500), Settings(), group_id="g")
    Consumer({**config, "bootstrap.servers": "127.0.0.1:1"}).close()  # librdkafka accepts the combination
