"""Checks-as-code: the example repo loads; invalid files are rejected whole, at the right place."""

from __future__ import annotations

import json
import re
import shutil
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from dqmon.cli import app
from dqmon.config.durations import format_duration, parse_duration
from dqmon.config.loader import load_checks
from dqmon.config.schema import checks_json_schema
from dqmon.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
INVALID = ROOT / "tests" / "data" / "invalid"
EXPECT = re.compile(r"^# expect: (\d+):(\d+) (\S*): (.+)$")


def test_example_checks_repo_loads() -> None:
    config = load_checks(ROOT / "checks", env={})
    pipeline = config.pipeline("trades-features")
    assert [d.name for d in pipeline.datasets] == ["trades", "orderbook", "features_mv"]
    trades = pipeline.dataset("trades")
    assert trades.window == timedelta(seconds=5)
    assert [c.kind for c in trades.checks][:5] == [
        "freshness",
        "volume",
        "schema",
        "distribution",
        "validity",
    ]
    # env default used when the variable is unset
    mv = pipeline.dataset("features_mv")
    assert mv.source.kind == "sql"
    assert mv.source.dsn.get_secret_value().startswith("postgresql://")


@pytest.mark.parametrize("path", sorted(INVALID.glob("*.yaml")), ids=lambda p: p.stem)
def test_invalid_file_rejected_at_location(path: Path) -> None:
    match = EXPECT.match(path.read_text().splitlines()[0])
    assert match, f"{path.name} lacks an '# expect: LINE:COL path: reason' header"
    line, col, key_path, reason = int(match[1]), int(match[2]), match[3], match[4]
    with pytest.raises(ConfigError) as info:
        load_checks(path, env={})
    problems = info.value.problems
    assert len(problems) == 1, [str(p) for p in problems]
    problem = problems[0]
    assert problem.location.file == str(path)
    assert (problem.location.line, problem.location.col) == (line, col), str(problem)
    assert problem.path == key_path
    assert reason in problem.reason


def test_directory_with_one_bad_file_loads_nothing(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "checks", tmp_path / "checks")
    shutil.copy(INVALID / "unknown_key.yaml", tmp_path / "checks" / "zz-bad.yaml")
    shutil.copy(INVALID / "bad_duration.yaml", tmp_path / "checks" / "zz-bad2.yaml")
    with pytest.raises(ConfigError) as info:
        load_checks(tmp_path / "checks", env={})
    files = {Path(p.location.file).name for p in info.value.problems}
    assert files == {"zz-bad.yaml", "zz-bad2.yaml"}


def test_duplicate_pipeline_across_files(tmp_path: Path) -> None:
    body = "pipeline: p\ndatasets:\n  - name: d\n    source: {kind: kafka, topic: t}\n"
    (tmp_path / "a.yaml").write_text(body)
    (tmp_path / "b.yaml").write_text("# second\n" + body)
    with pytest.raises(ConfigError) as info:
        load_checks(tmp_path, env={})
    (problem,) = info.value.problems
    assert problem.location.file.endswith("b.yaml") and problem.location.line == 2
    assert "a.yaml:1:11" in problem.reason


def test_env_substitution_and_secret_never_echoed(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(
        "pipeline: p\ndatasets:\n  - name: d\n    window: ${WINDOW}\n"
        "    source: {kind: sql, dsn: '${DSN}', query: select 1, every: '$${NOT_ENV}'}\n"
    )
    with pytest.raises(ConfigError) as info:
        load_checks(tmp_path, env={"WINDOW": "hunter2-secret", "DSN": "postgresql://u:pw@h/db"})
    text = str(info.value)
    assert "hunter2-secret" not in text and "***" in text
    assert "every" in text  # $${...} stays literal and so is an invalid duration
    config = load_checks(_fixed(tmp_path), env={"WINDOW": "2s", "DSN": "postgresql://u:pw@h/db"})
    dataset = config.pipelines[0].datasets[0]
    assert dataset.window == timedelta(seconds=2)
    assert "pw" not in repr(dataset.source)


def _fixed(tmp_path: Path) -> Path:
    path = tmp_path / "p.yaml"
    path.write_text(path.read_text().replace("every: '$${NOT_ENV}'", "every: 5s"))
    return path


def test_non_check_dirs_are_skipped(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "checks", tmp_path / "c")
    (tmp_path / "c" / "contracts" / "x.yaml").write_text("fields: {a: {type: int}}\n")
    assert len(load_checks(tmp_path / "c", env={}).files) == 1


@given(st.integers(min_value=0, max_value=10**7))
def test_duration_round_trip(seconds: int) -> None:
    value = timedelta(seconds=seconds)
    assert parse_duration(format_duration(value)) == value


@given(st.text(max_size=12))
def test_duration_parser_never_crashes(text: str) -> None:
    try:
        parsed = parse_duration(text)
    except ValueError as exc:
        message = str(exc)
        parsed = None
    if parsed is None:
        assert "duration" in message
    else:
        assert parsed >= timedelta(0)


def test_compound_durations() -> None:
    assert parse_duration("1h30m") == timedelta(minutes=90)
    assert parse_duration("500ms") == timedelta(milliseconds=500)
    assert parse_duration(2.5) == timedelta(seconds=2.5)


def test_json_schema_describes_check_kinds() -> None:
    schema = checks_json_schema()
    entry = schema["$defs"]["Dataset"]["properties"]["checks"]["items"]
    assert {"freshness", "volume", "schema", "distribution", "validity", "sql"} <= set(entry["properties"])
    assert entry["maxProperties"] == 1
    assert "max_lag" in entry["properties"]["freshness"]["properties"]
    json.dumps(schema)


def test_cli_validate_reports_every_problem(tmp_path: Path) -> None:
    for name in ("unknown_key.yaml", "bad_duration.yaml"):
        shutil.copy(INVALID / name, tmp_path / name)
    result = CliRunner().invoke(app, ["validate", str(tmp_path)])
    assert result.exit_code == 2
    assert f"{tmp_path / 'unknown_key.yaml'}:6:5: datasets[0].evnt_time: unknown key" in result.output
    assert f"{tmp_path / 'bad_duration.yaml'}:6:13:" in result.output


def test_cli_validate_summary() -> None:
    result = CliRunner().invoke(app, ["validate", str(ROOT / "checks")])
    assert result.exit_code == 0, result.output
    assert "1 pipeline(s), 3 dataset(s)" in result.output
