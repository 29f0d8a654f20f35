"""What an alert says: the facts of a check's parts, SLO burn messages and the payload notifiers
render (Slack blocks, log lines and webhook bodies all read the same payload)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from dqmon.alerts.rules import AlertState
from dqmon.results import CheckResult, Status
from dqmon.slo import BurnRate, SloStatus

MAX_PARTS_SHOWN = 10


def check_facts(results: Sequence[CheckResult]) -> dict[str, Any]:
    """Facts of one check's results in one evaluation: the worst part leads, every failing part
    is listed (one message for the whole check)."""
    failing = [r for r in results if r.status != Status.OK]
    shown = failing or list(results)
    worst = max(shown, key=lambda r: r.status)
    if len(failing) > 1:
        listed = "; ".join(f"{r.check}: {r.message}" for r in failing[:MAX_PARTS_SHOWN])
        more = f"; and {len(failing) - MAX_PARTS_SHOWN} more" if len(failing) > MAX_PARTS_SHOWN else ""
        message = f"{len(failing)} parts failing: {listed}{more}"
    elif failing and failing[0].rule is not None:
        message = f"{failing[0].check}: {failing[0].message}"
    else:
        message = worst.message
    return {
        "status": worst.status.label,
        "value": worst.value,
        "threshold": worst.threshold,
        "message": message,
        "trace_id": worst.trace_id,
        "parts": [
            {
                "part": r.check,
                "status": r.status.label,
                "value": r.value,
                "threshold": r.threshold,
                "message": r.message,
            }
            for r in failing
        ],
    }


def burn_text(br: BurnRate) -> str:
    return f"{br.window} {br.long_rate:.1f}x/{br.short_rate:.1f}x > {br.factor:g}"


def slo_message(st: SloStatus, lead: BurnRate | None, others: Sequence[BurnRate]) -> str:
    spent = ", ".join(f"{name} ({n} bad)" for name, n in st.top_checks[:5]) or "none"
    if lead is None:
        return f"SLO {st.slo} ({st.objective:g}%): no burn-rate window firing; {budget_text(st)}"
    text = (
        f"SLO {st.slo} ({st.objective:g}%) burning its error budget {lead.long_rate:.1f}x (long) / "
        f"{lead.short_rate:.1f}x (short) over {lead.window}, factor {lead.factor:g}"
    )
    if others:
        text += "; also firing: " + ", ".join(burn_text(br) for br in others)
    return f"{text}; {budget_text(st)}; spent by: {spent}"


def budget_text(st: SloStatus) -> str:
    return f"{st.budget_remaining:.1%} of the budget left"


def slo_at_risk(slo: str | None, statuses: Sequence[SloStatus]) -> str | None:
    if slo is None:
        return None
    for st in statuses:
        if st.slo == slo:
            return f"{slo} ({st.objective:g}%): {st.budget_remaining:.1%} of error budget left"
    return slo


def payload(
    *,
    event: str,
    fingerprint: str,
    labels: Mapping[str, str | None],
    facts: Mapping[str, Any],
    state: AlertState,
    at: float,
    owner: str | None,
    slo_statuses: Sequence[SloStatus],
    grafana_url: str | None,
) -> dict[str, Any]:
    """The notification payload (JSON-ready) for one event of one alert."""
    return {
        "event": event,
        "fingerprint": fingerprint,
        "pipeline": labels["pipeline"],
        "dataset": labels["dataset"],
        "check": labels["check"],
        "kind": labels["kind"],
        "severity": labels["severity"],
        "slo": labels["slo"],
        "slo_at_risk": slo_at_risk(labels.get("slo"), slo_statuses),
        "owner": owner,
        "since": iso(state.fired_at if event != "resolved" else state.resolved_at),
        "failing_since": iso(state.failing_since or state.fired_at),
        "fired_at": iso(state.fired_at),
        "resolved_at": iso(state.resolved_at) if event == "resolved" else None,
        "at": iso(at),
        "grafana_url": grafana_url,
        **facts,
    }


def iso(value: float | None) -> str | None:
    if value is None:
        return None
    return (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=value)).isoformat()
