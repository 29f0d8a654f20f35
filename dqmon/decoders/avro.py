"""Avro in the Confluent wire format: magic byte 0, 4-byte big-endian schema id, Avro body.

The 5-byte header is parsed for the whole batch at once with numpy; records are grouped by
schema id, each schema fetched once from the registry (confluent-kafka's client, cached) and
parsed once by fastavro. fastavro has no batch reader for schemaless records, so the body of
each record is read in a loop: that is the one per-record step, and it is in C.

Decimals stay exact: fastavro reads the `decimal` logical type as Python Decimals, and a field
holding one gets its declared Polars Decimal(precision, scale) (dqmon/decoders/avro_types.py); a
value with more digits than the declared precision is counted as invalid_decimal, never rounded.

Reasons (bounded): bad_magic, truncated, unknown_schema, invalid_avro, invalid_decimal.
"""

from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import polars as pl

from dqmon.decoders.avro_types import decimal_overrides
from dqmon.decoders.base import Decoded, RegistryDecoder, in_input_order
from dqmon.registry import DECODERS

log = logging.getLogger(__name__)

BAD_MAGIC = "bad_magic"
TRUNCATED = "truncated"
UNKNOWN_SCHEMA = "unknown_schema"
INVALID_AVRO = "invalid_avro"
INVALID_DECIMAL = "invalid_decimal"
_HEADER = 5
_MISSING_TTL = 30.0  # seconds before asking the registry again about an unknown schema id


@DECODERS.add("avro")
class AvroDecoder(RegistryDecoder):
    """Decodes Confluent-framed Avro; schemas by id from a Schema Registry, cached for the process."""

    reasons: ClassVar[tuple[str, ...]] = (BAD_MAGIC, TRUNCATED, UNKNOWN_SCHEMA, INVALID_AVRO, INVALID_DECIMAL)

    def __init__(self, registry: Any) -> None:
        super().__init__(registry)
        self._schemas: dict[int, Any] = {}
        self._overrides: dict[int, dict[str, pl.DataType]] = {}
        self._missing: dict[int, float] = {}

    def decode(self, values: Sequence[bytes]) -> Decoded:
        n = len(values)
        status = np.full(n, "", dtype=object)
        if n == 0:
            return Decoded(pl.DataFrame(), np.zeros(0, dtype=np.bool_))
        lengths = np.fromiter(map(len, values), dtype=np.int64, count=n)
        # the first five bytes of every record, zero-padded, as one (n, 5) array
        heads = np.frombuffer(b"".join(v[:_HEADER].ljust(_HEADER, b"\0") for v in values), np.uint8).reshape(
            n, 5
        )
        truncated = lengths < _HEADER
        bad_magic = ~truncated & (heads[:, 0] != 0)
        ids = heads[:, 1:].astype(np.uint32) @ np.array([1 << 24, 1 << 16, 1 << 8, 1], dtype=np.uint32)
        status[truncated] = TRUNCATED
        status[bad_magic] = BAD_MAGIC
        import fastavro  # on first use: the registry lists this format without loading it

        frames: list[tuple[np.ndarray[Any, Any], pl.DataFrame]] = []
        for schema_id in np.unique(ids[status == ""]):
            members = np.flatnonzero((ids == schema_id) & (status == ""))
            schema = self._schema(int(schema_id))
            if schema is None:
                status[members] = UNKNOWN_SCHEMA
                continue
            rows: list[dict[str, Any]] = []
            row_index: list[int] = []
            for i in members.tolist():
                try:
                    record = fastavro.schemaless_reader(io.BytesIO(values[i][_HEADER:]), schema, None)
                    rows.append(record if isinstance(record, dict) else {"value": record})
                    row_index.append(i)
                except EOFError:
                    status[i] = TRUNCATED
                except Exception:  # noqa: BLE001 - never crash the monitor
                    status[i] = INVALID_AVRO
            if rows:
                overrides = self._overrides.get(int(schema_id), {})
                frames.extend(_frames(rows, np.array(row_index, dtype=np.int64), overrides, status))
        kept = status == ""
        df = in_input_order(frames)
        reasons, counts = np.unique(status[~kept].astype(str), return_counts=True)
        return Decoded(
            df, kept.astype(np.bool_), {str(r): int(c) for r, c in zip(reasons, counts, strict=True)}
        )

    def _schema(self, schema_id: int) -> Any:
        if schema_id in self._schemas:
            return self._schemas[schema_id]
        if time.monotonic() - self._missing.get(schema_id, -_MISSING_TTL) < _MISSING_TTL:
            return None
        import fastavro

        try:
            text = self.registry.get_schema(schema_id).schema_str
            parsed = fastavro.parse_schema(json.loads(text))
        except Exception as exc:  # noqa: BLE001 - never crash the monitor
            log.warning("avro schema id %d unavailable: %s", schema_id, type(exc).__name__)
            self._missing[schema_id] = time.monotonic()
            return None
        self._schemas[schema_id] = parsed
        self._overrides[schema_id] = decimal_overrides(parsed)
        return parsed


def _frames(
    rows: list[dict[str, Any]],
    index: np.ndarray[Any, Any],
    overrides: dict[str, pl.DataType],
    status: np.ndarray[Any, Any],
) -> list[tuple[np.ndarray[Any, Any], pl.DataFrame]]:
    """One frame of the rows, or, when a decimal exceeds its declared precision, the rows around it.

    Halving finds the k offending rows in about k·log(n) small builds; the clean batch is one build.
    """
    try:
        df = pl.from_dicts(rows, infer_schema_length=None)
        # a strict cast, not schema_overrides: those null an overflowing decimal inside a struct
        return [(index, df.cast({c: t for c, t in overrides.items() if c in df.columns}, strict=True))]
    except Exception:  # noqa: BLE001 - a value the declared dtype cannot hold exactly
        if len(rows) == 1:
            status[index] = INVALID_DECIMAL if overrides else INVALID_AVRO
            return []
    middle = len(rows) // 2
    return _frames(rows[:middle], index[:middle], overrides, status) + _frames(
        rows[middle:], index[middle:], overrides, status
    )
