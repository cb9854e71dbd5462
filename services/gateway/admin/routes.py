"""``/admin/keys`` and ``/admin/teams``: create, list (paged), get, patch, delete (a key's delete
revokes it), and a key's rotate. The master key only.

Accounting answers each (``accounting_link``); after a write, this gateway waits (up to a second) for
the keys bucket to bring the change to its own keyring, so a client that creates a key here may use
it here at once, and one that revokes a key here is refused here at once. Other replicas get the
change from the same bucket within a second."""

from __future__ import annotations

import asyncio
from datetime import datetime

from fastapi import APIRouter, Request
from starlette.responses import Response

from gateway.admin.accounting_link import AdminAnswer, ask, envelope_of
from gateway.deps import Gateway, GatewayDep, Master
from gateway.responses import RawJSONResponse

router = APIRouter(tags=["Admin"])

# How long a write waits for its change to reach this gateway's keyring through the bucket.
SEEN_WAIT_S = 1.0
_RECORD_KINDS = {"api_key": "key", "team": "team"}


async def _forward(request: Request, gateway: Gateway) -> Response:
    answer = await ask(gateway.nats, gateway.settings.admin_subject, await envelope_of(request))
    if request.method != "GET" and answer.status < 300:
        await _seen_here(gateway, answer)
    return RawJSONResponse(answer.body, status_code=answer.status)


async def _seen_here(gateway: Gateway, answer: AdminAnswer) -> None:
    body = answer.body if isinstance(answer.body, dict) else {}
    kind = _RECORD_KINDS.get(str(body.get("object")))
    if kind is None or not isinstance(body.get("id"), str) or not isinstance(body.get("updated_at"), str):
        return
    try:
        updated_ms = int(datetime.fromisoformat(body["updated_at"]).timestamp() * 1000)
    except ValueError:
        return
    deadline = asyncio.get_running_loop().time() + SEEN_WAIT_S
    while gateway.keys.version_of(kind, body["id"]) < updated_ms:
        if asyncio.get_running_loop().time() > deadline:
            return  # the bucket is slow; the watch will still bring it
        await asyncio.sleep(0.005)


@router.post("/admin/keys", status_code=201)
async def create_key(request: Request, gateway: GatewayDep, _: Master) -> Response:
    return await _forward(request, gateway)


@router.get("/admin/keys")
async def list_keys(request: Request, gateway: GatewayDep, _: Master) -> Response:
    return await _forward(request, gateway)


@router.get("/admin/keys/{key_id}")
async def get_key(key_id: str, request: Request, gateway: GatewayDep, _: Master) -> Response:
    return await _forward(request, gateway)


@router.patch("/admin/keys/{key_id}")
async def update_key(key_id: str, request: Request, gateway: GatewayDep, _: Master) -> Response:
    return await _forward(request, gateway)


@router.delete("/admin/keys/{key_id}")
async def revoke_key(key_id: str, request: Request, gateway: GatewayDep, _: Master) -> Response:
    return await _forward(request, gateway)


@router.post("/admin/keys/{key_id}/rotate")
async def rotate_key(key_id: str, request: Request, gateway: GatewayDep, _: Master) -> Response:
    return await _forward(request, gateway)


@router.post("/admin/teams", status_code=201)
async def create_team(request: Request, gateway: GatewayDep, _: Master) -> Response:
    return await _forward(request, gateway)


@router.get("/admin/teams")
async def list_teams(request: Request, gateway: GatewayDep, _: Master) -> Response:
    return await _forward(request, gateway)


@router.get("/admin/teams/{team_id}")
async def get_team(team_id: str, request: Request, gateway: GatewayDep, _: Master) -> Response:
    return await _forward(request, gateway)


@router.patch("/admin/teams/{team_id}")
async def update_team(team_id: str, request: Request, gateway: GatewayDep, _: Master) -> Response:
    return await _forward(request, gateway)


@router.delete("/admin/teams/{team_id}")
async def delete_team(team_id: str, request: Request, gateway: GatewayDep, _: Master) -> Response:
    return await _forward(request, gateway)
