"""The FastAPI application factory."""

from __future__ import annotations

from fastapi import FastAPI
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

from gateway import errors
from gateway.deps import Gateway
from gateway.routes import generate, health, messages, models


def create_app(gateway: Gateway) -> FastAPI:
    app = FastAPI(title="ModelRouter", docs_url=None, redoc_url=None)
    app.state.gateway = gateway
    errors.install(app)
    app.router.routes.extend(generate.routes)
    app.router.routes.extend(messages.routes)
    for module in (models, health):
        app.include_router(module.router)
    # One server span per request; the per-message ASGI send/receive spans cost more than they tell.
    FastAPIInstrumentor.instrument_app(app, exclude_spans=["receive", "send"], excluded_urls="health,ready")
    return app
