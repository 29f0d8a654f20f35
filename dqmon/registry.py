"""One seam for every extension point: a name → implementation map per kind of plug-in.

Check kinds, sources, decoders and notifiers each have one `Registry`. A built-in or a plug-in
is one module whose top level calls `register` once; built-in modules are named here as strings
and imported on the first lookup (never at package import, so `import dqmon` stays cheap and the
dependency direction holds: this module imports nothing above it). Third-party plug-ins are
loaded explicitly at start-up by `load_plugins` from the `dqmon.plugins` entry-point group.

The model is quix-streams' serializer registry and OpenTelemetry's exporter registry: a lookup
of an unknown name fails with the list of valid names.
"""

from __future__ import annotations

import importlib
import logging
import threading
from collections.abc import Callable, Iterable
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from dqmon.errors import DqmonError

if TYPE_CHECKING:
    from dqmon.alerts.notifiers.base import NotifierFactory
    from dqmon.checks.base import Check
    from dqmon.decoders.base import DecoderFactory
    from dqmon.pipeline.base import LinkCheck
    from dqmon.sources.base import Source

log = logging.getLogger(__name__)

T = TypeVar("T")
PLUGIN_GROUP = "dqmon.plugins"


class UnknownKind(DqmonError, ValueError):  # noqa: N818 - reads as what it is
    """A name that no registered implementation answers to (a ValueError, so config validators
    raising it report it as the field's problem)."""


class Registry(Generic[T]):
    """Name → implementation for one extension point; thread-safe, built-ins imported lazily."""

    def __init__(self, what: str, builtin_modules: Iterable[str] = ()) -> None:
        self.what = what
        self._builtin_modules = tuple(builtin_modules)
        self._items: dict[str, T] = {}
        self._loaded = False
        self._loading = False
        self._lock = threading.RLock()

    def register(self, kind: str, item: T) -> T:
        """Make `item` the implementation of `kind`; registering a name twice is a bug."""
        with self._lock:
            existing = self._items.get(kind)
            if existing is not None and existing is not item:
                raise ValueError(f"{self.what} {kind!r} is already registered by {existing!r}")
            self._items[kind] = item
        return item

    def unregister(self, kind: str) -> None:
        """Forget `kind` (a plug-in unloaded; tests that register temporary kinds)."""
        with self._lock:
            self._items.pop(kind, None)

    def add(self, kind: str) -> Callable[[T], T]:
        """`register` as a decorator: `@SOURCES.add("kafka")`."""

        def decorate(item: T) -> T:
            return self.register(kind, item)

        return decorate

    def get(self, kind: str) -> T:
        self._load_named(kind)
        if kind in self._items:
            return self._items[kind]
        self._load_builtins()
        try:
            return self._items[kind]
        except KeyError:
            raise UnknownKind(
                f"unknown {self.what} {kind!r}; valid {self.what}s: {', '.join(self.kinds())}"
            ) from None

    def __contains__(self, kind: object) -> bool:
        self._load_builtins()
        return kind in self._items

    def kinds(self) -> list[str]:
        self._load_builtins()
        return sorted(self._items)

    def items(self) -> list[tuple[str, T]]:
        self._load_builtins()
        return sorted(self._items.items())

    def _load_named(self, kind: str) -> None:
        """Import only the built-in module named like `kind` (`dqmon.sources.kafka` for "kafka").

        A sidecar reading Kafka then never imports the SQL source (psycopg, ~9 MB RSS); a kind
        its namesake module does not register falls through to loading every built-in.
        """
        if self._loaded or kind in self._items:
            return
        for module in self._builtin_modules:
            if module.rpartition(".")[2] == kind:
                importlib.import_module(module)

    def _load_builtins(self) -> None:
        if self._loaded:
            return
        with self._lock:  # other threads wait here until every built-in is registered
            if self._loaded or self._loading:
                return  # _loading: this thread, importing a built-in that looks its registry up
            self._loading = True
            try:
                for module in self._builtin_modules:
                    importlib.import_module(module)
                self._loaded = True
            finally:
                self._loading = False


CHECK_KINDS: Registry[type[Check[Any]]] = Registry(
    "check kind",
    (
        "dqmon.checks.freshness",
        "dqmon.checks.volume",
        "dqmon.checks.schema",
        "dqmon.checks.distribution",
        "dqmon.checks.validity",
        "dqmon.checks.sql",
        "dqmon.checks.lag",
        "dqmon.checks.great_expectations",
        "dqmon.checks.duplicates",
        "dqmon.checks.sequence",
        "dqmon.checks.late",
        "dqmon.checks.point_in_time",
        "dqmon.checks.partitions",
    ),
)
# Cross-dataset checks of a pipeline's `links:` (a sibling of CHECK_KINDS: they judge several
# datasets and are built per pipeline, not per dataset, so they cannot be dataset check kinds).
LINK_KINDS: Registry[type[LinkCheck[Any]]] = Registry(
    "pipeline check kind",
    ("dqmon.pipeline.latency", "dqmon.pipeline.reconcile", "dqmon.pipeline.parity"),
)
SOURCES: Registry[type[Source]] = Registry(
    "source kind", ("dqmon.sources.kafka", "dqmon.sources.sql", "dqmon.sources.replay")
)
DECODERS: Registry[DecoderFactory] = Registry(
    "format",
    ("dqmon.decoders.json", "dqmon.decoders.avro", "dqmon.decoders.protobuf", "dqmon.decoders.json_schema"),
)
NOTIFIERS: Registry[NotifierFactory] = Registry(
    "notifier",
    (
        "dqmon.alerts.notifiers.log",
        "dqmon.alerts.notifiers.slack",
        "dqmon.alerts.notifiers.webhook",
        "dqmon.alerts.notifiers.pagerduty",
    ),
)

_plugins_loaded: list[str] = []


def load_plugins(group: str = PLUGIN_GROUP) -> list[str]:
    """Import every plug-in module of the entry-point group once; their `register` calls do the rest.

    Called by the CLI before any checks file is read, so plug-in kinds validate like built-ins. A
    plug-in that fails to import is logged and skipped: one broken package must not stop the monitor.
    """
    for point in entry_points(group=group):
        if point.value in _plugins_loaded:
            continue
        try:
            loaded = point.load()
        except Exception as exc:  # noqa: BLE001 - any import error of third-party code
            log.error("plug-in %s (%s) failed to load: %s", point.name, point.value, exc)
            continue
        if callable(loaded) and not isinstance(loaded, type):
            loaded()  # an entry point may name a `register()` function instead of a module
        _plugins_loaded.append(point.value)
    return list(_plugins_loaded)
