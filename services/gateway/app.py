"""The gateway's ASGI application: the FastAPI app, behind the fast lane for the generating
endpoints and one SERVER span per request (``gateway.edge``)."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.telemetry import TelemetryConfig
from starlette.types import ASGIApp

from gateway import errors
from gateway.deps import Gateway
from gateway.edge import FastLane, ServerSpans
from gateway.routes import generate, health, messages, models

UNTRACED_PATHS = ("/health", "/ready")
NO_FASTAPI_TELEMETRY: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False, "operation_spans": False}


def create_app(gateway: Gateway) -> ASGIApp:
    # FastAPI's own OpenTelemetry is off: ServerSpans traces every request, the fast lane's included.
    api = FastAPI(title="ModelRouter", docs_url=None, redoc_url=None, telemetry=NO_FASTAPI_TELEMETRY)
    api.state.gateway = gateway
    errors.install(api)
    # Also registered with FastAPI: for its 405 on other methods, and for anyone reading its routes.
    api.router.routes.extend(generate.routes)
    api.router.routes.extend(messages.routes)
    for module in (models, health):
        api.include_router(module.router)
    return ServerSpans(FastLane(api, [*generate.routes, *messages.routes]), untraced_paths=UNTRACED_PATHS)
