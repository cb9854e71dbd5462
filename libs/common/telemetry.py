"""Tracing and logging setup, and W3C trace-context propagation through NATS headers.

Spans are exported over OTLP only when ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or the traces-specific
variable) is set; otherwise a tracer provider still runs, so trace ids exist for logs and for the
NATS ``traceparent`` header, but nothing leaves the process. Standard ``OTEL_*`` variables apply
(``OTEL_SERVICE_NAME``, ``OTEL_EXPORTER_OTLP_PROTOCOL``, ``OTEL_TRACES_SAMPLER``...).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping

from opentelemetry import context, propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

SERVICE_PREFIX = "modelrouter-"


class _TraceIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        ctx = trace.get_current_span().get_span_context()
        record.trace_id = format(ctx.trace_id, "032x") if ctx.is_valid else "-"
        record.span_id = format(ctx.span_id, "016x") if ctx.is_valid else "-"
        return True


def setup_logging(service: str, level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_TraceIdFilter())
    handler.setFormatter(
        logging.Formatter(
            f"%(asctime)s %(levelname)s {SERVICE_PREFIX}{service} trace_id=%(trace_id)s "
            "span_id=%(span_id)s %(name)s: %(message)s"
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def _otlp_exporter() -> SpanExporter | None:
    if not (os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")):
        return None
    protocol = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or os.environ.get(
        "OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"
    )
    if protocol.startswith("http"):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

        return HttpExporter()
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

    return GrpcExporter()


def setup_tracing(service: str, exporter: SpanExporter | None = None) -> TracerProvider:
    """Install the global tracer provider for ``modelrouter-<service>``; returns it for shutdown."""
    name = os.environ.get("OTEL_SERVICE_NAME") or f"{SERVICE_PREFIX}{service}"
    provider = TracerProvider(resource=Resource.create({"service.name": name}))
    exporter = exporter or _otlp_exporter()
    if exporter is not None:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return provider


def setup(service: str, level: str = "INFO") -> TracerProvider:
    setup_logging(service, level)
    return setup_tracing(service)


def inject_headers(headers: dict[str, str] | None = None) -> dict[str, str]:
    """Current trace context as NATS headers (``traceparent``/``tracestate``)."""
    carrier: dict[str, str] = headers if headers is not None else {}
    propagate.inject(carrier)
    return carrier


def extract_context(headers: Mapping[str, str] | None) -> context.Context:
    return propagate.extract(headers or {})


def traceparent_of(span: trace.Span) -> str:
    ctx = span.get_span_context()
    if not ctx.is_valid:
        return ""
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"


def grpc_metadata() -> tuple[tuple[str, str], ...]:
    """The current trace context as gRPC call metadata (W3C ``traceparent``/``tracestate``)."""
    return tuple(inject_headers().items())


def context_from_grpc_metadata(metadata: object) -> context.Context:
    """The caller's trace context from a call's invocation metadata (pairs of key, value)."""
    pairs = metadata or ()
    return propagate.extract({key: value for key, value in pairs if isinstance(value, str)})  # type: ignore[attr-defined]
