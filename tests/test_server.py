"""The telemetry HTTP server over real loopback sockets: /metrics, /healthz, /readyz."""

from __future__ import annotations

import json
import socket

import httpx
import pytest
from prometheus_client import CollectorRegistry

from dqmon.telemetry.metrics import DqmonMetrics
from dqmon.telemetry.server import Readiness, TelemetryServer


@pytest.fixture
def metrics() -> DqmonMetrics:
    return DqmonMetrics(CollectorRegistry())


def test_metrics_and_healthz_are_served(metrics: DqmonMetrics) -> None:
    metrics.set_source_up("trades-features", "trades", True)
    with TelemetryServer(metrics.registry, port=0) as server:
        response = httpx.get(f"{server.url}/metrics", timeout=5)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        assert 'dqmon_source_up{dataset="trades",pipeline="trades-features"} 1.0' in response.text
        health = httpx.get(f"{server.url}/healthz", timeout=5)
        assert (health.status_code, health.text) == (200, "ok\n")
        assert httpx.get(f"{server.url}/nope", timeout=5).status_code == 404


def test_openmetrics_is_negotiated(metrics: DqmonMetrics) -> None:
    with TelemetryServer(metrics.registry, port=0) as server:
        accept = {"Accept": "application/openmetrics-text; version=1.0.0"}
        response = httpx.get(f"{server.url}/metrics", headers=accept, timeout=5)
        assert response.headers["content-type"].startswith("application/openmetrics-text")
        assert response.text.rstrip().endswith("# EOF")


def test_readyz_follows_the_runtime_probe(metrics: DqmonMetrics) -> None:
    state = {"ready": Readiness(False, ("source trades-features/trades not connected",))}
    with TelemetryServer(metrics.registry, port=0) as server:
        # before the runtime supplies a probe the server is alive but not ready
        starting = httpx.get(f"{server.url}/readyz", timeout=5)
        assert starting.status_code == 503
        assert json.loads(starting.text) == {"ready": False, "reasons": ["starting"]}
        server.set_readiness(lambda: state["ready"])
        response = httpx.get(f"{server.url}/readyz", timeout=5)
        assert response.status_code == 503
        assert json.loads(response.text)["reasons"] == ["source trades-features/trades not connected"]
        state["ready"] = Readiness(True)
        assert httpx.get(f"{server.url}/readyz", timeout=5).status_code == 200
        server.set_readiness(lambda: True)
        assert httpx.get(f"{server.url}/readyz", timeout=5).status_code == 200


def test_a_failing_probe_means_not_ready_without_leaking_its_message(metrics: DqmonMetrics) -> None:
    def probe() -> Readiness:
        raise RuntimeError("could not connect to postgresql://dqmon:hunter2-secret@db/x")

    with TelemetryServer(metrics.registry, port=0, readiness=probe) as server:
        response = httpx.get(f"{server.url}/readyz", timeout=5)
        assert response.status_code == 503
        assert "hunter2" not in response.text
        # the process stays alive and serving
        assert httpx.get(f"{server.url}/healthz", timeout=5).status_code == 200


def test_stop_releases_the_port_and_start_is_idempotent(metrics: DqmonMetrics) -> None:
    server = TelemetryServer(metrics.registry, port=0).start()
    assert server.start() is server
    port = server.port
    server.stop()
    server.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
    # the same port can be bound again at once (the socket was closed, not leaked)
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
