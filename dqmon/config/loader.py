"""Load a checks directory: env substitution → YAML with marks → models → cross-references.

Every problem carries `file:line:col` (from 1) and the key path; a directory with any
problem is rejected as a whole, so nothing is ever half-loaded.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError

from dqmon.config.by_kind import expand_errors
from dqmon.config.checks import Contract, DistributionSpec, GreatExpectationsSpec, SchemaSpec
from dqmon.config.links import link_problems
from dqmon.config.models import Dataset, Pipeline
from dqmon.errors import ConfigError, ConfigProblem, Location
from dqmon.secrets import Redactor

_ENV = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
# Folders whose YAML files are data (contracts, suites), not checks files.
NON_CHECK_DIRS = frozenset({"contracts", "suites", "references", "fixtures"})


@dataclass(frozen=True)
class ChecksConfig:
    """Every pipeline of a checks directory, validated together."""

    pipelines: tuple[Pipeline, ...]
    files: tuple[Path, ...]
    base_dirs: Mapping[str, Path] = field(default_factory=dict)

    def base_dir(self, pipeline: str) -> Path:
        """The folder that a pipeline's relative paths (contracts, references) resolve against."""
        return self.base_dirs.get(pipeline, Path.cwd())

    def pipeline(self, name: str) -> Pipeline:
        for pipeline in self.pipelines:
            if pipeline.pipeline == name:
                return pipeline
        raise KeyError(name)

    def find_dataset(self, ref: str) -> tuple[Pipeline, Dataset]:
        """`pipeline/dataset`, or a dataset name that is unique across pipelines."""
        if "/" in ref:
            pipeline_name, _, dataset_name = ref.partition("/")
            try:
                pipeline = self.pipeline(pipeline_name)
                return pipeline, pipeline.dataset(dataset_name)
            except KeyError:
                pass
        matches = [(p, d) for p in self.pipelines for d in p.datasets if d.name == ref]
        if len(matches) == 1:
            return matches[0]
        known = ", ".join(f"{p.pipeline}/{d.name}" for p in self.pipelines for d in p.datasets)
        if matches:
            raise KeyError(f"dataset {ref!r} is in several pipelines; use pipeline/dataset: {known}")
        raise KeyError(f"no dataset {ref!r}; known: {known}")

    def datasets(self) -> Iterator[tuple[Pipeline, Dataset]]:
        for pipeline in self.pipelines:
            for dataset in pipeline.datasets:
                yield pipeline, dataset


class _Doc:
    """One YAML document with its marks, and the env values substituted into it."""

    def __init__(self, file: Path, root: Any, env: Mapping[str, str]) -> None:
        self.file = file
        self.root = root
        self.env = env
        self.problems: list[ConfigProblem] = []
        self.secrets: set[str] = set()
        self.data = self._plain(root, ())

    def loc(self, path: tuple[Any, ...], *, key: bool = False) -> Location:
        """Best mark for a pydantic/loader path: the deepest node that exists."""
        node = self.root
        line, col = _mark(node)
        for part in path:
            if isinstance(node, CommentedMap) and part in node:
                line, col = node.lc.key(part) if key else node.lc.value(part)
                node = node[part]
            elif isinstance(node, CommentedSeq) and isinstance(part, int) and 0 <= part < len(node):
                line, col = node.lc.item(part)
                node = node[part]
            # otherwise a union tag or a missing key: stay on the enclosing node
        return Location(str(self.file), line + 1, col + 1)

    def _plain(self, node: Any, path: tuple[Any, ...]) -> Any:
        if isinstance(node, CommentedMap):
            return {k: self._plain(v, (*path, k)) for k, v in node.items()}
        if isinstance(node, CommentedSeq):
            return [self._plain(v, (*path, i)) for i, v in enumerate(node)]
        if isinstance(node, str):
            return self._substitute(str(node), path)
        if isinstance(node, bool):
            return bool(node)
        if isinstance(node, int):
            return int(node)
        if isinstance(node, float):
            return float(node)
        return node

    def _substitute(self, text: str, path: tuple[Any, ...]) -> str:
        def repl(match: re.Match[str]) -> str:
            if match.group(0) == "$$":
                return "$"
            name, default = match.group(1), match.group(2)
            value = self.env.get(name)
            if value is None:
                if default is None:
                    self.problems.append(
                        ConfigProblem(
                            self.loc(path),
                            _dotted(path),
                            f"environment variable {name} is not set (write ${{{name}:-default}} "
                            "to give a default)",
                        )
                    )
                    return ""
                value = default
            if value:
                self.secrets.add(value)
            return value

        return _ENV.sub(repl, text)

    def scrub(self, reason: str) -> str:
        """Never echo a substituted value: it may be a secret."""
        return Redactor(self.secrets).redact(reason)


def _mark(node: Any) -> tuple[int, int]:
    lc = getattr(node, "lc", None)
    if lc is None or lc.line is None:
        return 0, 0
    return int(lc.line), int(lc.col)


def _dotted(path: tuple[Any, ...]) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def checks_files(directory: Path) -> list[Path]:
    """The YAML checks files under a directory, in a stable order."""
    if directory.is_file():
        return [directory]
    files = []
    for path in sorted(directory.rglob("*")):
        rel = path.relative_to(directory)
        if path.suffix not in (".yaml", ".yml") or not path.is_file():
            continue
        if any(part.startswith((".", "_")) or part in NON_CHECK_DIRS for part in rel.parts[:-1]):
            continue
        files.append(path)
    return files


def load_checks(directory: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> ChecksConfig:
    """Load and validate every checks file under `directory`; raise ConfigError listing all problems."""
    root = Path(directory)
    environ = os.environ if env is None else env
    problems: list[ConfigProblem] = []
    if not root.exists():
        raise ConfigError([ConfigProblem(Location(str(root)), "", "no such file or directory")])
    files = checks_files(root)
    if not files:
        raise ConfigError([ConfigProblem(Location(str(root)), "", "no *.yaml or *.yml checks files found")])

    pipelines: list[Pipeline] = []
    base_dirs: dict[str, Path] = {}
    first_seen: dict[str, Location] = {}
    for file in files:
        for doc in _documents(file, environ, problems):
            pipeline = _validate(doc, problems)
            if pipeline is None:
                continue
            name_loc = doc.loc(("pipeline",))
            if pipeline.pipeline in first_seen:
                problems.append(
                    ConfigProblem(
                        name_loc,
                        "pipeline",
                        f"pipeline {pipeline.pipeline!r} is already defined at "
                        f"{first_seen[pipeline.pipeline]}",
                    )
                )
                continue
            first_seen[pipeline.pipeline] = name_loc
            pipelines.append(pipeline)
            base_dirs[pipeline.pipeline] = file.parent.resolve()
    if problems:
        raise ConfigError(problems)
    return ChecksConfig(tuple(pipelines), tuple(files), base_dirs)


def _documents(file: Path, env: Mapping[str, str], problems: list[ConfigProblem]) -> list[_Doc]:
    yaml = YAML(typ="rt")
    try:
        text = file.read_text(encoding="utf-8")
        roots = [r for r in yaml.load_all(text) if r is not None]
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark is not None else (0, 0)
        reason = " ".join(str(x) for x in (exc.context, exc.problem) if x)
        problems.append(ConfigProblem(Location(str(file), line, col), "", f"invalid YAML: {reason}"))
        return []
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(ConfigProblem(Location(str(file)), "", f"cannot read: {exc}"))
        return []
    if not roots:
        problems.append(ConfigProblem(Location(str(file), 1, 1), "", "empty checks file"))
    docs = []
    for root in roots:
        if not isinstance(root, CommentedMap):
            line, col = _mark(root)
            problems.append(
                ConfigProblem(
                    Location(str(file), line + 1, col + 1), "", "a checks document must be a mapping"
                )
            )
            continue
        doc = _Doc(file, root, env)
        problems.extend(doc.problems)
        if not doc.problems:
            docs.append(doc)
    return docs


def _validate(doc: _Doc, problems: list[ConfigProblem]) -> Pipeline | None:
    try:
        pipeline = Pipeline.model_validate(doc.data)
    except ValidationError as exc:
        for error in expand_errors(exc):
            path = tuple(error["loc"])
            reason = error["msg"].removeprefix("Value error, ")
            if error["type"] == "missing":
                problems.append(
                    ConfigProblem(
                        doc.loc(path[:-1]),
                        _dotted(_clean(doc, path, keep_last=True)),
                        "required key is missing",
                    )
                )
            elif error["type"] == "extra_forbidden":
                problems.append(
                    ConfigProblem(
                        doc.loc(path, key=True),
                        _dotted(_clean(doc, path, keep_last=True)),
                        "unknown key (check its spelling; `dqmon schema` lists valid keys)",
                    )
                )
            else:
                problems.append(ConfigProblem(doc.loc(path), _dotted(_clean(doc, path)), doc.scrub(reason)))
        return None
    before = len(problems)
    _cross_references(doc, pipeline, problems)
    return pipeline if len(problems) == before else None


def _clean(doc: _Doc, path: tuple[Any, ...], *, keep_last: bool = False) -> tuple[Any, ...]:
    """The part of a pydantic path that names keys of the document (drops union tags)."""
    node: Any = doc.root
    out: list[Any] = []
    for i, part in enumerate(path):
        in_map = isinstance(node, CommentedMap) and part in node
        in_seq = isinstance(node, CommentedSeq) and isinstance(part, int) and 0 <= part < len(node)
        if in_map or in_seq:
            node = node[part]
            out.append(part)
        elif keep_last and i == len(path) - 1:
            out.append(part)
    return tuple(out)


def _cross_references(doc: _Doc, pipeline: Pipeline, problems: list[ConfigProblem]) -> None:
    for link_path, why in link_problems(pipeline):
        problems.append(ConfigProblem(doc.loc(link_path), _dotted(link_path), why))
    slos: set[str] = set()
    for s_index, slo in enumerate(pipeline.slos):
        if slo.name in slos:
            path = ("slos", s_index, "name")
            problems.append(ConfigProblem(doc.loc(path), _dotted(path), f"duplicate SLO name {slo.name!r}"))
        slos.add(slo.name)
    seen_datasets: set[str] = set()
    base = doc.file.parent
    for d_index, dataset in enumerate(pipeline.datasets):
        d_path: tuple[Any, ...] = ("datasets", d_index)
        if dataset.name in seen_datasets:
            problems.append(
                ConfigProblem(
                    doc.loc((*d_path, "name")), _dotted((*d_path, "name")), "duplicate dataset name"
                )
            )
        seen_datasets.add(dataset.name)
        seen_checks: set[str] = set()
        for c_index, entry in enumerate(dataset.checks):
            c_path = (*d_path, "checks", c_index, entry.kind)
            if entry.check_name() in seen_checks:
                problems.append(
                    ConfigProblem(
                        doc.loc((*d_path, "checks", c_index)),
                        _dotted((*d_path, "checks", c_index)),
                        f"another check is named {entry.check_name()!r}; give one of them `name:`",
                    )
                )
            seen_checks.add(entry.check_name())
            spec = entry.spec
            if spec.slo is not None and spec.slo not in slos:
                known = ", ".join(sorted(slos)) or "none declared"
                problems.append(
                    ConfigProblem(
                        doc.loc((*c_path, "slo")),
                        _dotted((*c_path, "slo")),
                        f"unknown SLO {spec.slo!r}; this pipeline's SLOs: {known}",
                    )
                )
            for key, rel in _referenced_files(spec):
                target = base / rel
                where = doc.loc((*c_path, *key))
                if not target.is_file():
                    problems.append(
                        ConfigProblem(where, _dotted((*c_path, *key)), f"file not found: {target}")
                    )
                elif key == ("contract",):
                    reason = _contract_problem(target)
                    if reason:
                        problems.append(ConfigProblem(where, _dotted((*c_path, *key)), reason))


def _referenced_files(spec: Any) -> list[tuple[tuple[str, ...], str]]:
    if isinstance(spec, SchemaSpec) and isinstance(spec.contract, str):
        return [(("contract",), spec.contract)]
    if isinstance(spec, DistributionSpec) and spec.reference.file:
        return [(("reference", "file"), spec.reference.file)]
    if isinstance(spec, GreatExpectationsSpec):
        return [(("suite",), spec.suite)]
    return []


def load_contract(path: Path) -> Contract:
    """Read a contract file (JSON or YAML) into a Contract."""
    text = path.read_text(encoding="utf-8")
    data = json.loads(text) if path.suffix == ".json" else YAML(typ="safe").load(text)
    return Contract.model_validate(data)


def _contract_problem(path: Path) -> str | None:
    try:
        load_contract(path)
    except (ValueError, OSError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return f"invalid contract {path.name}: {first}"
    return None
