"""How a job's end crosses NATS: errors and usage as ``events.v1`` messages, built in one place."""

from __future__ import annotations

from common.errors import ModelRouterError, UpstreamError
from common.providers.base import Usage
from modelrouter.events.v1 import events_pb2


class JobCancelledError(UpstreamError):
    """The gateway cancelled the job (its client went away)."""

    status = 499  # the de-facto "client closed request"
    type = "cancelled"
    default_code = "cancelled"
    retryable = False


class WorkerShutdownError(UpstreamError):
    """The worker stopped before the job ended; another worker may serve it."""

    status = 503
    type = "cancelled"
    default_code = "worker_shutdown"
    retryable = True


def error_message(exc: ModelRouterError) -> events_pb2.Error:
    """``exc`` as an ``events.v1.Error``, from its class attributes: the one conversion."""
    return events_pb2.Error(
        status=exc.status,
        type=exc.type,
        code=exc.code or "",
        message=exc.message,
        param=exc.param or "",
        retryable=exc.retryable,
        retry_after_s=exc.retry_after_s or 0.0,
        upstream_status=getattr(exc, "upstream_status", 0),
    )


def usage_message(usage: Usage) -> events_pb2.Usage:
    return events_pb2.Usage(
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        total_tokens=usage.total_tokens,
        cached_tokens=usage.cached_tokens,
    )


def failed(exc: ModelRouterError, usage: Usage) -> events_pb2.Result:
    return events_pb2.Result(ok=False, error=error_message(exc), usage=usage_message(usage))
