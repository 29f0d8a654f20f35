"""dqmon: streaming data-quality and observability monitor.

The public API is small: load a checks directory, evaluate a dataset's checks on a batch.
Its names are imported on first access (PEP 562), so `import dqmon.cli` does not load Polars:
the CLI caps malloc arenas before any library starts a thread (dqmon/runtime/memory.py).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dqmon.batch import MicroBatch
    from dqmon.config.loader import ChecksConfig, load_checks
    from dqmon.engine import DatasetEngine
    from dqmon.errors import ConfigError, DqmonError
    from dqmon.results import CheckResult, Status
    from dqmon.testing import run_checks

_HOMES = {
    "CheckResult": "dqmon.results",
    "ChecksConfig": "dqmon.config.loader",
    "ConfigError": "dqmon.errors",
    "DatasetEngine": "dqmon.engine",
    "DqmonError": "dqmon.errors",
    "MicroBatch": "dqmon.batch",
    "Status": "dqmon.results",
    "load_checks": "dqmon.config.loader",
    "run_checks": "dqmon.testing",
}
__all__ = [
    "CheckResult",
    "ChecksConfig",
    "ConfigError",
    "DatasetEngine",
    "DqmonError",
    "MicroBatch",
    "Status",
    "load_checks",
    "run_checks",
]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'dqmon' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value
