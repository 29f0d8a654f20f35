"""Protobuf in the Confluent wire format: magic byte 0, schema id, message indexes, message bytes.

Headers of the whole batch are parsed with numpy (dqmon/decoders/wire.py); records are grouped
by (schema id, message-index path), each schema fetched once from the registry and turned into
a descriptor pool once (dqmon/decoders/protobuf_schema.py). Each record's message is parsed by
the protobuf runtime (upb, in C: the one per-record step), and the batch's messages become
columns one field at a time (dqmon/decoders/protobuf_columns.py), never a dict per record.

Reasons (bounded): bad_magic, truncated, bad_message_index, unknown_schema, unknown_message,
invalid_protobuf, invalid_decimal.

Everything protobuf is imported on first use, so the registry can list this format where the
protobuf runtime is not installed (the `protobuf` extra).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import numpy.typing as npt
import polars as pl

from dqmon.decoders import wire
from dqmon.decoders.base import Decoded, RegistryDecoder, in_input_order
from dqmon.registry import DECODERS

if TYPE_CHECKING:
    from dqmon.decoders.protobuf_schema import ProtoSchema

log = logging.getLogger(__name__)

BAD_MAGIC = "bad_magic"
TRUNCATED = "truncated"
BAD_MESSAGE_INDEX = "bad_message_index"
UNKNOWN_SCHEMA = "unknown_schema"
UNKNOWN_MESSAGE = "unknown_message"
INVALID_PROTOBUF = "invalid_protobuf"
INVALID_DECIMAL = "invalid_decimal"
_WIRE_REASON = {wire.TRUNCATED: TRUNCATED, wire.BAD_MAGIC: BAD_MAGIC, wire.BAD_INDEX: BAD_MESSAGE_INDEX}
_MISSING_TTL = 30.0  # seconds before asking the registry again about an unusable schema id


@DECODERS.add("protobuf")
class ProtobufDecoder(RegistryDecoder):
    """Decodes Confluent-framed Protobuf; schemas by id from a Schema Registry, cached."""

    reasons: ClassVar[tuple[str, ...]] = (
        BAD_MAGIC,
        TRUNCATED,
        BAD_MESSAGE_INDEX,
        UNKNOWN_SCHEMA,
        UNKNOWN_MESSAGE,
        INVALID_PROTOBUF,
        INVALID_DECIMAL,
    )

    def __init__(self, registry: Any) -> None:
        super().__init__(registry)
        self._schemas: dict[int, ProtoSchema] = {}
        self._classes: dict[tuple[int, tuple[int, ...]], tuple[Any, type[Any]] | None] = {}
        self._missing: dict[int, float] = {}
        self._lock = threading.Lock()

    def decode(self, values: Sequence[bytes]) -> Decoded:
        n = len(values)
        if n == 0:
            return Decoded(pl.DataFrame(), np.zeros(0, dtype=np.bool_))
        headers = wire.parse_protobuf_headers(values)
        status = np.full(n, "", dtype=object)
        for code, reason in _WIRE_REASON.items():
            status[headers.status == code] = reason
        ok = np.flatnonzero(headers.status == wire.OK)
        frames: list[tuple[npt.NDArray[Any], pl.DataFrame]] = []
        if ok.size:
            keys = np.column_stack([headers.schema_ids[ok], headers.depth[ok], headers.paths[ok]])
            if (keys == keys[0]).all():  # the usual batch: one schema, one message type
                groups, inverse = keys[:1], np.zeros(ok.size, dtype=np.int64)
            else:
                groups, inverse = np.unique(keys, axis=0, return_inverse=True)
            for g, key in enumerate(groups):
                members = ok[inverse.ravel() == g]
                schema_id, depth = int(key[0]), int(key[1])
                path = tuple(int(i) for i in key[2 : 2 + depth])
                frame = self._decode_group(values, members, headers.body_start, schema_id, path, status)
                if frame is not None:
                    frames.append(frame)
        kept = status == ""
        reasons, counts = np.unique(status[~kept].astype(str), return_counts=True)
        return Decoded(
            in_input_order(frames),
            kept.astype(np.bool_),
            {str(r): int(c) for r, c in zip(reasons, counts, strict=True)},
        )

    def _decode_group(
        self,
        values: Sequence[bytes],
        members: npt.NDArray[np.int64],
        starts: npt.NDArray[np.int64],
        schema_id: int,
        path: tuple[int, ...],
        status: npt.NDArray[Any],
    ) -> tuple[npt.NDArray[Any], pl.DataFrame] | None:
        from dqmon.decoders.protobuf_columns import Columns

        schema = self._schema(schema_id)
        if schema is None:
            status[members] = UNKNOWN_SCHEMA
            return None
        found = self._message_class(schema_id, schema, path)
        if found is None:
            status[members] = UNKNOWN_MESSAGE
            return None
        descriptor, message_class = found
        bodies = [values[i][s:] for i, s in zip(members.tolist(), starts[members].tolist(), strict=True)]
        messages, parsed = _parse_all(message_class, bodies)
        status[members[~parsed]] = INVALID_PROTOBUF
        members = members[parsed]
        if not messages:
            return None
        columns = Columns(len(messages))
        try:
            df = columns.frame(descriptor, messages)
        except Exception as exc:  # noqa: BLE001 - never crash the monitor on a schema we map badly
            log.warning("protobuf schema id %d: columns failed: %s", schema_id, type(exc).__name__)
            status[members] = INVALID_PROTOBUF
            return None
        flagged = columns.status != ""
        status[members[flagged]] = columns.status[flagged]
        return members[~flagged], df.filter(pl.Series(~flagged))

    def _message_class(
        self, schema_id: int, schema: ProtoSchema, path: tuple[int, ...]
    ) -> tuple[Any, type[Any]] | None:
        key = (schema_id, path)
        if key not in self._classes:
            self._classes[key] = schema.message_class(path)
        return self._classes[key]

    def _schema(self, schema_id: int) -> ProtoSchema | None:
        with self._lock:
            if schema_id in self._schemas:
                return self._schemas[schema_id]
            if time.monotonic() - self._missing.get(schema_id, -_MISSING_TTL) < _MISSING_TTL:
                return None
            from dqmon.decoders import protobuf_schema

            try:
                schema = protobuf_schema.build(protobuf_schema.fetch_files(self.registry, schema_id))
            except protobuf_schema.ProtoSchemaError as exc:
                log.warning("protobuf schema id %d unusable: %s", schema_id, exc)
                self._missing[schema_id] = time.monotonic()
                return None
            except Exception as exc:  # noqa: BLE001 - never crash the monitor; no text: it may hold URLs
                log.warning("protobuf schema id %d unavailable: %s", schema_id, type(exc).__name__)
                self._missing[schema_id] = time.monotonic()
                return None
            self._schemas[schema_id] = schema
            return schema


def _parse_all(message_class: type[Any], bodies: list[bytes]) -> tuple[list[Any], npt.NDArray[np.bool_]]:
    """Parse every body; the whole group in one `map` unless one fails, then one at a time."""
    parsed = np.ones(len(bodies), dtype=np.bool_)
    try:
        return list(map(message_class.FromString, bodies)), parsed
    except Exception:  # noqa: BLE001, S110 - DecodeError, or RecursionError on hostile nesting
        pass  # some body is bad: find which, below
    messages = []
    for i, body in enumerate(bodies):
        try:
            messages.append(message_class.FromString(body))
        except Exception:  # noqa: BLE001
            parsed[i] = False
    return messages, parsed
