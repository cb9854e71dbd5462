"""From an HTTP request to a dispatched call and back, shared by every generating endpoint."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any, Protocol

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response

from common.errors import ModelRouterError
from gateway.deps import Gateway, read_body
from gateway.dispatch import Call, Dispatcher
from gateway.responses import EventStreamResponse, RawJSONResponse
from gateway.schemas import parse_body
from modelrouter.events.v1 import events_pb2

# Rough prompt-size estimate for token-per-minute limits: ~4 bytes of JSON per token.
BYTES_PER_TOKEN = 4


class _Routable(Protocol):
    model: str


def new_request_id(prefix: str) -> str:
    """Also the usage row's key; returned to the client as ``x-request-id``."""
    return f"{prefix}-{uuid.uuid4().hex}"


def build_call(
    parsed: _Routable, body: bytes, key_id: str, *, endpoint: str, operation: events_pb2.Operation, request_id: str
) -> Call:
    stream = bool(getattr(parsed, "stream", False))
    return Call(
        request_id=request_id,
        key_id=key_id,
        endpoint=endpoint,
        operation=operation,
        model=parsed.model,
        body=body,
        stream=stream,
        include_usage=bool(getattr(parsed, "include_usage", False)),
        estimated_tokens=len(body) // BYTES_PER_TOKEN,
    )


async def handle(
    request: Request,
    gateway: Gateway,
    key_id: str,
    schema: type[BaseModel],
    *,
    endpoint: str,
    operation: events_pb2.Operation,
    prefix: str,
) -> Response:
    """Read, validate and dispatch an OpenAI-format request; answer JSON or SSE."""
    request_id = request.state.request_id = new_request_id(prefix)
    try:
        body = await read_body(request, gateway.settings.max_body_bytes)
        parsed: Any = parse_body(schema, body)
    except ModelRouterError as exc:  # an authenticated request that never reached a model still counts
        gateway.dispatcher.reject(Call(request_id, key_id, endpoint, operation, model="", body=b""), exc)
        raise
    call = build_call(parsed, body, key_id, endpoint=endpoint, operation=operation, request_id=request_id)
    return await answer(request, gateway.dispatcher, call)


async def _client_gone(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def complete_unless_disconnected(request: Request, dispatcher: Dispatcher, call: Call) -> bytes | None:
    """The response body, or None when the client hung up first: the dispatch is then cancelled,
    which cancels the upstream call. (The dispatch runs in this task; only the watch is a task.)"""
    this = asyncio.current_task()
    assert this is not None
    state = {"finished": False, "gone": False}

    async def watch() -> None:
        await _client_gone(request)
        if not state["finished"]:
            state["gone"] = True
            this.cancel()

    watcher = asyncio.ensure_future(watch())
    try:
        return await dispatcher.complete(call)
    except asyncio.CancelledError:
        if not state["gone"]:
            raise
        this.uncancel()
        return None
    finally:
        state["finished"] = True
        watcher.cancel()


async def answer(request: Request, dispatcher: Dispatcher, call: Call) -> Response:
    headers = {"x-request-id": call.request_id}
    if call.stream:
        frames = await dispatcher.open_stream(call)
        return EventStreamResponse(frames, headers)
    body = await complete_unless_disconnected(request, dispatcher, call)
    if body is None:
        return Response(status_code=499)  # nobody is listening; accounted as cancelled
    return RawJSONResponse(body, headers=headers)
