"""The alert state machine: ok → pending → firing → resolved, as a pure function of time.

`advance(state, failing, now, timing, silenced, parts)` is the whole rule: the manager feeds it
one observation per alert and evaluation, and persists the result. Two things are tracked apart:

- `phase`: what the checks say (pending while failing for less than `for`, firing after).
- `notified`: what the humans were last told ("firing" or "none").

`for: D` (Alertmanager semantics): the alert fires at the first evaluation at which the check
has failed in *every* evaluation since one at least D earlier; one passing evaluation while
pending returns it to ok silently. `tolerance` absorbs evaluation jitter (an evaluation that
comes a few milliseconds early still counts as one window later).

Flapping is handled by hysteresis on the way out, not by counting transitions: a firing alert
resolves only after its check passed in every evaluation for `clear` (by default two windows of
its dataset). A check that fails again within `clear` continues the same episode, so a check
that alternates window by window is one announcement (and a repeat per `repeat_interval`),
while an incident that follows a healthy stretch of at least `clear` is always a new,
announced episode, however many incidents came before it.

A notification is emitted only to reconcile phase and notified (a firing alert not yet
announced, an announced alert that is no longer firing), when `repeat_interval` has passed for
an announced, still-firing alert, or as an `update` when the failing parts of an announced
alert change. While an alert is silenced, notifications pause and the phase keeps moving; when
the silence ends the humans get the one message that brings them up to date.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any, Literal

AlertPhase = Literal["ok", "pending", "firing", "resolved"]
Event = Literal["firing", "repeat", "update", "resolved"]


@dataclass(frozen=True)
class RuleTiming:
    """Timing of one alert rule, in seconds."""

    for_seconds: float = 0.0
    repeat_seconds: float = 4 * 3600.0
    send_resolved: bool = True
    # a firing alert resolves after passing for this long (hysteresis against flapping)
    clear_seconds: float = 0.0
    # evaluation jitter absorbed when comparing elapsed time with `for` and `clear`
    tolerance_seconds: float = 0.0


@dataclass(frozen=True)
class AlertState:
    """One alert's persisted state. Times are epoch seconds."""

    fingerprint: str
    phase: AlertPhase = "ok"
    failing_since: float | None = None
    # while firing: the first passing evaluation of the current healthy stretch
    passing_since: float | None = None
    fired_at: float | None = None
    resolved_at: float | None = None
    notified: Literal["none", "firing"] = "none"
    last_notified_at: float | None = None
    # the announced episode (key of the alert's own message)
    episode: str | None = None
    # the thread the episode's messages go to (its own, its pipeline's group, or a host alert's)
    thread: str | None = None
    # the episode lives in another alert's thread (an SLO burn hosted by a paging check)
    guest: bool = False
    # the failing parts the humans were last shown
    parts: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """Every field but the fingerprint (the store's key), JSON-ready."""
        body = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "fingerprint"}
        body["parts"] = list(self.parts)
        return body

    @classmethod
    def from_json(cls, fingerprint: str, body: Mapping[str, Any]) -> AlertState:
        """The inverse of to_json; unknown keys (older versions' fields) are ignored and missing
        ones take the defaults."""
        known = {f.name for f in fields(cls)} - {"fingerprint"}
        values = {k: v for k, v in body.items() if k in known}
        values["parts"] = tuple(values.get("parts", ()))
        return cls(fingerprint=fingerprint, **values)


@dataclass(frozen=True)
class Step:
    state: AlertState
    event: Event | None = None
    # the episode the event belongs to (for a resolve: the episode being closed)
    episode: str | None = None
    changed: bool = False


def advance(
    state: AlertState,
    failing: bool,
    now: float,
    timing: RuleTiming,
    silenced: bool = False,
    parts: Sequence[str] = (),
) -> Step:
    """Apply one observation at time `now` (non-decreasing per alert); `parts` names the failing
    parts of the check in this evaluation."""
    s = state
    tol = timing.tolerance_seconds
    if failing:
        if s.phase in ("ok", "resolved"):
            s = replace(s, phase="pending", failing_since=now)
        elif s.phase == "firing" and s.passing_since is not None:
            s = replace(s, passing_since=None)  # failing again within `clear`: same episode
        since = _or(s.failing_since, now)
        if s.phase == "pending" and now - since + tol >= timing.for_seconds:
            s = replace(s, phase="firing", fired_at=now, resolved_at=None, passing_since=None)
    elif s.phase == "pending":
        s = replace(s, phase="ok", failing_since=None)
    elif s.phase == "firing":
        passing = _or(s.passing_since, now)
        if now - passing + tol >= timing.clear_seconds:
            s = replace(s, phase="resolved", resolved_at=now, failing_since=None, passing_since=None)
        else:
            s = replace(s, passing_since=passing)

    event: Event | None = None
    episode = s.episode
    shown = tuple(parts)
    if not silenced:
        if s.phase == "firing" and s.notified != "firing" and s.passing_since is None:
            # (a silence that ends while the check already passes announces nothing)
            episode = f"{s.fingerprint}:{int(now * 1000)}"
            s = replace(s, notified="firing", last_notified_at=now, episode=episode, parts=shown)
            event = "firing"
        elif failing and s.phase == "firing" and now - _or(s.last_notified_at, now) >= timing.repeat_seconds:
            # (never while the check already passes: the next word is then the resolve)
            s = replace(s, last_notified_at=now, parts=shown)
            event = "repeat"
        elif s.phase == "firing" and s.notified == "firing" and failing and shown != s.parts:
            s = replace(s, parts=shown)
            event = "update"
        elif s.phase != "firing" and s.notified == "firing":
            s = replace(s, notified="none", last_notified_at=now, parts=())
            event = "resolved" if timing.send_resolved else None
    return Step(state=s, event=event, episode=episode, changed=s != state)


def _or(value: float | None, default: float) -> float:
    # explicit: 0.0 is a valid time on a test clock
    return default if value is None else value
