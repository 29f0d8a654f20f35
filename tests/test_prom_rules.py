"""dqmon's own-health alert rules: promtool lint and unit tests, and only metrics dqmon emits."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry
from ruamel.yaml import YAML

from dqmon.telemetry.metrics import DqmonMetrics

RULES_DIR = Path(__file__).resolve().parent.parent / "deploy" / "prometheus"
RULES = RULES_DIR / "dqmon-rules.yaml"
RULE_TESTS = RULES_DIR / "dqmon-rules.test.yaml"


def load_yaml(path: Path) -> Any:
    return YAML(typ="safe").load(path.read_text())


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    assert binary, "promtool is installed by `make system-deps` / .ci/run (Debian prometheus package)"
    return subprocess.run(
        [binary, *args], capture_output=True, text=True, timeout=60, cwd=RULES_DIR, check=False
    )


def test_promtool_check_rules() -> None:
    proc = promtool("check", "rules", str(RULES))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS: 8 rules found" in proc.stdout


def test_promtool_test_rules() -> None:
    proc = promtool("test", "rules", str(RULE_TESTS))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_every_alert_has_a_unit_test() -> None:
    alerts = {r["alert"] for g in load_yaml(RULES)["groups"] for r in g["rules"]}
    tested = {
        case["alertname"]
        for test in load_yaml(RULE_TESTS)["tests"]
        for case in test["alert_rule_test"]
        if case["exp_alerts"]
    }
    assert alerts == tested


def exposed_metric_names() -> set[str]:
    """Every metric and sample name a fresh DqmonMetrics exposes (counters with and without _total)."""
    names: set[str] = set()
    for metric in DqmonMetrics(CollectorRegistry()).registry.collect():
        names |= {metric.name, f"{metric.name}_total"} | {sample.name for sample in metric.samples}
    return names


def unknown_metrics(expr: str, exposed: set[str]) -> set[str]:
    return set(re.findall(r"\b(dqmon_\w+)", expr)) - exposed


def test_rules_name_only_metrics_dqmon_exposes() -> None:
    exposed = exposed_metric_names()
    assert unknown_metrics("dqmon_sourc_up == 0", exposed) == {"dqmon_sourc_up"}  # the check can fail
    for group in load_yaml(RULES)["groups"]:
        for rule in group["rules"]:
            assert not unknown_metrics(rule["expr"], exposed), rule["alert"]


def test_promtool_rejects_a_broken_rule(tmp_path: Path) -> None:
    # proves the lint above can fail
    rules = {"groups": [{"name": "t", "rules": [{"alert": "A", "expr": "sum by (notifier (x)"}]}]}
    path = tmp_path / "bad.yaml"
    YAML(typ="safe").dump(rules, path)
    assert promtool("check", "rules", str(path)).returncode != 0
