"""Dependencies between datasets: a downstream symptom of a stale upstream is not a second page.

A dataset declares `fed_by: [upstream, ...]`. While an alert that says an upstream is stale or
stalled (freshness, volume, lag) is firing and announced, the alerts of datasets it feeds —
directly or through other datasets — that are symptoms of it (freshness, volume, latency,
reconcile) are consequences: their notifications go into the root upstream alert's thread as
replies, saying so, instead of opening threads (pages) of their own.

`consequences` is the whole decision, a pure function; `ConsequenceThreads` remembers which
thread a consequence went to so its repeats and resolve follow it there (in memory: after a
restart a still-firing consequence's later messages fall back to its own thread).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

CAUSE_KINDS = frozenset({"freshness", "volume", "lag"})
SYMPTOM_KINDS = frozenset({"freshness", "volume", "lag", "latency", "reconcile"})


@dataclass(frozen=True)
class FiringAlert:
    fingerprint: str
    dataset: str | None
    kind: str
    check: str
    fired_at: float
    thread: str | None  # the thread its notifications went to (None: not announced)


def firing_alerts(
    states: Mapping[str, Any], labels: Mapping[str, Mapping[str, str | None]], announcing: str | None = None
) -> list[FiringAlert]:
    """The announced firing alerts, from the manager's states (rules.AlertState) and labels, plus
    `announcing`: the alert whose firing is being announced right now."""
    out = []
    for fp, state in states.items():
        lb = labels.get(fp)
        announced = state.notified == "firing" or fp == announcing
        if lb is not None and state.phase == "firing" and announced:
            kind, check = str(lb.get("kind")), str(lb.get("check"))
            # the thread its messages go to (its own, its group's, or a host's)
            thread = getattr(state, "thread", None) or state.episode
            out.append(FiringAlert(fp, lb.get("dataset"), kind, check, state.fired_at or 0.0, thread))
    return out


def ancestors(dataset: str, fed_by: Mapping[str, Sequence[str]]) -> dict[str, int]:
    """Every dataset upstream of `dataset` with its distance (1 = feeds it directly); cycle-safe."""
    seen: dict[str, int] = {}
    frontier = [(u, 1) for u in fed_by.get(dataset, ())]
    while frontier:
        name, depth = frontier.pop(0)
        if name in seen or name == dataset:
            continue
        seen[name] = depth
        frontier += [(u, depth + 1) for u in fed_by.get(name, ())]
    return seen


def consequences(
    firing: Sequence[FiringAlert], fed_by: Mapping[str, Sequence[str]]
) -> dict[str, FiringAlert]:
    """Fingerprint of each firing symptom alert → the root upstream alert it is a consequence of.

    Causes are announced alerts of a cause kind on an upstream dataset; the root is the most
    upstream one (then the earliest fired, then the fingerprint, for a stable choice). An alert
    that is itself a cause of something is still a consequence if its own upstream is failing.
    """
    causes = [a for a in firing if a.kind in CAUSE_KINDS and a.thread is not None and a.dataset]
    out: dict[str, FiringAlert] = {}
    for alert in firing:
        if alert.kind not in SYMPTOM_KINDS or not alert.dataset:
            continue
        upstream = ancestors(alert.dataset, fed_by)
        candidates = [c for c in causes if c.dataset in upstream and c.fingerprint != alert.fingerprint]
        if candidates:
            out[alert.fingerprint] = min(
                candidates, key=lambda c: (-upstream[str(c.dataset)], c.fired_at, c.fingerprint)
            )
    return out


class ConsequenceThreads:
    """The AlertManager's hook: picks the thread of a notification and marks consequences."""

    def __init__(self, fed_by: Mapping[str, Sequence[str]]) -> None:
        self.fed_by = {k: list(v) for k, v in fed_by.items() if v}
        self._assigned: dict[str, tuple[str, str]] = {}  # fingerprint → (thread, cause check)

    def thread(
        self,
        fingerprint: str,
        event: str,
        default: str,
        firing: Sequence[FiringAlert],
        payload: dict[str, Any],
    ) -> str:
        """The thread key for this notification; updates `payload` when it is a consequence."""
        if not self.fed_by:
            return default
        if event == "firing":
            self._assigned.pop(fingerprint, None)
            cause = consequences(firing, self.fed_by).get(fingerprint)
            if cause is not None and cause.thread is not None:
                self._assigned[fingerprint] = (cause.thread, f"{cause.dataset}/{cause.check}")
        assigned = self._assigned.get(fingerprint)
        if assigned is None:
            return default
        thread, cause_name = assigned
        if event == "resolved":
            del self._assigned[fingerprint]
        payload["consequence_of"] = cause_name
        # a reply in someone else's thread: never turn that thread's parent resolved
        payload["grouped"] = True
        payload["message"] = f"consequence of {cause_name} (upstream): {payload.get('message') or ''}".strip()
        return thread
