"""The Router gRPC methods: thin, the work is in ``selection`` (config and catalogues) and ``state``
(Redis)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

import grpc.aio
from opentelemetry import trace

from common.errors import NotFoundError
from modelrouter.router.v1 import router_pb2, router_pb2_grpc
from router.fallbacks import RouteDecider
from router.grpc_errors import aborts_on_error
from router.limits.admission import KeyLimits, folds_into
from router.metrics import RouterMetrics
from router.overview import overview
from router.route_stream import RouteStreams, StreamContext
from router.selection import RoutingTable
from router.state import RouterState


class CatalogStatusSource(Protocol):
    """What Status reports on: ``router.catalog_refresh.CatalogRefresher``."""

    def status(self) -> list[router_pb2.CatalogStatus]: ...


class RouterServicer(router_pb2_grpc.RouterServicer):
    def __init__(
        self,
        catalog: RoutingTable,
        state: RouterState,
        catalogs: CatalogStatusSource | None = None,
        limits: KeyLimits | None = None,
        metrics: RouterMetrics | None = None,
    ) -> None:
        self._catalog = catalog
        self._state = state
        self._catalogs = catalogs
        # Without a ledger, a budget whose counter is missing refuses (503) rather than guess.
        self._limits = limits or KeyLimits(state)
        # The global provider's tracer unless the server is given another one (tests).
        self.tracer = trace.get_tracer("modelrouter.router")
        self._decider = RouteDecider(catalog, state, self._limits)
        # Without one of the process's, a registry of the servicer's own (a test's servicer).
        self.metrics = metrics if metrics is not None else RouterMetrics()
        self._counted_route = self.metrics.counted(self._route)
        self.streams = RouteStreams(
            self._counted_route, lambda: self.tracer, self._settle, self._streamed_outcomes, folds_into
        )

    @aborts_on_error
    async def Route(
        self, request: router_pb2.RouteRequest, context: grpc.aio.ServicerContext
    ) -> router_pb2.RouteResponse:
        return await self._counted_route(request, ())

    async def RouteBatchStream(self, request_iterator: object, context: StreamContext) -> None:
        await self.streams.serve(context)

    async def RouteStream(self, request_iterator: object, context: StreamContext) -> None:
        await self.streams.serve(context, batched=False)

    async def _route(
        self, request: router_pb2.RouteRequest, settlements: Sequence[router_pb2.Settlement] = ()
    ) -> router_pb2.RouteResponse:
        """``settlements`` (earlier requests of the same key, see ``folds_into``) are applied in the
        admission's own step, or on their own when the request fails before it."""
        with self.metrics.redis("admit" if request.HasField("admission") else "route"):
            response = await self._decider.decide(request, settlements)
        trace.get_current_span().set_attribute("modelrouter.deployment_id", response.target.deployment_id)
        return response

    @aborts_on_error
    async def ListModels(
        self, request: router_pb2.ListModelsRequest, context: grpc.aio.ServicerContext
    ) -> router_pb2.ListModelsResponse:
        return self._catalog.models

    @aborts_on_error
    async def ReportOutcome(
        self, request: router_pb2.OutcomeReport, context: grpc.aio.ServicerContext
    ) -> router_pb2.OutcomeAck:
        # Unknown ids would otherwise create Redis keys for deployments that do not exist.
        if not self._catalog.knows_deployment(request.deployment_id):
            raise NotFoundError(
                f"unknown deployment {request.deployment_id!r}",
                param="deployment_id",
                code="deployment_not_found",
            )
        with self.metrics.redis("report_outcome"):
            healthy = await self._report(request)
        return router_pb2.OutcomeAck(healthy=healthy)

    async def _report(self, report: router_pb2.OutcomeReport) -> bool:
        siblings, in_flight = self._catalog.health_group(report.deployment_id)
        return await self._state.report_outcome(
            report.deployment_id,
            success=report.success,
            status_code=report.status_code,
            retry_after_s=report.retry_after_s,
            error_code=report.error_code,
            latency_ms=report.latency_ms,
            ttft_ms=report.ttft_ms,
            in_flight=in_flight,
            siblings=siblings,
        )

    async def _streamed_outcomes(self, reports: Sequence[router_pb2.OutcomeReport]) -> None:
        """Outcomes that rode a RouteBatchStream: as ReportOutcome, unknown deployments skipped."""
        for report in reports:
            if self._catalog.knows_deployment(report.deployment_id):
                await self._report(report)

    @aborts_on_error
    async def Overview(
        self, request: router_pb2.OverviewRequest, context: grpc.aio.ServicerContext
    ) -> router_pb2.OverviewResponse:
        return await overview(
            self._state, self._catalog.routes, request.key_ids, lambda k: self._limits.subject_key("key", k)
        )

    @aborts_on_error
    async def Settle(self, request: router_pb2.Settlements, context: grpc.aio.ServicerContext) -> router_pb2.SettleAck:
        await self._settle(request.settlements)
        return router_pb2.SettleAck()

    async def _settle(self, settlements: Iterable[router_pb2.Settlement]) -> None:
        with self.metrics.redis("settle"):
            await self._limits.settle(settlements)

    @aborts_on_error
    async def Status(
        self, request: router_pb2.StatusRequest, context: grpc.aio.ServicerContext
    ) -> router_pb2.StatusResponse:
        return router_pb2.StatusResponse(catalogs=self._catalogs.status() if self._catalogs else [])
