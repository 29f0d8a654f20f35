"""JSON records → one Polars DataFrame per batch, with bad records isolated and counted.

Happy path: the batch's values are joined with newlines and read by one `pl.read_ndjson`
(no Python per record). Records that cannot be part of that read are found by vectorised
pre-checks (empty, too large, not starting with `{` / ending with `}`) and, when Polars still
rejects the batch, by bisection: only the halves that fail are split again, so k bad records
cost about k·log(n) small reads and every good record still decodes.

Reasons (bounded label values): empty, too_large, not_object, invalid_json, wrong_type.
`wrong_type` means a valid JSON object whose field types contradict the schema learned from
earlier records of the stream (e.g. a string where every other record has a number).

The learned schema never decides the type a healthy record decodes to: every batch is first read
by inference alone, and the learned types are applied (as `schema_overrides`) only to fields whose
inferred type family contradicts them, to isolate the contradicting records. A String override
is never used: Polars reads any scalar as a string without complaint, so it could only hide
numbers (a field retyped to string and back would stay string).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import ClassVar

import numpy as np
import numpy.typing as npt
import polars as pl

from dqmon.config.models import KafkaSource
from dqmon.decoders.base import Decoded, in_input_order
from dqmon.registry import DECODERS

EMPTY = "empty"
TOO_LARGE = "too_large"
NOT_OBJECT = "not_object"
INVALID_JSON = "invalid_json"
WRONG_TYPE = "wrong_type"

_OK, _EMPTY, _TOO_LARGE, _NOT_OBJECT, _INVALID, _WRONG, _SUSPECT = range(7)
_REASON_OF = {_EMPTY: EMPTY, _TOO_LARGE: TOO_LARGE, _NOT_OBJECT: NOT_OBJECT, _INVALID: INVALID_JSON}
_LEAF = 8  # below this many records a failing chunk is judged record by record
_WHITESPACE = np.array([0x20, 0x09, 0x0A, 0x0D], dtype=np.uint8)
_NEWLINE = 0x0A

IntArray = npt.NDArray[np.int64]


def _scalar(dtype: pl.DataType) -> bool:
    return dtype.is_numeric() or dtype in (pl.String, pl.Boolean)


def _family(dtype: pl.DataType) -> str:
    """int and float are one family: JSON writes 1 and 1.0 for the same field."""
    if dtype.is_numeric():
        return "number"
    return str(dtype)


@DECODERS.add("json")
class JsonDecoder:
    """Decodes JSON objects; learns the scalar field types from the stream to spot wrong types.

    The learned schema is dropped and re-learned when most of a batch contradicts it, so a
    real schema change (which the schema check reports) does not turn into decode errors.
    """

    reasons: ClassVar[tuple[str, ...]] = (EMPTY, TOO_LARGE, NOT_OBJECT, INVALID_JSON, WRONG_TYPE)
    needs_schema_registry: ClassVar[bool] = False

    def __init__(self, max_record_bytes: int = 1_000_000) -> None:
        self.max_record_bytes = max_record_bytes
        self.schema: dict[str, pl.DataType] | None = None

    @classmethod
    def from_source(cls, source: KafkaSource) -> JsonDecoder:
        return cls()

    # ------------------------------------------------------------------ public
    def decode(self, values: Sequence[bytes]) -> Decoded:
        n = len(values)
        if n == 0:
            return Decoded(pl.DataFrame(), np.zeros(0, dtype=np.bool_))
        lengths = np.fromiter(map(len, values), dtype=np.int64, count=n)
        # one trailing separator per record, so record i's bytes plus "\n" are a contiguous span
        buf = np.frombuffer(b"\n".join(values) + b"\n", dtype=np.uint8)
        starts = np.concatenate(([0], np.cumsum(lengths + 1)[:-1])).astype(np.int64)
        if int(np.count_nonzero(buf == _NEWLINE)) != n:
            buf = _flatten_newlines(buf, starts + lengths)
        status = self._prescreen(buf, starts, lengths)
        batch = _Batch(values, buf, starts, lengths)

        for index in np.flatnonzero(status == _SUSPECT):
            # leading/trailing whitespace or not an object: judged alone, off the happy path
            status[index] = _judge_alone(values[int(index)])
        candidates = np.flatnonzero(status == _OK)
        df = self._decode_candidates(batch, candidates, status)
        self._learn(df)
        kept = status == _OK
        errors = {
            reason: int(count)
            for reason, count in (
                (_REASON_OF.get(code, WRONG_TYPE), np.count_nonzero(status == code))
                for code in (_EMPTY, _TOO_LARGE, _NOT_OBJECT, _INVALID, _WRONG)
            )
            if count
        }
        return Decoded(df, kept, errors)

    # ------------------------------------------------------------------ internals
    def _prescreen(
        self, buf: npt.NDArray[np.uint8], starts: IntArray, lengths: IntArray
    ) -> npt.NDArray[np.int8]:
        """Vectorised verdicts from lengths and first/last bytes; the unsure go to _SUSPECT."""
        status = np.full(lengths.size, _OK, dtype=np.int8)
        status[lengths == 0] = _EMPTY
        status[lengths > self.max_record_bytes] = _TOO_LARGE
        body = np.flatnonzero(status == _OK)
        first = buf[starts[body]]
        last = buf[starts[body] + lengths[body] - 1]
        plain = (first == ord("{")) & (last == ord("}"))
        status[body[~plain]] = _SUSPECT
        return status

    @staticmethod
    def _read(payload: bytes, overrides: dict[str, pl.DataType] | None) -> pl.DataFrame:
        return pl.read_ndjson(payload, schema_overrides=overrides or None, infer_schema_length=None)

    def _contradicted(self, frames: list[tuple[IntArray, pl.DataFrame]]) -> dict[str, pl.DataType]:
        """Learned types that a decoded piece's inferred types contradict (by family), as overrides."""
        if self.schema is None:
            return {}
        found: dict[str, pl.DataType] = {}
        for _, df in frames:
            for name, dtype in df.schema.items():
                learned = self.schema.get(name)
                if learned is None or dtype == pl.Null or _family(dtype) == _family(learned):
                    continue
                if learned != pl.String:  # a String override would silently re-type numbers
                    found[name] = learned
        return found

    def _decode_candidates(
        self, batch: _Batch, candidates: IntArray, status: npt.NDArray[np.int8]
    ) -> pl.DataFrame:
        if candidates.size == 0:
            return pl.DataFrame()
        frames = self._decode_or_isolate(batch, candidates, status, None)
        overrides = self._contradicted(frames)
        if not overrides:
            return self._assemble(batch, candidates, status, None, frames)
        # some records contradict what the stream taught us: isolate them with the learned types
        status[candidates] = _OK
        checked = self._assemble(batch, candidates, status, overrides)
        wrong = np.count_nonzero(status[candidates] == _WRONG)
        if wrong * 2 <= candidates.size:
            return checked
        # most records contradict what we learned: the stream changed, learn it again
        self.schema = None
        status[candidates] = _OK
        return self._assemble(batch, candidates, status, None)

    def _assemble(
        self,
        batch: _Batch,
        candidates: IntArray,
        status: npt.NDArray[np.int8],
        overrides: dict[str, pl.DataType] | None,
        frames: list[tuple[IntArray, pl.DataFrame]] | None = None,
    ) -> pl.DataFrame:
        """Decode the candidates into one frame; pieces of a bisected batch whose inferred types
        conflict (nested type conflicts) are re-read with the largest piece's scalar types."""
        for _ in range(2):
            if frames is None:
                frames = self._decode_or_isolate(batch, candidates, status, overrides)
            try:
                return in_input_order(frames)
            except Exception:  # noqa: BLE001 - never crash the monitor
                largest = max(frames, key=lambda item: item[0].size)[1]
                overrides = {**{k: v for k, v in largest.schema.items() if _scalar(v)}, **(overrides or {})}
                status[candidates] = _OK
                frames = None
        # still irreconcilable: keep the largest consistent part
        frames = self._decode_or_isolate(batch, candidates, status, overrides)
        keep_idx, largest = max(frames, key=lambda item: item[0].size)
        status[candidates] = _WRONG
        status[keep_idx] = _OK
        return largest

    def _decode_or_isolate(
        self,
        batch: _Batch,
        indices: IntArray,
        status: npt.NDArray[np.int8],
        overrides: dict[str, pl.DataType] | None,
    ) -> list[tuple[IntArray, pl.DataFrame]]:
        try:
            df = self._read(batch.payload(indices), overrides)
        except Exception:  # noqa: BLE001 - never crash the monitor
            if indices.size <= _LEAF:
                return [self._decode_one(batch.values[i], int(i), status, overrides) for i in indices]
            middle = indices.size // 2
            return self._decode_or_isolate(
                batch, indices[:middle], status, overrides
            ) + self._decode_or_isolate(batch, indices[middle:], status, overrides)
        if df.height != indices.size:  # a line Polars skipped: judge each record alone
            return [self._decode_one(batch.values[i], int(i), status, overrides) for i in indices]
        return [(indices, df)]

    def _decode_one(
        self,
        value: bytes,
        index: int,
        status: npt.NDArray[np.int8],
        overrides: dict[str, pl.DataType] | None,
    ) -> tuple[IntArray, pl.DataFrame]:
        no_rows = (np.zeros(0, dtype=np.int64), pl.DataFrame())
        try:
            df = self._read(value.replace(b"\n", b" "), overrides)
        except Exception:  # noqa: BLE001 - never crash the monitor
            verdict = _judge_alone(value)
            status[index] = _WRONG if verdict == _OK else verdict
            return no_rows
        if df.height != 1:
            status[index] = _INVALID
            return no_rows
        status[index] = _OK
        return (np.array([index], dtype=np.int64), df)

    def _learn(self, df: pl.DataFrame) -> None:
        scalars = {name: dtype for name, dtype in df.schema.items() if _scalar(dtype)}
        if self.schema is None:
            self.schema = scalars or None
        else:
            # the latest clean type of a field wins: a reverted type change is learned back
            self.schema = {**self.schema, **scalars}


class _Batch:
    """A batch's values and its newline-joined buffer, gathered by record index."""

    def __init__(
        self, values: Sequence[bytes], buf: npt.NDArray[np.uint8], starts: IntArray, lengths: IntArray
    ):
        self.values = values
        self.buf = buf
        self.starts = starts
        self.lengths = lengths

    def payload(self, indices: IntArray) -> bytes:
        if indices.size == self.lengths.size:
            return self.buf.tobytes()
        if indices.size * 8 < self.lengths.size:  # few records: slicing beats a full-buffer mask
            return b"".join(
                self.buf[s : s + n + 1].tobytes()
                for s, n in zip(self.starts[indices], self.lengths[indices], strict=True)
            )
        mask = np.zeros(self.lengths.size, dtype=np.bool_)
        mask[indices] = True
        return self.buf[np.repeat(mask, self.lengths + 1)].tobytes()


def _flatten_newlines(buf: npt.NDArray[np.uint8], ends: IntArray) -> npt.NDArray[np.uint8]:
    """Newlines inside a record become spaces (in valid JSON they can only be whitespace)."""
    fixed = buf.copy()
    fixed[fixed == _NEWLINE] = 0x20
    fixed[ends] = _NEWLINE
    return fixed


def _judge_alone(value: bytes) -> int:
    """Why one record is bad (or _OK): parsed with the json module, off the happy path."""
    text = value.strip(bytes(_WHITESPACE))
    if not text:
        return _EMPTY
    try:
        parsed = json.loads(text)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return _INVALID
    return _OK if isinstance(parsed, dict) else _NOT_OBJECT
