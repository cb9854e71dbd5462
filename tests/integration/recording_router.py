"""A Router gRPC server whose answers a test sets, recording what it is asked: the gateway's side of
auto routing and of the operator's endpoints is tested through the real RouterClient and a real
grpc.aio server, without depending on how the router decides (the router's own tests cover that)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import grpc
import grpc.aio

from modelrouter.router.v1 import router_pb2, router_pb2_grpc


@dataclass
class RecordingRouter(router_pb2_grpc.RouterServicer):
    target: router_pb2.Target = field(default_factory=router_pb2.Target)
    overview: router_pb2.OverviewResponse = field(default_factory=router_pb2.OverviewResponse)
    catalogs: list[router_pb2.CatalogStatus] = field(default_factory=list)
    routes: list[router_pb2.RouteRequest] = field(default_factory=list)
    overview_requests: list[router_pb2.OverviewRequest] = field(default_factory=list)
    overview_error: grpc.StatusCode | None = None

    async def RouteBatchStream(
        self, request_iterator: AsyncIterator[router_pb2.RouteStreamRequests], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[router_pb2.RouteStreamResponses]:
        async for message in request_iterator:
            answers = []
            for request in message.requests:
                self.routes.append(request.route)
                target = router_pb2.Target()
                target.CopyFrom(self.target)
                answers.append(
                    router_pb2.RouteStreamResponse(id=request.id, route=router_pb2.RouteResponse(target=target))
                )
            if answers:
                yield router_pb2.RouteStreamResponses(responses=answers)

    async def Overview(
        self, request: router_pb2.OverviewRequest, context: grpc.aio.ServicerContext
    ) -> router_pb2.OverviewResponse:
        self.overview_requests.append(request)
        if self.overview_error is not None:
            await context.abort(self.overview_error, "the router could not read its state")
        return self.overview

    async def Status(
        self, request: router_pb2.StatusRequest, context: grpc.aio.ServicerContext
    ) -> router_pb2.StatusResponse:
        return router_pb2.StatusResponse(catalogs=self.catalogs)


@dataclass
class RunningRecordingRouter:
    servicer: RecordingRouter
    address: str


@asynccontextmanager
async def recording_router(servicer: RecordingRouter) -> AsyncIterator[RunningRecordingRouter]:
    server = grpc.aio.server()
    router_pb2_grpc.add_RouterServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield RunningRecordingRouter(servicer, f"127.0.0.1:{port}")
    finally:
        await server.stop(0)
