"""The gateway's ASGI application: the FastAPI app, behind the fast lane for the generating
endpoints and one SERVER span per request (``gateway.edge``)."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.telemetry import TelemetryConfig
from starlette.types import ASGIApp

from gateway import errors, openapi
from gateway.admin import routes as admin
from gateway.analytics import routes as analytics
from gateway.deps import Gateway
from gateway.edge import FastLane, ServerSpans
from gateway.routes import auth, generate, health, messages, metrics, models, operator
from gateway.routes.metrics import UsageSummary

UNTRACED_PATHS = ("/health", "/ready")
NO_FASTAPI_TELEMETRY: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False, "operation_spans": False}
FAST_ROUTES = (*generate.routes, *messages.routes)


def create_api(gateway: Gateway, *, usage_summary: UsageSummary | None = None) -> FastAPI:
    """The FastAPI application alone: every route the gateway serves, the fast lane's included.
    ``usage_summary`` answers ``GET /metrics`` in JSON (default: this gateway's own tallies)."""
    # FastAPI's own OpenTelemetry is off: ServerSpans traces every request, the fast lane's included.
    # Its own OpenAPI document and docs pages are off too: gateway.openapi serves complete ones.
    api = FastAPI(title=openapi.TITLE, openapi_url=None, docs_url=None, redoc_url=None, telemetry=NO_FASTAPI_TELEMETRY)
    api.state.gateway = gateway
    errors.install(api)
    # Also registered with FastAPI: for its 405 on other methods, and for anyone reading its routes.
    api.router.routes.extend(FAST_ROUTES)
    for module in (models, health, auth, admin, operator, analytics):
        api.include_router(module.router)
    api.include_router(metrics.router_for(usage_summary))
    openapi.install(api)
    return api


def create_app(gateway: Gateway, *, usage_summary: UsageSummary | None = None) -> ASGIApp:
    api = create_api(gateway, usage_summary=usage_summary)
    return ServerSpans(FastLane(api, FAST_ROUTES), untraced_paths=UNTRACED_PATHS)
