"""Checks-as-code: models, loader and runtime settings."""

from dqmon.config.loader import ChecksConfig, load_checks
from dqmon.config.models import Dataset, Pipeline

__all__ = ["ChecksConfig", "Dataset", "Pipeline", "load_checks"]
