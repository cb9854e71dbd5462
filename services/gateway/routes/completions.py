"""POST /v1/completions (legacy text completions; chat-only providers answer through chat)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from gateway.deps import GatewayDep, KeyId
from gateway.routes.answer import handle
from gateway.schemas import CompletionRequest
from modelrouter.events.v1 import events_pb2

router = APIRouter()


@router.post("/v1/completions")
async def completions(request: Request, gateway: GatewayDep, key_id: KeyId) -> Response:
    return await handle(
        request,
        gateway,
        key_id,
        CompletionRequest,
        endpoint="/v1/completions",
        operation=events_pb2.OPERATION_COMPLETIONS,
        prefix="cmpl",
    )
