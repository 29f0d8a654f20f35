"""The HTTP endpoint Prometheus and Kubernetes talk to: /metrics, /healthz, /readyz, and the
health verdict API for model serving: /api/v1/health and /api/v1/health/{pipeline}.

A small threaded `http.server`: scrapes and probes are rare and tiny, and a thread per
request keeps a slow scrape from delaying a liveness probe.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar
from urllib.parse import unquote

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

__all__ = ["Readiness", "TelemetryServer"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Readiness:
    """Whether dqmon can serve its purpose; `reasons` name what is missing (no secrets, no data)."""

    ready: bool
    reasons: tuple[str, ...] = field(default_factory=tuple)


ReadinessProbe = Callable[[], Readiness | bool]
# pipeline name (None: all) -> the verdict document, or None when there is no such pipeline
HealthProbe = Callable[[str | None], dict[str, Any] | None]
HEALTH_PATH = "/api/v1/health"


def _not_ready_yet() -> Readiness:
    return Readiness(False, ("starting",))


class _Handler(BaseHTTPRequestHandler):
    # set per server subclass in TelemetryServer.start
    registry: ClassVar[CollectorRegistry]
    readiness: ClassVar[Callable[[], Readiness | bool]]
    health: ClassVar[HealthProbe | None] = None
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
            self._send(200, encoder(self.registry), content_type)
        elif path == "/healthz":
            self._send(200, b"ok\n", "text/plain; charset=utf-8")
        elif path == "/readyz":
            state = self._readiness()
            body = json.dumps({"ready": state.ready, "reasons": list(state.reasons)}).encode()
            self._send(200 if state.ready else 503, body, "application/json")
        elif path == HEALTH_PATH or path.startswith(HEALTH_PATH + "/"):
            self._health(unquote(path[len(HEALTH_PATH) + 1 :]) or None)
        else:
            self._send(
                404,
                b"not found: try /metrics, /healthz, /readyz or /api/v1/health\n",
                "text/plain; charset=utf-8",
            )

    def _health(self, pipeline: str | None) -> None:
        """200 for ok/degraded, 503 for failing (so `curl -f` gates too), 404 for no such pipeline."""
        probe = type(self).health
        try:
            report = None if probe is None else probe(pipeline)
        except Exception as exc:  # noqa: BLE001 - never crash the monitor
            log.warning("health report raised %s", type(exc).__name__)
            self._send(500, b'{"error": "health report failed"}', "application/json")
            return
        if report is None:
            body = {"error": f"no pipeline {pipeline!r}" if pipeline else "health not available"}
            self._send(404, json.dumps(body).encode(), "application/json")
            return
        code = 503 if report.get("status") == "failing" else 200
        self._send(code, json.dumps(report).encode(), "application/json")

    def _readiness(self) -> Readiness:
        try:
            state = type(self).readiness()
        except Exception as exc:  # noqa: BLE001 - never crash the monitor
            log.warning("readiness probe raised %s", type(exc).__name__)
            return Readiness(False, ("readiness probe failed",))
        return state if isinstance(state, Readiness) else Readiness(bool(state))

    def _send(self, code: int, body: bytes, content_type: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        # scrapes and probes every few seconds would drown the real logs
        log.debug("http %s", format % args)


class TelemetryServer:
    """Serves the registry and the probes on host:port; `port=0` picks a free port."""

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        host: str = "127.0.0.1",
        port: int = 9464,
        readiness: ReadinessProbe = _not_ready_yet,
        health: HealthProbe | None = None,
    ) -> None:
        self.registry = registry
        self.host = host
        self._requested_port = port
        self._readiness = readiness
        self._health = health
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("server not started")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def set_readiness(self, readiness: ReadinessProbe) -> None:
        """Replace the probe (the runtime supplies it once config and sources are up)."""
        self._readiness = readiness
        if self._server is not None:
            self._server.RequestHandlerClass.readiness = staticmethod(readiness)  # type: ignore[attr-defined]

    def start(self) -> TelemetryServer:
        if self._server is not None:
            return self
        handler = type(
            "TelemetryHandler",
            (_Handler,),
            {
                "registry": self.registry,
                "readiness": staticmethod(self._readiness),
                "health": None if self._health is None else staticmethod(self._health),
            },
        )
        server = ThreadingHTTPServer((self.host, self._requested_port), handler)
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="dqmon-telemetry-http", daemon=True)
        self._thread.start()
        log.info("telemetry endpoint on %s (/metrics /healthz /readyz)", self.url)
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> TelemetryServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
