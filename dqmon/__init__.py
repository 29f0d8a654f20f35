"""dqmon: streaming data-quality and observability monitor.

The public API is small: load a checks directory, evaluate a dataset's checks on a batch.
"""

from dqmon.batch import MicroBatch
from dqmon.config.loader import ChecksConfig, load_checks
from dqmon.engine import DatasetEngine
from dqmon.errors import ConfigError, DqmonError
from dqmon.results import CheckResult, Status
from dqmon.testing import run_checks

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
