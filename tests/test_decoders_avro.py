"""Avro decoder against the local Schema Registry test double (the real registry cannot run here)."""

from __future__ import annotations

import copy
import io
import json
import struct
from decimal import Decimal, localcontext

import fastavro
import polars as pl
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


DECIMAL_SCHEMA = {
    "type": "record",
    "name": "Payment",
    "fields": [
        {"name": "id", "type": "long"},
        {"name": "amount", "type": {"type": "bytes", "logicalType": "decimal", "precision": 30, "scale": 8}},
        {
            "name": "fee",
            "type": [
                "null",
                {
                    "type": "fixed",
                    "name": "Fee",
                    "size": 16,
                    "logicalType": "decimal",
                    "precision": 38,
                    "scale": 2,
                },
            ],
        },
        {
            "name": "tax",
            "type": {
                "type": "record",
                "name": "Tax",
                "fields": [
                    {
                        "name": "rate",
                        "type": {"type": "bytes", "logicalType": "decimal", "precision": 5, "scale": 4},
                    }
                ],
            },
        },
    ],
}
REGISTRY.add(8, json.dumps(DECIMAL_SCHEMA))


def framed_with(schema: dict, record: dict, schema_id: int = 8) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, fastavro.parse_schema(schema), record)
    return b"\x00" + struct.pack(">I", schema_id) + out.getvalue()


def test_avro_decimals_are_exact_with_their_declared_precision_and_scale(registry_url):
    decoder = AvroDecoder(SchemaRegistryClient({"url": registry_url}))
    amounts = ["1234567890123456.12345678", "0.10000001", "-9999999999999999999999.99999999"]
    values = [
        framed_with(
            DECIMAL_SCHEMA, {"id": i, "amount": Decimal(a), "fee": None, "tax": {"rate": Decimal("0.0825")}}
        )
        for i, a in enumerate(amounts)
    ]
    decoded = decoder.decode(values)
    assert decoded.errors == {}
    assert decoded.df.schema["amount"] == pl.Decimal(30, 8)
    assert decoded.df.schema["fee"] == pl.Decimal(38, 2)  # all null in this batch, still typed
    assert decoded.df.schema["tax"] == pl.Struct({"rate": pl.Decimal(5, 4)})
    assert decoded.df["amount"].to_list() == [Decimal(a) for a in amounts]
    assert float(Decimal(amounts[0])) != Decimal(amounts[0])  # a float would have rounded it
    with localcontext(prec=60):  # Python's default 28 digits would round the reference sum itself
        exact_sum = sum(Decimal(a) for a in amounts)
    assert decoded.df.select(pl.col("amount").sum()).item() == exact_sum


def test_an_avro_decimal_wider_than_declared_is_counted_not_rounded(registry_url):
    decoder = AvroDecoder(SchemaRegistryClient({"url": registry_url}))
    writer = copy.deepcopy(DECIMAL_SCHEMA)  # a producer whose schema allowed more digits
    writer["fields"][3]["type"]["fields"][0]["type"]["precision"] = 12
    ok = {"id": 1, "amount": Decimal("1.5"), "fee": Decimal("2.25"), "tax": {"rate": Decimal("0.0825")}}
    wide = {**ok, "id": 2, "tax": {"rate": Decimal("12345.0825")}}  # 9 digits, 5 declared
    decoded = decoder.decode([framed_with(writer, ok), framed_with(writer, wide), framed_with(writer, ok)])
    assert decoded.errors == {"invalid_decimal": 1}
    assert decoded.kept.tolist() == [True, False, True]
    assert decoded.df["tax"].to_list() == [{"rate": Decimal("0.0825")}] * 2
