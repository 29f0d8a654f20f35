"""json_schema decoder against the Schema Registry test double: columns typed by the registered
JSON Schema, violations and bad JSON counted by reason."""

from __future__ import annotations

import datetime as dt
import json
import struct

import polars as pl
import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient

from dqmon.decoders.json_schema import Contract, JsonSchemaDecoder
from tests.fixtures.schema_registry import SchemaRegistryDouble

TRADE_SCHEMA = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "type": "object",
    "properties": {
        "trade_id": {"type": "integer"},
        "price": {"type": "number"},
        "symbol": {"type": "string"},
        "executed_at": {"type": "string", "format": "date-time"},
        "settles_on": {"type": "string", "format": "date"},
        "buy": {"type": "boolean"},
        "venue": {"$ref": "#/definitions/Venue"},
        "tags": {"type": "array", "items": {"type": "string"}},
        "note": {"type": ["string", "null"]},
    },
    "required": ["trade_id", "price"],
    "definitions": {
        "Venue": {"type": "object", "properties": {"mic": {"type": "string"}, "lat": {"type": "number"}}}
    },
}
SCHEMA_ID = 21

REGISTRY = SchemaRegistryDouble()
REGISTRY.add(SCHEMA_ID, json.dumps(TRADE_SCHEMA), "JSON")
REGISTRY.add(22, '{"type": "record", "name": "X", "fields": []}')  # an Avro schema


@pytest.fixture
def registry_url():
    with REGISTRY.serve() as url:
        yield url


def framed(record: object, schema_id: int = SCHEMA_ID) -> bytes:
    body = record if isinstance(record, bytes) else json.dumps(record).encode()
    return b"\x00" + struct.pack(">I", schema_id) + body


def trade(i: int) -> dict[str, object]:
    return {
        "trade_id": i,
        "price": i,  # an integer where the schema says number: still Float64
        "symbol": "BTC",
        "executed_at": "2024-05-01T12:00:00.5+02:00",
        "settles_on": "2024-05-03",
        "buy": i % 2 == 0,
        "venue": {"mic": "XNAS", "lat": 40},
        "tags": ["a"],
        "extra": "kept, inferred",
    }


def test_columns_take_the_registered_types(registry_url) -> None:
    decoder = JsonSchemaDecoder(SchemaRegistryClient({"url": registry_url}))
    decoded = decoder.decode([framed(trade(i)) for i in range(5)])
    assert decoded.errors == {}
    schema = decoded.df.schema
    assert schema["trade_id"] == pl.Int64
    assert schema["price"] == pl.Float64
    assert schema["executed_at"] == pl.Datetime("us", "UTC")
    assert schema["settles_on"] == pl.Date
    assert schema["buy"] == pl.Boolean
    assert schema["venue"] == pl.Struct({"mic": pl.String, "lat": pl.Float64})
    assert schema["tags"] == pl.List(pl.String)
    assert schema["note"] == pl.String  # declared, absent from every record: a null column
    assert schema["extra"] == pl.String
    row = decoded.df.row(0, named=True)
    assert row["executed_at"] == dt.datetime(2024, 5, 1, 10, 0, 0, 500000, tzinfo=dt.UTC)
    assert row["note"] is None


def test_violations_and_bad_json_are_counted_by_reason(registry_url) -> None:
    decoder = JsonSchemaDecoder(SchemaRegistryClient({"url": registry_url}))
    good = [framed(trade(i)) for i in range(20)]
    bad = [
        framed({**trade(1), "trade_id": "one"}),  # schema_violation: string for integer
        framed({**trade(1), "price": None}),  # schema_violation: required, not nullable
        framed({"trade_id": 3}),  # schema_violation: required price missing
        framed({**trade(1), "executed_at": "yesterday"}),  # schema_violation: not a date-time
        framed({**trade(1), "tags": [1, 2]}),  # tags items must be strings → ints read as text
        framed(b"{nope"),  # invalid_json
        framed(b"[1, 2]"),  # not_object
        framed(b""),  # empty
        framed(trade(1), 404),  # unknown_schema
        framed(trade(1), 22),  # registered, but not a JSON Schema
        b"\x05" + framed(trade(1))[1:],  # bad_magic
        b"\x00\x00",  # truncated
    ]
    decoded = decoder.decode(good[:10] + bad + good[10:])
    assert decoded.errors == {
        "schema_violation": 4,
        "invalid_json": 1,
        "not_object": 1,
        "empty": 1,
        "unknown_schema": 2,
        "bad_magic": 1,
        "truncated": 1,
    }
    kept = decoded.kept.tolist()
    assert kept[:10] == [True] * 10 and kept[-20 + 10 :] == [True] * 10
    assert kept[10:22] == [False] * 4 + [True] + [False] * 7
    assert decoded.df["trade_id"].to_list()[:10] == list(range(10))
    assert decoded.df.height == 21
    assert set(decoded.errors) <= set(JsonSchemaDecoder.reasons)


def test_a_batch_where_most_records_violate_still_counts_them(registry_url) -> None:
    # unlike the plain json format, nothing is re-learned: the registered schema is the contract
    decoder = JsonSchemaDecoder(SchemaRegistryClient({"url": registry_url}))
    values = [framed({**trade(i), "trade_id": f"t{i}"}) for i in range(30)] + [framed(trade(1))]
    decoded = decoder.decode(values)
    assert decoded.errors == {"schema_violation": 30}
    assert decoded.df["trade_id"].to_list() == [1]


def test_untypeable_constructs_are_left_to_inference() -> None:
    contract = Contract.from_json_schema(
        {
            "type": "object",
            "properties": {
                "a": {"anyOf": [{"type": "integer"}, {"type": "string"}]},
                "b": {"type": ["integer", "string"]},
                "c": {"$ref": "https://example.invalid/remote.json"},
                "d": {"type": "object"},
                "e": {"type": "integer"},
            },
            "required": ["a", "e"],
        }
    )
    assert contract.dtypes == {"e": pl.Int64}
    assert contract.required == ["e"]
