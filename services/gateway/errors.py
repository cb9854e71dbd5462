"""Every failure at the HTTP edge becomes OpenAI's error shape, mapped once here."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from common.errors import InvalidRequestError, ModelRouterError, NotFoundError
from gateway.responses import RawJSONResponse

log = logging.getLogger(__name__)


def error_response(exc: ModelRouterError, request_id: str | None = None) -> Response:
    headers = exc.headers()
    if request_id:
        headers["x-request-id"] = request_id
    return RawJSONResponse(exc.to_json(), status_code=exc.status, headers=headers)


def response_for(request: Request, exc: Exception) -> Response:
    """The answer to an exception a handler raised: a ModelRouterError as itself, anything else as
    our fault (logged with its traceback here; the client only learns that it was our fault)."""
    if isinstance(exc, ModelRouterError):
        return error_response(exc, getattr(request.state, "request_id", None))
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(ModelRouterError("The server had an error while processing your request."))


async def _on_modelrouter_error(request: Request, exc: Exception) -> Response:
    return response_for(request, exc)


async def _on_validation_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0] if exc.errors() else {}
    param = ".".join(str(p) for p in first.get("loc", ())[1:]) or None
    return error_response(InvalidRequestError(str(first.get("msg", "invalid request")), param=param))


async def _on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 404:
        err: ModelRouterError = NotFoundError(f"Invalid URL ({request.method} {request.url.path})", code="unknown_url")
    elif exc.status_code == 405:
        err = InvalidRequestError(
            f"Method {request.method} is not allowed on {request.url.path}", code="method_not_allowed"
        )
        return RawJSONResponse(err.to_json(), status_code=405)
    else:
        err = InvalidRequestError(str(exc.detail))
        return RawJSONResponse(err.to_json(), status_code=exc.status_code)
    return error_response(err)


async def _on_unexpected(request: Request, exc: Exception) -> Response:
    return response_for(request, exc)


def install(app: FastAPI) -> None:
    app.add_exception_handler(ModelRouterError, _on_modelrouter_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(Exception, _on_unexpected)
