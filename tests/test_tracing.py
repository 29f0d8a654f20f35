"""Batch spans: in-memory exporter for structure, and real OTLP/HTTP to a local receiver.

The receiver is a local HTTP server that decodes the exporter's protobuf requests with
opentelemetry-proto, the way an OpenTelemetry Collector would.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import polars as pl
import pytest
from opentelemetry import trace
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from dqmon.batch import MicroBatch
from dqmon.config.models import Pipeline
from dqmon.engine import DatasetEngine
from dqmon.telemetry.tracing import batch_span, build_tracer_provider, tracing_endpoint

SECRET_DSN = "postgresql://dqmon:s3cr3t-Pa55word@db.internal:5432/features"
PIPELINE = {
    "pipeline": "trades-features",
    "datasets": [
        {
            "name": "trades",
            "source": {"kind": "kafka", "topic": "market.trades.v1"},
            "checks": [
                {"validity": {"not_null": ["price"], "range": {"price": {"gt": 0}}}},
                {"volume": {"min": 1}},
            ],
        },
        {
            "name": "features_mv",
            "source": {"kind": "sql", "dsn": SECRET_DSN, "query": "select * from mv"},
            "checks": [{"volume": {"min": 1}}],
        },
    ],
}

_EXPORTER = InMemorySpanExporter()
_installed = False


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """The process-wide SDK provider (set once) with an in-memory exporter, cleared per test."""
    global _installed
    if not _installed:
        provider = trace.get_tracer_provider()
        if not isinstance(provider, TracerProvider):
            provider = TracerProvider()
            trace.set_tracer_provider(provider)
        provider.add_span_processor(SimpleSpanProcessor(_EXPORTER))
        _installed = True
    _EXPORTER.clear()
    yield _EXPORTER
    _EXPORTER.clear()


def make_batch(dataset: str = "trades", prices: list[float | None] | None = None) -> MicroBatch:
    now = datetime.now(UTC)
    values = prices if prices is not None else [1.0, None, -2.0]
    return MicroBatch(
        pipeline="trades-features",
        dataset=dataset,
        df=pl.DataFrame({"price": values}, schema={"price": pl.Float64}),
        window_start=now - timedelta(seconds=5),
        window_end=now,
        rows_seen=40,
        rows_sampled=len(values) + 1,
        decode_errors={"invalid_json": 1},
    )


def by_name(finished: tuple[ReadableSpan, ...]) -> dict[str, ReadableSpan]:
    return {s.name: s for s in finished}


def test_batch_span_parents_fetch_decode_and_the_engines_check_spans(spans: InMemorySpanExporter) -> None:
    pipeline = Pipeline.model_validate(PIPELINE)
    engine = DatasetEngine(pipeline, pipeline.dataset("trades"))
    with batch_span("trades-features", "trades", destination="market.trades.v1") as bt:
        with bt.stage("fetch"):
            batch = make_batch()
        bt.record_stage("decode", 0.002)
        bt.set_batch(batch)
        results = bt.attach(engine.evaluate(batch))
    got = by_name(spans.get_finished_spans())
    root = got["dqmon.batch"]
    assert root.parent is None
    assert root.kind == trace.SpanKind.CONSUMER
    assert dict(root.attributes or {}) == {
        "dqmon.pipeline": "trades-features",
        "dqmon.dataset": "trades",
        "messaging.system": "kafka",
        "messaging.operation.type": "receive",
        "messaging.destination.name": "market.trades.v1",
        "messaging.batch.message_count": 40,
        "dqmon.rows_seen": 40,
        "dqmon.rows_sampled": 4,
        "dqmon.rows": 3,
        "dqmon.decode_errors": 1,
        "dqmon.checks.results": 3,
        "dqmon.checks.failed": 2,
    }
    root_id = root.context.span_id
    for child in ("dqmon.fetch", "dqmon.decode", "dqmon.checks"):
        assert got[child].parent is not None
        assert got[child].parent.span_id == root_id, child
    decode = got["dqmon.decode"]
    assert decode.end_time is not None
    assert decode.start_time is not None
    assert decode.end_time - decode.start_time == pytest.approx(2_000_000, abs=1000)
    checks_id = got["dqmon.checks"].context.span_id
    for name in ("dqmon.check validity", "dqmon.check volume"):
        assert got[name].parent is not None
        assert got[name].parent.span_id == checks_id
    assert got["dqmon.check validity"].attributes["dqmon.check.status"] == "fail"
    # every span of the batch shares one trace, and the results carry its id
    assert {s.context.trace_id for s in got.values()} == {root.context.trace_id}
    assert {r.trace_id for r in results} == {format(root.context.trace_id, "032x")}


def test_trace_id_is_none_without_a_recording_tracer() -> None:
    tracer = trace.NoOpTracer()
    with batch_span("trades-features", "trades", tracer=tracer) as bt:
        assert bt.trace_id is None
        assert bt.attach(()) == []


def test_errors_keep_only_the_exception_type_and_no_secret_reaches_a_span(
    spans: InMemorySpanExporter,
) -> None:
    pipeline = Pipeline.model_validate(PIPELINE)
    engine = DatasetEngine(pipeline, pipeline.dataset("features_mv"))

    def fail_inside_a_batch() -> None:
        with batch_span("trades-features", "features_mv", system=None) as bt:
            bt.attach(engine.evaluate(make_batch("features_mv", [9e99])))
            with bt.stage("fetch"):
                raise ConnectionError(f"connection to {SECRET_DSN} refused")

    with pytest.raises(ConnectionError):
        fail_inside_a_batch()
    finished = spans.get_finished_spans()
    assert {s.name for s in finished} >= {"dqmon.batch", "dqmon.fetch", "dqmon.checks"}
    for span in finished:
        text = repr(dict(span.attributes or {})) + repr(span.events) + repr(span.status.description)
        assert "s3cr3t" not in text
        assert "db.internal" not in text
        assert "9e+99" not in text
        assert not span.events  # no exception event with its message
    assert by_name(finished)["dqmon.fetch"].status.description == "ConnectionError"
    assert "messaging.system" not in (by_name(finished)["dqmon.batch"].attributes or {})


def test_endpoint_selection_follows_the_otel_variables() -> None:
    assert tracing_endpoint({}) is None
    assert tracing_endpoint({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318/"}) == "http://c:4318/v1/traces"
    both = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://t/x",
    }
    assert tracing_endpoint(both) == "http://t/x"
    assert tracing_endpoint({**both, "OTEL_SDK_DISABLED": "true"}) is None
    assert tracing_endpoint({**both, "OTEL_TRACES_EXPORTER": "none"}) is None


def test_tracing_is_off_without_an_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("OTEL_"):
            monkeypatch.delenv(name)
    assert build_tracer_provider() is None


class _OtlpReceiver(BaseHTTPRequestHandler):
    """Local stand-in for an OpenTelemetry Collector's OTLP/HTTP traces endpoint."""

    requests: list[tuple[str, str, bytes]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).requests.append((self.path, self.headers.get("Content-Type", ""), body))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


OTLP_SCRIPT = textwrap.dedent(
    """
    import polars as pl
    from datetime import UTC, datetime
    from dqmon.batch import MicroBatch
    from dqmon.config.models import Pipeline
    from dqmon.engine import DatasetEngine
    from dqmon.telemetry.tracing import batch_span, install_tracing

    provider = install_tracing()
    assert provider is not None
    pipeline = Pipeline.model_validate({
        "pipeline": "trades-features",
        "datasets": [{"name": "trades", "source": {"kind": "kafka", "topic": "market.trades.v1"},
                      "checks": [{"validity": {"not_null": ["price"]}}]}],
    })
    engine = DatasetEngine(pipeline, pipeline.datasets[0])
    now = datetime.now(UTC)
    batch = MicroBatch("trades-features", "trades", pl.DataFrame({"price": [1.0, None]}), now, now, 2, 2)
    with batch_span("trades-features", "trades", destination="market.trades.v1") as bt:
        with bt.stage("fetch"):
            pass
        with bt.stage("decode"):
            pass
        bt.set_batch(batch)
        results = bt.attach(engine.evaluate(batch))
    provider.shutdown()
    print(results[0].trace_id)
    """
)


def test_spans_reach_an_otlp_http_receiver_configured_by_environment() -> None:
    handler = type("Receiver", (_OtlpReceiver,), {"requests": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = f"http://127.0.0.1:{server.server_address[1]}"
        env["OTEL_RESOURCE_ATTRIBUTES"] = "deployment.environment=test"
        proc = subprocess.run(
            [sys.executable, "-c", OTLP_SCRIPT], env=env, capture_output=True, text=True, timeout=60
        )
        assert proc.returncode == 0, proc.stderr
    finally:
        server.shutdown()
        server.server_close()
    assert handler.requests, "the exporter sent nothing"
    spans = {}
    resources = []
    for path, content_type, body in handler.requests:
        assert path == "/v1/traces"
        assert content_type == "application/x-protobuf"
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        for resource_spans in request.resource_spans:
            resources.append({a.key: a.value.string_value for a in resource_spans.resource.attributes})
            for scope in resource_spans.scope_spans:
                for span in scope.spans:
                    spans[span.name] = span
    assert resources[0]["service.name"] == "dqmon"
    assert resources[0]["deployment.environment"] == "test"
    assert set(spans) == {
        "dqmon.batch",
        "dqmon.fetch",
        "dqmon.decode",
        "dqmon.checks",
        "dqmon.checks.aggregate",
        "dqmon.check validity",
    }
    root = spans["dqmon.batch"]
    assert root.parent_span_id == b""
    for name in ("dqmon.fetch", "dqmon.decode", "dqmon.checks"):
        assert spans[name].parent_span_id == root.span_id
    assert spans["dqmon.check validity"].parent_span_id == spans["dqmon.checks"].span_id
    attrs = {a.key: a.value for a in root.attributes}
    assert attrs["messaging.system"].string_value == "kafka"
    assert attrs["messaging.destination.name"].string_value == "market.trades.v1"
    assert attrs["dqmon.pipeline"].string_value == "trades-features"
    assert attrs["dqmon.rows"].int_value == 2
    assert attrs["dqmon.checks.failed"].int_value == 1
    # the trace id on the check result is the exported trace's id
    assert proc.stdout.strip() == root.trace_id.hex()
