"""Routing: which notify targets an alert goes to.

Targets are strings: `slack:#channel`, `slack` (the pipeline owner's channel), `webhook:NAME`,
`log`. A check's own `notify:` wins; else the pipeline's routes in order (first match stops
unless `continue: true`); else the default: the owner channel on Slack when Slack is
configured, the log otherwise. Slack targets go to the log when Slack is not configured.

Any other target must name a configured notifier: `unconfigured_targets` lists those that do
not (`pagerduty` without a routing key, `webhook:NAME` without that URL), and `dqmon run`
rejects such checks at start and on reload rather than fail every notification to them later.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING

from dqmon.alerts.silences import labels_match
from dqmon.config.models import Pipeline, Route
from dqmon.errors import ConfigProblem, Location

if TYPE_CHECKING:
    from dqmon.alerts.notifiers.base import Notifier
    from dqmon.config.loader import ChecksConfig

# falls back to the log notifier when not configured (see route_targets), so never "unconfigured"
_FALLS_BACK_TO_LOG = "slack"


def route_targets(
    labels: Mapping[str, str | None],
    *,
    check_notify: Sequence[str],
    routes: Sequence[Route],
    owner: str | None,
    slack_configured: bool,
    slack_default_channel: str | None = None,
) -> list[str]:
    chosen: list[str] = list(check_notify)
    if not chosen:
        for route in routes:
            if labels_match(route.match, labels):
                chosen.extend(route.notify)
                if not route.continue_:
                    break
    if not chosen:
        chosen = ["slack"] if slack_configured else ["log"]
    resolved: list[str] = []
    for target in chosen:
        if target_notifier(target) == "slack" and not slack_configured:
            # no Slack integration here (a laptop, the demo): the alert still reaches someone
            target = "log"
        concrete = resolve_target(target, owner=owner, default_channel=slack_default_channel)
        if concrete not in resolved:
            resolved.append(concrete)
    return resolved


def resolve_target(target: str, *, owner: str | None, default_channel: str | None) -> str:
    """`slack` → `slack:<owner channel>` (or the default channel, or the webhook's own channel)."""
    if target == "slack":
        channel = owner or default_channel
        return f"slack:{channel}" if channel else "slack"
    return target


def target_notifier(target: str) -> str:
    """The notifier a target is delivered by: the part before the first colon."""
    return target.split(":", 1)[0]


def unconfigured_targets(config: ChecksConfig, notifiers: Mapping[str, Notifier]) -> list[ConfigProblem]:
    """Notify targets of `config` that no notifier built from these settings serves.

    The names were validated against the registry at load; this is the runtime half: the
    notifier is registered but not configured, or is configured without the target's name. The
    problem's location is the pipeline, not a file: what is missing is a setting, not a line.
    """
    problems: list[ConfigProblem] = []
    for pipeline in config.pipelines:
        for path, target in _notify_targets(pipeline):
            name = target_notifier(target)
            if name == _FALLS_BACK_TO_LOG:
                continue
            notifier = notifiers.get(name)
            settings = f"(see the DQMON_{name.upper()}_* settings)"
            if notifier is None:
                reason = f"{target!r}: notifier {name} is not configured {settings}"
            elif not notifier.serves(target):
                arg = target.partition(":")[2] or "default"
                reason = f"{target!r}: notifier {name} is configured, but not for {arg!r} {settings}"
            else:
                continue
            problems.append(ConfigProblem(Location(f"pipeline {pipeline.pipeline}"), path, reason))
    return problems


def _notify_targets(pipeline: Pipeline) -> Iterator[tuple[str, str]]:
    """(path as in load-time problems, target) of every notify list of a pipeline."""
    for i, route in enumerate(pipeline.alerts.routes):
        for k, target in enumerate(route.notify):
            yield f"alerts.routes[{i}].notify[{k}]", target
    for d, dataset in enumerate(pipeline.datasets):
        for c, entry in enumerate(dataset.checks):
            for k, target in enumerate(entry.spec.notify):
                yield f"datasets[{d}].checks[{c}].{entry.kind}.notify[{k}]", target
