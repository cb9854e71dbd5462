"""From an HTTP request to a dispatched call and back, shared by every generating endpoint."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Coroutine
from typing import Any, TypeVar

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response

from common.errors import ModelRouterError, PermissionDeniedError
from gateway.admission import admission_for
from gateway.analytics.bodies import BodyCapture
from gateway.call import Call
from gateway.deps import Gateway, read_body
from gateway.dispatch import Dispatcher
from gateway.keyring import Principal
from gateway.prompt_estimate import estimate_prompt_tokens
from gateway.responses import EventStreamResponse, HangUpWatch, RawJSONResponse
from gateway.route_headers import route_headers
from gateway.schemas import parse_body
from modelrouter.events.v1 import events_pb2


def nobody_listening() -> Response:
    """What a request whose client left gets (accounted as cancelled): 499, nginx's "client closed"."""
    return Response(status_code=499)


T = TypeVar("T")


def new_request_id(prefix: str) -> str:
    """Also the usage row's key; returned to the client as ``x-request-id``."""
    return f"{prefix}-{uuid.uuid4().hex}"


def check_model_allowed(principal: Principal, model: str) -> None:
    if principal.models and model not in principal.models:
        raise PermissionDeniedError(
            f"The API key {principal.display or principal.key_id} may not use the model `{model}`.",
            param="model",
            code="model_not_allowed",
        )


def max_output_tokens(parsed: object, cap: int) -> int:
    """What a request may generate: its own ``max_completion_tokens`` / ``max_tokens``, else ``cap``."""
    asked = getattr(parsed, "max_completion_tokens", None) or getattr(parsed, "max_tokens", None)
    return int(asked) if asked else cap


def build_call(
    parsed: object,
    body: bytes,
    principal: Principal,
    *,
    endpoint: str,
    operation: events_pb2.Operation,
    request_id: str,
    model: str,
    prompt_class: str = "",
    reserve_output_tokens: int = 0,
    bodies_cap: int | None = None,
) -> Call:
    """``model``: the one to route (the body's, or the default model when it names none)."""
    stream = bool(getattr(parsed, "stream", False))
    return Call(
        request_id=request_id,
        key_id=principal.key_id,
        endpoint=endpoint,
        operation=operation,
        model=model,
        prompt_class=prompt_class,
        body=body,
        stream=stream,
        include_usage=bool(getattr(parsed, "include_usage", False)),
        estimated_tokens=estimate_prompt_tokens(parsed, body),
        max_tokens=max_output_tokens(parsed, 0),
        team_id=principal.team_id,
        admission=admission_for(principal, request_id, max_output_tokens(parsed, reserve_output_tokens)),
        bodies=BodyCapture(parsed, bodies_cap) if bodies_cap is not None else None,
    )


async def handle(
    request: Request,
    gateway: Gateway,
    principal: Principal,
    schema: type[BaseModel],
    *,
    endpoint: str,
    operation: events_pb2.Operation,
    prefix: str,
    auto: bool = False,
) -> Response:
    """Read, validate and dispatch an OpenAI-format request; answer JSON or SSE. ``auto``: the
    endpoint generates text from a prompt, so a body may leave the model to the default model and
    ``auto`` (gateway.auto_routing)."""
    request_id = request.state.request_id = new_request_id(prefix)
    prompt_class = ""
    try:
        body = await read_body(request, gateway.settings.max_body_bytes)
        parsed: Any = parse_body(schema, body)
        model = gateway.auto.model_of(parsed) if auto else parsed.model
        check_model_allowed(principal, model)
        if auto:
            prompt_class = gateway.auto.prompt_class_of(parsed, model)
    except ModelRouterError as exc:  # an authenticated request that never reached a model still counts
        refused = Call(request_id, principal.key_id, endpoint, operation, model="", body=b"", team_id=principal.team_id)
        gateway.dispatcher.reject(refused, exc)
        raise
    call = build_call(
        parsed,
        body,
        principal,
        endpoint=endpoint,
        operation=operation,
        request_id=request_id,
        reserve_output_tokens=gateway.settings.reserve_output_tokens,
        model=model,
        prompt_class=prompt_class,
        bodies_cap=bodies_cap(gateway, principal),
    )
    return await answer(request, gateway.dispatcher, call)


def bodies_cap(gateway: Gateway, principal: Principal) -> int | None:
    """The cap of the texts kept with this key's usage rows; None when it keeps none (the key's own
    ``store_bodies``, else the config's)."""
    config = gateway.config
    if config is None:
        return None
    store = principal.store_bodies if principal.store_bodies is not None else config.store_bodies
    return config.store_bodies_max_bytes if store else None


async def unless_disconnected(request: Request, work: Coroutine[Any, Any, T]) -> T | None:
    """``work``'s result, or None when the client hung up first: ``work`` is then cancelled, which
    cancels the upstream call and accounts the request as cancelled. (``work`` runs in this task.)"""
    watch = HangUpWatch(request.receive)
    try:
        return await work
    except asyncio.CancelledError:
        if not watch.gone:
            raise
        watch.take_back()
        return None
    finally:
        watch.stop()


async def answer(request: Request, dispatcher: Dispatcher, call: Call) -> Response:
    # Before the first byte (routing, failover, a slow first token) a client that leaves is noticed
    # at once, not when the answer comes; a stream's own response watches it from then on.
    if call.stream:
        frames = await unless_disconnected(request, dispatcher.open_stream(call))
        return nobody_listening() if frames is None else EventStreamResponse(frames, headers_of(call))
    body = await unless_disconnected(request, dispatcher.complete(call))
    return nobody_listening() if body is None else RawJSONResponse(body, headers=headers_of(call))


def headers_of(call: Call) -> dict[str, str]:
    """An answer's headers: its request id, the x-ratelimit-* its route reported, and the
    x-modelrouter-* saying where it went and what it cost."""
    return {"x-request-id": call.request_id, **call.limit_headers, **route_headers(call)}
