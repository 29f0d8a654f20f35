"""Protobuf decoder against the Schema Registry test double: typed columns, nested structs, exact
decimals, both registry answer forms (.proto text, serialized descriptor), references, reasons."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import polars as pl
import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient
from hypothesis import given, settings
from hypothesis import strategies as st

from dqmon.decoders import decimals
from dqmon.decoders.protobuf import ProtobufDecoder
from tests import protobuf_helpers as h
from tests.fixtures.schema_registry import SchemaRegistryDouble

TEXT_ID, SERIALIZED_ID, REF_ID, BROKEN_ID, AVRO_ID = 11, 12, 13, 14, 15

COMMON_PROTO = (
    'syntax = "proto3";\npackage common.v1;\nmessage Money { string currency = 1; int64 units = 2; }\n'
)
USES_REF_PROTO = """
syntax = "proto3";
package pay.v1;
import "common/money.proto";
message Payment { string id = 1; common.v1.Money amount = 2; repeated common.v1.Money fees = 3; }
"""
RECURSIVE_PROTO = 'syntax = "proto3";\nmessage Node { string name = 1; repeated Node children = 2; }\n'
PING_PROTO = 'syntax = "proto3";\npackage ops;\nmessage Ping {}\n'


def registry() -> SchemaRegistryDouble:
    reg = SchemaRegistryDouble()
    reg.add(TEXT_ID, h.TRADE_PROTO, "PROTOBUF")
    reg.add(SERIALIZED_ID, h.TRADE_PROTO, "PROTOBUF", serialized=h.serialized_trade_schema())
    reg.add(20, COMMON_PROTO, "PROTOBUF")
    reg.add_version("common-money", 1, 20)
    refs = [{"name": "common/money.proto", "subject": "common-money", "version": 1}]
    reg.add(REF_ID, USES_REF_PROTO, "PROTOBUF", references=refs)
    reg.add(BROKEN_ID, "syntax = 'proto3'; message {", "PROTOBUF")
    reg.add(AVRO_ID, '{"type": "string"}')
    reg.add(16, RECURSIVE_PROTO, "PROTOBUF")
    reg.add(17, PING_PROTO, "PROTOBUF")
    return reg


REGISTRY = registry()


@pytest.fixture
def decoder():
    with REGISTRY.serve() as url:
        yield ProtobufDecoder(SchemaRegistryClient({"url": url}))


@pytest.mark.parametrize("schema_id", [TEXT_ID, SERIALIZED_ID])
def test_trades_decode_to_typed_columns(decoder, schema_id) -> None:
    decoded = decoder.decode([h.framed(h.trade(i), schema_id) for i in range(1, 4)])
    assert decoded.errors == {}
    assert decoded.kept.tolist() == [True, True, True]
    df = decoded.df
    assert df.schema["trade_id"] == pl.Int64
    assert df.schema["price"] == pl.Float64
    assert df.schema["side"] == pl.String
    assert df.schema["executed_at"] == pl.Datetime("us", "UTC")
    assert df.schema["notional"] == pl.Decimal(30, 8)  # declared by (confluent.field_meta)
    assert df.schema["venue"] == pl.Struct({"mic": pl.String, "address": pl.Struct({"city": pl.String})})
    assert df.schema["fills"] == pl.List(
        pl.Struct({"qty": pl.Int64, "price": pl.Float64, "at": pl.Datetime("us", "UTC")})
    )
    assert df.schema["tags"] == pl.List(pl.String)
    assert df.schema["counters"] == pl.List(pl.Struct({"key": pl.String, "value": pl.Int64}))
    assert df.schema["qty"] == pl.Int32
    assert df.schema["parent_id"] == pl.Int64
    row = df.row(1, named=True)
    assert row["trade_id"] == 2
    assert row["side"] == "BUY"
    assert row["executed_at"] == dt.datetime(2023, 11, 14, 22, 13, 22, 123456, tzinfo=dt.UTC)
    assert row["venue"] == {"mic": "XNAS", "address": {"city": "New York"}}
    assert row["fills"] == [{"qty": 2, "price": 2.5, "at": dt.datetime(2023, 11, 14, 22, 15, tzinfo=dt.UTC)}]
    assert row["tags"] == ["a", "t2"]
    assert row["counters"] == [{"key": "views", "value": 2}]
    assert (row["qty"], row["parent_id"]) == (20, 1002)


def test_decimals_are_exact_where_floats_would_round(decoder) -> None:
    decoded = decoder.decode([h.framed(h.trade(i), TEXT_ID) for i in range(1, 3)])
    notional = decoded.df["notional"].to_list()
    assert notional == [Decimal("11234567890123456.12345678"), Decimal("21234567890123456.12345678")]
    assert float(notional[0]) != notional[0]  # a float cannot hold it
    assert decoded.df["fee"].to_list() == [Decimal("0.10000000000000000001")] * 2
    assert decoded.df.schema["fee"] == pl.Decimal(38, 20)  # undeclared: the batch's scale
    total = decoded.df.select(pl.col("notional").sum()).item()
    assert total == Decimal("32469135780246912.24691356")


def test_unset_fields_with_presence_are_null_and_scalars_default(decoder) -> None:
    bare = h.Trade(trade_id=5)
    decoded = decoder.decode([h.framed(bare, TEXT_ID)])
    row = decoded.df.row(0, named=True)
    assert row["symbol"] == ""  # proto3 scalar without presence: its default, as every reader sees it
    assert row["side"] == "SIDE_UNSPECIFIED"
    for name in ("executed_at", "notional", "fee", "venue", "qty", "parent_id"):
        assert row[name] is None, name
    assert row["fills"] == [] and row["tags"] == [] and row["counters"] == []


def test_unknown_enum_number_reads_as_its_number(decoder) -> None:
    decoded = decoder.decode([h.framed(h.Trade(trade_id=1, side=7), TEXT_ID)])
    assert decoded.df["side"].to_list() == ["7"]


def test_message_indexes_select_the_message(decoder) -> None:
    values = [
        h.framed(h.trade(1), TEXT_ID),
        h.framed(h.Heartbeat(seq=9), TEXT_ID, h.HEARTBEAT_PATH),
        h.header(TEXT_ID, [0], short_form=False) + h.trade(2).SerializeToString(),
        h.framed(h.trade(3).venue, TEXT_ID, h.VENUE_PATH),
    ]
    decoded = decoder.decode(values)
    assert decoded.errors == {}
    assert decoded.df["trade_id"].to_list() == [1, None, 2, None]
    assert decoded.df["seq"].to_list() == [None, 9, None, None]
    assert decoded.df["mic"].to_list() == [None, None, None, "XNAS"]


def test_bad_records_are_counted_by_reason(decoder) -> None:
    good = [h.framed(h.trade(i), TEXT_ID) for i in range(10)]
    bad_decimal = h.trade(99)
    h.decimal_message(bad_decimal.notional, Decimal("1.123456789"))  # 9 places, 8 declared
    bad_fee = h.trade(98)
    bad_fee.fee.value = "not a number"
    bad = [
        b"\x01" + good[0][1:],  # bad_magic
        b"\x00\x00\x00",  # truncated header
        h.header(TEXT_ID, [0, 0])[:-1],  # truncated message indexes
        h.header(TEXT_ID, [-1]) + b"",  # negative index
        h.framed(h.trade(1), 404),  # unknown_schema
        h.framed(h.trade(1), TEXT_ID, [7]),  # no 8th top-level message
        h.header(TEXT_ID, [0]) + b"\x0a\xff\xff",  # length-delimited field past the end
        h.framed(bad_decimal, TEXT_ID),
        h.framed(bad_fee, TEXT_ID),
    ]
    decoded = decoder.decode(good[:5] + bad + good[5:])
    assert decoded.errors == {
        "bad_magic": 1,
        "truncated": 2,
        "bad_message_index": 1,
        "unknown_schema": 1,
        "unknown_message": 1,
        "invalid_protobuf": 1,
        "invalid_decimal": 2,
    }
    assert decoded.kept.tolist() == [True] * 5 + [False] * len(bad) + [True] * 5
    assert decoded.df["trade_id"].to_list() == list(range(10))
    assert set(decoded.errors) <= set(ProtobufDecoder.reasons)


def test_unusable_schemas_count_as_unknown_schema(decoder) -> None:
    values = [h.framed(h.trade(1), BROKEN_ID), h.framed(h.trade(1), AVRO_ID)]
    assert decoder.decode(values).errors == {"unknown_schema": 2}


def test_references_are_followed_through_the_registry(decoder) -> None:
    deps = {"common/money.proto": COMMON_PROTO}
    payment = h.message_class(USES_REF_PROTO, "payment.proto", "pay.v1.Payment", deps)(id="p1")
    payment.amount.currency, payment.amount.units = "EUR", 12
    payment.fees.add(currency="EUR", units=1)
    decoded = decoder.decode([h.framed(payment, REF_ID)])
    assert decoded.errors == {}
    assert decoded.df.row(0, named=True) == {
        "id": "p1",
        "amount": {"currency": "EUR", "units": 12},
        "fees": [{"currency": "EUR", "units": 1}],
    }
    assert any(r.startswith("/subjects/common-money/versions/1?") for r in REGISTRY.requests)


def test_recursive_messages_stop_at_binary(decoder) -> None:
    cls = h.message_class(RECURSIVE_PROTO, "node.proto", "Node")
    root = cls(name="a")
    child = root.children.add(name="b")
    grandchild = child.children.add(name="c")
    grandchild.children.add(name="d")
    decoded = decoder.decode([h.framed(root, 16)])
    assert decoded.errors == {}
    row = decoded.df.row(0, named=True)
    assert row["name"] == "a" and row["children"][0]["name"] == "b"
    deeper = row["children"][0]["children"][0]
    assert cls.FromString(deeper) == grandchild  # past one level of recursion: the serialized message


def test_schemas_and_classes_are_fetched_once(decoder) -> None:
    decoder.decode([h.framed(h.trade(1), SERIALIZED_ID)])
    asked = len(REGISTRY.requests)
    decoder.decode([h.framed(h.trade(i), SERIALIZED_ID) for i in range(50)])
    assert len(REGISTRY.requests) == asked


@settings(max_examples=200)
@given(
    st.decimals(allow_nan=False, allow_infinity=False, places=8).filter(lambda d: abs(d) < Decimal(10) ** 22)
)
def test_confluent_decimal_bytes_round_trip_exactly(value) -> None:
    msg = h.Trade()
    h.decimal_message(msg.notional, value)
    got = decimals.from_unscaled(msg.notional.value, msg.notional.scale)
    assert got == value
    series, bad = decimals.exact_series("x", [got], 30, 8)
    assert not bad[0] and series[0] == value


def test_timestamps_outside_the_valid_range_are_invalid(decoder) -> None:
    early, late, odd_nanos = h.trade(1), h.trade(2), h.trade(3)
    early.executed_at.seconds = -62_135_596_801  # one second before 0001-01-01
    late.fills[0].at.seconds = 253_402_300_800  # one second after 9999, inside a repeated field
    odd_nanos.executed_at.nanos = -1
    values = [h.framed(t, TEXT_ID) for t in (early, h.trade(4), late, odd_nanos)]
    decoded = decoder.decode(values)
    assert decoded.errors == {"invalid_protobuf": 3}
    assert decoded.kept.tolist() == [False, True, False, False]
    assert decoded.df["trade_id"].to_list() == [4]


def test_a_message_without_fields_still_has_rows(decoder) -> None:
    ping = h.message_class(PING_PROTO, "ping.proto", "ops.Ping")()
    decoded = decoder.decode([h.framed(ping, 17), h.framed(ping, 17), h.framed(h.trade(1), TEXT_ID)])
    assert decoded.errors == {}
    assert decoded.df.height == 3
    assert decoded.df["_message"].to_list() == ["ops.Ping", "ops.Ping", None]
