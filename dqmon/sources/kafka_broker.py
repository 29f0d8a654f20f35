"""What dqmon asks the broker besides records: partitions, watermarks, topic ids, pipeline lag.

All through a group-less probe consumer and the admin client: nothing here commits, joins a
group or seeks the reading consumer. Failures never raise; they are reported to the source
(`on_fault`), which turns them into `facts().up` and `facts().error`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from confluent_kafka import ConsumerGroupTopicPartitions, TopicCollection, TopicPartition
from confluent_kafka.admin import (  # type: ignore[attr-defined]  # OffsetSpec: not re-exported in the stubs
    OffsetSpec,
)

from dqmon.facts import ConsumerLag
from dqmon.sources import kafka_offsets
from dqmon.sources.kafka_config import scrub

log = logging.getLogger(__name__)

_HIGH_WATERMARK = OffsetSpec.latest()  # type: ignore[no-untyped-call]  # untyped in confluent-kafka
# (message, down): down=True when the broker itself could not be reached
FaultHandler = Callable[[str, bool], None]


class BrokerView:
    """Read-only questions about one topic, answered by the probe consumer and the admin client."""

    def __init__(
        self,
        topic: str,
        probe: Any,
        admin: Any,
        client: Mapping[str, Any],
        on_fault: FaultHandler,
        on_reached: Callable[[], None],
    ) -> None:
        self.topic = topic
        self.probe = probe
        self.admin = admin
        self.client = client  # the user's client settings, to scrub their secrets from messages
        self.on_fault = on_fault
        self.on_reached = on_reached

    def partitions(self, timeout: float = 2.0) -> list[int]:
        try:
            metadata = self.probe.list_topics(self.topic, timeout=timeout)
        except Exception as exc:  # noqa: BLE001 - never crash the monitor
            self.on_fault(f"metadata failed: {exc}", True)
            return []
        topic = metadata.topics.get(self.topic)
        if topic is None or topic.error is not None:
            self.on_fault(f"topic {self.topic} unavailable", False)
            return []
        return sorted(topic.partitions)

    def topic_id(self) -> str | None:
        try:
            described = self.admin.describe_topics(TopicCollection([self.topic]), request_timeout=2.0)
            return str(described[self.topic].result(timeout=3.0).topic_id)
        except Exception:  # noqa: BLE001 - never crash the monitor
            return None

    def watermarks(self, partitions: Sequence[int]) -> dict[int, int] | None:
        """{partition: high watermark} from one ListOffsets request; None when the broker cannot be asked."""
        if not partitions:
            return {}
        query = {TopicPartition(self.topic, p): _HIGH_WATERMARK for p in partitions}
        try:
            futures = self.admin.list_offsets(query, request_timeout=1.0)
            marks = {tp.partition: future.result(timeout=2.0).offset for tp, future in futures.items()}
        except Exception as exc:  # noqa: BLE001 - never crash the monitor
            self.on_fault(f"watermarks failed: {exc}", True)
            return None
        self.on_reached()
        return marks

    def offsets_for_times(self, ms: int, partitions: Sequence[int]) -> dict[int, int]:
        query = [TopicPartition(self.topic, p, ms) for p in partitions]
        answer = self.probe.offsets_for_times(query, timeout=5.0)
        return {tp.partition: tp.offset for tp in answer if tp.error is None}

    def consumer_lag(self, groups: Sequence[str], high: Mapping[int, int]) -> dict[str, ConsumerLag]:
        """Lag of the pipeline's own groups: high watermark - committed, read, never committed."""
        if not groups:
            return {}
        lags: dict[str, ConsumerLag] = {}
        futures = {}
        for group in groups:  # the admin API takes one group per request
            request = [ConsumerGroupTopicPartitions(group)]
            futures.update(self.admin.list_consumer_group_offsets(request, request_timeout=2.0))
        for group, future in futures.items():
            try:
                result = future.result(timeout=3.0)
            except Exception as exc:  # noqa: BLE001 - never crash the monitor
                log.debug("lag of group %s unavailable: %s", group, scrub(str(exc), self.client))
                continue
            committed = {tp.partition: tp.offset for tp in result.topic_partitions if tp.topic == self.topic}
            messages = kafka_offsets.lag_messages(high, committed)
            if messages is None:
                continue
            lags[group] = ConsumerLag(messages=messages, seconds=self._lag_seconds(high, committed))
        return lags

    def _lag_seconds(self, high: Mapping[int, int], committed: Mapping[int, int]) -> float | None:
        """now - timestamp of the oldest unconsumed message (the one at the committed offset)."""
        behind = [
            TopicPartition(self.topic, p, off) for p, off in committed.items() if 0 <= off < high.get(p, 0)
        ]
        if not behind:
            return 0.0
        oldest: dict[int, int] = {}
        try:
            self.probe.assign(behind)
            deadline = time.monotonic() + 2.0
            while len(oldest) < len(behind) and time.monotonic() < deadline:
                for m in self.probe.consume(num_messages=len(behind) * 4, timeout=0.5):
                    if m.error() is None and m.partition() not in oldest:
                        oldest[m.partition()] = m.timestamp()[1]
        except Exception:
            log.debug("reading the oldest unconsumed message failed", exc_info=True)
        finally:
            try:
                self.probe.unassign()
            except Exception:
                log.debug("unassign failed", exc_info=True)
        if not oldest:
            return None
        return max(0.0, time.time() - min(oldest.values()) / 1000)
