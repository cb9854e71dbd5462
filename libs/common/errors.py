"""One error tree for the whole request path.

Each class knows its HTTP status, OpenAI error ``type``/``code`` and gRPC status, so every edge
(HTTP at the gateway, gRPC at the router, NATS between gateway and workers) maps an error once::

    ModelRouterError                      500 api_error
    ├── InvalidRequestError               400 invalid_request_error
    │   └── ContextLengthExceededError    400 invalid_request_error / context_length_exceeded
    ├── AuthenticationError               401 invalid_request_error / invalid_api_key
    ├── PermissionDeniedError             403 permission_error
    ├── NotFoundError                     404 invalid_request_error / model_not_found
    ├── ConflictError                     409 invalid_request_error / conflict
    ├── PayloadTooLargeError              413 invalid_request_error / request_too_large
    ├── RateLimitError                    429 rate_limit_error      (retry_after_s)
    ├── BudgetExceededError               429 insufficient_quota    (x-should-retry: false)
    ├── DatabaseUnavailableError          503 api_error             / database_unavailable
    ├── NoHealthyTargetError              503 api_error             / no_healthy_target
    └── UpstreamError                     502 upstream_error        (retryable, upstream_status)
        ├── UpstreamTimeoutError          504 timeout
        ├── UpstreamRateLimitError        429 rate_limit_error      (retryable, retry_after_s)
        ├── UpstreamUnavailableError      503 api_error             (retryable: overloaded / 5xx)
        │   └── WorkerLostError           503 api_error / worker_lost (retryable, not the deployment's fault)
        └── UpstreamBadRequestError       400 invalid_request_error (not retryable: the client's fault)
"""

from __future__ import annotations

from typing import Any, ClassVar

import grpc
import orjson


class ModelRouterError(Exception):
    status: ClassVar[int] = 500
    type: ClassVar[str] = "api_error"
    default_code: ClassVar[str | None] = "internal_error"
    grpc_code: ClassVar[grpc.StatusCode] = grpc.StatusCode.INTERNAL
    retryable: ClassVar[bool] = False

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code if code is not None else self.default_code
        self.retry_after_s = retry_after_s
        # Response headers the error's answer carries besides Retry-After (x-ratelimit-* of a 429).
        self.extra_headers: dict[str, str] = {}

    def to_dict(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict())

    def headers(self) -> dict[str, str]:
        if self.retry_after_s is None:
            return dict(self.extra_headers)
        return {**self.extra_headers, "Retry-After": str(max(1, round(self.retry_after_s)))}


class InvalidRequestError(ModelRouterError):
    status = 400
    type = "invalid_request_error"
    default_code: ClassVar[str | None] = None
    grpc_code = grpc.StatusCode.INVALID_ARGUMENT


class ContextLengthExceededError(InvalidRequestError):
    """No deployment of the model (nor of its fallbacks) has a context window the request fits."""

    default_code = "context_length_exceeded"


class AuthenticationError(ModelRouterError):
    status = 401
    type = "invalid_request_error"
    default_code = "invalid_api_key"
    grpc_code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDeniedError(ModelRouterError):
    status = 403
    type = "permission_error"
    default_code = "permission_denied"
    grpc_code = grpc.StatusCode.PERMISSION_DENIED


class NotFoundError(ModelRouterError):
    status = 404
    type = "invalid_request_error"
    default_code = "model_not_found"
    grpc_code = grpc.StatusCode.NOT_FOUND


class ConflictError(ModelRouterError):
    """The request contradicts the resource's state (e.g. deleting a team that still has keys)."""

    status = 409
    type = "invalid_request_error"
    default_code = "conflict"
    grpc_code = grpc.StatusCode.FAILED_PRECONDITION


class PayloadTooLargeError(ModelRouterError):
    status = 413
    type = "invalid_request_error"
    default_code = "request_too_large"
    grpc_code = grpc.StatusCode.INVALID_ARGUMENT


class RateLimitError(ModelRouterError):
    status = 429
    type = "rate_limit_error"
    default_code = "rate_limit_exceeded"
    grpc_code = grpc.StatusCode.RESOURCE_EXHAUSTED


class BudgetExceededError(ModelRouterError):
    """A key's or team's budget has no room for the request: OpenAI's answer for an account out of
    credit, which its SDKs must not retry (a 429 is otherwise retried), hence x-should-retry."""

    status = 429
    type = "insufficient_quota"
    default_code = "insufficient_quota"
    grpc_code = grpc.StatusCode.RESOURCE_EXHAUSTED

    def headers(self) -> dict[str, str]:
        return {**super().headers(), "x-should-retry": "false"}


class DatabaseUnavailableError(ModelRouterError):
    """Postgres (accounting's) cannot be reached: admin writes and ledger reads wait for it."""

    status = 503
    type = "api_error"
    default_code = "database_unavailable"
    grpc_code = grpc.StatusCode.UNAVAILABLE


class NoHealthyTargetError(ModelRouterError):
    status = 503
    type = "api_error"
    default_code = "no_healthy_target"
    grpc_code = grpc.StatusCode.UNAVAILABLE


class UpstreamError(ModelRouterError):
    """The provider failed. ``retryable`` says whether another target may succeed."""

    status = 502
    type = "upstream_error"
    default_code: ClassVar[str | None] = "upstream_error"
    grpc_code = grpc.StatusCode.UNAVAILABLE
    retryable = True
    # Whether the deployment failed (so the router counts it towards a cooldown and a failover skips
    # it), rather than something between the gateway and the upstream.
    blames_deployment: ClassVar[bool] = True

    def __init__(
        self,
        message: str,
        *,
        upstream_status: int = 0,
        param: str | None = None,
        code: str | None = None,
        retry_after_s: float | None = None,
        retryable: bool | None = None,
    ) -> None:
        super().__init__(message, param=param, code=code, retry_after_s=retry_after_s)
        self.upstream_status = upstream_status
        if retryable is not None:
            self.retryable = retryable  # type: ignore[misc]


class UpstreamTimeoutError(UpstreamError):
    status = 504
    type = "timeout"
    default_code = "upstream_timeout"
    grpc_code = grpc.StatusCode.DEADLINE_EXCEEDED


class UpstreamRateLimitError(UpstreamError):
    status = 429
    type = "rate_limit_error"
    default_code = "rate_limit_exceeded"
    grpc_code = grpc.StatusCode.RESOURCE_EXHAUSTED


class UpstreamUnavailableError(UpstreamError):
    status = 503
    type = "api_error"
    default_code = "upstream_unavailable"


class WorkerLostError(UpstreamUnavailableError):
    """The worker running a job fell silent past its heartbeats (killed, or cut off from NATS). The
    deployment is not at fault: the same one may serve the request again, on another worker."""

    default_code = "worker_lost"
    blames_deployment = False


class UpstreamBadRequestError(UpstreamError):
    status = 400
    type = "invalid_request_error"
    default_code: ClassVar[str | None] = None
    grpc_code = grpc.StatusCode.INVALID_ARGUMENT
    retryable = False


# Classes that cross NATS as an events.v1.Error are rebuilt from (status, type).
_BY_STATUS: dict[int, type[UpstreamError]] = {
    400: UpstreamBadRequestError,
    429: UpstreamRateLimitError,
    503: UpstreamUnavailableError,
    504: UpstreamTimeoutError,
}


def upstream_error_class(status: int) -> type[UpstreamError]:
    """The UpstreamError subclass a gateway answers ``status`` with (502 for anything else)."""
    return _BY_STATUS.get(status, UpstreamError)


def error_for_upstream_status(status: int) -> type[UpstreamError]:
    """How an adapter classifies a provider's HTTP status."""
    if status == 429:
        return UpstreamRateLimitError
    if status in (408, 504):
        return UpstreamTimeoutError
    if status in (503, 529):  # 529: Anthropic's "overloaded"
        return UpstreamUnavailableError
    # 402: the deployment's account has no credit left; another deployment (another account) may serve.
    if status >= 500 or status == 402:
        return UpstreamError
    if status in (400, 404, 409, 413, 422):
        return UpstreamBadRequestError
    # 401/403 at the provider are our configuration's fault, not the client's: 502, not retryable.
    return _NonRetryableUpstreamError


class _NonRetryableUpstreamError(UpstreamError):
    retryable = False
