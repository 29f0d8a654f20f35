"""Source-level facts: what a source knows without decoding records."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True)
class ConsumerLag:
    """Lag of one of the pipeline's own consumer groups (read from the broker, never committed)."""

    messages: int
    seconds: float | None = None


@dataclass(frozen=True)
class SourceFacts:
    observed_at: datetime
    up: bool = True
    # newest record time the source knows of (Kafka message timestamp, max cursor value)
    newest_record_time: datetime | None = None
    # records produced in the last window, from broker watermarks (a volume signal at any sampling rate)
    produced: int | None = None
    consumer_lag: Mapping[str, ConsumerLag] = field(default_factory=dict)
    error: str | None = None
