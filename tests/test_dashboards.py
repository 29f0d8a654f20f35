"""Grafana dashboards and provisioning: structure, variables, and only metrics dqmon emits.

The end-to-end proof that every expression returns data on a real Prometheus is in
test_dashboards_prometheus.py; these checks are static and fast.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from ruamel.yaml import YAML

from dqmon.telemetry.metrics import DqmonMetrics

GRAFANA = Path(__file__).resolve().parent.parent / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
# metrics Prometheus itself adds to every scrape target
PROMETHEUS_METRICS = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}
# PromQL functions and keywords that look like metric names in an expression
PROMQL_WORDS = {
    "sum", "min", "max", "avg", "count", "by", "without", "rate", "increase", "irate", "bool", "or",
    "and", "unless", "on", "ignoring", "group_left", "group_right", "histogram_quantile", "label_values",
    "time", "absent", "le", "topk", "bottomk", "delta", "offset",
}  # fmt: skip


def load(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text())
    assert isinstance(data, dict)
    return data


def dashboard_expressions(dashboard: dict[str, Any]) -> list[str]:
    """Every PromQL expression: panel targets and query-variable definitions."""
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    for var in dashboard["templating"]["list"]:
        if var["type"] == "query":
            exprs.append(var["query"]["query"])
    return exprs


def as_promql(expr: str) -> str:
    """A variable's `label_values(selector, label)` becomes its selector; PromQL is unchanged."""
    match = re.fullmatch(r"label_values\((.*),\s*\w+\)", expr.strip())
    return match.group(1) if match else expr


def metric_names(expr: str) -> set[str]:
    without_strings = re.sub(r'"(?:[^"\\]|\\.)*"', '""', as_promql(expr))
    without_ranges = re.sub(r"\[[^\]]*\]", "", without_strings)
    without_grouping = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", without_ranges)
    tokens = set(re.findall(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\b\s*(?=\{|\)|\s|$|\[)", without_grouping))
    return {t for t in tokens if t not in PROMQL_WORDS and not t.startswith("$")}


def exposed_metric_names() -> set[str]:
    names = set(PROMETHEUS_METRICS)
    for metric in DqmonMetrics(CollectorRegistry()).registry.collect():
        names |= {metric.name, f"{metric.name}_total"} | {s.name for s in metric.samples}
        if metric.type == "histogram":
            names |= {f"{metric.name}_bucket", f"{metric.name}_sum", f"{metric.name}_count"}
    return names


def test_the_three_dashboards_exist_with_unique_uids() -> None:
    uids = {load(p)["uid"] for p in DASHBOARDS}
    assert uids == {"dqmon-overview", "dqmon-dataset", "dqmon-health"}


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_dashboard_names_only_metrics_dqmon_emits(path: Path) -> None:
    exposed = exposed_metric_names()
    exprs = dashboard_expressions(load(path))
    assert exprs
    for expr in exprs:
        names = metric_names(expr)
        assert names, expr
        assert names <= exposed, f"{path.name}: {expr!r} names {names - exposed}"


def test_metric_name_extraction_can_fail() -> None:
    assert metric_names('sum by (dataset) (rate(dqmon_rows_sen_total{pipeline=~"$pipeline"}[5m]))') == {
        "dqmon_rows_sen_total"
    }
    assert not metric_names("sum by (x) (rate(dqmon_rows_sen_total[5m]))") <= exposed_metric_names()


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_panels_use_the_datasource_variable_and_have_distinct_ids(path: Path) -> None:
    dashboard = load(path)
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}"


def test_pipeline_and_dataset_variables_filter_the_queries() -> None:
    for path in DASHBOARDS:
        dashboard = load(path)
        names = {v["name"] for v in dashboard["templating"]["list"]}
        assert {"datasource", "pipeline"} <= names, path.name
        if "dataset" in names:
            for expr in dashboard_expressions(dashboard):
                if "dqmon_" in expr and "label_values" not in expr:
                    assert 'dataset=~"$dataset"' in expr, expr
    dataset_view = load(GRAFANA / "dashboards" / "dqmon-dataset.json")
    assert "dataset" in {v["name"] for v in dataset_view["templating"]["list"]}


def test_provisioning_files_point_at_prometheus_and_the_dashboards_folder() -> None:
    yaml = YAML(typ="safe")
    datasources = yaml.load((GRAFANA / "provisioning" / "datasources" / "dqmon.yaml").read_text())
    (source,) = datasources["datasources"]
    assert source["type"] == "prometheus"
    assert source["url"] == "${DQMON_PROMETHEUS_URL}"  # an endpoint is configuration
    providers = yaml.load((GRAFANA / "provisioning" / "dashboards" / "dqmon.yaml").read_text())
    (provider,) = providers["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"].endswith("/dqmon")
