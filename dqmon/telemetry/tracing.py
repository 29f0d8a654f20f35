"""OpenTelemetry tracing: SDK set-up from the standard OTEL_* variables and the per-batch span.

Tracing is off unless an OTLP endpoint is configured (`OTEL_EXPORTER_OTLP_ENDPOINT` or
`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`), so a plain install pays nothing. Spans carry only
configured names (pipeline, dataset, topic) and counts: never record values, queries or
credentials. The engine's "dqmon.checks" and "dqmon.check <name>" spans use the global
tracer and so become children of the batch span when evaluated inside it.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer

from dqmon.batch import MicroBatch
from dqmon.results import CheckResult

if TYPE_CHECKING:  # the SDK is imported only when tracing is on (psutil and ~2 MB with it)
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

__all__ = [
    "BatchTrace",
    "batch_span",
    "build_tracer_provider",
    "install_tracing",
    "tracing_endpoint",
]

log = logging.getLogger(__name__)
DEFAULT_SERVICE_NAME = "dqmon"
_TRACER_NAME = "dqmon.telemetry"


def tracing_endpoint(env: Mapping[str, str] | None = None) -> str | None:
    """The OTLP/HTTP traces URL the standard variables select, or None when tracing is off."""
    env = os.environ if env is None else env
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    if env.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() == "none":
        return None
    specific = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
    if specific:
        return specific
    generic = env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
    if generic:
        return generic.rstrip("/") + "/v1/traces"
    return None


def _safe_url(url: str) -> str:
    """scheme://host:port only: endpoints may carry credentials in userinfo or query."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}"


def _resource() -> Resource:
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource

    resource = Resource.create()  # reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES
    name = str(resource.attributes.get(SERVICE_NAME, ""))
    if not name or name.startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: DEFAULT_SERVICE_NAME}))
    return resource


def build_tracer_provider(exporter: SpanExporter | None = None) -> TracerProvider | None:
    """A TracerProvider from the OTEL_* environment, or None when tracing is off.

    `exporter` replaces the OTLP exporter (tests pass an in-memory one; it is always used).
    """
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    if exporter is None:
        endpoint = tracing_endpoint()
        if endpoint is None:
            return None
        kind = os.environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower()
        if kind == "console":
            exporter = ConsoleSpanExporter()
        else:
            if kind != "otlp":
                log.warning("OTEL_TRACES_EXPORTER=%s is not supported; using otlp", kind)
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            # headers, timeout, compression and certificates come from OTEL_EXPORTER_OTLP_* too
            exporter = OTLPSpanExporter(endpoint=endpoint)
        log.info("tracing to %s", _safe_url(endpoint))
    provider = TracerProvider(resource=_resource())  # sampler from OTEL_TRACES_SAMPLER
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def install_tracing() -> TracerProvider | None:
    """Build the provider from the environment and make it global; None (and no-op) when off."""
    provider = build_tracer_provider()
    if provider is not None:
        trace.set_tracer_provider(provider)
    return provider


def _trace_id_hex(span: Span) -> str | None:
    ctx = span.get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else None


class BatchTrace:
    """The open batch span: stage children, batch attributes and the trace id for results."""

    def __init__(self, span: Span, tracer: Tracer) -> None:
        self.span = span
        self._tracer = tracer
        self.trace_id = _trace_id_hex(span)

    @contextmanager
    def stage(self, name: str) -> Iterator[Span]:
        """A live child span "dqmon.<name>" (e.g. fetch, decode) around the enclosed work."""
        with self._tracer.start_as_current_span(
            f"dqmon.{name}", record_exception=False, set_status_on_exception=False
        ) as child:
            try:
                yield child
            except BaseException as exc:
                child.set_status(Status(StatusCode.ERROR, type(exc).__name__))
                raise

    def record_stage(self, name: str, seconds: float, *, end_ns: int | None = None) -> None:
        """A child span for a stage that already ran (timed by the source), ending at `end_ns`."""
        end = end_ns if end_ns is not None else time.time_ns()
        start = end - max(0, int(seconds * 1e9))
        ctx = trace.set_span_in_context(self.span)
        child = self._tracer.start_span(f"dqmon.{name}", context=ctx, start_time=start)
        child.end(end_time=end)

    def set_batch(self, batch: MicroBatch) -> None:
        """Counts only: rows read, sampled, decoded and failed to decode."""
        self.span.set_attributes(
            {
                "messaging.batch.message_count": batch.rows_seen,
                "dqmon.rows_seen": batch.rows_seen,
                "dqmon.rows_sampled": batch.rows_sampled,
                "dqmon.rows": batch.rows_decoded,
                "dqmon.decode_errors": batch.decode_error_count,
            }
        )

    def attach(self, results: Sequence[CheckResult]) -> list[CheckResult]:
        """Results carrying this trace's id, and their outcome summarised on the batch span."""
        failed = sum(1 for r in results if r.failed)
        self.span.set_attributes({"dqmon.checks.results": len(results), "dqmon.checks.failed": failed})
        return [r.with_trace(self.trace_id) for r in results]


@contextmanager
def batch_span(
    pipeline: str,
    dataset: str,
    *,
    destination: str | None = None,
    system: str | None = "kafka",
    start_time_ns: int | None = None,
    tracer: Tracer | None = None,
) -> Iterator[BatchTrace]:
    """The "dqmon.batch" span, current for the enclosed block (so engine spans nest under it).

    `destination` is the topic (or relation) name from config; `start_time_ns` back-dates the
    span to when the fetch began, for runtimes that open it once a batch has arrived.
    """
    tracer = tracer or trace.get_tracer(_TRACER_NAME)
    attributes: dict[str, str | int] = {"dqmon.pipeline": pipeline, "dqmon.dataset": dataset}
    if system is not None:
        attributes["messaging.system"] = system
        attributes["messaging.operation.type"] = "receive"
        if destination is not None:
            attributes["messaging.destination.name"] = destination
    with tracer.start_as_current_span(
        "dqmon.batch",
        kind=SpanKind.CONSUMER,
        attributes=attributes,
        start_time=start_time_ns,
        # exception messages may quote records or DSNs: keep only the type
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        try:
            yield BatchTrace(span, tracer)
        except BaseException as exc:
            span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            raise
