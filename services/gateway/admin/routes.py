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


async def _admin_endpoint(request: Request, gateway: GatewayDep, _: Master) -> Response:
    return await _forward(request, gateway)


# (method, path, success status): every admin endpoint is the same forward to accounting, which
# validates, decides and answers; the path parameters are accounting's to read.
ENDPOINTS = (
    ("POST", "/admin/keys", 201),
    ("GET", "/admin/keys", 200),
    ("GET", "/admin/keys/{key_id}", 200),
    ("PATCH", "/admin/keys/{key_id}", 200),
    ("DELETE", "/admin/keys/{key_id}", 200),
    ("POST", "/admin/keys/{key_id}/rotate", 200),
    ("POST", "/admin/teams", 201),
    ("GET", "/admin/teams", 200),
    ("GET", "/admin/teams/{team_id}", 200),
    ("PATCH", "/admin/teams/{team_id}", 200),
    ("DELETE", "/admin/teams/{team_id}", 200),
)
for method, path, status in ENDPOINTS:
    router.add_api_route(path, _admin_endpoint, methods=[method], status_code=status)
