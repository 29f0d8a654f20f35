"""The `great_expectations` check: run an existing GX expectation suite on each micro-batch.

Teams keep the suites they already have; each expectation becomes one CheckResult named
`<check>:<expectation type>:<column>`. Great Expectations is an optional extra (`dqmon[gx]`)
that costs seconds to import, so it is imported on the first batch, never at module import.
A missing GX, an unreadable suite, or an invalid expectation is an `error` result, not a crash.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dqmon.batch import MicroBatch
from dqmon.checks.base import Check
from dqmon.checks.registry import register
from dqmon.config.checks import GreatExpectationsSpec
from dqmon.errors import CheckError
from dqmon.results import CheckResult, Status

# kwargs that identify what an expectation looks at rather than what it requires
_DOMAIN_KWARGS = ("column", "column_list", "column_A", "column_B", "batch_id")
_INDEX_META = "dqmon_index"


@dataclass(frozen=True)
class _Expectation:
    name: str
    type: str
    threshold: str | None
    warning_only: bool  # the suite marks it severity warning/info


@dataclass
class _Prepared:
    """The GX objects built once per check: a suite of valid expectations and a batch definition."""

    suite: Any
    batch_definition: Any
    expectations: list[_Expectation]
    invalid: list[tuple[str, str]]  # (result name, reason) for expectations GX rejected


def _read_suite(path: os.PathLike[str] | str) -> tuple[str, list[dict[str, Any]]]:
    """The suite's name and expectations, from GX 1.x JSON (`type`) or 0.x JSON (`expectation_type`)."""
    try:
        with open(path, encoding="utf-8") as handle:
            raw = json.load(handle)
    except OSError as exc:
        raise CheckError(f"cannot read expectation suite {os.fspath(path)!r}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise CheckError(f"expectation suite {os.fspath(path)!r} is not JSON: {exc}") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("expectations"), list):
        raise CheckError(f"expectation suite {os.fspath(path)!r} has no `expectations` list")
    name = str(raw.get("name") or raw.get("expectation_suite_name") or "suite")
    expectations: list[dict[str, Any]] = []
    for position, item in enumerate(raw["expectations"], start=1):
        if not isinstance(item, dict):
            raise CheckError(f"expectation #{position} of {os.fspath(path)!r} is not an object")
        kind = item.get("type") or item.get("expectation_type")
        if not isinstance(kind, str):
            raise CheckError(f"expectation #{position} of {os.fspath(path)!r} has no `type`")
        kwargs = item.get("kwargs") or {}
        if not isinstance(kwargs, dict):
            raise CheckError(f"expectation #{position} of {os.fspath(path)!r}: kwargs must be an object")
        expectations.append(
            {
                "type": kind,
                "kwargs": kwargs,
                "meta": item.get("meta") or {},
                "severity": item.get("severity", "critical"),
            }
        )
    return name, expectations


def _domain(kwargs: Mapping[str, Any]) -> str | None:
    if isinstance(kwargs.get("column"), str):
        return str(kwargs["column"])
    if isinstance(kwargs.get("column_list"), list):
        return "+".join(str(c) for c in kwargs["column_list"])
    if "column_A" in kwargs and "column_B" in kwargs:
        return f"{kwargs['column_A']}+{kwargs['column_B']}"
    return None


def _threshold(kwargs: Mapping[str, Any]) -> str | None:
    parts = [
        f"{key}={json.dumps(value, default=str)}"
        for key, value in sorted(kwargs.items())
        if key not in _DOMAIN_KWARGS and value is not None
    ]
    text = ", ".join(parts)
    return (text[:197] + "...") if len(text) > 200 else (text or None)


@register
class GreatExpectationsCheck(Check[GreatExpectationsSpec]):
    kind = "great_expectations"
    spec_type = GreatExpectationsSpec

    _prepared: _Prepared | None = None

    def finish(self, batch: MicroBatch, aggregates: Mapping[str, Any]) -> list[CheckResult]:
        try:
            prepared = self._prepare()
        except CheckError as exc:
            return [self.error(str(exc))]
        results = [self.error(reason, check=name) for name, reason in prepared.invalid]
        if not prepared.expectations:
            return results or [self.error("the expectation suite has no expectations")]
        try:
            frame = batch.df.to_pandas()
            gx_batch = prepared.batch_definition.get_batch(batch_parameters={"dataframe": frame})
            outcome = gx_batch.validate(prepared.suite, result_format="SUMMARY")
        except Exception as exc:  # noqa: BLE001 - never crash the monitor
            return [*results, self.error(f"great_expectations could not validate the batch: {exc}")]
        seen: set[int] = set()
        for item in outcome.results:
            index = int(item.expectation_config.meta.get(_INDEX_META, -1))
            if not 0 <= index < len(prepared.expectations):
                continue
            seen.add(index)
            results.append(self._judge(prepared.expectations[index], item))
        for index, expectation in enumerate(prepared.expectations):
            if index not in seen:  # GX dropped it: say so rather than vanish
                results.append(self.error("great_expectations returned no result", check=expectation.name))
        return results

    def _judge(self, expectation: _Expectation, item: Any) -> CheckResult:
        info = item.exception_info or {}
        if info.get("raised_exception"):
            message = str(info.get("exception_message") or "expectation raised an exception")
            return self.error(message, check=expectation.name)
        summary: Mapping[str, Any] = item.result or {}
        value: float | None = None
        details: dict[str, Any] = {"expectation_type": expectation.type}
        if isinstance(summary.get("unexpected_percent"), int | float):
            value = float(summary["unexpected_percent"]) / 100.0
            details["unexpected_count"] = summary.get("unexpected_count")
            details["element_count"] = summary.get("element_count")
            sample = summary.get("partial_unexpected_list") or []
            details["unexpected_sample"] = [str(v) for v in sample[:5]]
        elif isinstance(summary.get("observed_value"), int | float) and not isinstance(
            summary.get("observed_value"), bool
        ):
            value = float(summary["observed_value"])
        elif "observed_value" in summary:
            details["observed_value"] = str(summary["observed_value"])[:200]
        if item.success:
            return self.result(
                Status.OK,
                value,
                expectation.threshold,
                "expectation met",
                check=expectation.name,
                details=details,
            )
        status = Status.WARN if expectation.warning_only else self.violation
        if value is not None and "unexpected_count" in details:
            message = (
                f"{details['unexpected_count']} of {details['element_count']} values unexpected ({value:.2%})"
            )
        else:
            message = "expectation not met"
        return self.result(
            status, value, expectation.threshold, message, check=expectation.name, details=details
        )

    # ------------------------------------------------------------------ lazy GX set-up
    def _prepare(self) -> _Prepared:
        if self._prepared is not None:
            return self._prepared
        path = self.ctx.base_dir / self.spec.suite
        suite_name, configs = _read_suite(path)
        os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")  # a monitor must not phone home
        try:
            import great_expectations as gx
            from great_expectations.core import ExpectationSuite
            from great_expectations.data_context.types.base import ProgressBarsConfig
            from great_expectations.expectations.expectation_configuration import (
                ExpectationConfiguration,
            )
        except ImportError:
            raise CheckError(
                "great_expectations is not installed: install the gx extra (pip install 'dqmon[gx]')"
            ) from None
        context = gx.get_context(mode="ephemeral")
        context.variables.progress_bars = ProgressBarsConfig(globally=False)
        asset = context.data_sources.add_pandas("dqmon").add_dataframe_asset(self.name)
        batch_definition = asset.add_batch_definition_whole_dataframe("micro_batch")
        expectations: list[_Expectation] = []
        domain_objects: list[Any] = []
        invalid: list[tuple[str, str]] = []
        used: dict[str, int] = {}
        for config in configs:
            domain = _domain(config["kwargs"])
            base = f"{self.name}:{config['type']}" + (f":{domain}" if domain else "")
            used[base] = used.get(base, 0) + 1
            name = base if used[base] == 1 else f"{base}#{used[base]}"
            try:
                domain_objects.append(
                    ExpectationConfiguration(
                        type=config["type"],
                        kwargs=config["kwargs"],
                        meta={**config["meta"], _INDEX_META: len(expectations)},
                        severity=config["severity"],
                    ).to_domain_obj()
                )
            except Exception as exc:  # noqa: BLE001 - never crash the monitor
                invalid.append((name, f"invalid expectation: {type(exc).__name__}: {exc}"[:500]))
                continue
            expectations.append(
                _Expectation(
                    name=name,
                    type=config["type"],
                    threshold=_threshold(config["kwargs"]),
                    warning_only=str(config["severity"]).lower() in ("warning", "info"),
                )
            )
        suite = ExpectationSuite(name=suite_name, expectations=domain_objects)
        self._prepared = _Prepared(suite, batch_definition, expectations, invalid)
        return self._prepared
