"""Avro end to end: Confluent wire-format messages on the real broker, decoded by KafkaSource and
checked by the engine (the Schema Registry is the local test double of test_decoders_avro)."""

from __future__ import annotations

from dqmon.config.settings import Settings
from dqmon.engine import DatasetEngine
from dqmon.results import Status
from dqmon.sources.kafka import KafkaSource
from tests.fixtures.broker import make_producer, produce
from tests.test_decoders_avro import framed, registry_url  # noqa: F401 - the registry fixture
from tests.test_kafka_source import drain
from tests.test_kafka_source import pipeline as kafka_pipeline


def test_avro_topic_is_decoded_and_checked(bootstrap, topic, registry_url):  # noqa: F811
    contract = {"fields": {"trade_id": {"type": "int"}, "price": {"type": "float"}}}
    checks = [
        {"validity": {"not_null": ["symbol"], "range": {"price": {"gt": 0}}}},
        {"schema": {"contract": contract}},
    ]
    registry = {"url": registry_url}
    pipeline = kafka_pipeline(
        topic,
        bootstrap,
        name="avro",
        checks=checks,
        mode="assign",
        start="earliest",
        format="avro",
        schema_registry=registry,
    )
    dataset = pipeline.datasets[0]
    good = [framed({"trade_id": i, "symbol": "BTC", "price": 1.5 * i}) for i in range(1, 21)]
    bad = [framed({"trade_id": 0, "symbol": "X", "price": 1.0}, schema_id=99), b"\x01junk"]
    produce(make_producer(bootstrap), topic, good[:10] + bad + good[10:])
    source = KafkaSource(pipeline, dataset, Settings())
    source.start()
    try:
        batches = drain(source, until_rows=22)
    finally:
        source.close()
    rows = [b for b in batches if b.rows_seen]
    assert sum(b.rows_decoded for b in rows) == 20
    errors: dict[str, int] = {}
    for b in rows:
        for reason, n in b.decode_errors.items():
            errors[reason] = errors.get(reason, 0) + n
    assert errors == {"unknown_schema": 1, "bad_magic": 1}
    engine = DatasetEngine(pipeline, dataset)
    results = [r for b in rows for r in engine.evaluate(b)]
    by_check: dict[str, set[Status]] = {}
    for r in results:
        by_check.setdefault(r.check, set()).add(r.status)
    assert by_check["range(price)"] == {Status.OK}
    assert by_check["schema"] == {Status.OK}
    assert Status.FAIL in by_check["schema:decode_errors"]  # the two bad records are surfaced
