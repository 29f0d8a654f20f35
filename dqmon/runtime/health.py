"""The health verdict for model serving: ok / degraded / failing per pipeline and dataset.

Built from the status board's latest results (no query on any data), so an inference service or a
feature server can poll `GET /api/v1/health[/{pipeline}]` every second and gate on it. A dataset
is failing when a check reports fail or error, or its source is down; degraded when a check
reports warn, or before its first result (or, for a dataset without checks, its first batch); ok
otherwise. A pipeline is its worst dataset.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from dqmon.config.loader import ChecksConfig
from dqmon.results import Status
from dqmon.runtime.status import DatasetStatus

VERDICTS = ("ok", "degraded", "failing")


def _iso(at: datetime | None) -> str | None:
    return None if at is None else at.astimezone(UTC).isoformat()


def _worst(verdicts: list[str]) -> str:
    return max(verdicts, key=VERDICTS.index, default="ok")


def dataset_health(row: DatasetStatus | None) -> dict[str, Any]:
    if row is None:
        return {"status": "degraded", "reason": "no results yet", "since": None, "failing_checks": []}
    failing = []
    verdict = "ok"
    since: list[datetime] = []
    for check, result in sorted(row.results.items()):
        if result.status == Status.OK:
            continue
        check_verdict = "degraded" if result.status == Status.WARN else "failing"
        verdict = _worst([verdict, check_verdict])
        started = row.failing_since.get(check, result.evaluated_at)
        since.append(started)
        failing.append(
            {
                "check": check,
                "kind": result.kind,
                "status": result.status.label,
                "severity": result.severity,
                "value": result.value,
                "threshold": result.threshold,
                "message": result.message,
                "since": _iso(started),
                "evaluated_at": _iso(result.evaluated_at),
            }
        )
    out: dict[str, Any] = {}
    if row.has_source:
        out["source_up"] = row.up
        if not row.up:
            verdict = "failing"
            if row.down_since is not None:
                since.append(row.down_since)
    if not row.results and verdict == "ok" and not row.batches:
        # a dataset without checks of its own (read only for links) is ok once batches flow
        verdict = "degraded"
        out["reason"] = "no results yet"
    out.update(
        status=verdict,
        since=_iso(min(since)) if since and verdict != "ok" else None,
        last_batch=_iso(row.last_batch),
        failing_checks=failing,
    )
    return out


def health_report(
    config: ChecksConfig, rows: Mapping[str, DatasetStatus], pipeline: str | None = None
) -> dict[str, Any] | None:
    """The verdict of every pipeline, or of the one named (None when there is no such pipeline)."""
    pipelines: list[dict[str, Any]] = []
    for p in config.pipelines:
        if pipeline is not None and p.pipeline != pipeline:
            continue
        names = [d.name for d in p.datasets]
        names += sorted({e.spec.result_dataset() for e in p.links} - set(names))
        datasets = []
        for name in names:
            report = dataset_health(rows.get(f"{p.pipeline}/{name}"))
            datasets.append({"dataset": name, **report})
        since = [d["since"] for d in datasets if d["since"] is not None and d["status"] != "ok"]
        verdict = _worst([d["status"] for d in datasets])
        pipelines.append(
            {
                "pipeline": p.pipeline,
                "status": verdict,
                "since": min(since) if since and verdict != "ok" else None,
                "datasets": datasets,
            }
        )
    now = datetime.now(UTC).isoformat()
    if pipeline is not None:
        return {**pipelines[0], "generated_at": now} if pipelines else None
    return {
        "status": _worst([p["status"] for p in pipelines]),
        "generated_at": now,
        "pipelines": pipelines,
    }
