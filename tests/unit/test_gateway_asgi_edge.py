"""The gateway's outer ASGI layers (``gateway.edge``): the SERVER span of each request, and the fast
lane that serves the generating endpoints without FastAPI's middleware stack."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from fastapi import FastAPI
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from common.errors import RateLimitError
from gateway import errors
from gateway.app import NO_FASTAPI_TELEMETRY
from gateway.edge import FastLane, ServerSpans

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_SPAN_ID = "00f067aa0ba902b7"


class SeenByFastAPI:
    """A middleware on the FastAPI app: records every path that went through FastAPI's stack."""

    paths: list[str] = []

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            SeenByFastAPI.paths.append(scope["path"])
        await self.app(scope, receive, send)


async def generate(request: Request) -> Response:
    body = await request.body()
    if body == b"limit":
        raise RateLimitError("slow down", retry_after_s=3)
    if body == b"bug":
        raise RuntimeError("a bug")
    return Response(b'{"ok": true, "app": "%s"}' % request.app.state.name.encode(), media_type="application/json")


@pytest.fixture
def client() -> Iterator[httpx.AsyncClient]:
    api = FastAPI(telemetry=NO_FASTAPI_TELEMETRY)
    api.state.name = "the-api"
    errors.install(api)
    hot = [Route("/v1/chat/completions", generate, methods=["POST"])]
    api.router.routes.extend(hot)

    @api.get("/v1/models/{model_id:path}")
    async def model(model_id: str) -> dict[str, str]:
        return {"id": model_id}

    @api.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    api.add_middleware(SeenByFastAPI)
    SeenByFastAPI.paths = []
    app = ServerSpans(FastLane(api, hot), untraced_paths=["/health"])
    yield httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw")


def traced(exporter: InMemorySpanExporter) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.kind is SpanKind.SERVER]


async def test_a_generating_post_skips_fastapi_but_keeps_its_state(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/chat/completions", content=b"{}")
    assert response.json() == {"ok": True, "app": "the-api"}
    assert SeenByFastAPI.paths == []
    await client.get("/v1/models/gpt-4o")
    assert SeenByFastAPI.paths == ["/v1/models/gpt-4o"]


async def test_other_methods_on_a_fast_path_get_fastapis_openai_shaped_405(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/chat/completions")
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"


async def test_errors_in_the_fast_lane_are_openai_shaped(client: httpx.AsyncClient) -> None:
    limited = await client.post("/v1/chat/completions", content=b"limit")
    assert limited.status_code == 429
    assert limited.headers["retry-after"] == "3"
    assert set(limited.json()["error"]) == {"message", "type", "param", "code"}
    bug = await client.post("/v1/chat/completions", content=b"bug")
    assert bug.status_code == 500
    assert "a bug" not in bug.text
    assert bug.json()["error"]["message"] == "The server had an error while processing your request."


async def test_a_request_is_one_server_span_continuing_the_callers_trace(
    client: httpx.AsyncClient, spans: InMemorySpanExporter
) -> None:
    spans.clear()
    headers = {"traceparent": f"00-{TRACE_ID}-{PARENT_SPAN_ID}-01"}
    await client.post("/v1/chat/completions", content=b"{}", headers=headers)
    [span] = traced(spans)
    assert span.name == "POST /v1/chat/completions"
    assert format(span.context.trace_id, "032x") == TRACE_ID
    assert span.parent is not None and format(span.parent.span_id, "016x") == PARENT_SPAN_ID
    attributes = dict(span.attributes or {})
    assert attributes["http.route"] == "/v1/chat/completions"
    assert attributes["http.response.status_code"] == 200
    assert attributes["http.request.method"] == "POST"
    assert span.status.status_code is StatusCode.UNSET


async def test_spans_of_fastapi_routes_are_named_by_template_and_5xx_is_an_error(
    client: httpx.AsyncClient, spans: InMemorySpanExporter
) -> None:
    spans.clear()
    await client.get("/v1/models/some/long-id")
    await client.post("/v1/chat/completions", content=b"limit")
    await client.post("/v1/chat/completions", content=b"bug")
    await client.get("/health")
    model, limited, bug = traced(spans)  # /health is not traced
    assert model.name == "GET /v1/models/{model_id:path}"
    assert dict(limited.attributes or {})["http.response.status_code"] == 429
    assert limited.status.status_code is StatusCode.UNSET  # a client error is not the server's
    assert dict(bug.attributes or {})["http.response.status_code"] == 500
    assert bug.status.status_code is StatusCode.ERROR
