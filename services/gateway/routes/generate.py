"""The OpenAI endpoints that generate: POST /v1/chat/completions, /v1/completions, /v1/embeddings and
/v1/images/generations.

Plain Starlette handlers, served by ``gateway.edge.FastLane`` ahead of FastAPI's middleware stack;
they need no dependency injection: the key is checked inline and the body is validated once by the
endpoint's own schema.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.deps import gateway_of
from gateway.routes.answer import handle
from gateway.schemas import ChatCompletionRequest, CompletionRequest, EmbeddingRequest, ImageGenerationRequest
from modelrouter.events.v1 import events_pb2


@dataclass(frozen=True, slots=True)
class Endpoint:
    path: str
    schema: type[BaseModel]
    operation: events_pb2.Operation
    prefix: str  # of the request id, as OpenAI's ids start
    auto: bool = False  # generates text from a prompt: takes model "auto" and the default model

    async def serve(self, request: Request) -> Response:
        gateway = gateway_of(request)
        principal = gateway.keys.authenticate(request.headers.get("authorization"), request.headers.get("x-api-key"))
        return await handle(
            request,
            gateway,
            principal,
            self.schema,
            endpoint=self.path,
            operation=self.operation,
            prefix=self.prefix,
            auto=self.auto,
        )


# The fifth field, ``auto``: these take model "auto" and the default model.
ENDPOINTS = (
    Endpoint("/v1/chat/completions", ChatCompletionRequest, events_pb2.OPERATION_CHAT_COMPLETIONS, "chatcmpl", True),
    Endpoint("/v1/completions", CompletionRequest, events_pb2.OPERATION_COMPLETIONS, "cmpl", True),
    Endpoint("/v1/embeddings", EmbeddingRequest, events_pb2.OPERATION_EMBEDDINGS, "emb"),
    Endpoint("/v1/images/generations", ImageGenerationRequest, events_pb2.OPERATION_IMAGES, "img"),
)

routes = [Route(e.path, e.serve, methods=["POST"], name=e.path) for e in ENDPOINTS]
