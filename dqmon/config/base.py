"""Shared pieces of the config models: the strict base model and common field types."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict

from dqmon.registry import NOTIFIERS

Severity = Literal["warn", "page"]
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,99}$"


class StrictModel(BaseModel):
    """Frozen, and unknown keys are errors: a typo in a checks file must never be ignored.

    Validators are built on first use (defer_build): a process validates the few check kinds,
    sources and notifiers its files name, and each model built costs its share of ~3 MB."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True, defer_build=True)


def _registered_notifier(target: str) -> str:
    """`slack:#chan`, `webhook:NAME`, `pagerduty`, `log`: the part before the colon is a notifier."""
    NOTIFIERS.get(target.partition(":")[0])  # a typo (`pagerdty`) is a load-time error listing valid ones
    return target


NotifyTarget = Annotated[str, AfterValidator(_registered_notifier)]
