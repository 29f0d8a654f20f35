"""KafkaSource: a sampling consumer that never disturbs the pipeline it watches.

* modes: `group` joins dqmon's own group (`dqmon.<pipeline>.<dataset>` by default) so replicas
  share partitions; `assign` reads every partition without a group.
* offsets: dqmon never commits, not even to its own group (auto-commit and offset store are
  off and no commit call exists here). A monitor restarts at its `start` position: freshness
  and volume describe now, and re-reading history after a restart would only replay old alerts.
* sampling is decided from (partition, offset) before any value is decoded.
* micro-batches close when the window elapses or the sampled rows reach the size bound;
  a window without messages still yields an (empty) batch, which is how silence is seen.
  While the broker is unreachable no batch is emitted: `facts().up` says so instead.
* facts come from watermarks and the pipeline groups' committed offsets (read only).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from itertools import compress
from typing import Any

import numpy as np
from confluent_kafka import Consumer, KafkaError, Message, TopicPartition
from confluent_kafka.admin import AdminClient

from dqmon.batch import MicroBatch
from dqmon.config.models import Dataset, Pipeline
from dqmon.config.models import KafkaSource as KafkaSourceConfig
from dqmon.config.settings import Settings
from dqmon.decoders.base import Decoder
from dqmon.errors import ConfigError, ConfigProblem, Location
from dqmon.facts import SourceFacts
from dqmon.registry import DECODERS, SOURCES
from dqmon.sources import kafka_offsets
from dqmon.sources.base import Source, SourceContext
from dqmon.sources.kafka_broker import BrokerView
from dqmon.sources.kafka_config import admin_config, consumer_config, redact, scrub
from dqmon.sources.kafka_frame import messages_to_frame
from dqmon.sources.kafka_partitions import ReadWindow, rejects_frame
from dqmon.sources.sampling import keep_mask

log = logging.getLogger(__name__)

_CONSUME_CHUNK = 10_000
_DOWN_CODES = {KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT}
_IGNORED_CODES = {KafkaError._PARTITION_EOF}


def build_decoder(config: KafkaSourceConfig) -> Decoder:
    return DECODERS.get(config.format).from_source(config)


@SOURCES.add("kafka")
class KafkaSource(Source):
    """Reads one dataset's topic into micro-batches; see the module docstring for the guarantees."""

    config_type = KafkaSourceConfig

    @classmethod
    def from_context(cls, ctx: SourceContext) -> KafkaSource:
        return cls(ctx.pipeline, ctx.dataset, ctx.settings, clock=ctx.clock)

    def __init__(
        self,
        pipeline: Pipeline,
        dataset: Dataset,
        settings: Settings | None = None,
        *,
        decoder: Decoder | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if not isinstance(dataset.source, KafkaSourceConfig):
            raise ConfigError(
                [
                    ConfigProblem(
                        Location(pipeline.pipeline), f"datasets.{dataset.name}.source", "not a kafka source"
                    )
                ]
            )
        self.pipeline = pipeline
        self.dataset = dataset
        self.config: KafkaSourceConfig = dataset.source
        self.settings = settings or Settings()
        self.topic = self.config.topic
        # dqmon's own group; in assign mode it is only a client identity (never joined, never committed)
        self.group_id = self.config.group_id or f"dqmon.{pipeline.pipeline}.{dataset.name}"
        self.joins_group = self.config.mode == "group"
        self.decoder = decoder or build_decoder(self.config)
        self.clock = clock
        self.window = dataset.window if dataset.window > timedelta(0) else timedelta(seconds=1)
        self.cap = min(dataset.max_rows, self.config.sample.max_rows_per_batch)
        self.rate = self.config.sample.rate
        self._client_config = consumer_config(
            self.config,
            self.settings,
            group_id=self.group_id,
            error_cb=self._on_error,
            window=self.window,
            max_rows=dataset.max_rows,
        )
        self._lock = threading.Lock()
        self._consumer: Any = None
        self._probe: Any = None  # group-less consumer for watermarks and lag reads; never commits
        self._admin: Any = None
        self._broker: BrokerView | None = None
        self._assigned: list[int] = []
        # when the group last gave us partitions: a window that began earlier saw only part of it
        self._assigned_at: datetime | None = None
        self._carry: list[Message] = []
        self._win: ReadWindow | None = None
        self._next_start: tuple[datetime, Mapping[int, int] | None] | None = None
        self._last_seen: int | None = None  # records read in the previous window (None: none yet)
        self._up = False
        self._error: str | None = None
        self._topic_id: str | None = None
        self._suspect = False  # a fault happened: the topic may have been re-created meanwhile
        self._newest_ms: int | None = None
        self._facts_marks: dict[int, int] | None = None
        self._facts_cache: SourceFacts | None = None
        self._facts_at = 0.0
        self.facts_ttl = 1.0
        # scale-out replicas (dqmon.scaleout): epoch-aligned windows, counters per partition
        self.report_partitions = False
        self.known_partitions: list[int] = []  # the topic's partitions, as last read for facts

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        log.info(
            "kafka source %s/%s: %s", self.pipeline.pipeline, self.dataset.name, redact(self._client_config)
        )
        self._consumer = Consumer(self._client_config)
        probe = consumer_config(
            self.config, self.settings, group_id=f"{self.group_id}.probe", error_cb=self._on_error
        )
        self._probe = Consumer(probe)
        self._admin = AdminClient(admin_config(self._client_config))
        self._broker = BrokerView(
            self.topic, self._probe, self._admin, self.config.client, self._on_fault, self._on_reached
        )
        if self.joins_group:
            self._consumer.subscribe([self.topic], on_assign=self._on_assign, on_revoke=self._on_revoke)
        else:
            self._assign_all()

    def close(self) -> None:
        for client in (self._consumer, self._probe):
            if client is not None:
                try:
                    client.close()
                except Exception:
                    log.debug("closing a kafka client failed", exc_info=True)
        self._consumer = self._probe = self._admin = self._broker = None

    # ------------------------------------------------------------------ batches
    def poll_batch(self, timeout: float) -> MicroBatch | None:
        """Read until the window closes (time or size) or `timeout` passes; never raises on faults."""
        if self._consumer is None:
            raise RuntimeError("KafkaSource.start() was not called")
        deadline = time.monotonic() + max(0.0, timeout)
        if not self.joins_group and not self._assigned:
            self._assign_all()
        win = self._win or self._open_window()
        while True:
            if self._carry:
                chunk, self._carry = self._carry, []
                self._add(win, chunk)
            closes_in = (win.start + self.window - self.clock()).total_seconds()
            if win.sampled >= self.cap or closes_in <= 0:
                return self._close(win)
            wait = min(closes_in, deadline - time.monotonic())
            if wait <= 0:
                return None
            try:
                messages = self._consumer.consume(num_messages=_CONSUME_CHUNK, timeout=wait)
            except Exception as exc:  # noqa: BLE001 - never crash the monitor
                self._mark_down(f"consume failed: {exc}")
                time.sleep(min(wait, 0.5))
                continue
            if messages:
                self._take(win, self._drop_errors(messages))

    def _open_window(self) -> ReadWindow:
        # windows are contiguous: the next one starts where the last ended, with its watermarks
        if self._next_start is not None:
            start, marks = self._next_start
        else:
            start, marks = self.clock(), self._watermarks(self._assigned)
        if self.report_partitions:  # every replica's windows coincide: epoch multiples of the window
            step = self.window.total_seconds()
            start = datetime.fromtimestamp(math.floor(start.timestamp() / step) * step, UTC)
        self._win = ReadWindow(start, marks)
        return self._win

    def _take(self, win: ReadWindow, messages: list[Message]) -> None:
        """Count and sample a freshly consumed chunk, then add the sampled messages to the window."""
        if not messages:
            return
        win.seen += len(messages)
        timestamps = np.fromiter((t[1] for t in map(Message.timestamp, messages)), np.int64, len(messages))
        newest = int(timestamps.max())
        self._newest_ms = newest if self._newest_ms is None else max(self._newest_ms, newest)
        self._up, self._error = True, None
        partitions = np.fromiter(map(Message.partition, messages), np.int64, len(messages))
        offsets = np.fromiter(map(Message.offset, messages), np.int64, len(messages))
        win.tally.take(partitions, offsets, timestamps)
        if self.rate < 1.0:
            messages = list(compress(messages, keep_mask(partitions, offsets, self.rate)))
        self._add(win, messages)

    def _add(self, win: ReadWindow, sampled: list[Message]) -> None:
        """Collect sampled messages; overflow past the size bound waits for the next window."""
        room = max(0, self.cap - win.sampled)
        win.messages.extend(sampled[:room])
        if len(sampled) > room:
            self._carry = sampled[room:] + self._carry

    def _close(self, win: ReadWindow) -> MicroBatch | None:
        self._win = None
        if self._suspect:
            self._check_recreated()
        end = self.clock()
        after = self._watermarks(self._assigned)
        self._next_start = (end, after)
        # a window in which the stream starts, or resumes after a window of silence, saw only
        # the part after the first record: its counts are not those of a full window
        resumed = win.seen > 0 and self._last_seen == 0
        self._last_seen = win.seen if self._up else 0
        if not self._up:
            return None  # while the broker is unreachable the window says nothing about the data
        if self.joins_group and not self._assigned and not win.messages:
            return None  # joining the group: an empty window says nothing about the data
        # a window that began before the group gave us partitions saw only part of them
        partial = resumed or (
            self.joins_group
            and (not self._assigned or (self._assigned_at is not None and win.start < self._assigned_at))
        )
        produced = (
            kafka_offsets.produced_between(win.watermarks, after)
            if win.watermarks is not None and after is not None
            else None
        )
        decode_started = time.perf_counter()
        df, errors, offsets = messages_to_frame(win.messages, self.decoder, self.config.headers)
        decode_seconds = time.perf_counter() - decode_started
        return MicroBatch(
            pipeline=self.pipeline.pipeline,
            dataset=self.dataset.name,
            df=df,
            window_start=win.start,
            window_end=end,
            rows_seen=win.seen,
            rows_sampled=win.sampled,
            decode_errors=errors,
            offsets=offsets,
            rows_produced=produced,
            decode_seconds=decode_seconds,
            partial=partial,
            partitions=win.tally.close(self._assigned, win.watermarks, after),
            rejects=rejects_frame(win.messages, df, errors) if self.report_partitions else None,
        )

    def _drop_errors(self, messages: list[Message]) -> list[Message]:
        errors = list(map(Message.error, messages))
        if not any(errors):
            return messages
        for error in {e for e in errors if e is not None}:
            if error.code() not in _IGNORED_CODES:
                self._suspect = True
                self._error = scrub(f"{error.name()}: {error.str()}", self.config.client)
                log.debug("kafka source %s: %s", self.dataset.name, self._error)
        return [m for m, e in zip(messages, errors, strict=True) if e is None]

    # ------------------------------------------------------------------ assignment
    def _assign_all(self) -> None:
        assert self._broker is not None
        partitions = self._broker.partitions()
        if not partitions:
            return
        starts = kafka_offsets.start_offsets(self.config.start, partitions, self._broker.offsets_for_times)
        self._consumer.assign([TopicPartition(self.topic, p, starts[p]) for p in partitions])
        self._assigned = partitions
        self._topic_id = self._current_topic_id()
        self._up = True

    def _current_topic_id(self) -> str | None:
        return self._broker.topic_id() if self._broker is not None else None

    def _check_recreated(self) -> None:
        """After a fault, a new topic id means a re-created topic: its offsets restarted, read it all.

        (A broker outage alone keeps the id and the position; only a new log is re-read.)
        """
        current = self._current_topic_id()
        if current is None:
            return
        self._suspect = False
        if self._topic_id is not None and current != self._topic_id:
            log.info("topic %s was re-created; reading it from the beginning", self.topic)
            restart = [TopicPartition(self.topic, p, kafka_offsets.OFFSET_BEGINNING) for p in self._assigned]
            try:
                if self.joins_group:
                    for tp in restart:
                        self._consumer.seek(tp)
                else:
                    self._consumer.assign(restart)
            except Exception:  # noqa: BLE001 - never crash the monitor
                self._suspect = True
                return
        self._topic_id = current

    def _on_assign(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        # dqmon's group commits nothing, so every assignment starts at the configured position
        numbers = [tp.partition for tp in partitions]
        if kafka_offsets.start_timestamp_ms(self.config.start) is not None:
            assert self._broker is not None
            starts = kafka_offsets.start_offsets(self.config.start, numbers, self._broker.offsets_for_times)
            for tp in partitions:
                tp.offset = starts[tp.partition]
            consumer.assign(partitions)
        with self._lock:
            self._assigned = sorted(set(self._assigned) | set(numbers))
            self._assigned_at = self.clock()
        if self._topic_id is None:
            self._topic_id = self._current_topic_id()

    def _on_revoke(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        with self._lock:
            self._assigned = sorted(set(self._assigned) - {tp.partition for tp in partitions})

    # ------------------------------------------------------------------ facts
    def facts(self) -> SourceFacts:
        """Up/down, newest message time, messages produced since the last call, pipeline groups' lag."""
        now = time.monotonic()
        if self._facts_cache is not None and now - self._facts_at < self.facts_ttl:
            return self._facts_cache
        partitions = self._broker.partitions(timeout=1.0) if self._broker is not None else []
        high = self._watermarks(partitions) if partitions else None
        produced = None
        if high is not None and self._facts_marks is not None:
            produced = kafka_offsets.produced_between(self._facts_marks, high)
        if high is not None:
            self._facts_marks = high
        if partitions:
            self.known_partitions = list(partitions)
        lag = self._broker.consumer_lag(self.config.consumer_groups, high) if high and self._broker else {}
        newest = datetime.fromtimestamp(self._newest_ms / 1000, UTC) if self._newest_ms is not None else None
        facts = SourceFacts(
            observed_at=self.clock(),
            up=self._up,
            newest_record_time=newest,
            produced=produced,
            consumer_lag=lag,
            error=self._error,
        )
        self._facts_cache, self._facts_at = facts, now
        return facts

    def _watermarks(self, partitions: Sequence[int]) -> dict[int, int] | None:
        return self._broker.watermarks(partitions) if self._broker is not None else {}

    # ------------------------------------------------------------------ health
    def _on_error(self, error: KafkaError) -> None:
        message = scrub(f"{error.name()}: {error.str()}", self.config.client)
        if error.code() in _DOWN_CODES:
            self._mark_down(message)
        else:
            self._error = message
        log.debug("kafka client error: %s", message)

    def _on_fault(self, message: str, down: bool) -> None:
        if down:
            self._mark_down(message)
        else:
            self._error = message

    def _on_reached(self) -> None:
        self._up = True

    def _mark_down(self, message: str) -> None:
        self._up = False
        self._suspect = True
        self._error = scrub(message, self.config.client)
