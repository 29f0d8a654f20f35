"""The demo's script of incidents, and the judge that matches alerts to them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from dqmon.demo.stream import StreamKnobs


@dataclass(frozen=True)
class Incident:
    name: str
    description: str
    dataset: str
    # alert checks that count as detecting it (any one)
    detected_by: tuple[str, ...]
    inject: Callable[[StreamKnobs], None]
    duration: float


def _stall(k: StreamKnobs) -> None:
    k.stalled = True


def _volume_drop(k: StreamKnobs) -> None:
    k.volume_factor = 0.02


def _schema_change(k: StreamKnobs) -> None:
    k.schema_change = True


def _distribution_shift(k: StreamKnobs) -> None:
    k.shifted_symbol, k.shift_factor = "ETH-USDT", 1.25


def _null_spike(k: StreamKnobs) -> None:
    k.null_share = 0.3


def incidents(duration: float) -> list[Incident]:
    return [
        Incident(
            "producer stall", "trades producer stops", "trades", ("freshness", "volume"), _stall, duration
        ),
        Incident("volume drop", "trades fall to 2% of normal", "trades", ("volume",), _volume_drop, duration),
        Incident(
            "schema change",
            "price retyped to string, fee_bps added",
            "trades",
            ("schema",),
            _schema_change,
            duration,
        ),
        Incident(
            "distribution shift",
            "ETH-USDT prices 25% higher",
            "trades",
            ("distribution",),
            _distribution_shift,
            duration,
        ),
        Incident(
            "null spike",
            "30% of trades without price",
            "trades",
            ("validity", "schema"),
            _null_spike,
            duration,
        ),
    ]


@dataclass
class Outcome:
    incident: Incident
    started: float
    ended: float | None = None
    detected_at: float | None = None
    detected_by: str | None = None
    resolved_at: float | None = None
    alerts: set[str] = field(default_factory=set)

    @property
    def delay(self) -> float | None:
        return None if self.detected_at is None else self.detected_at - self.started


@dataclass
class Judge:
    """Matches alert events (by time, dataset and check) to the incident that was live."""

    grace: float = 20.0
    outcomes: list[Outcome] = field(default_factory=list)
    clean_from: float | None = None
    clean_until: float | None = None
    false_alerts: list[str] = field(default_factory=list)

    def start(self, incident: Incident, at: float) -> Outcome:
        if self.clean_until is None:
            self.clean_until = at
        outcome = Outcome(incident, at)
        self.outcomes.append(outcome)
        return outcome

    def alert(self, event: str, dataset: str, check: str, at: float) -> None:
        label = f"{dataset}/{check}"
        if event == "resolved":
            for outcome in self.outcomes:
                detected = outcome.detected_at is not None and outcome.resolved_at is None
                if detected and (outcome.incident.dataset, outcome.detected_by) == (dataset, check):
                    outcome.resolved_at = at
            return
        if event != "firing":
            return
        in_clean = (
            self.clean_from is not None
            and at >= self.clean_from
            and (self.clean_until is None or at < self.clean_until)
        )
        if in_clean:
            self.false_alerts.append(label)
            return
        for outcome in reversed(self.outcomes):
            if outcome.started <= at <= (outcome.ended or at) + self.grace:
                outcome.alerts.add(label)
                expected = dataset == outcome.incident.dataset and check in outcome.incident.detected_by
                if outcome.detected_at is None and expected:
                    outcome.detected_at, outcome.detected_by = at, check
                return

    @property
    def all_detected(self) -> bool:
        return all(o.detected_at is not None for o in self.outcomes)
