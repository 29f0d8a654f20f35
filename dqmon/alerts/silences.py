"""Silences and maintenance windows declared in config: matching alerts notify nobody."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from dqmon.config.models import Silence


def labels_match(match: Mapping[Any, str], labels: Mapping[str, str | None]) -> bool:
    """Every key of `match` equals the label (an empty match matches everything)."""
    return all(labels.get(key) == value for key, value in match.items())


def active_silence(
    silences: Sequence[Silence], labels: Mapping[str, str | None], now: float
) -> Silence | None:
    """The first silence covering these labels at `now` (naive datetimes are read as UTC)."""
    at = datetime.fromtimestamp(now, UTC)
    for silence in silences:
        starts = _utc(silence.starts)
        ends = _utc(silence.ends)
        if starts is not None and at < starts:
            continue
        if ends is not None and at >= ends:
            continue
        if labels_match(silence.match, labels):
            return silence
    return None


def _utc(value: datetime | None) -> datetime | None:
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)
