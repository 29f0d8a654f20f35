"""Check kinds by name. Built-ins are registered on first use; plugins call `register` at start-up."""

from __future__ import annotations

import importlib
import threading
from typing import Any

from dqmon.checks.base import Check, CheckContext
from dqmon.config.checks import CheckSpec
from dqmon.errors import CheckError

_BUILTIN_MODULES = (
    "dqmon.checks.freshness",
    "dqmon.checks.volume",
    "dqmon.checks.schema",
    "dqmon.checks.distribution",
    "dqmon.checks.validity",
    "dqmon.checks.sql",
    "dqmon.checks.lag",
    "dqmon.checks.great_expectations",
)
_registry: dict[str, type[Check[Any]]] = {}
_loaded = False
_lock = threading.Lock()


def register(cls: type[Check[Any]]) -> type[Check[Any]]:
    """Register a check class under its `kind` (usable as a class decorator)."""
    _registry[cls.kind] = cls
    return cls


def _load_builtins() -> None:
    global _loaded
    with _lock:
        if _loaded:
            return
        for module in _BUILTIN_MODULES:
            importlib.import_module(module)
        _loaded = True


def check_class(kind: str) -> type[Check[Any]]:
    _load_builtins()
    try:
        return _registry[kind]
    except KeyError:
        raise CheckError(
            f"unknown check kind {kind!r}; valid kinds: {', '.join(sorted(_registry))}"
        ) from None


def kinds() -> list[str]:
    _load_builtins()
    return sorted(_registry)


def build_check(kind: str, spec: CheckSpec, name: str, ctx: CheckContext) -> Check[Any]:
    cls = check_class(kind)
    if not isinstance(spec, cls.spec_type):
        raise CheckError(f"check {name!r}: spec {type(spec).__name__} is not a {cls.spec_type.__name__}")
    return cls(spec, name, ctx)
