"""Notify targets naming a registered but unconfigured notifier: listed by
`alerts.routing.unconfigured_targets`, rejected by `dqmon run` at start and on reload."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from dqmon.alerts.notifiers.log import LogNotifier
from dqmon.alerts.notifiers.pagerduty import PagerDutyNotifier
from dqmon.alerts.notifiers.webhook import WebhookNotifier
from dqmon.alerts.routing import unconfigured_targets
from dqmon.config.loader import load_checks
from dqmon.config.settings import Settings
from dqmon.errors import ConfigError
from dqmon.runtime.app import Runtime

ROOT = Path(__file__).resolve().parents[1]

CHECKS = """\
pipeline: p
alerts:
  routes:
    - match: {severity: page}
      notify: [pagerduty, "slack:#oncall", log]
    - notify: ["webhook:ops"]
datasets:
  - name: d
    source: {kind: replay, path: x.ndjson}
    checks:
      - volume: {min: 1, notify: ["pagerduty:db", slack]}
"""
PLAIN = """\
pipeline: p
datasets:
  - name: d
    source: {kind: replay, path: x.ndjson}
    checks:
      - volume: {min: 1}
"""


@pytest.fixture(autouse=True)
def _no_notifier_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ROUTING_KEY", "ROUTING_KEY_FILE", "ROUTING_KEYS"):
        monkeypatch.delenv(f"DQMON_PAGERDUTY_{name}", raising=False)
    for name in ("DQMON_WEBHOOK_URLS", "DQMON_SLACK_TOKEN", "DQMON_SLACK_WEBHOOK_URL", "DQMON_STATE_DSN"):
        monkeypatch.delenv(name, raising=False)


def _checks(tmp_path: Path, text: str) -> Path:
    folder = tmp_path / "checks"
    folder.mkdir(exist_ok=True)
    (folder / "p.yaml").write_text(textwrap.dedent(text))
    return folder


def test_targets_of_unconfigured_notifiers_and_names_are_listed(tmp_path: Path) -> None:
    config = load_checks(_checks(tmp_path, CHECKS), env={})
    nothing = unconfigured_targets(config, {"log": LogNotifier()})
    assert [(str(p.location), p.path) for p in nothing] == [
        ("pipeline p", "alerts.routes[0].notify[0]"),
        ("pipeline p", "alerts.routes[1].notify[0]"),
        ("pipeline p", "datasets[0].checks[0].volume.notify[0]"),
    ]  # slack falls back to the log, log is always there
    assert "'pagerduty': notifier pagerduty is not configured" in nothing[0].reason
    assert "DQMON_PAGERDUTY_*" in nothing[0].reason
    assert "DQMON_WEBHOOK_*" in nothing[1].reason

    default_only = {
        "log": LogNotifier(),
        "pagerduty": PagerDutyNotifier({"default": "k" * 32}),
        "webhook": WebhookNotifier({"default": "http://127.0.0.1:1/x"}),
    }
    names = unconfigured_targets(config, default_only)
    assert [p.path for p in names] == ["alerts.routes[1].notify[0]", "datasets[0].checks[0].volume.notify[0]"]
    assert "'webhook:ops': notifier webhook is configured, but not for 'ops'" in names[0].reason
    assert "k" * 32 not in " ".join(str(p) for p in names)

    everything = {
        **default_only,
        "pagerduty": PagerDutyNotifier({"default": "k" * 32, "db": "j" * 32}),
        "webhook": WebhookNotifier({"ops": "http://127.0.0.1:1/x"}),
    }
    assert unconfigured_targets(config, everything) == []


def _settings(tmp_path: Path, **extra: object) -> Settings:
    return Settings(data_dir=tmp_path / "data", http_host="127.0.0.1", http_port=0, **extra)  # type: ignore[arg-type]


def test_run_rejects_checks_routing_to_an_unconfigured_notifier_at_start(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        Runtime(
            _checks(tmp_path, CHECKS), _settings(tmp_path), registry=CollectorRegistry(), watch_files=False
        )
    assert len(info.value.problems) == 3
    keys = {"db": "j" * 32}
    runtime = Runtime(
        _checks(tmp_path, CHECKS),
        _settings(
            tmp_path,
            pagerduty_routing_key="k" * 32,
            pagerduty_routing_keys=keys,
            webhook_urls={"ops": "http://127.0.0.1:1/x"},
        ),
        registry=CollectorRegistry(),
        watch_files=False,
    )
    try:
        assert runtime.metrics.registry.get_sample_value("dqmon_notify_targets_unconfigured") == 0
    finally:
        runtime.delivery.stop(timeout=0.1)  # closes the notifiers' clients
        runtime.store.close()


def test_a_reload_routing_to_an_unconfigured_notifier_keeps_the_previous_checks(tmp_path: Path) -> None:
    checks = _checks(tmp_path, PLAIN)
    runtime = Runtime(checks, _settings(tmp_path), registry=CollectorRegistry(), watch_files=False)
    try:
        before = runtime.config
        _checks(tmp_path, CHECKS)
        assert runtime.reload() is False
        assert runtime.config is before
        assert runtime.metrics.registry.get_sample_value("dqmon_notify_targets_unconfigured") == 3
    finally:
        runtime.delivery.stop(timeout=0.1)  # closes the notifiers' clients
        runtime.store.close()


def test_pagerduty_routing_keys_setting_is_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DQMON_PAGERDUTY_ROUTING_KEYS", json.dumps({"db": "j" * 32}))
    settings = Settings()
    assert settings.pagerduty_routing_keys["db"].get_secret_value() == "j" * 32
    assert "j" * 32 not in repr(settings)


def test_dqmon_run_exits_2_naming_each_unconfigured_target(tmp_path: Path) -> None:
    # a real process: `dqmon run` installs its own root log handler
    env = {k: v for k, v in os.environ.items() if not k.startswith("DQMON_")}
    env |= {"DQMON_DATA_DIR": str(tmp_path / "data"), "DQMON_HTTP_PORT": "0"}
    argv = [sys.executable, "-c", "from dqmon.cli import main; main()", "run", "--no-live"]
    argv += ["--checks", str(_checks(tmp_path, CHECKS))]
    proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2, proc.stderr
    out = proc.stderr
    assert "pipeline p: alerts.routes[0].notify[0]: 'pagerduty': notifier pagerduty is not configured" in out
    assert "pipeline p: datasets[0].checks[0].volume.notify[0]: 'pagerduty:db'" in out
    assert "rejected: 3 problem(s)" in out
