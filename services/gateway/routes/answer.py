"""Turning a dispatched call into an HTTP response, shared by every generating endpoint."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from fastapi import Request
from starlette.responses import Response, StreamingResponse

from gateway.dispatch import Call, Dispatcher
from gateway.responses import RawJSONResponse

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def new_request_id(prefix: str) -> str:
    """Also the id of the response object (``chatcmpl-…``) and the usage row's key."""
    return f"{prefix}-{uuid.uuid4().hex}"


async def _client_gone(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def answer(request: Request, dispatcher: Dispatcher, call: Call) -> Response:
    headers = {"x-request-id": call.request_id}
    if call.stream:
        frames = await dispatcher.open_stream(call)
        return StreamingResponse(
            frames, media_type="text/event-stream; charset=utf-8", headers=SSE_HEADERS | headers
        )
    # A client that hangs up on a non-streaming request must cancel the upstream call too.
    work = asyncio.ensure_future(dispatcher.complete(call))
    watch = asyncio.ensure_future(_client_gone(request))
    try:
        await asyncio.wait((work, watch), return_when=asyncio.FIRST_COMPLETED)
    finally:
        watch.cancel()
    if not work.done():
        work.cancel()
        return Response(status_code=499)  # nobody is listening; recorded as cancelled
    body: Any = work.result()
    return RawJSONResponse(body, headers=headers)
