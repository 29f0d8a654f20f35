"""Avro decoder against the local Schema Registry test double (the real registry cannot run here)."""

from __future__ import annotations

import io
import json
import struct

import fastavro
import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient

from dqmon.decoders.avro import AvroDecoder
from tests.fixtures.schema_registry import SchemaRegistryDouble

SCHEMA = {
    "type": "record",
    "name": "Trade",
    "fields": [
        {"name": "trade_id", "type": "long"},
        {"name": "symbol", "type": "string"},
        {"name": "price", "type": "double"},
    ],
}


REGISTRY = SchemaRegistryDouble()  # the Schema Registry test double (tests/fixtures/schema_registry.py)
REGISTRY.add(7, json.dumps(SCHEMA))


@pytest.fixture
def registry_url():
    with REGISTRY.serve() as url:
        yield url


def framed(record: dict, schema_id: int = 7) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, fastavro.parse_schema(SCHEMA), record)
    return b"\x00" + struct.pack(">I", schema_id) + out.getvalue()


def test_wire_format_decodes_and_bad_records_are_counted(registry_url):
    decoder = AvroDecoder(SchemaRegistryClient({"url": registry_url}))
    good = [framed({"trade_id": i, "symbol": "BTC", "price": 1.5 * i}) for i in range(20)]
    bad = [
        framed({"trade_id": 1, "symbol": "X", "price": 1.0}, schema_id=99),
        b"\x01\x00\x00\x00\x07abc",
        b"\x00\x00",
        good[0][:7],
    ]
    values = good[:10] + bad + good[10:]
    decoded = decoder.decode(values)
    assert decoded.errors == {"unknown_schema": 1, "bad_magic": 1, "truncated": 2}
    assert decoded.df["trade_id"].to_list() == list(range(20))
    assert decoded.kept.tolist() == [True] * 10 + [False] * 4 + [True] * 10
    # schemas are cached: a second batch asks the registry nothing new for id 7
    asked = len(REGISTRY.requests)
    decoder.decode(good)
    assert len(REGISTRY.requests) == asked
