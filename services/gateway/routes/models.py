"""GET /v1/models and /v1/models/{id}"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.responses import Response

from common.errors import NotFoundError
from gateway.deps import Caller, GatewayDep
from gateway.keyring import Principal
from gateway.responses import RawJSONResponse
from modelrouter.router.v1 import router_pb2

router = APIRouter()


def _allowed(caller: Principal, m: router_pb2.Model) -> bool:
    """A key with an allow-list sees only the models it may use."""
    return not caller.models or m.id in caller.models


def _model(m: router_pb2.Model) -> dict[str, Any]:
    return {"id": m.id, "object": "model", "created": m.created, "owned_by": m.owned_by}


@router.get("/v1/models")
async def list_models(gateway: GatewayDep, caller: Caller) -> Response:
    models = await gateway.router.list_models()
    return RawJSONResponse({"object": "list", "data": [_model(m) for m in models if _allowed(caller, m)]})


@router.get("/v1/models/{model_id:path}")
async def retrieve_model(model_id: str, gateway: GatewayDep, caller: Caller) -> Response:
    for m in await gateway.router.list_models():
        if m.id == model_id and _allowed(caller, m):
            return RawJSONResponse(_model(m))
    raise NotFoundError(f"The model '{model_id}' does not exist", param="model")
