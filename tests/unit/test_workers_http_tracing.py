"""The workers' traced transport against a real local upstream: one CLIENT span per request, named
by its method, child of the current span, ended when the response headers are back, with
``traceparent`` sent upstream and only the attributes that matter (no credentials or query)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from tests.contract import story
from tests.contract.server import Fail, HoldStream, UpstreamServer, closed_port
from workers.providers._http import full_url, pooled_client

BODY = {"model": "m", "messages": [{"role": "user", "content": story.QUESTION}]}


@pytest.fixture
async def client(openai_wire: UpstreamServer) -> AsyncIterator[httpx.AsyncClient]:
    http = pooled_client(openai_wire.base_url)
    yield http
    await http.aclose()


def client_spans(exporter: InMemorySpanExporter, trace_id: int) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.kind is SpanKind.CLIENT and s.context.trace_id == trace_id]


async def test_a_request_is_one_client_span_whose_context_goes_upstream(
    client: httpx.AsyncClient, openai_wire: UpstreamServer, spans: InMemorySpanExporter
) -> None:
    with trace.get_tracer("test").start_as_current_span("job") as parent:
        response = await client.post("/chat/completions", json=BODY, params={"key": "sk-secret"})
    assert response.status_code == 200
    [span] = client_spans(spans, parent.get_span_context().trace_id)

    assert span.name == "POST"
    assert span.parent is not None and span.parent.span_id == parent.get_span_context().span_id
    assert dict(span.attributes or {}) == {
        "http.request.method": "POST",
        "url.full": f"http://127.0.0.1:{openai_wire.port}/v1/chat/completions",
        "server.address": "127.0.0.1",
        "server.port": openai_wire.port,
        "http.response.status_code": 200,
    }
    assert span.status.status_code is StatusCode.UNSET
    _, trace_id, span_id, _ = openai_wire.received[0].headers["traceparent"].split("-")
    assert (trace_id, span_id) == (f"{span.context.trace_id:032x}", f"{span.context.span_id:016x}")


async def test_an_error_status_marks_the_span_failed(
    client: httpx.AsyncClient, openai_wire: UpstreamServer, spans: InMemorySpanExporter
) -> None:
    openai_wire.reset(Fail(503, "overloaded"))
    with trace.get_tracer("test").start_as_current_span("job") as parent:
        response = await client.post("/chat/completions", json=BODY)
    assert response.status_code == 503
    [span] = client_spans(spans, parent.get_span_context().trace_id)
    assert span.attributes is not None
    assert (span.attributes["http.response.status_code"], span.attributes["error.type"]) == (503, "503")
    assert span.status.status_code is StatusCode.ERROR


async def test_a_failed_connection_ends_the_span_with_the_error(spans: InMemorySpanExporter) -> None:
    http = pooled_client(f"http://127.0.0.1:{closed_port()}/v1")
    try:
        with trace.get_tracer("test").start_as_current_span("job") as parent, pytest.raises(httpx.TransportError):
            await http.post("/chat/completions", json=BODY)
    finally:
        await http.aclose()
    [span] = client_spans(spans, parent.get_span_context().trace_id)
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes is not None and span.attributes["error.type"]
    assert "http.response.status_code" not in span.attributes


async def test_the_span_ends_when_the_headers_are_back_not_the_body(
    client: httpx.AsyncClient, openai_wire: UpstreamServer, spans: InMemorySpanExporter
) -> None:
    openai_wire.reset(HoldStream(after_chunks=1))
    with trace.get_tracer("test").start_as_current_span("job") as parent:
        async with client.stream("POST", "/chat/completions", json={**BODY, "stream": True}) as response:
            await openai_wire.wait_until(lambda u: u.holding)
            [span] = client_spans(spans, parent.get_span_context().trace_id)
            assert span.attributes is not None and span.attributes["http.response.status_code"] == 200
            openai_wire.release()
            await response.aread()


def test_the_url_recorded_has_no_credentials_or_query() -> None:
    url = httpx.URL("https://user:pw@api.example.com:8443/v1/models/x:generate?key=sk-secret&alt=sse")
    assert full_url(url) == "https://api.example.com:8443/v1/models/x:generate"
