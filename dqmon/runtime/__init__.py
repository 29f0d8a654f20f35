"""The long-running monitor: `dqmon run` wires sources, engine, alerts and telemetry.

Nothing is imported here: `dqmon.runtime.memory` must be importable before Polars starts its
threads (see dqmon/runtime/memory.py); the runtime itself is `dqmon.runtime.app.Runtime`.
"""
