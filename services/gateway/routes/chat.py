"""POST /v1/chat/completions"""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from gateway.deps import GatewayDep, KeyId, read_body
from gateway.dispatch import Call
from gateway.routes.answer import answer, new_request_id
from gateway.schemas import ChatCompletionRequest, parse_body
from modelrouter.events.v1 import events_pb2

router = APIRouter()

# Rough prompt-size estimate for token-per-minute limits: ~4 bytes of JSON per token.
BYTES_PER_TOKEN = 4


@router.post("/v1/chat/completions")
async def chat_completions(request: Request, gateway: GatewayDep, key_id: KeyId) -> Response:
    body = await read_body(request, gateway.settings.max_body_bytes)
    parsed = parse_body(ChatCompletionRequest, body)
    call = Call(
        request_id=new_request_id("chatcmpl"),
        key_id=key_id,
        endpoint="/v1/chat/completions",
        operation=events_pb2.OPERATION_CHAT_COMPLETIONS,
        model=parsed.model,
        body=body,
        stream=bool(parsed.stream),
        include_usage=parsed.include_usage,
        estimated_tokens=len(body) // BYTES_PER_TOKEN,
    )
    return await answer(request, gateway.dispatcher, call)
