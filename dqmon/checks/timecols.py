"""Event-time columns as epoch seconds, whatever type the source gave them."""

from __future__ import annotations

import polars as pl


def epoch_seconds(column: str, dtype: pl.DataType) -> pl.Expr:
    """A Float64 expression of epoch seconds; unparseable values become null.

    Datetimes without a time zone are taken as UTC; numbers are epoch seconds, or
    milliseconds/microseconds/nanoseconds when their magnitude says so.
    """
    col = pl.col(column)
    if dtype == pl.Null:
        return col.cast(pl.Float64)
    if isinstance(dtype, pl.Datetime):
        return col.dt.epoch("us").cast(pl.Float64) / 1e6
    if isinstance(dtype, pl.Date):
        return col.cast(pl.Datetime("us")).dt.epoch("us").cast(pl.Float64) / 1e6
    if dtype.is_numeric():
        x = col.cast(pl.Float64)
        magnitude = x.abs()
        return (
            pl.when(magnitude >= 1e17)
            .then(x / 1e9)
            .when(magnitude >= 1e14)
            .then(x / 1e6)
            .when(magnitude >= 1e11)
            .then(x / 1e3)
            .otherwise(x)
        )
    if dtype == pl.String:
        parsed = col.str.to_datetime(strict=False, time_zone="UTC", time_unit="us")
        return parsed.dt.epoch("us").cast(pl.Float64) / 1e6
    raise TypeError(f"column {column!r} of type {dtype} cannot hold event times")
