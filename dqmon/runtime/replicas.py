"""The runtime's scale-out parts (dqmon.scaleout): when a Kafka dataset reads in `mode: group` and
the state store is PostgreSQL (DQMON_STATE_DSN), replicas publish partial states instead of
judging, and one judge per pipeline, elected among the replicas, gives the verdicts and alerts.

DQMON_REPLICAS=off keeps the old behaviour (every replica judges its own partitions). A
single replica takes the same path: it publishes its partials and, holding the lock, judges them.
"""

from __future__ import annotations

import functools
import logging
import os
import socket
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime

from prometheus_client import CollectorRegistry

from dqmon.config.loader import ChecksConfig
from dqmon.config.models import Dataset, Pipeline
from dqmon.config.models import KafkaSource as KafkaSourceConfig
from dqmon.config.settings import Settings
from dqmon.scaleout.election import JudgeLock
from dqmon.scaleout.judge import Evaluator, Judge, Publish
from dqmon.scaleout.metrics import ScaleoutMetrics
from dqmon.scaleout.publisher import PartialPublisher
from dqmon.scaleout.store import PartialStore
from dqmon.sources.base import Source
from dqmon.sources.kafka import KafkaSource

log = logging.getLogger(__name__)
MakeEngine = Callable[[Pipeline, Dataset, Callable[[], datetime]], Evaluator]
InstallManager = Callable[[Pipeline, bool], None]


def replica_id() -> str:
    """Unique per process: a restarted replica is a new reader, whose partials merge with the old."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class Replicas:
    def __init__(
        self,
        settings: Settings,
        registry: CollectorRegistry,
        publish: Publish,
        make_engine: MakeEngine,
        install_manager: InstallManager,
        clock: Callable[[], datetime],
    ) -> None:
        self.settings = settings
        self.enabled = settings.replicas != "off" and settings.state_dsn is not None
        self.replica = replica_id()
        self.publish = publish
        self.make_engine = make_engine
        self.install_manager = install_manager
        self.clock = clock
        self.metrics = ScaleoutMetrics(registry)
        self._store: PartialStore | None = None
        self.judges: list[Judge] = []

    def scaled_out(self, dataset: Dataset) -> bool:
        source = dataset.source
        return self.enabled and isinstance(source, KafkaSourceConfig) and source.mode == "group"

    def elects_judge(self, pipeline: Pipeline) -> bool:
        """True when the pipeline's alerts belong to its elected judge, not to every replica."""
        return any(self.scaled_out(d) for d in pipeline.datasets)

    @property
    def store(self) -> PartialStore:
        if self._store is None:
            assert self.settings.state_dsn is not None
            self._store = PartialStore(self.settings.state_dsn.get_secret_value())
        return self._store

    def publisher(self, pipeline: Pipeline, dataset: Dataset, source: Source) -> PartialPublisher:
        """What the dataset's worker uses instead of an engine; the source reports per partition."""
        if isinstance(source, KafkaSource):
            source.report_partitions = True
        self.metrics.declare(pipeline.pipeline, dataset.name)

        def partitions() -> list[int]:
            return list(getattr(source, "known_partitions", []))

        return PartialPublisher(
            pipeline.pipeline, dataset.name, self.store, self.replica, partitions, self.metrics
        )

    def start_judges(self, config: ChecksConfig) -> None:
        assert self.settings.state_dsn is not None or not self.enabled
        for pipeline in config.pipelines:
            datasets = [d for d in pipeline.datasets if self.scaled_out(d)]
            if not datasets:
                continue
            assert self.settings.state_dsn is not None

            def build(clock: Callable[[], datetime], p: Pipeline = pipeline) -> Mapping[str, Evaluator]:
                return {d.name: self.make_engine(p, d, clock) for d in p.datasets if self.scaled_out(d)}

            judge = Judge(
                pipeline,
                datasets,
                self.store,
                JudgeLock(self.settings.state_dsn.get_secret_value(), pipeline.pipeline),
                build,
                self.publish,
                self.metrics,
                on_elected=functools.partial(self.install_manager, pipeline, True),
                on_demoted=functools.partial(self.install_manager, pipeline, False),
                name=self.replica,
                clock=self.clock,
            )
            judge.start()
            self.judges.append(judge)

    def stop_judges(self, timeout: float = 4.0) -> None:
        judges, self.judges = self.judges, []
        for judge in judges:
            judge.stop(timeout)

    def close(self) -> None:
        self.stop_judges()
        if self._store is not None:
            self._store.close()
