"""What a sidecar does not use, it does not import (each a few MB of RSS; docs/performance.md).

Each case runs in a fresh interpreter: this process has imported everything already.
"""

from __future__ import annotations

import subprocess
import sys

SIDECAR_START = """
import sys
import dqmon.cli
early = sorted(m for m in ("polars", "numpy", "dqmon.engine") if m in sys.modules)
assert not early, f"imported by `import dqmon.cli`, before malloc arenas are capped: {early}"
from dqmon.alerts.setup import build_notifiers
from dqmon.config.settings import Settings
from dqmon.registry import DECODERS, SOURCES
from dqmon.telemetry.metrics import decode_error_reasons
from dqmon.runtime.app import Runtime
notifiers = build_notifiers(Settings(_env_file=None))
reasons = decode_error_reasons()
SOURCES.get("kafka"); DECODERS.get("json")
assert "log" in notifiers and "slack" not in notifiers, notifiers
assert "bad_magic" in reasons, reasons  # every decoder's reasons, listed without its library
optional = ("slack_sdk", "httpx", "fastavro", "rich", "psycopg", "google.protobuf", "scipy",
            "opentelemetry.sdk", "psutil")  # the last two: tracing is off without an OTLP endpoint
loaded = sorted(m for m in optional if m in sys.modules)
print(",".join(loaded))
"""


def test_a_kafka_json_sidecar_without_slack_loads_none_of_the_optional_libraries() -> None:
    env_free = {  # no OTEL_* variables: tracing off
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": ":".join(sys.path),
    }
    out = subprocess.run(
        [sys.executable, "-c", SIDECAR_START], capture_output=True, text=True, timeout=120, env=env_free
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "", f"imported although unused: {out.stdout.strip()}"
