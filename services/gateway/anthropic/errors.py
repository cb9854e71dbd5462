"""Anthropic's error shape, ``{"type": "error", "error": {"type", "message"}, "request_id"}``, with
the error ``type`` Anthropic's clients expect for each HTTP status of the one error tree."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response

from common.errors import ModelRouterError
from gateway.responses import RawJSONResponse

_TYPE_BY_STATUS = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    502: "api_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def error_type(status: int) -> str:
    return _TYPE_BY_STATUS.get(status) or ("invalid_request_error" if status < 500 else "api_error")


def error_object(exc: ModelRouterError) -> dict[str, Any]:
    return {"type": "error", "error": {"type": error_type(exc.status), "message": exc.message}}


def error_response(exc: ModelRouterError, request_id: str) -> Response:
    body = error_object(exc) | {"request_id": request_id}
    headers = exc.headers() | {"request-id": request_id, "x-request-id": request_id}
    return RawJSONResponse(orjson.dumps(body), status_code=exc.status, headers=headers)
