"""RouteBatchStream: many Route calls on one long-lived gRPC stream, the gateway's hot path (and
RouteStream, the same one request per message, for gateways from before it).

A grpc.aio stream message costs about half a unary call (no call set-up, no per-call metadata), so the
gateway keeps a few streams open and sends every Route on them. Requests on a stream are decided
concurrently and answered as each is decided; the answer carries the request's id. Answers decided
while the previous message is being written go out together in the next one.

Every request the router has read is answered, also when the caller retires the stream (half-close:
the call then ends OK) and when the server stops (the stream ends UNAVAILABLE once its answers are out).
Settlements and outcome reports ride on the same messages (the gateway holds them briefly for its next
Route) and get no answer: they are applied, and a stream ends only once those it carried are. A
settlement of the same key as a Route in its message is applied by that Route's own admission step
(``folds``): one Redis script call for both, and the request before frees its parallel slot for this
one, in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import grpc
import grpc.aio
from opentelemetry.trace import SpanKind, Tracer

from common.coalesce import CoalescingWriter
from common.errors import ModelRouterError
from common.telemetry import extract_context
from modelrouter.router.v1 import router_pb2
from router.grpc_errors import ROUTER_SERVICE, route_error

log = logging.getLogger(__name__)

# Decides a Route, applying the settlements folded into it first.
Decide = Callable[[router_pb2.RouteRequest, Sequence[router_pb2.Settlement]], Awaitable[router_pb2.RouteResponse]]
Settle = Callable[[Sequence[router_pb2.Settlement]], Awaitable[None]]
Report = Callable[[Sequence[router_pb2.OutcomeReport]], Awaitable[None]]
Folds = Callable[[router_pb2.Settlement, router_pb2.RouteRequest], bool]
# RouteBatchStream's, or the one-per-message RouteStream's
StreamContext: TypeAlias = grpc.aio.ServicerContext[Any, Any]

# Same name as a unary Route's span: a trace reads the same whichever way the gateway asked.
ROUTE_SPAN = f"/{ROUTER_SERVICE}/Route"
_INTERNAL = router_pb2.RouteError(grpc_code=grpc.StatusCode.UNKNOWN.value[0], message="The router failed.")


@dataclass(slots=True)
class _OpenStream:
    answering: set[asyncio.Task[None]]  # answers being decided, settlements being applied
    outbox: CoalescingWriter[router_pb2.RouteStreamResponse]


class RouteStreams:
    """Serves the server's open RouteStreams; ``close`` ends them when the server stops."""

    def __init__(
        self,
        decide: Decide,
        tracer: Callable[[], Tracer],
        settle: Settle | None = None,
        report: Report | None = None,
        folds: Folds | None = None,
    ) -> None:
        self._decide = decide
        self._settle = settle
        self._report = report
        self._folds = folds
        self._tracer = tracer  # looked up per request: the server may install its own after construction
        self._open: dict[StreamContext, _OpenStream] = {}

    async def serve(self, context: StreamContext, batched: bool = True) -> None:
        """The body of one RouteBatchStream call (``batched``) or RouteStream call: read until the
        caller half-closes, answer everything read."""

        async def write(answers: list[router_pb2.RouteStreamResponse]) -> None:
            if batched:
                await context.write(router_pb2.RouteStreamResponses(responses=answers))
            else:
                for answer in answers:
                    await context.write(answer)

        stream = self._open[context] = _OpenStream(set(), CoalescingWriter(write, _undelivered))
        try:
            while (message := await context.read()) is not grpc.aio.EOF:
                # Outcomes first: they are about attempts that ended before the requests beside them,
                # whose picks (least-busy, latency) should see them.
                if batched and message.outcomes and self._report is not None:
                    self._track(stream, self._reported(message.outcomes))
                requests = message.requests if batched else [message]
                settlements = list(message.settlements) if batched and self._settle is not None else []
                for request in requests:
                    folded = self._fold(settlements, request.route) if settlements else ()
                    self._track(stream, self._answer(request, folded, stream.outbox))
                if settlements:
                    self._track(stream, self._settled(settlements))
            await _answered(stream)
        finally:
            self._open.pop(context, None)

    @staticmethod
    def _track(stream: _OpenStream, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        stream.answering.add(task)
        task.add_done_callback(stream.answering.discard)

    def _fold(
        self, settlements: list[router_pb2.Settlement], route: router_pb2.RouteRequest
    ) -> list[router_pb2.Settlement]:
        """Takes out of ``settlements`` those ``route``'s own admission applies."""
        if self._folds is None:
            return []
        folded = [s for s in settlements if self._folds(s, route)]
        if folded:
            settlements[:] = [s for s in settlements if not self._folds(s, route)]
        return folded

    async def _settled(self, settlements: Sequence[router_pb2.Settlement]) -> None:
        assert self._settle is not None
        try:
            await self._settle(settlements)
        except Exception:  # fire and forget: an unsettled reservation still expires by itself
            log.exception("%d settlements failed", len(settlements))

    async def _reported(self, outcomes: Sequence[router_pb2.OutcomeReport]) -> None:
        assert self._report is not None
        try:
            await self._report(outcomes)
        except Exception:  # fire and forget: health and statistics miss one attempt
            log.exception("%d outcome reports failed", len(outcomes))

    async def _answer(
        self,
        request: router_pb2.RouteStreamRequest,
        folded: Sequence[router_pb2.Settlement],
        outbox: CoalescingWriter[router_pb2.RouteStreamResponse],
    ) -> None:
        outbox.put(await self._decided(request, folded))

    async def _decided(
        self, request: router_pb2.RouteStreamRequest, folded: Sequence[router_pb2.Settlement]
    ) -> router_pb2.RouteStreamResponse:
        parent = extract_context({"traceparent": request.traceparent}) if request.traceparent else None
        with self._tracer().start_as_current_span(
            ROUTE_SPAN, context=parent, kind=SpanKind.SERVER, attributes={"rpc.system": "grpc"}
        ) as span:
            try:
                return router_pb2.RouteStreamResponse(id=request.id, route=await self._decide(request.route, folded))
            except ModelRouterError as exc:
                span.set_attribute("rpc.grpc.status_code", exc.grpc_code.value[0])
                return router_pb2.RouteStreamResponse(id=request.id, error=route_error(exc))
            except Exception:  # one bad request must not end a stream that carries everyone's
                log.exception("route %d failed", request.id)
                return router_pb2.RouteStreamResponse(id=request.id, error=_INTERNAL)

    async def close(self) -> None:
        """End every open stream once the answers owed on it are sent (UNAVAILABLE: its caller
        reopens one, on another replica, and sends again what this one had not read)."""
        for context, stream in list(self._open.items()):
            await _answered(stream)
            with contextlib.suppress(grpc.aio.AbortError, grpc.aio.UsageError, grpc.aio.InternalError):
                await context.abort(grpc.StatusCode.UNAVAILABLE, "The router is stopping.")


async def _answered(stream: _OpenStream) -> None:
    """Every request read on ``stream`` decided, and its answer written (or found undeliverable)."""
    while stream.answering:
        await asyncio.wait(set(stream.answering))
    await stream.outbox.flushed()


def _undelivered(answers: list[router_pb2.RouteStreamResponse], error: Exception) -> None:
    # The caller is gone; its requests are retried elsewhere or were abandoned.
    log.debug("%d route answers not delivered: %r", len(answers), error)
