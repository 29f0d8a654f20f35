"""Issue 10 #5: every result links to the check that produced it, so that check's `for:`,
`notify:` and `slo:` apply to all its results, for every check kind, with and without `name:`.

The results come from the real check classes (DatasetEngine on a batch that breaks every check,
plus a source-facts sweep for lag), not from hand-made CheckResults.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from dqmon.alerts.manager import AlertManager
from dqmon.batch import MicroBatch
from dqmon.config.models import Pipeline
from dqmon.engine import DatasetEngine
from dqmon.facts import ConsumerLag, SourceFacts
from dqmon.results import CheckResult, Status
from dqmon.state.store import MemoryStateStore

NOW = datetime(2027, 1, 15, 8, 0, tzinfo=UTC)
KINDS: dict[str, dict[str, Any]] = {
    "freshness": {"max_lag": "1s", "stat": "newest"},
    "volume": {"min": 1000},
    "schema": {"contract": {"fields": {"must_exist": {"type": "int"}}}, "max_decode_error_rate": 0},
    "distribution": {"column": "not_there", "max": 0.1, "reference": "rolling_5m"},
    "validity": {"not_null": ["x"], "range": {"y": {"gt": 0}}},
    "sql": {"query": "select count(*) as value from batch", "max": 0},
    "lag": {"group": "app", "max_messages": 1},
    "great_expectations": {"suite": "suite.json"},
}


def pipeline(named: bool) -> Pipeline:
    def entry(kind: str) -> dict[str, Any]:
        spec = {**KINDS[kind], "for": "30s", "notify": [f"webhook:{kind}"], "slo": "s"}
        if named:
            spec["name"] = f"my_{kind}"
        return {kind: spec}

    return Pipeline.model_validate(
        {
            "pipeline": "p",
            "slos": [{"name": "s", "objective": 99.0, "window": "1d"}],
            "datasets": [
                {
                    "name": "d",
                    "source": {"kind": "replay", "path": "x.ndjson"},
                    "event_time": "ts",
                    "checks": [entry(kind) for kind in KINDS],
                }
            ],
        }
    )


def results_of_every_kind(p: Pipeline, base_dir: Path, at: datetime) -> list[CheckResult]:
    (base_dir / "suite.json").write_text(
        json.dumps(
            {
                "name": "s",
                "expectations": [
                    {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "x"}},
                    {"type": "expect_column_values_to_be_between", "kwargs": {"column": "y", "min_value": 0}},
                ],
            }
        )
    )
    dataset = p.datasets[0]
    engine = DatasetEngine(p, dataset, base_dir=base_dir, store=MemoryStateStore(), clock=lambda: at)
    frame = pl.DataFrame(
        {"x": [1, None, 3], "y": [-1.0, 2.0, 3.0], "ts": [at - timedelta(hours=1)] * 3},
        schema_overrides={"ts": pl.Datetime("us", "UTC")},
    )
    batch = MicroBatch("p", "d", frame, at - dataset.window, at, rows_seen=3, rows_sampled=4,
                       decode_errors={"invalid_json": 1})  # fmt: skip
    facts = SourceFacts(observed_at=at, consumer_lag={"app": ConsumerLag(messages=500, seconds=3.0)})
    return engine.evaluate(batch) + engine.sweep(at, facts)


@pytest.mark.parametrize("named", [False, True], ids=["unnamed", "named"])
def test_for_notify_and_slo_follow_the_producing_check(named: bool, tmp_path: Path) -> None:
    p = pipeline(named)
    checks = {e.check_name(): e.kind for e in p.datasets[0].checks}
    results = results_of_every_kind(p, tmp_path, NOW)
    assert all(r.origin in checks for r in results), [r.check for r in results]
    failing = {r.origin for r in results if r.status != Status.OK}
    assert failing == set(checks), "the batch must break every kind of check"

    m = AlertManager(p, MemoryStateStore(), slack_configured=True)
    t0 = NOW.timestamp()
    assert m.observe(results, t0) == []  # every check's own for: 30s (the pipeline's is 0)
    assert m.observe(results, t0 + 29) == []
    fired = m.observe(results, t0 + 30)
    # one alert per check, routed by that check's notify:
    assert sorted((n.payload["check"], n.target) for n in fired) == sorted(
        (name, f"webhook:{kind}") for name, kind in checks.items()
    )
    # the SLO names the checks that spent its budget by their configured names
    (status,) = m.slo_status(t0 + 30)
    assert status.bad == 3
    assert {name for name, _ in status.top_checks} == {f"d/{name}" for name in checks}
