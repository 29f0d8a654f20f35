"""Check kinds: the registry seam for checks (dqmon.registry.CHECK_KINDS) and how a check is built.

A check kind is one module: a spec model (a `CheckSpec` subclass), a `Check` subclass naming it
in `spec_type`, and `@register` on the class. Built-in modules are imported on the first lookup;
plug-ins are imported by `dqmon.registry.load_plugins` at start-up.
"""

from __future__ import annotations

from typing import Any

from dqmon.checks.base import Check, CheckContext
from dqmon.config.checks import CheckSpec
from dqmon.errors import CheckError
from dqmon.registry import CHECK_KINDS, UnknownKind

CheckClass = type[Check[Any]]


def register(cls: CheckClass) -> CheckClass:
    """Register a check class under its `kind` (a class decorator)."""
    return CHECK_KINDS.register(cls.kind, cls)


def check_class(kind: str) -> CheckClass:
    try:
        return CHECK_KINDS.get(kind)
    except UnknownKind as exc:
        raise CheckError(str(exc)) from None


def kinds() -> list[str]:
    return CHECK_KINDS.kinds()


def build_check(kind: str, spec: CheckSpec, name: str, ctx: CheckContext) -> Check[Any]:
    cls = check_class(kind)
    if not isinstance(spec, cls.spec_type):
        raise CheckError(f"check {name!r}: spec {type(spec).__name__} is not a {cls.spec_type.__name__}")
    return cls(spec, name, ctx)
