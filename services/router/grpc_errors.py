"""What every Router method shares: its SERVER span (the caller's trace context comes in the call
metadata) and the one place a ModelRouterError becomes a gRPC status (code, details, trailing
metadata). One span per call, made here, costs a fraction of a generic gRPC interceptor's wrapping."""

from __future__ import annotations

import functools
import math
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

import grpc
import grpc.aio
from opentelemetry.trace import SpanKind, Tracer

from common.errors import ModelRouterError
from common.telemetry import context_from_grpc_metadata
from modelrouter.router.v1 import router_pb2
from router.limits.refusals import CarriesLimitStates

RETRY_AFTER_METADATA = "retry-after"
ROUTER_SERVICE = router_pb2.DESCRIPTOR.services_by_name["Router"].full_name


class _Traced(Protocol):
    tracer: Tracer


_Self = TypeVar("_Self", bound=_Traced)
_Req = TypeVar("_Req")
_Resp = TypeVar("_Resp")
_Method = Callable[[_Self, _Req, grpc.aio.ServicerContext], Awaitable[_Resp]]


def retry_after_whole_s(error: ModelRouterError) -> int | None:
    """Whole seconds, rounded up and at least 1, so a client never retries early."""
    return None if error.retry_after_s is None else max(1, math.ceil(error.retry_after_s))


def grpc_status(error: ModelRouterError) -> tuple[grpc.StatusCode, str, tuple[tuple[str, str], ...]]:
    retry_after = retry_after_whole_s(error)
    trailing = () if retry_after is None else ((RETRY_AFTER_METADATA, str(retry_after)),)
    return error.grpc_code, error.message, trailing


def route_error(error: ModelRouterError) -> router_pb2.RouteError:
    """The status Route would have ended with, as a RouteStream answer; ``code`` names the error
    (a key's "rate_limit_exceeded" or "insufficient_quota", "database_unavailable"...) where the status
    alone does not, and a key's refusal brings its limits' state for the 429's headers."""
    answer = router_pb2.RouteError(
        grpc_code=error.grpc_code.value[0],
        message=error.message,
        retry_after_s=retry_after_whole_s(error) or 0,
        code=error.code or "",
    )
    if isinstance(error, CarriesLimitStates):
        if error.requests is not None:
            answer.requests.CopyFrom(error.requests)
        if error.tokens is not None:
            answer.tokens.CopyFrom(error.tokens)
    return answer


def aborts_on_error(method: _Method[_Self, _Req, _Resp]) -> _Method[_Self, _Req, _Resp]:
    """Decorate a servicer method: it runs in a SERVER span under the caller's trace, and a
    ModelRouterError it raises ends the call with its status."""
    span_name = f"/{ROUTER_SERVICE}/{method.__name__}"

    @functools.wraps(method)
    async def wrapper(self: _Self, request: _Req, context: grpc.aio.ServicerContext) -> _Resp:
        parent = context_from_grpc_metadata(context.invocation_metadata())
        with self.tracer.start_as_current_span(
            span_name, context=parent, kind=SpanKind.SERVER, attributes={"rpc.system": "grpc"}
        ) as span:
            try:
                return await method(self, request, context)
            except ModelRouterError as exc:
                code, details, trailing = grpc_status(exc)
                span.set_attribute("rpc.grpc.status_code", code.value[0])
                await context.abort(code, details, trailing)
                raise AssertionError("context.abort returned") from exc  # it raises; this tells mypy

    return wrapper
