"""Protobuf and JSON Schema end to end: Confluent wire-format messages on the real tansu broker,
decoded by a dqmon KafkaSource (format protobuf / json_schema) and checked by the engine. The
Schema Registry is the local test double (tests/fixtures/schema_registry.py)."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any

import polars as pl
import pytest

from dqmon.config.models import Pipeline
from dqmon.config.settings import Settings
from dqmon.engine import DatasetEngine
from dqmon.results import Status
from dqmon.sources.kafka import KafkaSource
from tests import protobuf_helpers as h
from tests.fixtures.broker import make_producer, produce
from tests.fixtures.schema_registry import SchemaRegistryDouble
from tests.test_decoders_json_schema import TRADE_SCHEMA, trade
from tests.test_decoders_json_schema import framed as json_framed
from tests.test_kafka_source import drain
from tests.test_kafka_source import pipeline as kafka_pipeline

pytestmark = pytest.mark.broker

PROTO_ID, JSON_ID = 31, 32


@pytest.fixture
def registry_url():
    registry = SchemaRegistryDouble()
    registry.add(PROTO_ID, h.TRADE_PROTO, "PROTOBUF", serialized=h.serialized_trade_schema())
    registry.add(JSON_ID, json.dumps(TRADE_SCHEMA), "JSON")
    with registry.serve() as url:
        yield url


def pipeline(topic: str, bootstrap: str, registry_url: str, fmt: str, checks: list[Any]) -> Pipeline:
    registry = {"url": registry_url}
    return kafka_pipeline(
        topic,
        bootstrap,
        name=fmt,
        checks=checks,
        mode="assign",
        start="earliest",
        format=fmt,
        schema_registry=registry,
    )


def consume(pipe: Pipeline, bootstrap: str, topic: str, values: list[bytes], rows: int) -> list[Any]:
    produce(make_producer(bootstrap), topic, values)
    source = KafkaSource(pipe, pipe.datasets[0], Settings())
    source.start()
    try:
        return [b for b in drain(source, until_rows=rows) if b.rows_seen]
    finally:
        source.close()


def errors_of(batches: list[Any]) -> dict[str, int]:
    errors: dict[str, int] = {}
    for b in batches:
        for reason, n in b.decode_errors.items():
            errors[reason] = errors.get(reason, 0) + n
    return errors


def test_protobuf_topic_is_decoded_typed_and_checked(bootstrap, topic, registry_url) -> None:
    contract = {
        "trade_id": {"type": "int"},
        "notional": {"type": "number"},
        "executed_at": {"type": "timestamp"},
        "venue": {"type": "struct"},
        "fills": {"type": "list"},
    }
    checks = [
        {"validity": {"not_null": ["symbol"], "range": {"price": {"gt": 0}, "notional": {"gt": 0}}}},
        {"schema": {"contract": {"fields": contract}}},
    ]
    pipe = pipeline(topic, bootstrap, registry_url, "protobuf", checks)
    good = [h.framed(h.trade(i), PROTO_ID) for i in range(1, 21)]
    bad = [
        h.framed(h.trade(1), 99),  # unknown_schema
        b"\x00\x00",  # truncated (shorter than the header)
        b"\x07" + good[0][1:],  # bad_magic
        h.header(PROTO_ID, [0]) + b"\x0a\xff",  # invalid_protobuf
        h.framed(h.trade(1), PROTO_ID, [9]),  # unknown_message
    ]
    batches = consume(pipe, bootstrap, topic, good[:10] + bad + good[10:], rows=25)
    assert sum(b.rows_decoded for b in batches) == 20
    assert errors_of(batches) == {
        "unknown_schema": 1,
        "truncated": 1,
        "bad_magic": 1,
        "invalid_protobuf": 1,
        "unknown_message": 1,
    }
    df = pl.concat([b.df for b in batches if b.df.height], how="diagonal_relaxed")
    assert sorted(df["trade_id"].to_list()) == list(range(1, 21))
    assert df.schema["executed_at"] == pl.Datetime("us", "UTC")
    assert df.schema["notional"] == pl.Decimal(30, 8)
    assert df.schema["venue"] == pl.Struct({"mic": pl.String, "address": pl.Struct({"city": pl.String})})
    assert "_offset" in df.columns and "_partition" in df.columns  # metadata lines up with rows
    first = df.sort("trade_id").row(0, named=True)
    assert first["notional"] == Decimal("11234567890123456.12345678")
    assert first["venue"]["address"]["city"] == "New York"
    assert first["executed_at"] == dt.datetime(2023, 11, 14, 22, 13, 21, 123456, tzinfo=dt.UTC)
    engine = DatasetEngine(pipe, pipe.datasets[0])
    statuses: dict[str, set[Status]] = {}
    for r in (r for b in batches for r in engine.evaluate(b)):
        statuses.setdefault(r.check, set()).add(r.status)
    assert statuses["range(price)"] == {Status.OK}
    assert statuses["range(notional)"] == {Status.OK}  # range checks run on the exact decimals
    assert statuses["schema"] == {Status.OK}
    assert Status.FAIL in statuses["schema:decode_errors"]  # the five bad records are surfaced


def test_json_schema_topic_is_decoded_typed_and_checked(bootstrap, topic, registry_url) -> None:
    checks = [{"validity": {"range": {"price": {"ge": 0}}}}]
    pipe = pipeline(topic, bootstrap, registry_url, "json_schema", checks)
    good = [json_framed(trade(i), JSON_ID) for i in range(20)]
    bad = [
        json_framed({**trade(1), "trade_id": "one"}, JSON_ID),
        json_framed(b"{nope", JSON_ID),
        json_framed(trade(1), 404),
    ]
    batches = consume(pipe, bootstrap, topic, good[:10] + bad + good[10:], rows=23)
    assert sum(b.rows_decoded for b in batches) == 20
    assert errors_of(batches) == {"schema_violation": 1, "invalid_json": 1, "unknown_schema": 1}
    df = pl.concat([b.df for b in batches if b.df.height], how="diagonal_relaxed")
    assert df.schema["trade_id"] == pl.Int64
    assert df.schema["price"] == pl.Float64
    assert df.schema["executed_at"] == pl.Datetime("us", "UTC")
    assert df.schema["venue"] == pl.Struct({"mic": pl.String, "lat": pl.Float64})
    engine = DatasetEngine(pipe, pipe.datasets[0])
    results = [r for b in batches for r in engine.evaluate(b)]
    assert {r.status for r in results if r.check == "range(price)"} == {Status.OK}
