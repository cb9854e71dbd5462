"""The one place a ModelRouterError becomes a gRPC status (code, details, trailing metadata)."""

from __future__ import annotations

import functools
import math
from collections.abc import Awaitable, Callable
from typing import TypeVar

import grpc
import grpc.aio

from common.errors import ModelRouterError

RETRY_AFTER_METADATA = "retry-after"

_Self = TypeVar("_Self")
_Req = TypeVar("_Req")
_Resp = TypeVar("_Resp")
_Method = Callable[[_Self, _Req, grpc.aio.ServicerContext], Awaitable[_Resp]]


def grpc_status(error: ModelRouterError) -> tuple[grpc.StatusCode, str, tuple[tuple[str, str], ...]]:
    """``retry-after`` is whole seconds, rounded up and at least 1, so a client never retries early."""
    trailing: tuple[tuple[str, str], ...] = ()
    if error.retry_after_s is not None:
        trailing = ((RETRY_AFTER_METADATA, str(max(1, math.ceil(error.retry_after_s)))),)
    return error.grpc_code, error.message, trailing


def aborts_on_error(method: _Method[_Self, _Req, _Resp]) -> _Method[_Self, _Req, _Resp]:
    """Decorate a servicer method so a ModelRouterError it raises ends the call with its status."""

    @functools.wraps(method)
    async def wrapper(self: _Self, request: _Req, context: grpc.aio.ServicerContext) -> _Resp:
        try:
            return await method(self, request, context)
        except ModelRouterError as exc:
            code, details, trailing = grpc_status(exc)
            await context.abort(code, details, trailing)
            raise AssertionError("context.abort returned") from exc  # it raises; this tells mypy

    return wrapper
