"""RouteStream: many Route calls on one long-lived gRPC stream, the gateway's hot path.

A grpc.aio stream message costs about half a unary call (no call set-up, no per-call metadata), so the
gateway keeps a few streams open and sends every Route on them. Requests on a stream are decided
concurrently and answered as each is decided; the answer carries the request's id.

Every request the router has read is answered, also when the caller retires the stream (half-close:
the call then ends OK) and when the server stops (the stream ends UNAVAILABLE once its answers are out).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TypeAlias

import grpc
import grpc.aio
from opentelemetry.trace import SpanKind, Tracer

from common.errors import ModelRouterError
from common.telemetry import extract_context
from modelrouter.router.v1 import router_pb2
from router.grpc_errors import ROUTER_SERVICE, route_error

log = logging.getLogger(__name__)

Decide = Callable[[router_pb2.RouteRequest], Awaitable[router_pb2.RouteResponse]]
StreamContext: TypeAlias = grpc.aio.ServicerContext[router_pb2.RouteStreamRequest, router_pb2.RouteStreamResponse]

# Same name as a unary Route's span: a trace reads the same whichever way the gateway asked.
ROUTE_SPAN = f"/{ROUTER_SERVICE}/Route"
_INTERNAL = router_pb2.RouteError(grpc_code=grpc.StatusCode.UNKNOWN.value[0], message="The router failed.")


class RouteStreams:
    """Serves the server's open RouteStreams; ``close`` ends them when the server stops."""

    def __init__(self, decide: Decide, tracer: Callable[[], Tracer]) -> None:
        self._decide = decide
        self._tracer = tracer  # looked up per request: the server may install its own after construction
        self._open: dict[StreamContext, set[asyncio.Task[None]]] = {}  # each open stream's answers being made

    async def serve(self, context: StreamContext) -> None:
        """The body of one RouteStream call: read until the caller half-closes, answer everything read."""
        answering: set[asyncio.Task[None]] = set()
        self._open[context] = answering
        writing = asyncio.Lock()  # grpc.aio allows one write in flight per call
        try:
            while (message := await context.read()) is not grpc.aio.EOF:
                assert isinstance(message, router_pb2.RouteStreamRequest)
                task = asyncio.create_task(self._answer(message, context, writing))
                answering.add(task)
                task.add_done_callback(answering.discard)
            if answering:
                await asyncio.wait(answering)
        finally:
            self._open.pop(context, None)

    async def _answer(
        self, message: router_pb2.RouteStreamRequest, context: StreamContext, writing: asyncio.Lock
    ) -> None:
        answer = await self._decided(message)
        async with writing:
            try:
                await context.write(answer)
            except (grpc.aio.AioRpcError, grpc.aio.UsageError, grpc.aio.AbortError, grpc.aio.InternalError) as exc:
                # The caller is gone; its request is retried elsewhere or was abandoned.
                log.debug("route %d: answer not delivered: %r", message.id, exc)

    async def _decided(self, message: router_pb2.RouteStreamRequest) -> router_pb2.RouteStreamResponse:
        parent = extract_context({"traceparent": message.traceparent}) if message.traceparent else None
        with self._tracer().start_as_current_span(
            ROUTE_SPAN, context=parent, kind=SpanKind.SERVER, attributes={"rpc.system": "grpc"}
        ) as span:
            try:
                return router_pb2.RouteStreamResponse(id=message.id, route=await self._decide(message.route))
            except ModelRouterError as exc:
                span.set_attribute("rpc.grpc.status_code", exc.grpc_code.value[0])
                return router_pb2.RouteStreamResponse(id=message.id, error=route_error(exc))
            except Exception:  # one bad request must not end a stream that carries everyone's
                log.exception("route %d failed", message.id)
                return router_pb2.RouteStreamResponse(id=message.id, error=_INTERNAL)

    async def close(self) -> None:
        """End every open stream once the answers owed on it are sent (UNAVAILABLE: its caller
        reopens one, on another replica, and sends again what this one had not read)."""
        for context, answering in list(self._open.items()):
            while answering:
                await asyncio.wait(set(answering))
            with contextlib.suppress(grpc.aio.AbortError, grpc.aio.UsageError, grpc.aio.InternalError):
                await context.abort(grpc.StatusCode.UNAVAILABLE, "The router is stopping.")
