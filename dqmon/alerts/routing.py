"""Routing: which notify targets an alert goes to.

Targets are strings: `slack:#channel`, `slack` (the pipeline owner's channel), `webhook:NAME`,
`log`. A check's own `notify:` wins; else the pipeline's routes in order (first match stops
unless `continue: true`); else the default: the owner channel on Slack when Slack is
configured, the log otherwise. Slack targets go to the log when Slack is not configured.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from dqmon.alerts.silences import labels_match
from dqmon.config.models import Route


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
