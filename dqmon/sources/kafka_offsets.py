"""Offset arithmetic for Kafka sources: start positions and consumer lag, the Apache-Kafka way."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime

# librdkafka's logical offsets
OFFSET_BEGINNING = -2
OFFSET_END = -1
OFFSET_INVALID = -1001


def start_timestamp_ms(start: str) -> int | None:
    """The start position as epoch milliseconds, or None for `latest` / `earliest`."""
    if start in ("latest", "earliest"):
        return None
    moment = datetime.fromisoformat(start.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def start_offsets(
    start: str,
    partitions: Sequence[int],
    offsets_for_times: Callable[[int, Sequence[int]], Mapping[int, int]],
) -> dict[int, int]:
    """Where each partition starts reading.

    `offsets_for_times(ms, partitions)` answers, per partition, the earliest offset whose
    timestamp is >= ms, or -1 when no such message exists yet (Kafka's ListOffsets contract).
    A partition with no later message starts at its end, so only new messages are read.
    """
    if start == "earliest":
        return dict.fromkeys(partitions, OFFSET_BEGINNING)
    if start == "latest":
        return dict.fromkeys(partitions, OFFSET_END)
    ms = start_timestamp_ms(start)
    assert ms is not None
    found = offsets_for_times(ms, partitions)
    return {p: (found[p] if found.get(p, -1) >= 0 else OFFSET_END) for p in partitions}


def lag_messages(high: Mapping[int, int], committed: Mapping[int, int]) -> int | None:
    """Messages not yet consumed by a group: sum of high watermark - committed offset.

    Partitions the group has never committed are left out (as kafka-consumer-groups shows `-`);
    None when the group has committed nothing on this topic.
    """
    lags = [max(0, high[p] - off) for p, off in committed.items() if off >= 0 and p in high]
    return sum(lags) if lags else None


def produced_between(before: Mapping[int, int], after: Mapping[int, int]) -> int:
    """Messages produced between two high-watermark readings (a re-created topic counts from 0)."""
    total = 0
    for partition, high in after.items():
        low = before.get(partition, high)
        total += high - low if high >= low else high
    return total
