"""Protobuf test material: a .proto with nested, repeated, map, enum, Timestamp and decimal fields,
message classes compiled from it by protoc (grpcio-tools) independently of the decoder, and a
plain reference encoder of the Confluent header (magic byte, schema id, message indexes)."""

from __future__ import annotations

import base64
import os
import struct
import tempfile
from decimal import Decimal
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

TRADE_PROTO = """
syntax = "proto3";
package shop.v1;

import "google/protobuf/timestamp.proto";
import "google/protobuf/wrappers.proto";
import "confluent/meta.proto";
import "confluent/type/decimal.proto";
import "google/type/decimal.proto";

enum Side { SIDE_UNSPECIFIED = 0; BUY = 1; SELL = 2; }

message Trade {
  message Venue {
    message Address { string city = 1; }
    string mic = 1;
    Address address = 2;
  }
  message Fill { int64 qty = 1; double price = 2; google.protobuf.Timestamp at = 3; }

  int64 trade_id = 1;
  string symbol = 2;
  double price = 3;
  Side side = 4;
  google.protobuf.Timestamp executed_at = 5;
  confluent.type.Decimal notional = 6 [(confluent.field_meta) = {
    params: [{key: "precision", value: "30"}, {key: "scale", value: "8"}]
  }];
  google.type.Decimal fee = 7;
  Venue venue = 8;
  repeated Fill fills = 9;
  repeated string tags = 10;
  map<string, int64> counters = 11;
  optional int32 qty = 12;
  google.protobuf.Int64Value parent_id = 13;
}

message Heartbeat { int64 seq = 1; }
"""

TRADE_PATH = [0]
VENUE_PATH = [0, 0]
HEARTBEAT_PATH = [1]


def compile_proto(
    text: str, name: str = "trade.proto", deps: dict[str, str] | None = None
) -> descriptor_pb2.FileDescriptorSet:
    """protoc in-process, the test's own way (not the decoder's): --include_imports set."""
    from confluent_kafka.schema_registry.confluent import meta_pb2
    from confluent_kafka.schema_registry.confluent.type import decimal_pb2
    from google.type import decimal_pb2 as google_decimal_pb2
    from grpc_tools import protoc

    known = descriptor_pb2.FileDescriptorSet()
    for module in (descriptor_pb2, meta_pb2, decimal_pb2, google_decimal_pb2):
        module.DESCRIPTOR.CopyToProto(known.file.add())
    include = os.path.join(os.path.dirname(protoc.__file__), "_proto")
    with tempfile.TemporaryDirectory() as tmp:
        for file_name, content in {**(deps or {}), name: text}.items():
            os.makedirs(os.path.dirname(os.path.join(tmp, file_name)), exist_ok=True)
            with open(os.path.join(tmp, file_name), "w") as f:
                f.write(content)
        with open(os.path.join(tmp, "known.pb"), "wb") as f:
            f.write(known.SerializeToString())
        out = os.path.join(tmp, "out.pb")
        args = ["protoc", f"-I{tmp}", f"-I{include}", f"--descriptor_set_in={tmp}/known.pb"]
        assert protoc.main([*args, "--include_imports", f"--descriptor_set_out={out}", name]) == 0
        with open(out, "rb") as f:
            return descriptor_pb2.FileDescriptorSet.FromString(f.read())


def message_class(text: str, name: str, full_name: str, deps: dict[str, str] | None = None) -> Any:
    pool = descriptor_pool.DescriptorPool()
    for file in compile_proto(text, name, deps).file:
        pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(full_name))


_FILES = compile_proto(TRADE_PROTO)
_POOL = descriptor_pool.DescriptorPool()
for _file in _FILES.file:
    _POOL.Add(_file)
Trade: Any = message_factory.GetMessageClass(_POOL.FindMessageTypeByName("shop.v1.Trade"))
Venue: Any = message_factory.GetMessageClass(_POOL.FindMessageTypeByName("shop.v1.Trade.Venue"))
Heartbeat: Any = message_factory.GetMessageClass(_POOL.FindMessageTypeByName("shop.v1.Heartbeat"))


def serialized_trade_schema() -> str:
    """What a current registry answers for format=serialized: base64 of the FileDescriptorProto."""
    return base64.standard_b64encode(_FILES.file[-1].SerializeToString()).decode("ascii")


def zigzag_varint(value: int) -> bytes:
    """Reference encoder: zig-zag, then base-128 little-endian groups with continuation bits."""
    raw = (value << 1) ^ (value >> 63)
    out = bytearray()
    while True:
        byte = raw & 0x7F
        raw >>= 7
        if raw:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def header(schema_id: int, path: list[int], short_form: bool = True) -> bytes:
    """Magic byte 0, big-endian id, message indexes (count then indexes; [0] as a lone 0)."""
    out = b"\x00" + struct.pack(">I", schema_id)
    if short_form and path == [0]:
        return out + b"\x00"
    return out + zigzag_varint(len(path)) + b"".join(zigzag_varint(i) for i in path)


def framed(message: Any, schema_id: int = 11, path: list[int] | None = None) -> bytes:
    return header(schema_id, TRADE_PATH if path is None else path) + message.SerializeToString()


def decimal_message(target: Any, value: Decimal) -> None:
    """Fill a confluent.type.Decimal: big-endian two's-complement unscaled value and scale."""
    sign, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)
    unscaled = int("".join(map(str, digits))) * (-1 if sign else 1)
    target.value = unscaled.to_bytes((unscaled.bit_length() + 8) // 8, "big", signed=True)
    target.precision = len(digits)
    target.scale = -exponent


def trade(i: int, **overrides: Any) -> Any:
    """A fully populated Trade number i."""
    t = Trade(trade_id=i, symbol="BTC", price=1.5 * i, side=1 + i % 2, tags=["a", f"t{i}"])
    t.executed_at.seconds, t.executed_at.nanos = 1_700_000_000 + i, 123_456_789
    decimal_message(t.notional, Decimal(f"{i}1234567890123456.12345678"))
    t.fee.value = "0.10000000000000000001"
    t.venue.mic = "XNAS"
    t.venue.address.city = "New York"
    fill = t.fills.add(qty=i, price=2.5)
    fill.at.seconds = 1_700_000_100
    t.counters["views"] = i
    t.qty = i * 10
    t.parent_id.value = i + 1000
    for key, value in overrides.items():
        setattr(t, key, value)
    return t
