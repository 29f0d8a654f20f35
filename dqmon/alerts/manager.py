"""AlertManager: check results in, state changes and outbox notifications out (one per pipeline).

`observe(results, now)` runs each alert's state machine (alerts/rules.py), feeds the pipeline's
SLOs (slo.py) and turns burn-rate breaches into alerts of their own, routes every notification
to its targets and commits the changed states together with the notifications in one
transaction of the state store. Delivery is the DeliveryWorker's job (alerts/delivery.py).

Failing means status warn, fail or error: a check that cannot evaluate is a problem someone
must look at. The result's severity (warn/page) picks the route.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from dqmon.alerts.dependencies import ConsequenceThreads, firing_alerts
from dqmon.alerts.fingerprint import fingerprint
from dqmon.alerts.routing import route_targets
from dqmon.alerts.rules import AlertState, RuleTiming, Step, advance
from dqmon.alerts.silences import active_silence
from dqmon.config.checks import CheckSpec
from dqmon.config.models import Pipeline
from dqmon.results import CheckResult, Status
from dqmon.slo import SloStatus, SloTracker
from dqmon.state.outbox import NewNotification, StoredAlertState
from dqmon.state.store import AlertStore

log = logging.getLogger(__name__)
_SEPARATORS = ".:/[ ("


@dataclass(frozen=True)
class Signal:
    """One alert's observation in one evaluation (from a check result or an SLO burn rate)."""

    fingerprint: str
    labels: Mapping[str, str | None]
    failing: bool
    timing: RuleTiming
    notify: Sequence[str]
    facts: Mapping[str, Any] = field(default_factory=dict)


class AlertManager:
    """Alert states of one pipeline, persisted in `store`; `now` is injectable everywhere."""

    def __init__(
        self,
        pipeline: Pipeline,
        store: AlertStore,
        *,
        slack_configured: bool = False,
        slack_default_channel: str | None = None,
        grafana_url: str | None = None,
        slo_bucket_seconds: float = 60.0,
        slo_save_interval: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.pipeline = pipeline
        self.store = store
        self.slack_configured = slack_configured
        self.slack_default_channel = slack_default_channel
        self.grafana_url = pipeline.grafana_url or grafana_url
        self.clock = clock
        policy = pipeline.alerts
        self._default_timing = RuleTiming.of(
            policy.for_,
            policy.repeat_interval,
            policy.send_resolved,
            policy.flap.window,
            policy.flap.max_transitions,
        )
        self._specs: dict[tuple[str, str], CheckSpec] = {
            (d.name, e.check_name()): e.spec for d in pipeline.datasets for e in d.checks
        }
        # cross-dataset checks report on their downstream dataset: their for/notify apply too
        self._specs.update({(e.spec.result_dataset(), e.check_name()): e.spec for e in pipeline.links})
        self._dependencies = ConsequenceThreads({d.name: d.fed_by for d in pipeline.datasets})
        self.slo = SloTracker(pipeline, bucket_seconds=slo_bucket_seconds)
        self._slo_key = f"slo/{pipeline.pipeline}"
        self._slo_save_interval = slo_save_interval
        self._slo_saved_at = 0.0
        saved = store.get_state(self._slo_key)
        if isinstance(saved, dict):
            self.slo.load_json(saved)
        # observe() runs on the runtime's thread, the read APIs on the scrape thread
        self._lock = threading.RLock()
        self._states: dict[str, AlertState] = {}
        self._labels: dict[str, dict[str, str | None]] = {}
        for fp, stored in store.load_alert_states(pipeline.pipeline).items():
            body = dict(stored.body)
            self._labels[fp] = dict(body.pop("labels", {}))
            self._states[fp] = AlertState.from_json(fp, body)
        # group_by: pipeline — the thread all of this pipeline's announced alerts share while any fires
        self._group_key_name = f"alerts/{pipeline.pipeline}/group"
        group = store.get_state(self._group_key_name) if policy.group_by == "pipeline" else None
        self._group: str | None = group if isinstance(group, str) else None

    # ------------------------------------------------------------------ the one entry point
    def observe(
        self, results: Sequence[CheckResult], now: datetime | float | None = None
    ) -> list[NewNotification]:
        """Advance every alert these results (and the SLOs) speak about; return what was enqueued."""
        with self._lock:
            return self._observe(results, _epoch(now) if now is not None else self.clock())

    def _observe(self, results: Sequence[CheckResult], at: float) -> list[NewNotification]:
        signals = self._check_signals(results)
        slo_statuses: list[SloStatus] = []
        if self.slo.slos:
            self.slo.record(results, at)
            slo_statuses = self.slo.status(at)
            signals.extend(self._slo_signals(slo_statuses))
        changed: list[StoredAlertState] = []
        notifications: list[NewNotification] = []
        for signal in signals:
            before = self._states.get(signal.fingerprint, AlertState(signal.fingerprint))
            silenced = active_silence(self.pipeline.alerts.silences, signal.labels, at) is not None
            step = advance(before, signal.failing, at, signal.timing, silenced)
            if not step.changed and self._labels.get(signal.fingerprint) == signal.labels:
                continue
            self._states[signal.fingerprint] = step.state
            self._labels[signal.fingerprint] = dict(signal.labels)
            changed.append(
                StoredAlertState(
                    fingerprint=signal.fingerprint,
                    pipeline=self.pipeline.pipeline,
                    state=step.state.phase,
                    body={"labels": dict(signal.labels), **step.state.to_json()},
                )
            )
            if step.event is not None:
                notifications.extend(self._notifications(signal, step, at, slo_statuses))
        if changed or notifications:
            self.store.commit_alerts(changed, notifications, at)
        if self.slo.slos and at - self._slo_saved_at >= self._slo_save_interval:
            self.store.put_state(self._slo_key, self.slo.to_json())
            self._slo_saved_at = at
        return notifications

    # ------------------------------------------------------------------ read APIs (telemetry)
    def firing_counts(self) -> dict[tuple[str, str], int]:
        """Alerts in state firing by (pipeline, severity); both severities always present."""
        counts = {(self.pipeline.pipeline, "warn"): 0, (self.pipeline.pipeline, "page"): 0}
        with self._lock:
            states = list(self._states.items())
        for fp, state in states:
            if state.phase == "firing":
                key = (self.pipeline.pipeline, str(self._labels.get(fp, {}).get("severity") or "page"))
                counts[key] = counts.get(key, 0) + 1
        return counts

    def states(self) -> dict[str, AlertState]:
        with self._lock:
            return dict(self._states)

    def slo_status(self, now: datetime | float | None = None) -> list[SloStatus]:
        with self._lock:
            return self.slo.status(_epoch(now) if now is not None else self.clock())

    # ------------------------------------------------------------------ internals
    def _spec(self, dataset: str, check: str) -> CheckSpec | None:
        spec = self._specs.get((dataset, check))
        if spec is not None:
            return spec
        # results of one check may carry sub-names (validity.not_null.trade_id): longest prefix wins
        best: tuple[int, CheckSpec] | None = None
        for (ds, name), candidate in self._specs.items():
            is_prefix = check.startswith(name) and check[len(name) :][:1] in _SEPARATORS
            if ds == dataset and is_prefix and (best is None or len(name) > best[0]):
                best = (len(name), candidate)
        return None if best is None else best[1]

    def _check_signals(self, results: Sequence[CheckResult]) -> list[Signal]:
        worst: dict[str, CheckResult] = {}
        for r in results:
            fp = fingerprint(r.pipeline, r.dataset, r.check)
            if fp not in worst or r.status > worst[fp].status:
                worst[fp] = r
        signals: list[Signal] = []
        for fp, r in worst.items():
            spec = self._spec(r.dataset, r.check)
            timing = self._default_timing
            if spec is not None and spec.for_ is not None:
                timing = replace(timing, for_seconds=spec.for_.total_seconds())
            labels: dict[str, str | None] = {
                "pipeline": r.pipeline,
                "dataset": r.dataset,
                "check": r.check,
                "kind": r.kind,
                "severity": r.severity,
                "slo": r.slo,
            }
            signals.append(
                Signal(
                    fingerprint=fp,
                    labels=labels,
                    failing=r.status != Status.OK,
                    timing=timing,
                    notify=spec.notify if spec is not None else (),
                    facts={
                        "status": r.status.label,
                        "value": r.value,
                        "threshold": r.threshold,
                        "message": r.message,
                        "trace_id": r.trace_id,
                    },
                )
            )
        return signals

    def _slo_signals(self, statuses: Sequence[SloStatus]) -> list[Signal]:
        signals: list[Signal] = []
        timing = replace(self._default_timing, for_seconds=0.0)  # burn rates already integrate time
        for st in statuses:
            for br in st.burn_rates:
                check = f"slo:{st.slo}:{br.window}"
                spent = ", ".join(f"{name} ({n} bad)" for name, n in st.top_checks[:5]) or "none"
                signals.append(
                    Signal(
                        fingerprint=fingerprint(st.pipeline, "", check),
                        labels={
                            "pipeline": st.pipeline,
                            "dataset": None,
                            "check": check,
                            "kind": "slo",
                            "severity": br.severity,
                            "slo": st.slo,
                        },
                        failing=br.firing,
                        timing=timing,
                        notify=(),
                        facts={
                            "status": "fail" if br.firing else "ok",
                            "value": round(br.long_rate, 4),
                            "threshold": f"burn rate > {br.factor:g} over {br.window}",
                            "message": (
                                f"SLO {st.slo} ({st.objective:g}%) burning its error budget "
                                f"{br.long_rate:.1f}x (long) / {br.short_rate:.1f}x (short) "
                                f"over {br.window}, "
                                f"factor {br.factor:g}; {st.budget_remaining:.1%} of the budget left; "
                                f"spent by: {spent}"
                            ),
                            "budget_remaining": st.budget_remaining,
                            "top_checks": [list(c) for c in st.top_checks[:5]],
                        },
                    )
                )
        return signals

    def _notifications(
        self, signal: Signal, step: Step, at: float, slo_statuses: Sequence[SloStatus]
    ) -> list[NewNotification]:
        labels = signal.labels
        targets = route_targets(
            labels,
            check_notify=signal.notify,
            routes=self.pipeline.alerts.routes,
            owner=self.pipeline.owner,
            slack_configured=self.slack_configured,
            slack_default_channel=self.slack_default_channel,
        )
        state = step.state
        assert step.event is not None
        payload: dict[str, Any] = {
            "event": step.event,
            "fingerprint": signal.fingerprint,
            "pipeline": labels["pipeline"],
            "dataset": labels["dataset"],
            "check": labels["check"],
            "kind": labels["kind"],
            "severity": labels["severity"],
            "slo": labels["slo"],
            "slo_at_risk": _slo_at_risk(labels.get("slo"), slo_statuses),
            "owner": self.pipeline.owner,
            "since": _iso(state.fired_at if step.event != "resolved" else state.resolved_at),
            "failing_since": _iso(state.failing_since or state.fired_at),
            "fired_at": _iso(state.fired_at),
            "resolved_at": _iso(state.resolved_at) if step.event == "resolved" else None,
            "at": _iso(at),
            "grafana_url": self._grafana_link(labels, state.fired_at or at, at),
            **signal.facts,
        }
        thread = step.episode or f"{signal.fingerprint}:none"
        thread = self._dependencies.thread(
            signal.fingerprint, step.event, thread, firing_alerts(self._states, self._labels), payload
        )
        if self.pipeline.alerts.group_by == "pipeline" and not payload.get("consequence_of"):
            thread = self._group_thread(signal.fingerprint, step.event, at, payload)
        return [
            NewNotification(
                fingerprint=signal.fingerprint,
                thread_key=thread,
                target=target,
                event=step.event,
                payload=payload,
                created_at=at,
            )
            for target in targets
        ]

    def _group_thread(self, fingerprint: str, event: str, at: float, payload: dict[str, Any]) -> str:
        """One thread per pipeline incident: it opens with the first announced alert, gathers the
        others as replies, and closes when the last announced alert resolves."""
        announced = sum(1 for s in self._states.values() if s.notified == "firing")
        if self._group is None or (event == "firing" and announced <= 1):
            self._group = f"{self.pipeline.pipeline}:group:{at:.3f}:{fingerprint[:8]}"
            self.store.put_state(self._group_key_name, self._group)
            payload["group_opened"] = True
        group = self._group
        payload["grouped"] = True
        payload["group_firing"] = announced
        if event == "resolved" and announced == 0:
            payload["group_closed"] = True
            self._group = None
            self.store.put_state(self._group_key_name, None)
        return group

    def _grafana_link(self, labels: Mapping[str, str | None], since: float, at: float) -> str | None:
        if not self.grafana_url:
            return None
        params = {f"var-{k}": v for k, v in labels.items() if k in ("pipeline", "dataset", "check") and v}
        params["from"] = str(int((since - 900) * 1000))
        params["to"] = str(int((at + 300) * 1000))
        sep = "&" if "?" in self.grafana_url else "?"
        return f"{self.grafana_url}{sep}{urlencode(params)}"


def _slo_at_risk(slo: str | None, statuses: Sequence[SloStatus]) -> str | None:
    if slo is None:
        return None
    for st in statuses:
        if st.slo == slo:
            return f"{slo} ({st.objective:g}%): {st.budget_remaining:.1%} of error budget left"
    return slo


def _epoch(value: datetime | float) -> float:
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
    return float(value)


def _iso(value: float | None) -> str | None:
    if value is None:
        return None
    return (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=value)).isoformat()
