"""The long-running monitor: `dqmon run` wires sources, engine, alerts and telemetry."""

from dqmon.runtime.app import Runtime

__all__ = ["Runtime"]
