"""The JSON Schema of checks files, as `dqmon schema` prints it."""

from __future__ import annotations

from typing import Any

from dqmon.config.models import Pipeline


def checks_json_schema() -> dict[str, Any]:
    schema = Pipeline.model_json_schema(by_alias=True, mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "dqmon checks file"
    schema["description"] = (
        "One pipeline per YAML document: its datasets, sources, checks, SLOs and alert policy. "
        "Strings may use ${ENV} or ${ENV:-default}."
    )
    return schema
