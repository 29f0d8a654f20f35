"""Stable alert fingerprints: the identity of one alert across evaluations and restarts."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping


def fingerprint(pipeline: str, dataset: str, check: str, labels: Mapping[str, str] | None = None) -> str:
    """16 hex chars of SHA-256 over (pipeline, dataset, check, sorted labels).

    Severity and thresholds are deliberately not part of it: tuning a threshold must not turn
    a firing alert into a new one.
    """
    key = json.dumps([pipeline, dataset, check, sorted((labels or {}).items())], separators=(",", ":"))
    return hashlib.sha256(key.encode()).hexdigest()[:16]
