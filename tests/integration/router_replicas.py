"""Router replicas as processes (``python -m router``) sharing one Redis and one config, and a client
spreading Routes over them on RouteBatchStreams, as gateways do."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc.aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from modelrouter.router.v1 import router_pb2, router_pb2_grpc
from tests.integration.test_router_main import free_port


def replica_config(unique: str) -> str:
    """Model m-<unique>: a cheap deployment first, a pricier fallback (reservations take its price)."""
    return (
        "providers: {p: {adapter: fake}}\n"
        "deployments:\n"
        f"  - {{id: {unique}-a, model: m-{unique}, provider: p, price: {{prompt_per_1k: 0.001, completion_per_1k: 0.002}}}}\n"
        f"  - {{id: {unique}-b, model: m-{unique}, provider: p, priority: 1,"
        " price: {prompt_per_1k: 0.003, completion_per_1k: 0.004}}\n"
    )


@dataclass
class Replicas:
    processes: list[asyncio.subprocess.Process]
    addresses: list[str]
    channels: list[grpc.aio.Channel] = field(default_factory=list)

    @property
    def stubs(self) -> list[router_pb2_grpc.RouterStub]:
        return [router_pb2_grpc.RouterStub(channel) for channel in self.channels]

    async def route_all(self, requests: Sequence[router_pb2.RouteRequest]) -> list[router_pb2.RouteStreamResponse]:
        """Every request at once, spread round-robin over one RouteBatchStream per replica; the answers
        in the requests' order."""
        shares: list[list[tuple[int, router_pb2.RouteRequest]]] = [[] for _ in self.channels]
        for i, request in enumerate(requests):
            shares[i % len(shares)].append((i, request))
        answers: dict[int, router_pb2.RouteStreamResponse] = {}
        await asyncio.gather(
            *(self._on_stream(stub, share, answers) for stub, share in zip(self.stubs, shares, strict=True))
        )
        return [answers[i] for i in range(len(requests))]

    async def route_one(self, request: router_pb2.RouteRequest, replica: int = 0) -> router_pb2.RouteStreamResponse:
        answers: dict[int, router_pb2.RouteStreamResponse] = {}
        await self._on_stream(self.stubs[replica], [(0, request)], answers)
        return answers[0]

    async def settle_on_streams(self, settlements: Sequence[router_pb2.Settlement]) -> None:
        """Settlements on RouteBatchStreams (fire and forget), spread over the replicas; returns once
        every stream ended, which a router lets happen only after applying what it carried."""

        async def one(stub: router_pb2_grpc.RouterStub, share: list[router_pb2.Settlement]) -> None:
            call = stub.RouteBatchStream()
            for item in share:
                await call.write(router_pb2.RouteStreamRequests(settlements=[item]))
            await call.done_writing()
            assert await asyncio.wait_for(call.read(), timeout=10) is grpc.aio.EOF
            assert await call.code() == grpc.StatusCode.OK

        n = len(self.channels)
        await asyncio.gather(*(one(stub, list(settlements[i::n])) for i, stub in enumerate(self.stubs)))

    @staticmethod
    async def _on_stream(
        stub: router_pb2_grpc.RouterStub,
        share: list[tuple[int, router_pb2.RouteRequest]],
        answers: dict[int, router_pb2.RouteStreamResponse],
    ) -> None:
        if not share:
            return
        call = stub.RouteBatchStream()
        for i, request in share:
            await call.write(
                router_pb2.RouteStreamRequests(requests=[router_pb2.RouteStreamRequest(id=i, route=request)])
            )
        got = 0
        while got < len(share):
            message = await asyncio.wait_for(call.read(), timeout=20)
            assert message is not grpc.aio.EOF
            for answer in message.responses:
                answers[answer.id] = answer
                got += 1
        await call.done_writing()


async def start_replicas(count: int, config: Path, env: dict[str, str]) -> Replicas:
    """``count`` routers on free ports, all serving when this returns; each logs to a file beside
    ``config`` (a pipe nobody reads could fill and stall it)."""
    addresses = [f"127.0.0.1:{free_port()}" for _ in range(count)]
    processes = []
    for i, address in enumerate(addresses):
        with (config.parent / f"router-{i}.log").open("ab") as log:
            processes.append(
                await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "router",
                    env={**os.environ, **env, "MODELROUTER_CONFIG": str(config), "ROUTER_LISTEN": address},
                    stderr=log,
                )
            )
    replicas = Replicas(processes, addresses)
    replicas.channels = [grpc.aio.insecure_channel(address) for address in addresses]
    try:
        for channel in replicas.channels:
            health = health_pb2_grpc.HealthStub(channel)
            reply = await health.Check(health_pb2.HealthCheckRequest(), timeout=60, wait_for_ready=True)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
    except BaseException:
        await stop_replicas(replicas)
        raise
    return replicas


async def stop_replicas(replicas: Replicas) -> None:
    for channel in replicas.channels:
        await channel.close()
    for process in replicas.processes:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
    for process in replicas.processes:
        try:
            await asyncio.wait_for(process.wait(), timeout=20)
        except TimeoutError:
            process.kill()
            await process.wait()


_counter = itertools.count()


def request_ids(prefix: str, n: int) -> list[str]:
    return [f"{prefix}-{next(_counter)}" for _ in range(n)]
