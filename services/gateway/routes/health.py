"""GET /health (the process is alive) and GET /ready (it can serve: router and NATS reachable).

``/ready``'s ``details`` say what the router knows about its remote model catalogues. A catalogue
whose refresh fails does not make the gateway unready: the router keeps serving its last good list,
and taking this replica out of rotation would not bring the catalogue back.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter
from starlette.responses import Response

from gateway.deps import GatewayDep
from gateway.responses import RawJSONResponse
from modelrouter.router.v1 import router_pb2

router = APIRouter()


@router.get("/health")
async def health() -> Response:
    return RawJSONResponse({"status": "ok"})


@router.get("/ready")
async def ready(gateway: GatewayDep) -> Response:
    router_ready, catalogs = await asyncio.gather(gateway.router.ready(), gateway.router.catalog_status())
    checks = {
        "draining": gateway.draining,
        "nats": gateway.nats.is_connected,
        "router": router_ready,
    }
    ok = not checks["draining"] and checks["nats"] and checks["router"]
    status = "ready" if ok else "unavailable"
    # null when the router could not say (it is down, or predates catalogues).
    details = {"catalogs": None if catalogs is None else [_catalog(c) for c in catalogs]}
    return RawJSONResponse({"status": status, "checks": checks, "details": details}, status_code=200 if ok else 503)


def _catalog(status: router_pb2.CatalogStatus) -> dict[str, Any]:
    return {
        "provider": status.provider,
        "url": status.url,
        "models": status.models,
        "skipped": status.skipped,
        "last_success": _iso(status.last_success),
        "last_error": status.last_error or None,
        "last_error_at": _iso(status.last_error_at),
        "consecutive_failures": status.consecutive_failures,
    }


def _iso(unix_s: float) -> str | None:
    return datetime.fromtimestamp(unix_s, UTC).isoformat() if unix_s else None
