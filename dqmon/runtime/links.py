"""The runtime's part of pipeline links: build them per pipeline, feed them batches, judge them on
the sweep, and poll the scheduled ones (parity) on the scheduler's threads so a slow store never
blocks a dataset or the sweep."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from dqmon.batch import MicroBatch
from dqmon.config.loader import ChecksConfig
from dqmon.config.models import Pipeline
from dqmon.pipeline.base import LinkCheck
from dqmon.pipeline.evaluator import PipelineLinks, run_link
from dqmon.results import CheckResult

log = logging.getLogger(__name__)
PublishLinks = Callable[[Pipeline, Sequence[CheckResult]], None]
SourceUp = Callable[[str, str, bool], None]


class LinksRunner:
    def __init__(
        self, publish: PublishLinks, clock: Callable[[], datetime], source_up: SourceUp | None = None
    ) -> None:
        self.publish = publish
        self.source_up = source_up
        self.clock = clock
        self.pipelines: dict[str, PipelineLinks] = {}
        self._jobs: list[str] = []

    def build(self, config: ChecksConfig, scheduler: Any) -> list[tuple[str, str]]:
        """Build every pipeline's links; return the (pipeline, dataset) their results are reported on."""
        reported: list[tuple[str, str]] = []
        for pipeline in config.pipelines:
            if not pipeline.links:
                continue
            try:
                links = PipelineLinks(pipeline, base_dir=config.base_dir(pipeline.pipeline), clock=self.clock)
            except Exception:
                log.exception("building the links of %s failed; they do not run", pipeline.pipeline)
                continue
            self.pipelines[pipeline.pipeline] = links
            reported += [(pipeline.pipeline, link.spec.result_dataset()) for link in links.links]
            for link in links.scheduled():
                job = f"link:{pipeline.pipeline}/{link.name}"
                scheduler.add_job(
                    self._poll,
                    "interval",
                    args=(pipeline, link),
                    seconds=link.schedule_seconds(),
                    id=job,
                    next_run_time=datetime.now(UTC),
                )
                self._jobs.append(job)
        return sorted(set(reported))

    def stop(self, scheduler: Any) -> None:
        for job in self._jobs:
            try:
                scheduler.remove_job(job)
            except Exception:  # noqa: BLE001 - the scheduler may already be shut down
                log.debug("no job %s", job)
        self._jobs = []
        for links in self.pipelines.values():
            links.close()
        self.pipelines = {}

    def observe(self, pipeline: str, dataset: str, batch: MicroBatch) -> None:
        links = self.pipelines.get(pipeline)
        if links is not None:
            links.observe(dataset, batch)

    def sweep(self, now: datetime) -> None:
        for links in list(self.pipelines.values()):
            results = links.evaluate(now)
            if results:
                self.publish(links.pipeline, results)

    def _poll(self, pipeline: Pipeline, link: LinkCheck[Any]) -> None:
        results = run_link(link, self.clock(), scheduled=True)
        up = link.source_up()
        if up is not None and self.source_up is not None:
            self.source_up(pipeline.pipeline, link.spec.result_dataset(), up)
        if results:
            self.publish(pipeline, results)
