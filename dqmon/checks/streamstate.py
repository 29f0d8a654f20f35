"""Helpers the cross-window (stream integrity) checks share: count thresholds, record times,
and how a Polars frame of state is persisted in the state store.

State frames are written as LZ4-compressed Arrow IPC, base64 text inside the store's JSON, at
most once per `PERSIST_EVERY_SECONDS` of check-clock time (the same throttle as rolling
references). Key hashes come from Polars' `hash`, which is stable within a Polars version but not
across versions, so persisted hashes carry the version and are dropped after an upgrade.
"""

from __future__ import annotations

import base64
import io
import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import polars as pl

from dqmon.checks.timecols import epoch_seconds
from dqmon.columns import PARTITION_COLUMN

log = logging.getLogger(__name__)

PERSIST_EVERY_SECONDS = 60.0
HASH_SEED = 0x5EED_D0_0D
#: partition number given to rows of sources without partitions, and to rows whose partition is null
NO_PARTITION = -1


def exceeds(bad: int, rows: int, max_rate: float) -> bool:
    """Whether `bad` of `rows` is above the allowed share, compared as counts.

    A share computed as 3/30 or 1 - 0.9 carries float error; `bad > max_rate * rows` with a
    relative tolerance makes `max_rate: 0.1` accept exactly 10% however the 0.1 was reached.
    """
    return bad > max_rate * rows * (1 + 1e-9) + 1e-9


def share(bad: int, rows: int) -> float | None:
    return bad / rows if rows else None


def partition_expr(schema: pl.Schema) -> pl.Expr:
    """The batch's partition per row (Int32), or NO_PARTITION for sources without one (or a
    `_partition` field of the record's own that is not a number)."""
    if PARTITION_COLUMN in schema and schema[PARTITION_COLUMN].is_integer():
        return pl.col(PARTITION_COLUMN).cast(pl.Int32, strict=False).fill_null(NO_PARTITION)
    return pl.lit(NO_PARTITION, pl.Int32)


def time_expr(column: str | None, schema: pl.Schema, fallback: datetime) -> tuple[pl.Expr, pl.Expr]:
    """(epoch seconds per row, parsed?) for a record-time column; rows without a parseable time
    (or every row, without the column) take `fallback`, the window end, and count as untimed."""
    if column is None or column not in schema:
        return pl.lit(fallback.timestamp(), pl.Float64), pl.lit(False)
    ts = epoch_seconds(column, schema[column])
    parsed = ts.is_not_null() & ts.is_finite()
    return pl.when(parsed).then(ts).otherwise(pl.lit(fallback.timestamp())), parsed


def frame_to_text(frame: pl.DataFrame) -> str:
    buffer = io.BytesIO()
    frame.write_ipc(buffer, compression="lz4")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def frame_from_text(text: str) -> pl.DataFrame:
    return pl.read_ipc(io.BytesIO(base64.b64decode(text)))


def stored_frame(stored: Any, schema: Mapping[str, pl.DataType], *, hashed: bool) -> pl.DataFrame | None:
    """A persisted state frame if it is readable, has the expected columns and (for hashed keys)
    was written by this Polars version; None otherwise (the check starts empty)."""
    if not isinstance(stored, dict) or not isinstance(stored.get("frame"), str):
        return None
    if hashed and stored.get("polars") != pl.__version__:
        log.info("persisted key hashes are from Polars %s; starting empty", stored.get("polars"))
        return None
    try:
        frame = frame_from_text(stored["frame"])
        return frame.select([pl.col(n).cast(t) for n, t in schema.items()])
    except Exception:
        log.warning("unreadable persisted check state; starting empty", exc_info=True)
        return None


def frame_payload(frame: pl.DataFrame, **extra: Any) -> dict[str, Any]:
    return {"frame": frame_to_text(frame), "polars": pl.__version__, **extra}
