"""SLO burn rates → one alert per SLO, and where its messages go.

One alert per SLO, not one per burn window: the alert fails while any window fires, leads with
the most severe firing window (page before warn, then the highest rate relative to its factor)
and names the others as its parts, so a window that starts or stops firing updates the one
message instead of posting another.

Inhibition, after Alertmanager's inhibit rules: a burn is usually the echo of checks that are
already paging. When one of the checks that spent the budget has an announced, firing alert
(or resolved less than the burn's short window ago), the burn is posted into that alert's
thread instead of a new top-level message (`host_thread`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from dqmon.alerts.fingerprint import fingerprint
from dqmon.alerts.rules import AlertState, RuleTiming
from dqmon.alerts.signals import Signal
from dqmon.alerts.wording import slo_message
from dqmon.slo import BurnRate, SloStatus

_SEVERITY_RANK = {"page": 1, "warn": 0}


def _rank(br: BurnRate) -> tuple[int, float]:
    return (_SEVERITY_RANK.get(br.severity, 0), br.long_rate / br.factor if br.factor else 0.0)


def slo_check_name(slo: str) -> str:
    return f"slo:{slo}"


def slo_signals(statuses: Sequence[SloStatus], timing: RuleTiming) -> list[Signal]:
    signals: list[Signal] = []
    for st in statuses:
        if not st.burn_rates:
            continue
        firing = sorted((br for br in st.burn_rates if br.firing), key=_rank, reverse=True)
        lead = firing[0] if firing else None
        configured = max(st.burn_rates, key=lambda br: _SEVERITY_RANK.get(br.severity, 0))
        shown = lead or configured
        check = slo_check_name(st.slo)
        signals.append(
            Signal(
                fingerprint=fingerprint(st.pipeline, "", check),
                labels={
                    "pipeline": st.pipeline,
                    "dataset": None,
                    "check": check,
                    "kind": "slo",
                    "severity": shown.severity,
                    "slo": st.slo,
                },
                failing=lead is not None,
                timing=timing,
                notify=(),
                parts=tuple(br.window for br in firing),
                facts={
                    "status": "fail" if lead is not None else "ok",
                    "value": round(shown.long_rate, 4),
                    "threshold": f"burn rate > {shown.factor:g} over {shown.window}",
                    "message": slo_message(st, lead, firing[1:]),
                    "budget_remaining": st.budget_remaining,
                    "top_checks": [list(c) for c in st.top_checks[:5]],
                    "windows": [br.window for br in firing],
                },
                spenders=tuple(_split(name) for name, _ in st.top_checks),
                host_seconds=max((br.short_seconds for br in firing), default=0.0),
            )
        )
    return signals


def host_thread(
    signal: Signal, pipeline: str, states: Mapping[str, AlertState], at: float
) -> tuple[str, str] | None:
    """(thread, check) of the first spender whose announced episode can host this burn."""
    for dataset, check in signal.spenders:
        state = states.get(fingerprint(pipeline, dataset, check))
        if state is None or state.thread is None:
            continue
        firing = state.notified == "firing"
        recent = state.resolved_at is not None and at - state.resolved_at <= signal.host_seconds
        if firing or recent:
            return state.thread, f"{dataset}/{check}"
    return None


def _split(name: str) -> tuple[str, str]:
    dataset, _, check = name.partition("/")
    return dataset, check
