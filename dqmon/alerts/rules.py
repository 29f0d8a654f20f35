"""The alert state machine: ok → pending → firing → resolved, as a pure function of time.

`advance(state, failing, now, timing, silenced)` is the whole rule: the manager feeds it one
observation per alert and evaluation, and persists the result. Two things are tracked apart:

- `state`: what the checks say (pending while failing for less than `for`, firing after).
- `notified`: what the humans were last told ("firing" or "none").

A notification is emitted only to reconcile the two (a firing alert not yet announced, an
announced alert that is no longer firing) or when `repeat_interval` has passed for an
announced, still-firing alert. While an alert is silenced or flapping, notifications pause and
the state keeps moving; when the pause ends the humans get the one message that brings them up
to date (never a replay of every transition).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import timedelta
from typing import Any, Literal

AlertPhase = Literal["ok", "pending", "firing", "resolved"]
Event = Literal["firing", "repeat", "resolved"]


@dataclass(frozen=True)
class RuleTiming:
    """Timing of one alert rule, in seconds."""

    for_seconds: float = 0.0
    repeat_seconds: float = 4 * 3600.0
    send_resolved: bool = True
    flap_window_seconds: float = 600.0
    flap_max_transitions: int = 4

    @classmethod
    def of(
        cls,
        for_: timedelta,
        repeat: timedelta,
        send_resolved: bool,
        flap_window: timedelta,
        flap_max_transitions: int,
    ) -> RuleTiming:
        return cls(
            for_seconds=for_.total_seconds(),
            repeat_seconds=repeat.total_seconds(),
            send_resolved=send_resolved,
            flap_window_seconds=flap_window.total_seconds(),
            flap_max_transitions=flap_max_transitions,
        )


@dataclass(frozen=True)
class AlertState:
    """One alert's persisted state. Times are epoch seconds."""

    fingerprint: str
    phase: AlertPhase = "ok"
    failing_since: float | None = None
    fired_at: float | None = None
    resolved_at: float | None = None
    notified: Literal["none", "firing"] = "none"
    last_notified_at: float | None = None
    # the announced episode's thread key: repeats and the resolve go into its thread
    episode: str | None = None
    # times of firing/resolved transitions inside the flap window
    transitions: tuple[float, ...] = ()
    flapping: bool = False

    def to_json(self) -> dict[str, Any]:
        """Every field but the fingerprint (the store's key), JSON-ready."""
        body = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "fingerprint"}
        body["transitions"] = list(self.transitions)
        return body

    @classmethod
    def from_json(cls, fingerprint: str, body: Mapping[str, Any]) -> AlertState:
        """The inverse of to_json; unknown keys are ignored and missing ones take the defaults."""
        known = {f.name for f in fields(cls)} - {"fingerprint"}
        values = {k: v for k, v in body.items() if k in known}
        values["transitions"] = tuple(values.get("transitions", ()))
        return cls(fingerprint=fingerprint, **values)


@dataclass(frozen=True)
class Step:
    state: AlertState
    event: Event | None = None
    # the episode the event belongs to (for a resolve: the episode being closed)
    episode: str | None = None
    changed: bool = field(default=False)


def advance(state: AlertState, failing: bool, now: float, timing: RuleTiming, silenced: bool = False) -> Step:
    """Apply one observation at time `now` (non-decreasing per alert)."""
    s = state
    transitions = list(s.transitions)
    if failing:
        if s.phase in ("ok", "resolved"):
            s = replace(s, phase="pending", failing_since=now)
        since = _or(s.failing_since, now)
        if s.phase == "pending" and now - since >= timing.for_seconds:
            s = replace(s, phase="firing", fired_at=now, resolved_at=None)
            transitions.append(now)
    elif s.phase == "pending":
        s = replace(s, phase="ok", failing_since=None)
    elif s.phase == "firing":
        s = replace(s, phase="resolved", resolved_at=now, failing_since=None)
        transitions.append(now)

    horizon = now - timing.flap_window_seconds
    transitions = [t for t in transitions if t > horizon]
    flapping = len(transitions) >= timing.flap_max_transitions
    s = replace(s, transitions=tuple(transitions), flapping=flapping)

    event: Event | None = None
    episode = s.episode
    if not (flapping or silenced):
        if s.phase == "firing" and s.notified != "firing":
            episode = f"{s.fingerprint}:{int(now * 1000)}"
            s = replace(s, notified="firing", last_notified_at=now, episode=episode)
            event = "firing"
        elif s.phase == "firing" and now - _or(s.last_notified_at, now) >= timing.repeat_seconds:
            s = replace(s, last_notified_at=now)
            event = "repeat"
        elif s.phase != "firing" and s.notified == "firing":
            s = replace(s, notified="none", last_notified_at=now)
            event = "resolved" if timing.send_resolved else None
    return Step(state=s, event=event, episode=episode, changed=s != state)


def _or(value: float | None, default: float) -> float:
    # explicit: 0.0 is a valid time on a test clock
    return default if value is None else value
