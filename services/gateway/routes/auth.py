"""Seed 001's authentication endpoints: ``GET /auth/status`` (any key), ``GET /auth/metrics`` and
``POST /auth/reload-keys`` (an ops key or the master key).

The metrics are the usage ledger's (accounting answers them over the admin subject), so every replica
answers the same: per key, masked, its requests, successes, failures and when it was last used."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.responses import Response

from gateway.admin.accounting_link import ask
from gateway.deps import Caller, GatewayDep, Operator
from gateway.responses import RawJSONResponse

router = APIRouter(tags=["Auth"])

# The ledger's per-key summary, answered by accounting like the admin API (never exposed as a route).
KEY_METRICS_PATH = "/admin/usage/keys"


@router.get("/auth/status")
async def auth_status(gateway: GatewayDep, caller: Caller) -> Response:
    keys = gateway.keys
    return RawJSONResponse(
        {
            "auth_enabled": gateway.settings.enable_auth,
            "keys": len(keys),
            "managed_keys": keys.managed_keys,
            "teams": keys.teams,
            "key_id": caller.key_id,
            "key": caller.display or None,
            "role": caller.role,
            "team_id": caller.team_id or None,
        }
    )


@router.get("/auth/metrics")
async def auth_metrics(gateway: GatewayDep, _: Operator) -> Response:
    envelope: dict[str, Any] = {"method": "GET", "path": KEY_METRICS_PATH, "query": {}, "body": None}
    answer = await ask(gateway.nats, gateway.settings.admin_subject, envelope)
    if answer.status >= 300:
        return RawJSONResponse(answer.body, status_code=answer.status)
    rows = answer.body.get("data", []) if isinstance(answer.body, dict) else []
    displays = gateway.keys.displays()
    keys = [{**row, "key": displays.get(row.get("key_id", ""), None)} for row in rows]
    return RawJSONResponse({"object": "list", "keys": keys})


@router.post("/auth/reload-keys")
async def reload_keys(gateway: GatewayDep, _: Operator) -> Response:
    """Re-read the environment's and the config's keys, and take a fresh snapshot of the bucket."""
    gateway.keys.reload_static()
    if gateway.watch is not None:
        await gateway.watch.resync_now()
    return RawJSONResponse({"reloaded": True, "keys": len(gateway.keys), "managed_keys": gateway.keys.managed_keys})
