"""The plug-in seam: every extension point is a registry; config and schema follow what is registered."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import sys
import textwrap
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import dqmon.checks
import dqmon.sources
from dqmon.alerts.setup import build_notifiers
from dqmon.batch import MicroBatch
from dqmon.checks.base import Check
from dqmon.checks.registry import register
from dqmon.cli import app
from dqmon.config import checks as check_specs
from dqmon.config import models
from dqmon.config.checks import CheckSpec
from dqmon.config.loader import load_checks
from dqmon.config.schema import checks_json_schema
from dqmon.config.settings import Settings
from dqmon.errors import ConfigError
from dqmon.registry import CHECK_KINDS, DECODERS, NOTIFIERS, SOURCES, Registry, UnknownKind, load_plugins
from dqmon.results import CheckResult, Status
from dqmon.sources.base import Source


def _subclasses(module_names: list[str], base: type) -> set[type]:
    found: set[type] = set()
    for name in module_names:
        module = importlib.import_module(name)
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if issubclass(obj, base) and obj is not base and obj.__module__ == module.__name__:
                found.add(obj)
    return found


def _modules(package: Any) -> list[str]:
    return [f"{package.__name__}.{m.name}" for m in pkgutil.iter_modules(package.__path__)]


def test_lookup_of_an_unknown_name_lists_the_valid_ones() -> None:
    registry: Registry[int] = Registry("widget")
    registry.register("a", 1)
    registry.register("b", 2)
    with pytest.raises(UnknownKind, match=r"unknown widget 'c'; valid widgets: a, b"):
        registry.get("c")
    with pytest.raises(ValueError, match="already registered"):
        registry.register("a", 3)


def test_every_check_kind_has_a_spec_and_every_check_class_is_registered() -> None:
    registered = dict(CHECK_KINDS.items())
    concrete = {c for c in _subclasses(_modules(dqmon.checks), Check) if not inspect.isabstract(c)}
    assert concrete == set(registered.values())
    for kind, cls in registered.items():
        assert cls.kind == kind
        assert issubclass(cls.spec_type, CheckSpec) and cls.spec_type is not CheckSpec
    # every spec model of the config layer is the spec of a registered kind, and vice versa
    specs = {c for c in _subclasses([check_specs.__name__], CheckSpec)}
    assert specs <= {cls.spec_type for cls in registered.values()}


def test_every_source_config_has_a_registered_source_and_vice_versa() -> None:
    configs = _subclasses([models.__name__], models.SourceSpec)
    registered = dict(SOURCES.items())
    assert {cls.config_type for cls in registered.values()} == configs
    assert _subclasses(_modules(dqmon.sources), Source) == set(registered.values())
    for kind, cls in registered.items():
        assert cls.config_type.model_fields["kind"].annotation.__args__ == (kind,)  # type: ignore[union-attr]


def test_every_decoder_and_notifier_is_usable_from_its_registry() -> None:
    assert {"json", "avro", "protobuf", "json_schema"} <= set(DECODERS.kinds())
    for _name, decoder in DECODERS.items():
        assert decoder.reasons and callable(decoder.from_source)
    assert DECODERS.get("protobuf").needs_schema_registry
    assert DECODERS.get("json_schema").needs_schema_registry
    assert {"log", "slack", "webhook", "pagerduty"} <= set(NOTIFIERS.kinds())
    assert set(build_notifiers(Settings())) == {"log"}  # the others are not configured


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "p.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_a_misspelt_notify_target_is_rejected_at_load_time(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """\
        pipeline: p
        datasets:
          - name: d
            source: {kind: replay, path: x.ndjson}
            checks:
              - volume: {min: 1, notify: [pagerdty]}
        """,
    )
    with pytest.raises(ConfigError) as info:
        load_checks(path, env={})
    (problem,) = info.value.problems
    assert (problem.location.line, problem.path) == (6, "datasets[0].checks[0].volume.notify[0]")
    assert "unknown notifier 'pagerdty'; valid notifiers:" in problem.reason


# ---------------------------------------------------------------------- a plug-in check kind


class RowParitySpec(CheckSpec):
    expect: int


class RowParityCheck(Check[RowParitySpec]):
    kind = "test_row_parity"
    spec_type = RowParitySpec

    def finish(self, batch: MicroBatch, aggregates: Mapping[str, Any]) -> list[CheckResult]:
        parity = batch.df.height % 2
        status = Status.OK if parity == self.spec.expect else self.violation
        return [self.result(status, float(parity), f"== {self.spec.expect}", f"row parity {parity}")]


@pytest.fixture
def plugin_kind() -> Iterator[str]:
    register(RowParityCheck)
    try:
        yield RowParityCheck.kind
    finally:
        CHECK_KINDS.unregister(RowParityCheck.kind)


def test_a_plugin_check_kind_validates_runs_and_is_in_the_schema(plugin_kind: str, tmp_path: Path) -> None:
    import polars as pl

    from dqmon.testing import run_checks

    good = _write(
        tmp_path,
        f"""\
        pipeline: p
        datasets:
          - name: d
            source: {{kind: replay, path: x.ndjson}}
            checks:
              - {plugin_kind}: {{expect: 1}}
        """,
    )
    config = load_checks(good, env={})
    pipeline = config.pipelines[0]
    dataset = pipeline.dataset("d")
    (result,) = run_checks(pl.DataFrame({"a": [1, 2, 3]}), pipeline, dataset)
    assert (result.kind, result.status) == (plugin_kind, Status.OK)
    (result,) = run_checks(pl.DataFrame({"a": [1, 2]}), pipeline, dataset)
    assert result.status == Status.FAIL

    good.write_text(good.read_text().replace("{expect: 1}", "{expect: one}"))
    with pytest.raises(ConfigError) as info:
        load_checks(good, env={})
    (problem,) = info.value.problems
    assert (problem.location.line, problem.location.col) == (6, 35)
    assert problem.path == f"datasets[0].checks[0].{plugin_kind}.expect"

    items = checks_json_schema()["$defs"]["Dataset"]["properties"]["checks"]["items"]
    assert "expect" in items["properties"][plugin_kind]["properties"]
    assert plugin_kind in CliRunner().invoke(app, ["schema"]).output


def test_plugins_load_from_entry_points_only_when_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "dqmon_test_plugin.py").write_text(
        textwrap.dedent(
            """\
            from dqmon.registry import DECODERS
            from dqmon.decoders.json import JsonDecoder


            class NdjsonAlias(JsonDecoder):
                pass


            DECODERS.register("test_ndjson", NdjsonAlias)
            """
        )
    )
    dist = tmp_path / "dqmon_test_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: dqmon-test-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[dqmon.plugins]\nndjson = dqmon_test_plugin\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "test_ndjson" not in DECODERS  # importing dqmon never loads plug-ins
    try:
        assert "dqmon_test_plugin" in load_plugins()
        assert "test_ndjson" in DECODERS
        source = models.KafkaSource.model_validate({"kind": "kafka", "topic": "t", "format": "test_ndjson"})
        assert source.format == "test_ndjson"
    finally:
        DECODERS.unregister("test_ndjson")
        sys.modules.pop("dqmon_test_plugin", None)


def test_a_lookup_during_another_threads_first_load_waits_for_every_builtin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading
    import types

    registry: Registry[int] = Registry("widget", ("dqmon_test_slow_builtin",))
    holder = types.ModuleType("dqmon_test_registry_holder")
    holder.registry = registry  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "dqmon_test_registry_holder", holder)
    (tmp_path / "dqmon_test_slow_builtin.py").write_text(
        "import time\nfrom dqmon_test_registry_holder import registry\n"
        "time.sleep(0.3)  # a slow import: another thread looks the kind up meanwhile\n"
        "registry.register('slow', 1)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    found: list[int] = []
    first = threading.Thread(target=lambda: found.append(registry.get("slow")))
    first.start()
    time.sleep(0.05)  # the first thread is importing now
    try:
        assert registry.get("slow") == 1
    finally:
        first.join()
        sys.modules.pop("dqmon_test_slow_builtin", None)
    assert found == [1]
