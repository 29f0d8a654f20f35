"""Kafka messages of one window → one DataFrame: decoded values plus the metadata columns.

The values of a whole window are decoded in one call; partition, offset, broker timestamp, key
(and configured headers) become columns built with numpy from the message list, so rows line up
with `Decoded.kept`. Each partition's (first, last) sampled offset comes from the same columns.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl
from confluent_kafka import Message

from dqmon.columns import (
    HEADER_COLUMN_PREFIX,
    INGEST_TIME_COLUMN,
    KEY_COLUMN,
    OFFSET_COLUMN,
    PARTITION_COLUMN,
)
from dqmon.decoders.base import Decoder

Offsets = dict[int, tuple[int, int]]


def messages_to_frame(
    messages: Sequence[Message], decoder: Decoder, headers: Sequence[str]
) -> tuple[pl.DataFrame, dict[str, int], Offsets]:
    """Decoded rows with metadata columns, decode errors by reason, and offsets per partition."""
    n = len(messages)
    if not n:
        return empty_frame(headers), {}, {}
    decoded = decoder.decode([v or b"" for v in map(Message.value, messages)])
    meta: dict[str, pl.Series] = {
        PARTITION_COLUMN: pl.Series(
            PARTITION_COLUMN, np.fromiter(map(Message.partition, messages), np.int32, n)
        ),
        OFFSET_COLUMN: pl.Series(OFFSET_COLUMN, np.fromiter(map(Message.offset, messages), np.int64, n)),
        INGEST_TIME_COLUMN: pl.Series(
            INGEST_TIME_COLUMN, np.fromiter((t[1] for t in map(Message.timestamp, messages)), np.int64, n)
        )
        .cast(pl.Datetime("ms"))
        .dt.replace_time_zone("UTC")
        .cast(pl.Datetime("us", "UTC")),
        KEY_COLUMN: pl.Series(KEY_COLUMN, list(map(Message.key, messages)), dtype=pl.Binary).cast(
            pl.String, strict=False
        ),
    }
    if headers:
        meta.update(_header_columns(messages, headers))
    everything = pl.DataFrame(list(meta.values()))
    offsets = {
        int(p): (int(lo), int(hi))
        for p, lo, hi in everything.group_by(PARTITION_COLUMN)
        .agg(pl.col(OFFSET_COLUMN).min().alias("lo"), pl.col(OFFSET_COLUMN).max().alias("hi"))
        .iter_rows()
    }
    columns = everything.filter(pl.Series(decoded.kept))
    df = decoded.df
    clash = [c for c in columns.columns if c in df.columns]
    df = pl.concat([df.drop(clash), columns], how="horizontal") if df.width else columns
    return df, dict(decoded.errors), offsets


def _header_columns(messages: Sequence[Message], names: Sequence[str]) -> dict[str, pl.Series]:
    # headers are a per-message list of pairs: this loop runs only when headers are configured
    wanted = set(names)
    columns: dict[str, list[str | None]] = {name: [None] * len(messages) for name in names}
    for row, headers in enumerate(map(Message.headers, messages)):
        for pair in headers or ():
            name, value = pair[0], pair[1]
            if name in wanted and value is not None:
                text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
                columns[name][row] = text
    return {
        f"{HEADER_COLUMN_PREFIX}{n}": pl.Series(f"{HEADER_COLUMN_PREFIX}{n}", v, dtype=pl.String)
        for n, v in columns.items()
    }


def empty_frame(headers: Sequence[str]) -> pl.DataFrame:
    schema: dict[str, pl.DataType] = {
        PARTITION_COLUMN: pl.Int32(),
        OFFSET_COLUMN: pl.Int64(),
        INGEST_TIME_COLUMN: pl.Datetime("us", "UTC"),
        KEY_COLUMN: pl.String(),
    }
    schema.update({f"{HEADER_COLUMN_PREFIX}{h}": pl.String() for h in headers})
    return pl.DataFrame(schema=schema)
