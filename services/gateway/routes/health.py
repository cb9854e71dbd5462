"""GET /health (the process is alive) and GET /ready (it can serve: router and NATS reachable)."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from gateway.deps import GatewayDep
from gateway.responses import RawJSONResponse

router = APIRouter()


@router.get("/health")
async def health() -> Response:
    return RawJSONResponse({"status": "ok"})


@router.get("/ready")
async def ready(gateway: GatewayDep) -> Response:
    checks = {
        "draining": gateway.draining,
        "nats": gateway.nats.is_connected,
        "router": await gateway.router.ready(),
    }
    ok = not checks["draining"] and checks["nats"] and checks["router"]
    status = "ready" if ok else "unavailable"
    return RawJSONResponse({"status": status, "checks": checks}, status_code=200 if ok else 503)
