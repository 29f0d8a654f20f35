"""Scores an incident scenario from what reached the Slack API (the test double's calls).

Only Slack's view counts: a message posted is what the on-call engineer saw. The text of every
dqmon message starts `[EVENT] [severity] pipeline/dataset/check: ...` (notifiers/slack.py).

Per injected incident, over its attribution window [start, end + grace]:
- detected: a FIRING message (top-level or reply) of one of the incident's expected checks;
- delay: from injection to the first FIRING message of any check (the first announcement);
- duplicates: FIRING messages of a check that already announced in the window (the same alert
  announced twice) plus top-level messages beyond the first (a second thread for one incident);
- resolved in thread: every thread the incident announced in has a RESOLVED reply for every
  check that fired in it, and its parent was edited to resolved.
Top-level messages in the clean stretch, or attributable to no incident, are false alarms.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from bench.slack_double import FakeSlack


@dataclass(frozen=True)
class Injected:
    """An incident as it was injected (epoch seconds)."""

    name: str
    expected: tuple[str, ...]  # dataset/check names whose alert detects it
    start: float
    end: float


@dataclass(frozen=True)
class Message:
    at: float
    ts: str
    thread_ts: str | None
    event: str  # FIRING, REPEAT, RESOLVED
    check: str  # dataset/check

    @property
    def top_level(self) -> bool:
        return self.thread_ts is None


@dataclass
class IncidentScore:
    name: str
    detected: bool = False
    detected_by: str | None = None
    delay: float | None = None
    duplicates: int = 0
    threads: int = 0
    resolved_in_thread: bool = False
    checks: list[str] = field(default_factory=list)

    def row(self) -> dict[str, Any]:
        return {
            "incident": self.name,
            "detected": self.detected,
            "by": self.detected_by,
            "delay_s": None if self.delay is None else round(self.delay, 1),
            "duplicates": self.duplicates,
            "resolved_in_thread": self.resolved_in_thread,
            "alerts": ",".join(self.checks),
        }


@dataclass
class ScenarioScore:
    incidents: list[IncidentScore]
    false_alarms: list[str]
    clean_seconds: float

    @property
    def recall(self) -> float:
        return sum(i.detected for i in self.incidents) / len(self.incidents) if self.incidents else 1.0

    @property
    def duplicates(self) -> int:
        return sum(i.duplicates for i in self.incidents)

    @property
    def all_resolved(self) -> bool:
        return all(i.resolved_in_thread for i in self.incidents if i.threads)

    @property
    def median_delay(self) -> float | None:
        delays = [i.delay for i in self.incidents if i.delay is not None]
        return statistics.median(delays) if delays else None

    def meets(self, max_median_delay: float) -> bool:
        median = self.median_delay
        return (
            self.recall == 1.0
            and self.duplicates == 0
            and not self.false_alarms
            and self.all_resolved
            and median is not None
            and median <= max_median_delay
        )

    def summary(self) -> dict[str, Any]:
        median = self.median_delay
        return {
            "recall": round(self.recall, 3),
            "duplicates": self.duplicates,
            "false_alarms": len(self.false_alarms),
            "clean_seconds": round(self.clean_seconds),
            "all_resolved_in_thread": self.all_resolved,
            "median_delay_s": None if median is None else round(median, 1),
        }


def messages(slack: FakeSlack) -> list[Message]:
    """Every chat.postMessage that reached the double, parsed, in arrival order."""
    out = []
    for call in slack.posts():
        parsed = parse_text(str(call.body.get("text", "")))
        if parsed is None or call.ts is None:
            continue
        event, check = parsed
        thread = call.body.get("thread_ts")
        out.append(Message(call.at, call.ts, str(thread) if thread else None, event, check))
    return out


def resolved_parents(slack: FakeSlack) -> set[str]:
    """Messages edited to resolved (chat.update), by ts."""
    return {
        str(c.body.get("ts"))
        for c in slack.updates()
        if str(c.body.get("text", "")).lstrip("[").startswith("RESOLVED")
    }


def parse_text(text: str) -> tuple[str, str] | None:
    """("FIRING", "dataset/check") from "[FIRING] [page] pipeline/dataset/check: message"."""
    if not text.startswith("["):
        return None
    event, _, rest = text[1:].partition("]")
    where = rest.split("] ", 1)[-1].split(": ", 1)[0].strip()
    _pipeline, _, check = where.partition("/")
    return event, check


def score(
    injected: Sequence[Injected],
    sent: Iterable[Message],
    edited_resolved: set[str],
    *,
    clean: tuple[float, float],
    grace: float,
) -> ScenarioScore:
    sent = sorted(sent, key=lambda m: m.at)
    by_thread: dict[str, list[Message]] = {}
    for m in sent:
        by_thread.setdefault(m.thread_ts or m.ts, []).append(m)

    def incident_at(at: float) -> Injected | None:
        live = [i for i in injected if i.start <= at <= i.end + grace]
        return max(live, key=lambda i: i.start) if live else None

    scores = {i.name: IncidentScore(i.name) for i in injected}
    announced: dict[str, set[str]] = {i.name: set() for i in injected}
    threads: dict[str, set[str]] = {i.name: set() for i in injected}
    false_alarms = []
    for m in sent:
        if m.event != "FIRING":
            continue
        incident = incident_at(m.at)
        if incident is None:
            if m.top_level:
                window = "clean run" if clean[0] <= m.at <= clean[1] else "between incidents"
                false_alarms.append(f"{m.check} ({window})")
            continue
        s = scores[incident.name]
        if m.check in announced[incident.name]:
            s.duplicates += 1  # the same alert announced twice for one incident
        announced[incident.name].add(m.check)
        if m.check not in s.checks:
            s.checks.append(m.check)
        thread = m.thread_ts or m.ts
        if m.top_level and threads[incident.name]:
            s.duplicates += 1  # a second top-level thread for one incident
        threads[incident.name].add(thread)
        if s.delay is None:
            s.delay = m.at - incident.start
        if not s.detected and m.check in incident.expected:
            s.detected, s.detected_by = True, m.check
    for incident in injected:
        s = scores[incident.name]
        s.threads = len(threads[incident.name])
        s.resolved_in_thread = bool(threads[incident.name]) and all(
            _thread_resolved(parent, by_thread.get(parent, []), edited_resolved)
            for parent in threads[incident.name]
        )
    return ScenarioScore([scores[i.name] for i in injected], false_alarms, clean[1] - clean[0])


def _thread_resolved(parent: str, thread: Sequence[Message], edited_resolved: set[str]) -> bool:
    """Every check that fired in the thread got its RESOLVED reply there; the parent is resolved."""
    fired = {m.check for m in thread if m.event == "FIRING"}
    resolved = {m.check for m in thread if m.event == "RESOLVED" and not m.top_level}
    return fired <= resolved and parent in edited_resolved


def table(result: ScenarioScore) -> str:
    """A Markdown table of the per-incident scores and the totals (for docs/alerting.md)."""
    rows = [s.row() for s in result.incidents]
    head = list(rows[0]) if rows else ["incident"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join("-" if r[k] is None else str(r[k]) for k in head) + " |" for r in rows]
    totals = result.summary()
    lines.append("")
    lines.append(", ".join(f"{k}: {v}" for k, v in totals.items()))
    if result.false_alarms:
        lines.append("false alarms: " + ", ".join(result.false_alarms))
    return "\n".join(lines)
