"""Polars dtypes for Avro fields that hold decimals, so they get their declared precision and scale.

Only fields containing a `decimal` logical type are overridden (inference already types the rest
the way existing Avro users rely on); a field whose whole Avro type cannot be mapped (maps,
multi-branch unions, named-type references, precision over Polars' 38) is left to inference,
which still yields an exact Decimal(38, scale), never a float.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from dqmon.decoders.decimals import MAX_PRECISION

_PRIMITIVES: dict[str, pl.DataType] = {
    "null": pl.Null(),
    "boolean": pl.Boolean(),
    "int": pl.Int64(),  # Python ints from fastavro infer as Int64; keep the same dtype
    "long": pl.Int64(),
    "float": pl.Float64(),
    "double": pl.Float64(),
    "string": pl.String(),
    "bytes": pl.Binary(),
}
_LOGICAL: dict[str, pl.DataType] = {
    "timestamp-millis": pl.Datetime("us", "UTC"),
    "timestamp-micros": pl.Datetime("us", "UTC"),
    "date": pl.Date(),
    "uuid": pl.String(),
}


def _contains_decimal(avro: Any) -> bool:
    if isinstance(avro, list):
        return any(_contains_decimal(branch) for branch in avro)
    if not isinstance(avro, dict):
        return False
    if avro.get("logicalType") == "decimal":
        return True
    if avro.get("type") == "record":
        return any(_contains_decimal(f.get("type")) for f in avro.get("fields", []))
    return avro.get("type") == "array" and _contains_decimal(avro.get("items"))


def polars_dtype(avro: Any) -> pl.DataType | None:
    """The dtype fastavro's decoded values of `avro` build in Polars, or None when not mappable."""
    if isinstance(avro, str):
        return _PRIMITIVES.get(avro)
    if isinstance(avro, list):
        branches = [b for b in avro if b != "null"]
        return polars_dtype(branches[0]) if len(branches) == 1 else None
    if not isinstance(avro, dict):
        return None
    logical = avro.get("logicalType")
    if logical == "decimal":
        precision, scale = int(avro.get("precision", 0)), int(avro.get("scale", 0))
        return pl.Decimal(precision, scale) if 0 < precision <= MAX_PRECISION else None
    if logical in _LOGICAL:
        return _LOGICAL[logical]
    kind = avro.get("type")
    if kind == "record":
        fields = {f["name"]: polars_dtype(f.get("type")) for f in avro.get("fields", [])}
        if not fields or any(t is None for t in fields.values()):
            return None
        return pl.Struct({name: t for name, t in fields.items() if t is not None})
    if kind == "array":
        item = polars_dtype(avro.get("items"))
        return None if item is None else pl.List(item)
    if kind == "enum":
        return pl.String()
    if kind == "fixed":
        return pl.Binary()
    return _PRIMITIVES.get(kind) if isinstance(kind, str) else None


def decimal_overrides(schema: Any) -> dict[str, pl.DataType]:
    """`schema_overrides` for the top-level fields of a record schema that hold decimals."""
    if not isinstance(schema, dict) or schema.get("type") != "record":
        return {}
    out: dict[str, pl.DataType] = {}
    for field in schema.get("fields", []):
        if _contains_decimal(field.get("type")):
            dtype = polars_dtype(field.get("type"))
            if dtype is not None:
                out[field["name"]] = dtype
    return out
