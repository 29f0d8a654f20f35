"""AlertManager: check results in, state changes and outbox notifications out (one per pipeline).

`observe(results, now)` orchestrates one evaluation:
  results ─► signals (alerts/signals.py: one per producing check, all its parts in it)
  SLO tracker (slo.py) ─► burn signals (alerts/slo_alerts.py: one per SLO)
  each signal ─► advance() (alerts/rules.py, pure) ─► event ─► payload (alerts/wording.py),
  thread (alerts/threads.py), targets (alerts/routing.py)
and commits the changed states with their notifications in one transaction of the state
store. Delivery is the DeliveryWorker's job (alerts/delivery.py).

Failing means status warn, fail or error: a check that cannot evaluate is a problem someone
must look at. The result's severity (warn/page) picks the route.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime

from dqmon.alerts.dependencies import ConsequenceThreads, firing_alerts
from dqmon.alerts.links import grafana_link
from dqmon.alerts.routing import route_targets
from dqmon.alerts.rules import AlertState, RuleTiming, Step, advance
from dqmon.alerts.signals import CheckSignals, Signal
from dqmon.alerts.silences import active_silence
from dqmon.alerts.slo_alerts import host_thread, slo_signals
from dqmon.alerts.threads import Threads
from dqmon.alerts.wording import payload as build_payload
from dqmon.config.models import Pipeline
from dqmon.results import CheckResult
from dqmon.slo import SloStatus, SloTracker
from dqmon.state.outbox import NewNotification, StoredAlertState
from dqmon.state.store import AlertStore

log = logging.getLogger(__name__)


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
        self.checks = CheckSignals(pipeline)
        # burn rates already integrate time: no `for`; two buckets of calm before resolving
        self._slo_timing = RuleTiming(
            repeat_seconds=policy.repeat_interval.total_seconds(),
            send_resolved=policy.send_resolved,
            clear_seconds=2 * slo_bucket_seconds,
        )
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
        self.threads = Threads(pipeline.pipeline, policy.group_by, store)
        # fed_by: a downstream symptom of a stale upstream goes into the upstream alert's thread
        self._dependencies = ConsequenceThreads({d.name: d.fed_by for d in pipeline.datasets})

    # ------------------------------------------------------------------ the one entry point
    def observe(
        self,
        results: Sequence[CheckResult],
        now: datetime | float | None = None,
        *,
        slo_events: bool = True,
    ) -> list[NewNotification]:
        """Advance every alert these results (and the SLOs) speak about; return what was enqueued.

        `slo_events=False` for results of a source-facts sweep (staleness, lag, every second):
        they move alerts but are not dataset evaluations, which are what an SLO counts (a silent
        stream's empty windows are evaluations and do count)."""
        with self._lock:
            return self._observe(results, _epoch(now) if now is not None else self.clock(), slo_events)

    def _observe(self, results: Sequence[CheckResult], at: float, slo_events: bool) -> list[NewNotification]:
        signals = self.checks.build(results)
        slo_statuses: list[SloStatus] = []
        if self.slo.slos:
            if slo_events:
                self.slo.record(results, at)
            slo_statuses = self.slo.status(at)
            # after the check signals: a burn's host alert has taken this evaluation's step
            signals.extend(slo_signals(slo_statuses, self._slo_timing))
        changed: list[StoredAlertState] = []
        notifications: list[NewNotification] = []
        for signal in signals:
            before = self._states.get(signal.fingerprint, AlertState(signal.fingerprint))
            silenced = active_silence(self.pipeline.alerts.silences, signal.labels, at) is not None
            step = advance(before, signal.failing, at, signal.timing, silenced, signal.parts)
            if not step.changed and self._labels.get(signal.fingerprint) == signal.labels:
                continue
            self._states[signal.fingerprint] = step.state
            if step.event is not None:
                notifications.extend(self._notifications(signal, step, at, slo_statuses))
            state = self._states[signal.fingerprint]
            self._labels[signal.fingerprint] = dict(signal.labels)
            changed.append(
                StoredAlertState(
                    fingerprint=signal.fingerprint,
                    pipeline=self.pipeline.pipeline,
                    state=state.phase,
                    body={"labels": dict(signal.labels), **state.to_json()},
                )
            )
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
    def _notifications(
        self, signal: Signal, step: Step, at: float, slo_statuses: Sequence[SloStatus]
    ) -> list[NewNotification]:
        assert step.event is not None
        labels = signal.labels
        state = step.state
        payload = build_payload(
            event=step.event,
            fingerprint=signal.fingerprint,
            labels=labels,
            facts=signal.facts,
            state=state,
            at=at,
            owner=self.pipeline.owner,
            slo_statuses=slo_statuses,
            grafana_url=grafana_link(self.grafana_url, labels, state.fired_at or at, at),
        )
        host = None
        if step.event == "firing":
            state = replace(state, guest=False)  # a new episode: hosted again only if a host fires
            self._states[signal.fingerprint] = state
        if step.event == "firing" and signal.spenders:
            found = host_thread(signal, self.pipeline.pipeline, self._states, at)
            if found is not None:
                host, payload["in_thread_of"] = found
        cause_thread = self._dependencies.thread(
            signal.fingerprint,
            step.event,
            "",
            firing_alerts(
                {**self._states, signal.fingerprint: state},
                {**self._labels, signal.fingerprint: dict(labels)},
                announcing=signal.fingerprint,
            ),
            payload,
        )
        if cause_thread:  # a consequence replies in its cause's thread, never in a group
            payload.setdefault("message_key", state.episode or f"{signal.fingerprint}:none")
            thread = cause_thread
        else:
            thread = self.threads.assign(
                signal.fingerprint, step.event, state, at, payload, self._states, host=host
            )
        if step.event == "firing":
            self._states[signal.fingerprint] = replace(state, thread=thread, guest=host is not None)
        targets = route_targets(
            labels,
            check_notify=signal.notify,
            routes=self.pipeline.alerts.routes,
            owner=self.pipeline.owner,
            slack_configured=self.slack_configured,
            slack_default_channel=self.slack_default_channel,
        )
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


def _epoch(value: datetime | float) -> float:
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
    return float(value)
