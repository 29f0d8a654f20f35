"""A pipeline's links at run time: batches in (from every dataset's evaluation thread), results out.

The runtime hands every published micro-batch to `observe` (only links that name the dataset look
at it) and calls `evaluate` on its sweep; links with their own schedule (parity reads stores) are
polled by the scheduler through `scheduled()`. A link that raises becomes an error result; it never
stops the runtime or the other links.
"""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path
from typing import Any

from dqmon.batch import MicroBatch
from dqmon.config.models import Pipeline
from dqmon.pipeline.base import LinkCheck, LinkContext
from dqmon.pipeline.observe import BatchTimes
from dqmon.registry import LINK_KINDS
from dqmon.results import CheckResult, utcnow

log = logging.getLogger(__name__)


def build_link(kind: str, spec: Any, name: str, ctx: LinkContext) -> LinkCheck[Any]:
    cls = LINK_KINDS.get(kind)
    if not isinstance(spec, cls.spec_type):
        raise TypeError(f"link {name!r}: spec {type(spec).__name__} is not a {cls.spec_type.__name__}")
    return cls(spec, name, ctx)


class PipelineLinks:
    def __init__(self, pipeline: Pipeline, *, base_dir: Path | None = None, clock: Any = utcnow) -> None:
        self.pipeline = pipeline
        ctx = LinkContext(pipeline, base_dir or Path.cwd(), clock)
        self.links: list[LinkCheck[Any]] = [
            build_link(entry.kind, entry.spec, entry.check_name(), ctx) for entry in pipeline.links
        ]
        self._by_dataset: dict[str, list[LinkCheck[Any]]] = {}
        for link in self.links:
            for dataset in link.observes():
                self._by_dataset.setdefault(dataset, []).append(link)

    def observe(self, dataset: str, batch: MicroBatch) -> None:
        links = self._by_dataset.get(dataset, ())
        times = BatchTimes(batch)  # event times parsed once for every link reading this batch
        for link in links:
            try:
                link.observe(dataset, times)
            except Exception:
                log.exception("link %s could not read a batch of %s", link.name, dataset)

    def evaluate(self, now: datetime) -> list[CheckResult]:
        """Results of every unscheduled link, judged from the batches seen so far."""
        results: list[CheckResult] = []
        for link in self.links:
            if link.schedule_seconds() is None:
                results.extend(run_link(link, now, scheduled=False))
        return results

    def scheduled(self) -> list[LinkCheck[Any]]:
        return [link for link in self.links if link.schedule_seconds() is not None]

    def close(self) -> None:
        for link in self.links:
            try:
                link.close()
            except Exception:
                log.warning("closing link %s failed", link.name, exc_info=True)


def run_link(link: LinkCheck[Any], now: datetime, *, scheduled: bool) -> list[CheckResult]:
    try:
        return link.poll(now) if scheduled else link.evaluate(now)
    except Exception as exc:
        log.exception("link %s failed", link.name)
        text = str(exc).strip().splitlines()
        return [link.error(f"could not evaluate: {type(exc).__name__}: {text[0][:300] if text else ''}")]
