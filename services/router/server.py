"""The grpc.aio server: Router plus the standard grpc.health.v1 service, traced."""

from __future__ import annotations

import asyncio

import grpc
import grpc.aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from opentelemetry.trace import TracerProvider

from modelrouter.router.v1 import router_pb2_grpc
from router.grpc_errors import ROUTER_SERVICE
from router.servicer import RouterServicer


class RouterServer:
    """Binds at construction (so ``port`` is known, even for ``host:0``); serves after ``start``."""

    def __init__(self, servicer: RouterServicer, listen: str, tracer_provider: TracerProvider | None = None) -> None:
        self._servicer = servicer
        self._health = health_aio.HealthServicer()
        if tracer_provider is not None:
            servicer.tracer = tracer_provider.get_tracer("modelrouter.router")
        # Router methods make their own SERVER spans (router.grpc_errors); health probes make none.
        # no SO_REUSEPORT: a second router on the same port must fail, not silently share it.
        self._server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
        router_pb2_grpc.add_RouterServicer_to_server(servicer, self._server)
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._server)
        self.port = self._server.add_insecure_port(listen)

    async def start(self) -> None:
        # The health servicer starts out SERVING for ""; say so only once the server really is.
        for service in ("", ROUTER_SERVICE):
            await self._health.set(service, health_pb2.HealthCheckResponse.NOT_SERVING)
        await self._server.start()
        for service in ("", ROUTER_SERVICE):
            await self._health.set(service, health_pb2.HealthCheckResponse.SERVING)

    async def stop(self, grace_s: float) -> None:
        """NOT_SERVING for health watchers, refuse new calls, let in-flight ones finish for ``grace_s``.
        RouteStreams never finish on their own: they end as soon as their answers are out, and their
        callers move to another replica."""
        await self._health.enter_graceful_shutdown()
        stopping = asyncio.ensure_future(self._server.stop(grace_s))
        await asyncio.sleep(0)  # stop() refuses new calls first thing; only then end the streams
        await self._servicer.streams.close()
        await stopping
