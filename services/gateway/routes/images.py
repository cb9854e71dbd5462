"""POST /v1/images/generations"""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from gateway.deps import GatewayDep, KeyId
from gateway.routes.answer import handle
from gateway.schemas import ImageGenerationRequest
from modelrouter.events.v1 import events_pb2

router = APIRouter()


@router.post("/v1/images/generations")
async def generate_images(request: Request, gateway: GatewayDep, key_id: KeyId) -> Response:
    return await handle(
        request,
        gateway,
        key_id,
        ImageGenerationRequest,
        endpoint="/v1/images/generations",
        operation=events_pb2.OPERATION_IMAGES,
        prefix="img",
    )
