"""GET /v1/models and /v1/models/{id}"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.responses import Response

from common.errors import NotFoundError
from gateway.deps import GatewayDep, KeyId
from gateway.responses import RawJSONResponse
from modelrouter.router.v1 import router_pb2

router = APIRouter()


def _model(m: router_pb2.Model) -> dict[str, Any]:
    return {"id": m.id, "object": "model", "created": m.created, "owned_by": m.owned_by}


@router.get("/v1/models")
async def list_models(gateway: GatewayDep, _: KeyId) -> Response:
    models = await gateway.router.list_models()
    return RawJSONResponse({"object": "list", "data": [_model(m) for m in models]})


@router.get("/v1/models/{model_id:path}")
async def retrieve_model(model_id: str, gateway: GatewayDep, _: KeyId) -> Response:
    for m in await gateway.router.list_models():
        if m.id == model_id:
            return RawJSONResponse(_model(m))
    raise NotFoundError(f"The model '{model_id}' does not exist", param="model")
