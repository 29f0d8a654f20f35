"""JSON in the Confluent wire format (magic byte 0, schema id) typed by its registered JSON Schema.

The 5-byte headers are parsed for the whole batch with numpy and records grouped by schema id;
each schema is fetched once. The registered property types become Polars dtypes (integer →
Int64, number → Float64, string → String, string with `format: date-time` → Datetime(us, UTC),
`format: date` → Date, boolean, object → Struct, array → List; `["T", "null"]` allowed; local
`$ref`s followed), and each group's JSON is read by one `pl.read_ndjson` with those dtypes as
overrides, so a value of the wrong type makes the read fail. Failing groups are bisected like
dqmon/decoders/json.py does, and a record that fails alone is judged with that module's
`_judge_alone`: bad JSON keeps json's reasons, a valid object is a `schema_violation`. A
required property that is null or missing (and not allowed to be null) is a violation too.
Properties the schema does not type are inferred; declared properties absent from a batch are
null columns of their declared type, so a batch's schema does not depend on which fields it had.

Unlike the plain json format nothing is learned from the stream: the registry is the contract.
Limits (docs/sources.md): a JSON number in a string property reads as its text; `allOf`/`oneOf`
/`anyOf` and remote `$ref`s are not typed (their columns are inferred).

Reasons (bounded): bad_magic, truncated, unknown_schema, empty, too_large, not_object,
invalid_json, schema_violation.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
import polars as pl

from dqmon.decoders import wire
from dqmon.decoders.base import Decoded, RegistryDecoder, in_input_order
from dqmon.decoders.json import _OK, _REASON_OF, EMPTY, INVALID_JSON, NOT_OBJECT, TOO_LARGE, _judge_alone
from dqmon.registry import DECODERS

log = logging.getLogger(__name__)

BAD_MAGIC = "bad_magic"
TRUNCATED = "truncated"
UNKNOWN_SCHEMA = "unknown_schema"
SCHEMA_VIOLATION = "schema_violation"
_WIRE_REASON = {wire.TRUNCATED: TRUNCATED, wire.BAD_MAGIC: BAD_MAGIC}
_MISSING_TTL = 30.0
_LEAF = 8  # below this many records a failing chunk is judged record by record
_MAX_REF_DEPTH = 16


@DECODERS.add("json_schema")
class JsonSchemaDecoder(RegistryDecoder):
    """Decodes Confluent-framed JSON; columns typed by the registered JSON Schema."""

    reasons: ClassVar[tuple[str, ...]] = (
        BAD_MAGIC,
        TRUNCATED,
        UNKNOWN_SCHEMA,
        EMPTY,
        TOO_LARGE,
        NOT_OBJECT,
        INVALID_JSON,
        SCHEMA_VIOLATION,
    )

    def __init__(self, registry: Any, max_record_bytes: int = 1_000_000) -> None:
        super().__init__(registry)
        self.max_record_bytes = max_record_bytes
        self._schemas: dict[int, Contract] = {}
        self._missing: dict[int, float] = {}

    def decode(self, values: Sequence[bytes]) -> Decoded:
        n = len(values)
        if n == 0:
            return Decoded(pl.DataFrame(), np.zeros(0, dtype=np.bool_))
        headers = wire.parse_schema_ids(values)
        status = np.full(n, "", dtype=object)
        for code, reason in _WIRE_REASON.items():
            status[headers.status == code] = reason
        lengths = np.fromiter(map(len, values), dtype=np.int64, count=n) - wire.HEADER
        status[(status == "") & (lengths == 0)] = EMPTY
        status[(status == "") & (lengths > self.max_record_bytes)] = TOO_LARGE
        frames: list[tuple[npt.NDArray[Any], pl.DataFrame]] = []
        ok = status == ""
        for schema_id in np.unique(headers.schema_ids[ok]):
            members = np.flatnonzero(ok & (headers.schema_ids == schema_id))
            contract = self._contract(int(schema_id))
            if contract is None:
                status[members] = UNKNOWN_SCHEMA
                continue
            bodies = [values[i][wire.HEADER :] for i in members.tolist()]
            verdicts = np.full(members.size, "", dtype=object)
            pieces = contract.read(bodies, np.arange(members.size), verdicts)
            status[members] = verdicts
            frames.extend((members[idx], df) for idx, df in pieces if idx.size)
        kept = status == ""
        df = in_input_order(frames)
        reasons, counts = np.unique(status[~kept].astype(str), return_counts=True)
        return Decoded(df, kept, {str(r): int(c) for r, c in zip(reasons, counts, strict=True)})

    def _contract(self, schema_id: int) -> Contract | None:
        if schema_id in self._schemas:
            return self._schemas[schema_id]
        if time.monotonic() - self._missing.get(schema_id, -_MISSING_TTL) < _MISSING_TTL:
            return None
        try:
            schema = self.registry.get_schema(schema_id)
            if (schema.schema_type or "AVRO").upper() != "JSON":
                raise ValueError(f"schema type {schema.schema_type}, not JSON")
            contract = Contract.from_json_schema(json.loads(schema.schema_str))
        except Exception as exc:  # noqa: BLE001 - never crash the monitor; no text: it may hold URLs
            log.warning("json schema id %d unavailable: %s", schema_id, type(exc).__name__)
            self._missing[schema_id] = time.monotonic()
            return None
        self._schemas[schema_id] = contract
        return contract


class Contract:
    """A JSON Schema's top-level property dtypes and its non-nullable required properties."""

    def __init__(self, dtypes: dict[str, pl.DataType], required: list[str]) -> None:
        self.dtypes = dtypes
        self.required = required

    @classmethod
    def from_json_schema(cls, schema: dict[str, Any]) -> Contract:
        root = _resolve(schema, schema, 0)
        props = root.get("properties") if isinstance(root, dict) else None
        if not isinstance(props, dict):
            return cls({}, [])
        dtypes: dict[str, pl.DataType] = {}
        nullable: dict[str, bool] = {}
        for name, prop in props.items():
            mapped = _dtype(schema, prop, 0)
            if mapped is not None:
                dtypes[name], nullable[name] = mapped
        required = [r for r in root.get("required", []) if isinstance(r, str) and not nullable.get(r, True)]
        return cls(dtypes, required)

    def read(
        self, bodies: Sequence[bytes], idx: npt.NDArray[np.int64], verdicts: npt.NDArray[Any]
    ) -> list[tuple[npt.NDArray[np.int64], pl.DataFrame]]:
        """Typed read of `bodies[idx]`; bad records get a reason in `verdicts`, the rest rows."""
        chunk = [bodies[i] for i in idx.tolist()]
        payload = b"\n".join(chunk)
        if payload.count(b"\n") != len(chunk) - 1:  # newlines inside records: only whitespace in JSON
            payload = b"\n".join(body.replace(b"\n", b" ") for body in chunk)
        try:
            df = self._typed(payload)
        except Exception:  # noqa: BLE001 - a bad record somewhere in the chunk: isolate it
            df = None
        if df is not None and df.height == idx.size:
            return [self._required(idx, df, verdicts)]
        if idx.size > _LEAF:
            middle = idx.size // 2
            return self.read(bodies, idx[:middle], verdicts) + self.read(bodies, idx[middle:], verdicts)
        return [self._alone(bodies, int(i), verdicts) for i in idx]

    def _alone(
        self, bodies: Sequence[bytes], i: int, verdicts: npt.NDArray[Any]
    ) -> tuple[npt.NDArray[np.int64], pl.DataFrame]:
        verdict = _judge_alone(bodies[i])
        if verdict == _OK:
            try:
                df = self._typed(bodies[i].replace(b"\n", b" "))
            except Exception:  # noqa: BLE001 - valid JSON the contract rejects
                df = None
            if df is not None and df.height == 1:
                return self._required(np.array([i], dtype=np.int64), df, verdicts)
            verdicts[i] = SCHEMA_VIOLATION
        else:
            verdicts[i] = _REASON_OF.get(verdict, INVALID_JSON)
        return np.zeros(0, dtype=np.int64), pl.DataFrame()

    def _typed(self, payload: bytes) -> pl.DataFrame:
        # Polars rejects an override for a column no record has: override only the properties whose
        # key occurs in the payload (one substring search each); a false hit is dropped and retried
        overrides = {c: t for c, t in self.dtypes.items() if json.dumps(c).encode() in payload}
        while True:
            try:
                df = pl.read_ndjson(payload, schema_overrides=overrides, infer_schema_length=None)
                break
            except pl.exceptions.SchemaFieldNotFoundError as exc:
                absent = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                if absent not in overrides:
                    raise
                del overrides[absent]
        missing = [pl.lit(None, dtype=t).alias(c) for c, t in self.dtypes.items() if c not in df.columns]
        return df.with_columns(missing) if missing else df

    def _required(
        self, idx: npt.NDArray[np.int64], df: pl.DataFrame, verdicts: npt.NDArray[Any]
    ) -> tuple[npt.NDArray[np.int64], pl.DataFrame]:
        if not self.required:
            return idx, df
        violates = df.select(pl.any_horizontal(pl.col(self.required).is_null())).to_series().to_numpy()
        verdicts[idx[violates]] = SCHEMA_VIOLATION
        return idx[~violates], df.filter(~pl.Series(violates))


def _resolve(root: Any, node: Any, depth: int) -> Any:
    """Follow a local `$ref` (#/definitions/X, #/$defs/X); anything else is returned as is."""
    while isinstance(node, dict) and isinstance(node.get("$ref"), str) and depth < _MAX_REF_DEPTH:
        ref = node["$ref"]
        if not ref.startswith("#/"):
            return {}
        target: Any = root
        for part in ref[2:].split("/"):
            target = (
                target.get(part.replace("~1", "/").replace("~0", "~")) if isinstance(target, dict) else None
            )
        node, depth = target, depth + 1
    return node


def _dtype(root: Any, node: Any, depth: int) -> tuple[pl.DataType, bool] | None:
    """A property's Polars dtype and whether null is allowed; None when it is not typeable."""
    node = _resolve(root, node, depth)
    if not isinstance(node, dict) or depth > _MAX_REF_DEPTH:
        return None
    kinds = node.get("type")
    kinds = [kinds] if isinstance(kinds, str) else kinds
    if not isinstance(kinds, list):
        return None
    nullable = "null" in kinds
    concrete = [k for k in kinds if k != "null"]
    if len(concrete) != 1:
        return None
    kind = concrete[0]
    if kind == "integer":
        return pl.Int64(), nullable
    if kind == "number":
        return pl.Float64(), nullable
    if kind == "boolean":
        return pl.Boolean(), nullable
    if kind == "string":
        fmt = node.get("format")
        if fmt == "date-time":
            return pl.Datetime("us", "UTC"), nullable
        return (pl.Date(), nullable) if fmt == "date" else (pl.String(), nullable)
    if kind == "array":
        item = _dtype(root, node.get("items"), depth + 1)
        return None if item is None else (pl.List(item[0]), nullable)
    if kind == "object":
        props = node.get("properties")
        if not isinstance(props, dict) or not props:
            return None
        fields = {name: _dtype(root, prop, depth + 1) for name, prop in props.items()}
        if any(f is None for f in fields.values()):
            return None  # a struct must be typed whole, or Polars would drop the untyped fields
        return pl.Struct({name: f[0] for name, f in fields.items() if f is not None}), nullable
    return None
