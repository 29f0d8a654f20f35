"""Check results → one alert signal per producing check (all its parts in one alert).

A check may report several parts in one evaluation (a schema check's contract, drift and decode
errors; one result per validity rule; one per GX expectation). They are one alert, keyed by the
check's link in the result (`CheckResult.origin`): failing when any part fails, listing every
failing part, and taking the check's own `for:` and `notify:` from its spec, whatever the
parts are called.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dqmon.alerts.fingerprint import fingerprint
from dqmon.alerts.rules import RuleTiming
from dqmon.alerts.wording import check_facts
from dqmon.config.checks import CheckSpec
from dqmon.config.models import AlertPolicy, Pipeline
from dqmon.results import CheckResult, Status
from dqmon.slo import evaluation_seconds

DEFAULT_WINDOW_SECONDS = 10.0  # results of a dataset the pipeline does not declare (tests, plugins)


@dataclass(frozen=True)
class Signal:
    """One alert's observation in one evaluation (from a check's results or an SLO's burn rates)."""

    fingerprint: str
    labels: Mapping[str, str | None]
    failing: bool
    timing: RuleTiming
    notify: Sequence[str]
    # names of the failing parts, sorted: a change while announced updates the message
    parts: tuple[str, ...] = ()
    facts: Mapping[str, Any] = field(default_factory=dict)
    # SLO alerts: the checks that spent the budget, (dataset, check), largest share first
    spenders: tuple[tuple[str, str], ...] = ()
    # SLO alerts: how long after a spender resolved its thread still hosts this alert
    host_seconds: float = 0.0


def rule_timing(policy: AlertPolicy, window_seconds: float, for_seconds: float | None = None) -> RuleTiming:
    """The timing of a check alert on a dataset evaluated every `window_seconds`.

    `clear` defaults to two windows; the tolerance (a twentieth of a window, at most 1 s) lets an
    evaluation that comes a few milliseconds early count as a whole window later.
    """
    clear = policy.flap.clear.total_seconds() if policy.flap.clear is not None else 2 * window_seconds
    return RuleTiming(
        for_seconds=policy.for_.total_seconds() if for_seconds is None else for_seconds,
        repeat_seconds=policy.repeat_interval.total_seconds(),
        send_resolved=policy.send_resolved,
        clear_seconds=clear,
        tolerance_seconds=min(1.0, window_seconds / 20),
    )


class CheckSignals:
    """Builds check signals for one pipeline from its config (specs and dataset windows)."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self._specs: dict[tuple[str, str], CheckSpec] = {
            (d.name, e.check_name()): e.spec for d in pipeline.datasets for e in d.checks
        }
        # cross-dataset checks report on their downstream dataset: their for/notify apply too
        self._specs.update({(e.spec.result_dataset(), e.check_name()): e.spec for e in pipeline.links})
        self._windows: dict[str, float] = {d.name: evaluation_seconds(d) for d in pipeline.datasets}
        # a link reporting on a pseudo-dataset (parity's online store) is evaluated every `every`
        for link in pipeline.links:
            every = getattr(link.spec, "every", None)
            if every is not None:
                self._windows.setdefault(link.spec.result_dataset(), max(1.0, every.total_seconds()))

    def window_seconds(self, dataset: str | None) -> float:
        return self._windows.get(dataset or "", DEFAULT_WINDOW_SECONDS)

    def spec(self, dataset: str, check: str) -> CheckSpec | None:
        return self._specs.get((dataset, check))

    def timing(self, dataset: str, check: str) -> RuleTiming:
        spec = self.spec(dataset, check)
        for_ = spec.for_.total_seconds() if spec is not None and spec.for_ is not None else None
        return rule_timing(self.pipeline.alerts, self.window_seconds(dataset), for_)

    def build(self, results: Sequence[CheckResult]) -> list[Signal]:
        groups: dict[str, list[CheckResult]] = {}
        for r in results:
            groups.setdefault(fingerprint(r.pipeline, r.dataset, r.origin_check), []).append(r)
        signals: list[Signal] = []
        for fp, parts in groups.items():
            head = parts[0]
            check = head.origin_check
            spec = self.spec(head.dataset, check)
            failing = sorted({r.check for r in parts if r.status != Status.OK})
            signals.append(
                Signal(
                    fingerprint=fp,
                    labels={
                        "pipeline": head.pipeline,
                        "dataset": head.dataset,
                        "check": check,
                        "kind": head.kind,
                        "severity": head.severity,
                        "slo": head.slo,
                    },
                    failing=bool(failing),
                    timing=self.timing(head.dataset, check),
                    notify=spec.notify if spec is not None else (),
                    parts=tuple(failing),
                    facts=check_facts(parts),
                )
            )
        return signals
