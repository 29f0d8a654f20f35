"""The Confluent Schema Registry wire format, parsed for a whole batch at once with numpy.

Every framed record starts with magic byte 0 and the schema id as 4 bytes big-endian. Protobuf
records then carry the message-indexes array naming which message of the schema's file was
written: a zig-zag varint count followed by that many zig-zag varint indexes (the path from the
file's top-level messages through nested ones). A count of 0 is the short form of [0], the
first top-level message. That is the layout written and read by Confluent's serializers
(confluent-kafka-python `SchemaId.from_bytes` / `_read_index_array`, the Java
`MessageIndexes`).

The parse runs one numpy step per header byte position, never a Python step per record, so its
cost does not grow with the batch beyond the array work.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

HEADER = 5
MAX_DEPTH = 32  # message nesting a path may name; Confluent allows more, no real schema needs it
_VARINT_BYTES = 10  # a 64-bit varint is at most ten bytes
_PREFIX = HEADER + _VARINT_BYTES * (MAX_DEPTH + 1)  # the longest header a valid record can have
_SHORT_PREFIX = 16

# per-record verdicts of the header parse (_BEYOND: the header runs past the bytes looked at)
OK, TRUNCATED, BAD_MAGIC, BAD_INDEX, _BEYOND = range(5)

IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Headers:
    """Per record: verdict, schema id, message-index path and where the payload starts.

    `paths[i, :depth[i]]` is record i's message-index path (rest -1); meaningful where
    `status == OK`.
    """

    status: npt.NDArray[np.int8]
    schema_ids: IntArray
    paths: IntArray
    depth: IntArray
    body_start: IntArray


def _prefixes(values: Sequence[bytes], width: int) -> tuple[npt.NDArray[np.uint8], IntArray]:
    """The first `width` bytes of every record, zero-padded, as one (n, width) array, and lengths."""
    n = len(values)
    lengths = np.fromiter(map(len, values), dtype=np.int64, count=n)
    joined = b"".join(v[:width].ljust(width, b"\0") for v in values)
    return np.frombuffer(joined, np.uint8).reshape(n, width), lengths


def parse_schema_ids(values: Sequence[bytes]) -> Headers:
    """The 5-byte header alone (Avro, JSON Schema): payload starts right after it."""
    n = len(values)
    heads, lengths = _prefixes(values, HEADER)
    status = np.full(n, OK, dtype=np.int8)
    status[heads[:, 0] != 0] = BAD_MAGIC
    status[lengths < HEADER] = TRUNCATED
    return Headers(
        status,
        _schema_ids(heads),
        np.full((n, 0), -1, dtype=np.int64),
        np.zeros(n, dtype=np.int64),
        np.full(n, HEADER, dtype=np.int64),
    )


def parse_protobuf_headers(values: Sequence[bytes]) -> Headers:
    """Header plus message-indexes array of every record.

    A first pass looks at the first 16 bytes of each record, enough for nearly every real header
    ([0] takes 6); the few whose indexes run on are parsed again from a prefix long enough for
    the deepest path allowed.
    """
    first = _parse(values, _SHORT_PREFIX)
    again = np.flatnonzero(first.status == _BEYOND)
    if again.size == 0:
        return first
    second = _parse([values[i] for i in again.tolist()], _PREFIX)
    second.status[second.status == _BEYOND] = BAD_INDEX  # cannot happen within MAX_DEPTH; be safe
    width = max(first.paths.shape[1], second.paths.shape[1])
    paths = np.full((len(values), width), -1, dtype=np.int64)
    paths[:, : first.paths.shape[1]] = first.paths
    paths[again] = -1
    paths[again, : second.paths.shape[1]] = second.paths
    for name in ("status", "depth", "body_start"):
        getattr(first, name)[again] = getattr(second, name)
    return Headers(first.status, first.schema_ids, paths, first.depth, first.body_start)


def _parse(values: Sequence[bytes], width: int) -> Headers:
    n = len(values)
    heads, lengths = _prefixes(values, width)
    status = np.full(n, OK, dtype=np.int8)
    status[heads[:, 0] != 0] = BAD_MAGIC
    status[lengths < HEADER] = TRUNCATED
    pos = np.full(n, HEADER, dtype=np.int64)
    count, pos = _varints(heads, lengths, pos, status)
    status[(status == OK) & ((count < 0) | (count > MAX_DEPTH))] = BAD_INDEX
    count = np.where(status == OK, count, 0)
    depth = np.maximum(count, 1)  # count 0 is the short form of the path [0]
    levels = int(depth.max(initial=1))
    paths = np.full((n, levels), -1, dtype=np.int64)
    paths[:, 0] = 0
    for level in range(levels):
        reading = (status == OK) & (count > level)
        if not reading.any():
            break
        value, after = _varints(heads, lengths, pos, status, reading)
        status[reading & (status == OK) & (value < 0)] = BAD_INDEX  # a negative index names nothing
        paths[reading, level] = value[reading]
        pos = np.where(reading, after, pos)
    paths[status != OK] = -1
    return Headers(status, _schema_ids(heads), paths, depth, pos)


def _schema_ids(heads: npt.NDArray[np.uint8]) -> IntArray:
    weights = np.array([1 << 24, 1 << 16, 1 << 8, 1], dtype=np.int64)
    ids: IntArray = heads[:, 1:HEADER].astype(np.int64) @ weights
    return ids


def _varints(
    heads: npt.NDArray[np.uint8],
    lengths: IntArray,
    pos: IntArray,
    status: npt.NDArray[np.int8],
    active: npt.NDArray[np.bool_] | None = None,
) -> tuple[IntArray, IntArray]:
    """Read one zig-zag varint at `pos` of every active record; marks the ones that end early.

    Returns the decoded values and the position after each varint. A record whose bytes end
    inside the varint is TRUNCATED; one whose varint runs past ten bytes is BAD_INDEX, past the
    part of the record this pass looks at _BEYOND.
    """
    n = heads.shape[0]
    rows = np.arange(n)
    going = (status == OK) if active is None else (active & (status == OK))
    raw = np.zeros(n, dtype=np.uint64)
    end = pos.copy()
    for k in range(_VARINT_BYTES):
        at = pos + k
        short = going & (at >= lengths)
        status[short] = TRUNCATED
        going &= ~short
        beyond = going & (at >= heads.shape[1])
        status[beyond] = _BEYOND
        going &= ~beyond
        if not going.any():
            break
        byte = heads[rows, np.minimum(at, heads.shape[1] - 1)].astype(np.uint64)
        raw[going] |= (byte[going] & np.uint64(0x7F)) << np.uint64(7 * k)
        done = going & (byte < 0x80)
        end[done] = at[done] + 1
        going &= ~done
    status[going] = BAD_INDEX  # still continuing after ten bytes
    # zig-zag: 0, -1, 1, -2, ... ↔ 0, 1, 2, 3, ...
    value = (raw >> np.uint64(1)).astype(np.int64) ^ -(raw & np.uint64(1)).astype(np.int64)
    return value, end
