"""The gateway's two outermost ASGI layers, around the FastAPI application.

- ``ServerSpans``: one SERVER span per HTTP request, continuing the caller's W3C trace context
  (``traceparent``), named by method and route template, with the response status.
- ``FastLane``: a POST to one of the generating endpoints goes straight to its handler. FastAPI's
  middleware stack (error, telemetry, body-limit, exception and exit-stack layers, then routing) cost
  about 0.2 ms per request, measured: more than the gateway's own work on a request. Every other
  request, and every other method on these paths (405), is FastAPI's.

Both map failures the way the FastAPI application does (``gateway.errors.response_for``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, StatusCode
from starlette.requests import Request
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.errors import response_for

_tracer = trace.get_tracer("modelrouter.gateway.http")
_TRACE_HEADERS = frozenset({b"traceparent", b"tracestate", b"baggage"})


class ServerSpans:
    def __init__(self, app: ASGIApp, untraced_paths: Iterable[str] = ()) -> None:
        self._app = app
        self._untraced = frozenset(untraced_paths)  # probes: a span each would drown the real ones

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self._untraced:
            await self._app(scope, receive, send)
            return
        method: str = scope["method"]
        carrier = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"] if k in _TRACE_HEADERS}
        status = 0

        async def send_and_note_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        with _tracer.start_as_current_span(
            method,
            context=propagate.extract(carrier) if carrier else None,
            kind=SpanKind.SERVER,
            attributes={"http.request.method": method, "url.path": scope["path"], "url.scheme": scope["scheme"]},
        ) as span:
            try:
                await self._app(scope, receive, send_and_note_status)
            finally:
                # The route is known once routing ran (Starlette's router, or the fast lane, set it).
                template = getattr(scope.get("route"), "path", None)
                if template:
                    span.update_name(f"{method} {template}")
                    span.set_attribute("http.route", template)
                if status:
                    span.set_attribute("http.response.status_code", status)
                    if status >= 500:  # semconv: only server errors mark a server span as failed
                        span.set_status(StatusCode.ERROR)


class FastLane:
    def __init__(self, app: ASGIApp, routes: Iterable[Route]) -> None:
        self._app = app
        self._routes: Mapping[str, Route] = {route.path: route for route in routes}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = self._routes.get(scope["path"]) if scope["type"] == "http" and scope["method"] == "POST" else None
        if route is None:
            await self._app(scope, receive, send)
            return
        scope["app"] = self._app  # ``request.app.state`` holds the gateway, as on FastAPI's routes
        scope["route"] = route
        request = Request(scope, receive, send)
        try:
            response = await route.endpoint(request)
        except Exception as exc:
            response = response_for(request, exc)
        await response(scope, receive, send)
