"""Shared pieces of the config models: the strict base model and common field types."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

Severity = Literal["warn", "page"]
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,99}$"


class StrictModel(BaseModel):
    """Frozen, and unknown keys are errors: a typo in a checks file must never be ignored."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)
