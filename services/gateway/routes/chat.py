"""POST /v1/chat/completions"""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from gateway.deps import GatewayDep, KeyId
from gateway.routes.answer import handle
from gateway.schemas import ChatCompletionRequest
from modelrouter.events.v1 import events_pb2

router = APIRouter()


@router.post("/v1/chat/completions")
async def chat_completions(request: Request, gateway: GatewayDep, key_id: KeyId) -> Response:
    return await handle(
        request,
        gateway,
        key_id,
        ChatCompletionRequest,
        endpoint="/v1/chat/completions",
        operation=events_pb2.OPERATION_CHAT_COMPLETIONS,
        prefix="chatcmpl",
    )
