"""The metadata columns a source adds beside a record's own fields.

Source-neutral names: the Kafka source fills all of them, other sources none or some. Schema
checks ignore them; freshness reads ingest time from `INGEST_TIME_COLUMN`.
"""

from __future__ import annotations

PARTITION_COLUMN = "_partition"
OFFSET_COLUMN = "_offset"
INGEST_TIME_COLUMN = "_timestamp"  # when the broker (or source) received the record
KEY_COLUMN = "_key"
HEADER_COLUMN_PREFIX = "_header_"
METADATA_COLUMNS = frozenset({PARTITION_COLUMN, OFFSET_COLUMN, INGEST_TIME_COLUMN, KEY_COLUMN})


def is_metadata_column(name: str) -> bool:
    return name in METADATA_COLUMNS or name.startswith(HEADER_COLUMN_PREFIX)
