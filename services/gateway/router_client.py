"""The gateway's side of the router's gRPC API: one pooled channel per process, gRPC statuses mapped
back onto the error tree."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from contextlib import AbstractContextManager
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind

from common.errors import (
    BudgetExceededError,
    ContextLengthExceededError,
    DatabaseUnavailableError,
    ModelRouterError,
    NoHealthyTargetError,
    NotFoundError,
    RateLimitError,
)
from common.telemetry import grpc_metadata, traceparent_of
from gateway import ratelimit_headers
from gateway.route_streams import RouteStreamPool, StreamEnded
from modelrouter.router.v1 import router_pb2, router_pb2_grpc

log = logging.getLogger(__name__)

ROUTE_TIMEOUT_S = 2.0
_tracer = trace.get_tracer("modelrouter.gateway")


def _client_span(method: str) -> AbstractContextManager[Span]:
    """A CLIENT span for one Router call; ``grpc_metadata()`` inside it carries it to the router.
    (One span made here costs a fraction of a generic gRPC client interceptor's wrapping.)"""
    return _tracer.start_as_current_span(
        f"/modelrouter.router.v1.Router/{method}", kind=SpanKind.CLIENT, attributes={"rpc.system": "grpc"}
    )


def _retry_after(err: grpc.aio.AioRpcError) -> float | None:
    for key, value in err.trailing_metadata() or ():
        if key == "retry-after":
            try:
                return float(value)
            except (TypeError, ValueError):
                return None
    return None


_STATUS_CODES = {code.value[0]: code for code in grpc.StatusCode}


# What a RouteError's ``code`` says, where the gRPC status alone does not (a key's limits and budgets).
_BY_CODE: dict[str, type[ModelRouterError]] = {
    BudgetExceededError.default_code or "": BudgetExceededError,
    DatabaseUnavailableError.default_code or "": DatabaseUnavailableError,
    ContextLengthExceededError.default_code or "": ContextLengthExceededError,
}


class KeyRateLimitError(RateLimitError):
    """A key's or team's own rpm, tpm or parallel limit refused the request, not the deployments':
    the same 429 for the client, told apart for the gateway's refusal metrics."""


def _route_error(error: router_pb2.RouteError, model: str) -> ModelRouterError:
    code = _STATUS_CODES.get(error.grpc_code, grpc.StatusCode.UNKNOWN)
    known = _BY_CODE.get(error.code)
    if known is None and code == grpc.StatusCode.RESOURCE_EXHAUSTED and _carries_key_limits(error):
        known = KeyRateLimitError
    exc = (
        known(error.message, retry_after_s=error.retry_after_s or None)
        if known is not None
        else _to_error(code, error.message, error.retry_after_s or None, model)
    )
    exc.extra_headers = ratelimit_headers.of(error)
    return exc


def _carries_key_limits(error: router_pb2.RouteError) -> bool:
    # Only a refusal by a key's (or its team's) limits brings their state (router.grpc_errors).
    return error.HasField("requests") or error.HasField("tokens")


def _to_error(code: grpc.StatusCode, details: str, retry_after_s: float | None, model: str) -> ModelRouterError:
    if code == grpc.StatusCode.NOT_FOUND:
        return NotFoundError(f"The model `{model}` does not exist or you do not have access to it.")
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        return RateLimitError(details or f"Rate limit reached for model `{model}`.", retry_after_s=retry_after_s or 1.0)
    if code == grpc.StatusCode.UNAVAILABLE and details and "connect" not in details.lower():
        return NoHealthyTargetError(details)
    log.warning("router call failed: %s %s", code, details)
    return NoHealthyTargetError("The router is unavailable.", code="router_unavailable")


def _call_error(err: grpc.aio.AioRpcError, model: str) -> ModelRouterError:
    return _to_error(err.code(), err.details() or "", _retry_after(err), model)


class RouterClient:
    def __init__(self, address: str) -> None:
        self._channel = grpc.aio.insecure_channel(
            address,
            # round_robin spreads calls over every router replica a DNS name resolves to (a headless
            # Kubernetes Service), instead of pinning each gateway to one.
            options=[
                ("grpc.keepalive_time_ms", 30_000),
                ("grpc.enable_retries", 1),
                ("grpc.lb_policy_name", "round_robin"),
            ],
        )
        self._stub = router_pb2_grpc.RouterStub(self._channel)
        self._streams = RouteStreamPool(self._channel, unsent_settlements=self._resend)
        self._health = health_pb2_grpc.HealthStub(self._channel)
        self._background: set[asyncio.Task[None]] = set()

    async def route(
        self,
        model: str,
        key_id: str,
        estimated_tokens: int,
        exclude: list[str],
        admission: router_pb2.Admission | None = None,
        max_tokens: int = 0,
        prompt_class: str = "",
    ) -> router_pb2.RouteResponse:
        request = router_pb2.RouteRequest(
            model=model,
            key_id=key_id,
            estimated_tokens=estimated_tokens,
            exclude_deployments=exclude,
            admission=admission,
            max_tokens=max_tokens,
            prompt_class=prompt_class,
        )
        with _client_span("Route") as span:
            try:
                answer = await self._streams.route(request, traceparent_of(span), ROUTE_TIMEOUT_S)
            except StreamEnded as ended:
                if ended.error is not None:
                    raise _call_error(ended.error, model) from None
                raise _to_error(grpc.StatusCode.UNAVAILABLE, "", None, model) from None
            except TimeoutError:
                raise _to_error(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded", None, model) from None
        if answer.HasField("error"):
            raise _route_error(answer.error, model)
        return answer.route

    def settle(self, settlement: router_pb2.Settlement) -> None:
        """End a request's reservation against its key's limits, in the next RouteBatchStream message
        (no answer awaited; a settlement a broken stream could not send goes by the unary Settle)."""
        self._streams.settle(settlement)

    async def _settle_unary(self, settlements: list[router_pb2.Settlement]) -> None:
        try:
            with _client_span("Settle"):
                await self._stub.Settle(
                    router_pb2.Settlements(settlements=settlements), timeout=ROUTE_TIMEOUT_S, metadata=grpc_metadata()
                )
        except grpc.aio.AioRpcError as err:
            # The reservations then expire by themselves (hold_s); the ledger still has the cost.
            log.warning("could not settle %d requests with the router: %s", len(settlements), err.code())

    def _resend(self, unsent: list[router_pb2.Settlement | router_pb2.OutcomeReport]) -> None:
        """What a broken stream could not send goes by the unary calls."""
        settlements = [item for item in unsent if isinstance(item, router_pb2.Settlement)]
        if settlements:
            self._spawn(self._settle_unary(settlements))
        for item in unsent:
            if isinstance(item, router_pb2.OutcomeReport):
                self._spawn(self._report(item))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def list_models(self) -> list[router_pb2.Model]:
        try:
            with _client_span("ListModels"):
                response = await self._stub.ListModels(
                    router_pb2.ListModelsRequest(), timeout=ROUTE_TIMEOUT_S, metadata=grpc_metadata()
                )
        except grpc.aio.AioRpcError as err:
            raise _call_error(err, "") from None
        return list(response.models)

    async def overview(self, key_ids: list[str]) -> router_pb2.OverviewResponse:
        """The operator's view: every deployment's traffic, latency, health and limits, and the rate
        windows of ``key_ids``, as the routers keep them in Redis (any replica answers the same)."""
        try:
            with _client_span("Overview"):
                return await self._stub.Overview(
                    router_pb2.OverviewRequest(key_ids=key_ids), timeout=ROUTE_TIMEOUT_S, metadata=grpc_metadata()
                )
        except grpc.aio.AioRpcError as err:
            raise _call_error(err, "") from None

    def report(
        self,
        deployment_id: str,
        success: bool,
        status_code: int = 0,
        retry_after_s: float = 0,
        *,
        error_code: str = "",
        latency_ms: float = 0.0,
        ttft_ms: float = 0.0,
    ) -> None:
        """Tell the router how an attempt went, in the next RouteBatchStream message (no answer
        awaited, the client never waits for it)."""
        self._streams.settle(
            router_pb2.OutcomeReport(
                deployment_id=deployment_id,
                success=success,
                status_code=status_code,
                retry_after_s=retry_after_s,
                error_code=error_code,
                latency_ms=latency_ms,
                ttft_ms=ttft_ms,
            )
        )

    async def _report(self, report: router_pb2.OutcomeReport) -> None:
        try:
            with _client_span("ReportOutcome"):
                await self._stub.ReportOutcome(report, timeout=ROUTE_TIMEOUT_S, metadata=grpc_metadata())
        except grpc.aio.AioRpcError as err:
            log.warning("could not report outcome of %s to the router: %s", report.deployment_id, err.code())

    async def catalog_status(self) -> list[router_pb2.CatalogStatus] | None:
        """The router's remote model catalogues (None when it cannot tell: down, or too old to know)."""
        try:
            with _client_span("Status"):
                response = await self._stub.Status(router_pb2.StatusRequest(), timeout=1.0, metadata=grpc_metadata())
        except grpc.aio.AioRpcError as err:
            log.debug("router status unavailable: %s", err.code())
            return None
        return list(response.catalogs)

    async def ready(self) -> bool:
        try:
            reply = await self._health.Check(health_pb2.HealthCheckRequest(), timeout=1.0)
        except grpc.aio.AioRpcError:
            return False
        return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)

    async def close(self) -> None:
        if self._background:
            await asyncio.wait(self._background, timeout=ROUTE_TIMEOUT_S)
        await self._streams.close()
        await self._channel.close()
