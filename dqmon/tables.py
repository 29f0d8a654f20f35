"""Reading a table file (NDJSON, Parquet, CSV) into a DataFrame: one reader for every caller."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import polars as pl

from dqmon.errors import DqmonError

TableFormat = Literal["json", "parquet", "csv"]
_BY_SUFFIX: dict[str, TableFormat] = {
    ".json": "json",
    ".jsonl": "json",
    ".ndjson": "json",
    ".parquet": "parquet",
    ".csv": "csv",
}


def read_table(path: Path, format: TableFormat | None = None) -> pl.DataFrame:
    """`format` as declared, else from the suffix: .ndjson/.jsonl/.json, .parquet, .csv."""
    kind = format or _BY_SUFFIX.get(path.suffix.lower())
    if kind == "parquet":
        return pl.read_parquet(path)
    if kind == "csv":
        return pl.read_csv(path, try_parse_dates=True)
    if kind == "json":
        return pl.read_ndjson(path)
    raise DqmonError(f"unknown file type {path.suffix!r}: use .ndjson/.jsonl/.json, .parquet or .csv")
