"""deploy/: kustomize renders, the Helm chart lints and renders, every object validates offline.

Objects are validated with kubernetes-validate (strict) against two Kubernetes versions; the
PodMonitor is a CRD without a bundled schema, so its fields are asserted here instead.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python
import kubernetes_validate
import pytest
from helm_python import Chart
from ruamel.yaml import YAML

from dqmon.config.loader import load_checks

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
CHART = DEPLOY / "helm" / "dqmon"
KUBE_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())
CRD_KINDS = {("monitoring.coreos.com/v1", "PodMonitor")}


def parse_all(text: str) -> list[dict[str, Any]]:
    return [doc for doc in YAML(typ="safe").load_all(text) if doc]


def kustomize(path: Path) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl is needed to render kustomize (it is installed on CI machines)"
    done = subprocess.run([kubectl, "kustomize", str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return parse_all(done.stdout)


def helm_render(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    rendered = Chart.load(CHART).render(values or {}, name="trades", namespace="ml-platform", is_install=True)
    return [
        doc for name, text in sorted(rendered.items()) if name.endswith(".yaml") for doc in parse_all(text)
    ]


def validate_all(objects: list[dict[str, Any]]) -> None:
    assert objects
    for obj in objects:
        if (obj["apiVersion"], obj["kind"]) in CRD_KINDS:
            continue
        for version in KUBE_VERSIONS:
            kubernetes_validate.validate(obj, version, strict=True)


def by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def sidecar(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = {c["name"]: c for c in deployment["spec"]["template"]["spec"]["containers"]}
    assert "dqmon" in containers, f"no dqmon sidecar in {sorted(containers)}"
    assert len(containers) >= 2, "dqmon runs beside the pipeline's own container"
    return containers["dqmon"]


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def assert_hardened_sidecar(deployment: dict[str, Any]) -> dict[str, Any]:
    """The sidecar's security context, probes, command, env and volumes, wherever it was rendered."""
    container = sidecar(deployment)
    ctx = container["securityContext"]
    assert ctx["runAsNonRoot"] is True
    assert ctx["runAsUser"] != 0
    assert ctx["readOnlyRootFilesystem"] is True
    assert ctx["allowPrivilegeEscalation"] is False
    assert ctx["capabilities"] == {"drop": ["ALL"]}
    assert ctx["seccompProfile"] == {"type": "RuntimeDefault"}
    assert "privileged" not in ctx or ctx["privileged"] is False

    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"dqmon-http": 9464}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "dqmon-http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "dqmon-http"}

    command = [*container.get("command", []), *container.get("args", [])]
    assert command[-3:] == ["run", "--checks", "/etc/dqmon/checks"]
    env = env_of(container)
    assert env["DQMON_HTTP_PORT"] == "9464"
    assert env["DQMON_DATA_DIR"] == "/var/lib/dqmon"
    # secrets only ever arrive as Secret references, never as literal values
    for name, value in env.items():
        if re.search(r"TOKEN|DSN|WEBHOOK|PASSWORD|KEY", name):
            assert isinstance(value, dict), f"{name} must come from a Secret"
            assert "secretKeyRef" in value

    assert {"cpu", "memory"} <= set(container["resources"]["requests"])
    assert {"cpu", "memory"} <= set(container["resources"]["limits"])

    pod = deployment["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    checks_volume = volumes[mounts["/etc/dqmon/checks"]["name"]]
    assert "configMap" in checks_volume
    assert mounts["/etc/dqmon/checks"]["readOnly"] is True
    # a read-only root filesystem needs writable emptyDirs for state and temporary files
    assert "emptyDir" in volumes[mounts["/var/lib/dqmon"]["name"]]
    assert "emptyDir" in volumes[mounts["/tmp"]["name"]]  # noqa: S108 - a mount path, not a temp file
    assert pod["securityContext"]["runAsNonRoot"] is True
    return container


def assert_pod_monitor(monitor: dict[str, Any], deployment: dict[str, Any] | None) -> None:
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    endpoints = monitor["spec"]["podMetricsEndpoints"]
    assert [(e["port"], e["path"]) for e in endpoints] == [("dqmon-http", "/metrics")]
    assert all(re.fullmatch(r"\d+[smh]", e["interval"]) for e in endpoints)
    if deployment is not None:
        pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        for key, value in monitor["spec"]["selector"]["matchLabels"].items():
            assert pod_labels.get(key) == value, f"PodMonitor selects {key}={value}, pod lacks it"


def assert_checks_load(config_map: dict[str, Any], tmp_path: Path) -> list[str]:
    """The ConfigMap's checks files are valid dqmon checks (as the sidecar will load them)."""
    directory = tmp_path / "checks"
    directory.mkdir()
    for name, content in config_map["data"].items():
        (directory / name).write_text(content, encoding="utf-8")
    config = load_checks(directory, env={"FEATURES_DSN": "postgresql://reader@db/features"})
    return sorted(p.pipeline for p in config.pipelines)


# --------------------------------------------------------------------------- kustomize


@pytest.fixture(scope="module")
def overlay() -> list[dict[str, Any]]:
    return kustomize(DEPLOY / "kustomize" / "overlays" / "example")


def test_kustomize_base_renders_valid_objects(tmp_path: Path) -> None:
    objects = kustomize(DEPLOY / "kustomize" / "base")
    validate_all(objects)
    assert sorted(o["kind"] for o in objects) == ["ConfigMap", "Deployment", "PodMonitor"]
    (deployment,) = by_kind(objects, "Deployment")
    container = assert_hardened_sidecar(deployment)
    assert container["image"] == "ghcr.io/dqmon/dqmon:0.1.0"
    (config_map,) = by_kind(objects, "ConfigMap")
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    # the generator's hash-suffixed name is wired into the volume
    assert volumes["dqmon-checks"]["configMap"]["name"] == config_map["metadata"]["name"]
    assert re.fullmatch(r"dqmon-checks-[a-z0-9]{10}", config_map["metadata"]["name"])
    assert assert_checks_load(config_map, tmp_path) == ["trades-features"]
    (monitor,) = by_kind(objects, "PodMonitor")
    assert_pod_monitor(monitor, deployment)
    # notifier secrets are optional: a cluster without PagerDuty runs with Slack alone
    assert env_of(container)["DQMON_PAGERDUTY_ROUTING_KEY"] == {
        "secretKeyRef": {"name": "dqmon-pagerduty", "key": "routing-key", "optional": True}
    }


def test_kustomize_overlay_customises_the_base(overlay: list[dict[str, Any]], tmp_path: Path) -> None:
    validate_all(overlay)
    assert {o["metadata"]["namespace"] for o in overlay} == {"ml-platform"}
    (deployment,) = by_kind(overlay, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    container = assert_hardened_sidecar(deployment)
    assert container["resources"]["limits"]["memory"] == "768Mi"
    assert env_of(container)["DQMON_STATE_DSN"] == {"secretKeyRef": {"name": "dqmon-state", "key": "dsn"}}
    (config_map,) = by_kind(overlay, "ConfigMap")
    assert assert_checks_load(config_map, tmp_path) == ["orderbook", "trades-features"]
    (monitor,) = by_kind(overlay, "PodMonitor")
    assert_pod_monitor(monitor, deployment)


def test_the_pipeline_container_is_left_as_declared(overlay: list[dict[str, Any]]) -> None:
    (deployment,) = by_kind(overlay, "Deployment")
    names = sorted(c["name"] for c in deployment["spec"]["template"]["spec"]["containers"])
    assert names == ["dqmon", "pipeline"]
    # patches may reorder containers; the annotation keeps kubectl pointed at the pipeline
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["kubectl.kubernetes.io/default-container"] == "pipeline"


# --------------------------------------------------------------------------- helm


def lint_errors(values: dict[str, Any] | None = None) -> list[Any]:
    report = helm_python.lint(CHART, values or {}, strict=True, kube_version="1.30.0")
    return [m for m in report["messages"] if m["severity"] > 1] + list(report["errors"])


def test_helm_chart_lints_with_default_values() -> None:
    assert lint_errors() == []


def test_helm_chart_renders_defaults(tmp_path: Path) -> None:
    objects = helm_render()
    validate_all(objects)
    assert sorted(o["kind"] for o in objects) == ["ConfigMap", "Deployment"]  # PodMonitor off by default
    (deployment,) = by_kind(objects, "Deployment")
    container = assert_hardened_sidecar(deployment)
    assert container["image"] == "ghcr.io/dqmon/dqmon:0.1.0"
    (config_map,) = by_kind(objects, "ConfigMap")
    assert assert_checks_load(config_map, tmp_path) == ["example"]


NON_DEFAULT: dict[str, Any] = {
    "image": {"repository": "registry.example.com/dqmon", "tag": "0.1.0-gx", "pullPolicy": "Always"},
    "checks": {
        "files": {
            "trades.yaml": (DEPLOY / "kustomize" / "base" / "checks" / "trades-features.yaml").read_text(),
        }
    },
    "secretEnv": [
        {"name": "DQMON_SLACK_TOKEN", "secretName": "dqmon-slack", "key": "token"},
        {"name": "DQMON_PAGERDUTY_ROUTING_KEY", "secretName": "dqmon-pagerduty", "key": "routing-key"},
        {"name": "FEATURES_DSN", "secretName": "features-db", "key": "dsn", "optional": True},
    ],
    "env": {"DQMON_KAFKA_BOOTSTRAP_SERVERS": "broker-0:9092,broker-1:9092", "DQMON_LOG_LEVEL": "DEBUG"},
    "resources": {
        "requests": {"cpu": "50m", "memory": "128Mi"},
        "limits": {"cpu": "500m", "memory": "256Mi"},
    },
    "podMonitor": {"enabled": True, "interval": "15s", "labels": {"release": "kube-prometheus"}},
    "workload": {"replicas": 3, "podLabels": {"team": "ml-platform"}},
}


def test_helm_chart_lints_and_renders_non_default_values(tmp_path: Path) -> None:
    assert lint_errors(NON_DEFAULT) == []
    objects = helm_render(NON_DEFAULT)
    validate_all(objects)
    assert sorted(o["kind"] for o in objects) == ["ConfigMap", "Deployment", "PodMonitor"]
    (deployment,) = by_kind(objects, "Deployment")
    assert deployment["spec"]["replicas"] == 3
    container = assert_hardened_sidecar(deployment)
    assert container["image"] == "registry.example.com/dqmon:0.1.0-gx"
    assert container["resources"]["limits"] == {"cpu": "500m", "memory": "256Mi"}
    env = env_of(container)
    assert env["DQMON_SLACK_TOKEN"] == {
        "secretKeyRef": {"name": "dqmon-slack", "key": "token", "optional": False}
    }
    assert env["DQMON_PAGERDUTY_ROUTING_KEY"] == {
        "secretKeyRef": {"name": "dqmon-pagerduty", "key": "routing-key", "optional": False}
    }
    assert env["FEATURES_DSN"]["secretKeyRef"]["optional"] is True
    assert env["DQMON_KAFKA_BOOTSTRAP_SERVERS"] == "broker-0:9092,broker-1:9092"
    (config_map,) = by_kind(objects, "ConfigMap")
    assert assert_checks_load(config_map, tmp_path) == ["trades-features"]
    (monitor,) = by_kind(objects, "PodMonitor")
    assert_pod_monitor(monitor, deployment)
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus"
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["ml-platform"]}


def test_helm_existing_config_map_and_no_workload() -> None:
    values = {"checks": {"existingConfigMap": "team-checks"}, "workload": {"enabled": False}}
    assert lint_errors(values) == []
    assert helm_render(values) == []  # the sidecar is injected by the user's own chart
    with_workload = helm_render({"checks": {"existingConfigMap": "team-checks"}})
    assert [o["kind"] for o in with_workload] == ["Deployment"]
    volumes = {v["name"]: v for v in with_workload[0]["spec"]["template"]["spec"]["volumes"]}
    assert volumes["dqmon-checks"]["configMap"]["name"] == "team-checks"


def test_helm_values_schema_refuses_a_root_sidecar() -> None:
    with pytest.raises(helm_python.HelmError):
        Chart.load(CHART).render({"securityContext": {"runAsNonRoot": False}}, name="x", namespace="y")
    with pytest.raises(helm_python.HelmError):
        Chart.load(CHART).render({"secretEnv": [{"name": "DQMON_SLACK_TOKEN", "value": "xoxb-literal"}]})


# --------------------------------------------------------------------------- Dockerfile


def dockerfile_instructions() -> Iterator[tuple[str, str]]:
    text = (DEPLOY / "Dockerfile").read_text(encoding="utf-8").replace("\\\n", " ")
    for line in text.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            keyword, _, rest = stripped.partition(" ")
            yield keyword.upper(), rest.strip()


def test_dockerfile_is_slim_non_root_and_runs_the_sidecar_command() -> None:
    instructions = list(dockerfile_instructions())
    args = dict(a.split("=", 1) for k, a in instructions if k == "ARG" and "=" in a)
    assert re.fullmatch(r"python:3\.11-slim(-\w+)?", args["PYTHON_IMAGE"])
    stages = [rest for keyword, rest in instructions if keyword == "FROM"]
    assert len(stages) == 2
    assert all(stage.startswith("${PYTHON_IMAGE}") for stage in stages)
    final = instructions[max(i for i, (k, _) in enumerate(instructions) if k == "FROM") :]
    users = [rest for keyword, rest in final if keyword == "USER"]
    assert users, "the runtime stage must drop root"
    uid = users[-1].split(":")[0]
    assert uid.isdigit(), "a numeric UID lets runAsNonRoot verify it"
    assert int(uid) >= 1000
    assert ("ENTRYPOINT", '["dqmon"]') in final
    assert ("CMD", '["run", "--checks", "/etc/dqmon/checks"]') in final
    # the runtime user owns the installed packages (so the start-up trim may hand their pages
    # back), changed in the layer that installs them: a later chown would copy every file
    installs = [rest for keyword, rest in final if keyword == "RUN" and "pip install" in rest]
    assert len(installs) == 1 and f"chown -R {uid}:{uid}" in installs[0]
    env_text = " ".join(rest for keyword, rest in final if keyword == "ENV")
    assert "DQMON_HTTP_PORT=9464" in env_text
    assert "DQMON_DATA_DIR=/var/lib/dqmon" in env_text
    # what the build copies exists in the repository and is not excluded by the ignore file
    copied = [rest.split()[0] for keyword, rest in instructions if keyword == "COPY" and "--from" not in rest]
    for source in (s for rest in copied for s in [rest]):
        assert (ROOT / source).exists(), source
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text(encoding="utf-8")
    for needed in ("!pyproject.toml", "!README.md", "!dqmon/", "!deploy/constraints.txt"):
        assert needed in ignore


def test_the_sidecar_templates_inject_into_another_chart(tmp_path: Path) -> None:
    """A team's own chart depends on dqmon and includes the sidecar in its pods (docs/deploy.md)."""
    parent = tmp_path / "trades-app"
    (parent / "templates").mkdir(parents=True)
    shutil.copytree(CHART, parent / "charts" / "dqmon")
    (parent / "Chart.yaml").write_text(
        "apiVersion: v2\nname: trades-app\nversion: 1.0.0\n"
        "dependencies:\n  - {name: dqmon, version: 0.1.0}\n",
        encoding="utf-8",
    )
    (parent / "values.yaml").write_text("dqmon:\n  workload: {enabled: false}\n", encoding="utf-8")
    (parent / "templates" / "deployment.yaml").write_text(
        """\
{{- $dqmon := dict "Values" .Values.dqmon "Chart" .Subcharts.dqmon.Chart "Release" .Release }}
apiVersion: apps/v1
kind: Deployment
metadata: {name: trades-app}
spec:
  selector: {matchLabels: {app: trades-app}}
  template:
    metadata:
      labels:
        app: trades-app
        {{- include "dqmon.podLabels" $dqmon | nindent 8 }}
    spec:
      securityContext: {runAsNonRoot: true}
      containers:
        - {name: app, image: "registry.example.com/trades-app:1"}
        {{- include "dqmon.sidecar" $dqmon | nindent 8 }}
      volumes:
        {{- include "dqmon.volumes" $dqmon | nindent 8 }}
""",
        encoding="utf-8",
    )
    rendered = Chart.load(parent).render({}, name="trades", namespace="ml-platform")
    objects = [
        doc for name, text in sorted(rendered.items()) if name.endswith(".yaml") for doc in parse_all(text)
    ]
    validate_all(objects)
    (deployment,) = by_kind(objects, "Deployment")
    assert deployment["metadata"]["name"] == "trades-app"
    assert_hardened_sidecar(deployment)
    (config_map,) = by_kind(objects, "ConfigMap")
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["dqmon-checks"]["configMap"]["name"] == config_map["metadata"]["name"]
