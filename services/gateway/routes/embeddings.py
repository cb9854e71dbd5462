"""POST /v1/embeddings"""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from gateway.deps import GatewayDep, KeyId
from gateway.routes.answer import handle
from gateway.schemas import EmbeddingRequest
from modelrouter.events.v1 import events_pb2

router = APIRouter()


@router.post("/v1/embeddings")
async def embeddings(request: Request, gateway: GatewayDep, key_id: KeyId) -> Response:
    return await handle(
        request,
        gateway,
        key_id,
        EmbeddingRequest,
        endpoint="/v1/embeddings",
        operation=events_pb2.OPERATION_EMBEDDINGS,
        prefix="emb",
    )
