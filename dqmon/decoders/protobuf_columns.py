"""Parsed Protobuf messages → Polars columns, built one field at a time (never a dict per record).

Each field's values are pulled from all messages with one `attrgetter` map (upb's C accessors)
and become one typed Series; nested messages recurse on the list of sub-messages and become a
Struct, repeated fields are flattened, built as one element column and wrapped as a List by
their offsets. Mapping (documented in docs/sources.md):

- int32/sint32/sfixed32 → Int32, int64/... → Int64, uint32/fixed32 → UInt32, uint64/fixed64 →
  UInt64, float → Float32, double → Float64, bool, string, bytes → Binary, enum → its name
  (an unknown number → the number as text)
- message → Struct (null when not set), repeated → List, map<K, V> → List(Struct{key, value})
- google.protobuf.Timestamp → Datetime(us, UTC), Duration → Duration(us), the wrappers
  (Int64Value, StringValue, ...) → their nullable scalar
- confluent.type.Decimal (bytes + scale) and google.type.Decimal (string) → Polars Decimal,
  precision/scale from the field's `(confluent.field_meta).params` when declared
- a message type nested in itself (recursion) past one level → Binary (its serialized bytes):
  Polars types are finite

Fields with no presence (proto3 scalars without `optional`) read as their default, like every
Protobuf reader; fields with presence are null when unset.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import chain
from operator import attrgetter, methodcaller
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl
import pyarrow as pa
from google.protobuf.descriptor import Descriptor, FieldDescriptor

from dqmon.decoders import decimals

INVALID_DECIMAL = "invalid_decimal"
INVALID_PROTOBUF = "invalid_protobuf"

_F = FieldDescriptor
_SCALARS: dict[int, pl.DataType] = {
    _F.TYPE_INT32: pl.Int32(),
    _F.TYPE_SINT32: pl.Int32(),
    _F.TYPE_SFIXED32: pl.Int32(),
    _F.TYPE_INT64: pl.Int64(),
    _F.TYPE_SINT64: pl.Int64(),
    _F.TYPE_SFIXED64: pl.Int64(),
    _F.TYPE_UINT32: pl.UInt32(),
    _F.TYPE_FIXED32: pl.UInt32(),
    _F.TYPE_UINT64: pl.UInt64(),
    _F.TYPE_FIXED64: pl.UInt64(),
    _F.TYPE_FLOAT: pl.Float32(),
    _F.TYPE_DOUBLE: pl.Float64(),
    _F.TYPE_BOOL: pl.Boolean(),
    _F.TYPE_STRING: pl.String(),
    _F.TYPE_BYTES: pl.Binary(),
}
_WRAPPERS = {
    f"google.protobuf.{name}Value"
    for name in ("Double", "Float", "Int64", "UInt64", "Int32", "UInt32", "Bool", "String", "Bytes")
}
_TIMESTAMP, _DURATION = "google.protobuf.Timestamp", "google.protobuf.Duration"
_CONFLUENT_DECIMALS = {"confluent.type.Decimal", "confluent.types.Decimal"}
_GOOGLE_DECIMAL = "google.type.Decimal"
_MIN_SECONDS, _MAX_SECONDS = -62_135_596_800, 253_402_300_799  # Timestamp's valid range, years 0001 to 9999
_RECURSION_LEVELS = 1  # how often a message type may appear inside itself before it becomes Binary

IntArray = npt.NDArray[np.int64]


def _field_meta(field: FieldDescriptor) -> dict[str, str]:
    """Confluent's `(confluent.field_meta).params` of a field (decimal precision/scale), if any."""
    try:
        from confluent_kafka.schema_registry.confluent import meta_pb2

        extension = getattr(meta_pb2, "field_meta")  # noqa: B009 - generated, invisible to mypy
        options = field.GetOptions()
        if not options.HasExtension(extension):
            return {}
        return dict(options.Extensions[extension].params)
    except Exception:  # noqa: BLE001 - options are advisory; a field without them is inferred
        return {}


class Columns:
    """Builds the columns of one message type for one batch; flags bad records by reason.

    `status[i]` is "" for a good record and the reason otherwise; a value inside record i (at any
    depth) that cannot be represented exactly flags record i.
    """

    def __init__(self, n: int) -> None:
        self.status = np.full(n, "", dtype=object)

    def flag(self, reason: str, rows: IntArray) -> None:
        if rows.size:
            self.status[rows] = reason

    def frame(self, descriptor: Descriptor, messages: Sequence[Any]) -> pl.DataFrame:
        if not descriptor.fields:  # a frame needs a column to have rows: name the message instead
            return pl.DataFrame({"_message": [descriptor.full_name] * len(messages)})
        rows = np.arange(len(messages), dtype=np.int64)
        return pl.DataFrame(self._fields(descriptor, messages, rows, (descriptor.full_name,)))

    # ----------------------------------------------------------------- per field
    def _fields(
        self, descriptor: Descriptor, messages: Sequence[Any], rows: IntArray, trail: tuple[str, ...]
    ) -> list[pl.Series]:
        return [self._field(field, messages, rows, trail) for field in descriptor.fields]

    def _field(
        self, field: FieldDescriptor, messages: Sequence[Any], rows: IntArray, trail: tuple[str, ...]
    ) -> pl.Series:
        containers = list(map(attrgetter(field.name), messages))
        if not field.is_repeated:
            values = self._values(field, containers, rows, trail)
            if field.has_presence:
                present = list(map(methodcaller("HasField", field.name), messages))
                values = _null_unless(values, present)
            return values.alias(field.name)
        entry = field.message_type
        if entry is not None and entry.GetOptions().map_entry:
            containers = [list(c.items()) for c in containers]
        lengths = np.fromiter(map(len, containers), dtype=np.int64, count=len(containers))
        flat = list(chain.from_iterable(containers))
        flat_rows = np.repeat(rows, lengths)
        if entry is not None and entry.GetOptions().map_entry:
            key, value = entry.fields_by_name["key"], entry.fields_by_name["value"]
            element = pl.DataFrame(
                [
                    self._values(key, [k for k, _ in flat], flat_rows, trail).alias("key"),
                    self._values(value, [v for _, v in flat], flat_rows, trail).alias("value"),
                ]
            ).to_struct("entry")
        else:
            element = self._values(field, flat, flat_rows, trail)
        offsets = pa.array(np.concatenate(([0], np.cumsum(lengths))), type=pa.int64())
        listed = pa.LargeListArray.from_arrays(offsets, element.to_arrow())
        series = pl.from_arrow(listed)
        assert isinstance(series, pl.Series)
        return series.alias(field.name)

    def _values(
        self, field: FieldDescriptor, values: Sequence[Any], rows: IntArray, trail: tuple[str, ...]
    ) -> pl.Series:
        """One Series of a field's element values (scalars or sub-messages), unset → defaults."""
        if field.type == _F.TYPE_ENUM:
            numbers = pl.Series(values, dtype=pl.Int32)
            names = {v.number: v.name for v in field.enum_type.values}
            return numbers.replace_strict(names, default=numbers.cast(pl.String), return_dtype=pl.String)
        if field.type not in (_F.TYPE_MESSAGE, _F.TYPE_GROUP):
            return pl.Series(values, dtype=_SCALARS[field.type])
        message = field.message_type
        name = message.full_name
        if name == _TIMESTAMP:
            return self._timestamps(values, rows)
        if name == _DURATION:
            micros = _micros(values)
            return pl.Series(micros, dtype=pl.Int64).cast(pl.Duration("us"))
        if name in _WRAPPERS:
            return self._values(message.fields_by_name["value"], [v.value for v in values], rows, trail)
        if name in _CONFLUENT_DECIMALS or name == _GOOGLE_DECIMAL:
            return self._decimals(field, values, rows)
        if trail.count(name) > _RECURSION_LEVELS:
            return pl.Series(list(map(methodcaller("SerializeToString"), values)), dtype=pl.Binary)
        if not message.fields:  # google.protobuf.Empty and friends: Polars has no empty struct
            return pl.Series([True] * len(values), dtype=pl.Boolean)
        children = self._fields(message, values, rows, (*trail, name))
        return pl.DataFrame(children).to_struct()

    def _timestamps(self, values: Sequence[Any], rows: IntArray) -> pl.Series:
        seconds = np.fromiter(map(attrgetter("seconds"), values), dtype=np.int64, count=len(values))
        nanos = np.fromiter(map(attrgetter("nanos"), values), dtype=np.int64, count=len(values))
        bad = (seconds < _MIN_SECONDS) | (seconds > _MAX_SECONDS) | (nanos < 0) | (nanos >= 1_000_000_000)
        self.flag(INVALID_PROTOBUF, rows[bad])
        micros = np.where(bad, 0, seconds) * 1_000_000 + np.where(bad, 0, nanos) // 1000
        return pl.Series(micros, dtype=pl.Int64).cast(pl.Datetime("us", "UTC"))

    def _decimals(self, field: FieldDescriptor, values: Sequence[Any], rows: IntArray) -> pl.Series:
        meta = _field_meta(field)
        precision = int(meta["precision"]) if meta.get("precision", "").isdigit() else None
        scale = int(meta["scale"]) if meta.get("scale", "").lstrip("-").isdigit() else None
        if field.message_type.full_name == _GOOGLE_DECIMAL:
            parsed = [decimals.parse_text(v.value) if v.value else None for v in values]
            unparsable = [bool(v.value) and p is None for v, p in zip(values, parsed, strict=True)]
            self.flag(INVALID_DECIMAL, rows[np.array(unparsable, dtype=np.bool_)])
        else:  # empty bytes are the unscaled integer 0
            parsed = [decimals.from_unscaled(v.value, v.scale) for v in values]
        series, bad = decimals.exact_series("", parsed, precision, scale)
        self.flag(INVALID_DECIMAL, rows[bad])
        return series


def _micros(durations: Sequence[Any]) -> npt.NDArray[np.int64]:
    seconds = np.fromiter(map(attrgetter("seconds"), durations), dtype=np.int64, count=len(durations))
    nanos = np.fromiter(map(attrgetter("nanos"), durations), dtype=np.int64, count=len(durations))
    return seconds * 1_000_000 + nanos // 1000  # nanos carry the sign of seconds


def _null_unless(values: pl.Series, present: list[bool]) -> pl.Series:
    frame = pl.DataFrame([pl.Series("present", present, dtype=pl.Boolean), values.alias("value")])
    return frame.select(pl.when(pl.col("present")).then(pl.col("value"))).to_series()
