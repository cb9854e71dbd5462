"""RouteBatchStream, the gateway's hot path to the router: many Route calls on one gRPC stream, over the
real grpc.aio server and Redis. Both ends: the router's answers, and the gateway's stream pool and
RouterClient on top of it (demultiplexing, errors, retiring, a router that stops or restarts)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import grpc
import grpc.aio
import pytest
from opentelemetry.trace import SpanKind
from redis.asyncio import Redis

from common.config import parse_config
from common.errors import NoHealthyTargetError, NotFoundError, RateLimitError
from gateway.route_streams import RouteStreamPool, StreamEnded
from gateway.router_client import RouterClient
from modelrouter.router.v1 import router_pb2, router_pb2_grpc
from router.route_stream import StreamContext
from router.selection import Catalog
from router.server import RouterServer
from router.servicer import RouterServicer
from router.state import RouterState
from tests.integration.conftest import RunningRouter, config_yaml

pytestmark = pytest.mark.integration


def ask(
    request_id: int, model: str, exclude: tuple[str, ...] = (), traceparent: str = ""
) -> router_pb2.RouteStreamRequests:
    """A stream message carrying one request (``together`` puts several in one)."""
    route = router_pb2.RouteRequest(model=model, exclude_deployments=exclude)
    return router_pb2.RouteStreamRequests(
        requests=[router_pb2.RouteStreamRequest(id=request_id, route=route, traceparent=traceparent)]
    )


def together(*messages: router_pb2.RouteStreamRequests) -> router_pb2.RouteStreamRequests:
    return router_pb2.RouteStreamRequests(requests=[r for m in messages for r in m.requests])


async def answers(call: grpc.aio.StreamStreamCall, n: int) -> dict[int, router_pb2.RouteStreamResponse]:
    """The next ``n`` answers, by request id, however the router batched them (one per message on
    the older RouteStream)."""
    out: dict[int, router_pb2.RouteStreamResponse] = {}
    while len(out) < n:
        message = await asyncio.wait_for(call.read(), timeout=5)
        if isinstance(message, router_pb2.RouteStreamResponse):
            out[message.id] = message
            continue
        assert isinstance(message, router_pb2.RouteStreamResponses) and message.responses
        out.update((answer.id, answer) for answer in message.responses)
    assert len(out) == n
    return out


# --- the router's side -----------------------------------------------------------------------


async def test_one_stream_answers_each_request_by_id_then_ends_ok_on_half_close(router: RunningRouter) -> None:
    main, backup = router.ids
    call = router.stub.RouteBatchStream()
    await call.write(ask(7, router.model))
    await call.write(together(ask(8, "no-such-model"), ask(9, router.model, exclude=(main,))))
    await call.write(ask(10, router.model, exclude=(main, backup)))
    got = await answers(call, 4)
    assert got[7].route.target.deployment_id == main
    assert [t.deployment_id for t in got[7].route.fallbacks] == [backup]
    assert got[8].error.grpc_code == grpc.StatusCode.NOT_FOUND.value[0]
    assert got[9].route.target.deployment_id == backup
    assert got[10].error.grpc_code == grpc.StatusCode.UNAVAILABLE.value[0]
    assert got[10].error.message
    await call.done_writing()
    assert await asyncio.wait_for(call.read(), timeout=5) is grpc.aio.EOF
    assert await call.code() == grpc.StatusCode.OK


async def test_the_one_request_per_message_stream_of_older_gateways_is_still_served(router: RunningRouter) -> None:
    """RouteStream, as gateways from before RouteBatchStream call it (a rolling upgrade runs both)."""
    main, backup = router.ids
    call = router.stub.RouteStream()
    for message in (ask(1, router.model), ask(2, "no-such-model"), ask(3, router.model, exclude=(main,))):
        await call.write(message.requests[0])
    got = await answers(call, 3)
    assert got[1].route.target.deployment_id == main
    assert got[2].error.grpc_code == grpc.StatusCode.NOT_FOUND.value[0]
    assert got[3].route.target.deployment_id == backup
    await call.done_writing()
    assert await asyncio.wait_for(call.read(), timeout=5) is grpc.aio.EOF
    assert await call.code() == grpc.StatusCode.OK


async def test_over_limit_answer_carries_retry_after(router: RunningRouter) -> None:
    call = router.stub.RouteBatchStream()
    await call.write(ask(1, router.tiny_model))
    assert (await answers(call, 1))[1].HasField("route")
    await call.write(ask(2, router.tiny_model))
    error = (await answers(call, 1))[2].error
    assert error.grpc_code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
    assert 60 <= error.retry_after_s <= 120 and error.retry_after_s == int(error.retry_after_s)
    call.cancel()


async def test_each_streamed_route_gets_a_server_span_in_the_senders_trace(router: RunningRouter) -> None:
    trace_id, parent_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    call = router.stub.RouteBatchStream()
    await call.write(ask(1, router.model, traceparent=f"00-{trace_id}-{parent_id}-01"))
    await call.write(ask(2, router.model))
    await answers(call, 2)
    call.cancel()
    spans = [s for s in router.spans.get_finished_spans() if s.kind == SpanKind.SERVER]
    assert [s.name for s in spans] == ["/modelrouter.router.v1.Router/Route"] * 2
    [joined] = [s for s in spans if format(s.context.trace_id, "032x") == trace_id]
    assert joined.parent is not None and format(joined.parent.span_id, "016x") == parent_id
    [own] = [s for s in spans if s is not joined]
    assert own.parent is None


async def test_stopping_the_server_ends_open_streams_at_once(router: RunningRouter) -> None:
    call = router.stub.RouteBatchStream()
    await call.write(ask(1, router.model))
    await answers(call, 1)
    started = time.perf_counter()
    await router.server.stop(grace_s=30)
    assert time.perf_counter() - started < 5  # not the whole grace: the stream was ended
    with pytest.raises(grpc.aio.AioRpcError):
        await asyncio.wait_for(call.read(), timeout=5)


# --- the gateway's side ----------------------------------------------------------------------


async def test_router_client_routes_over_streams_and_maps_each_error(router: RunningRouter) -> None:
    main, backup = router.ids
    client = RouterClient(router.address)
    try:
        assert (await client.route(router.model, "k", 5, [])).target.deployment_id == main
        with pytest.raises(NotFoundError):
            await client.route("no-such-model", "k", 5, [])
        with pytest.raises(NoHealthyTargetError) as unavailable:
            await client.route(router.model, "k", 5, [main, backup])
        assert unavailable.value.code != "router_unavailable"  # the router's own reason, passed on
        await client.route(router.tiny_model, "k", 5, [])
        with pytest.raises(RateLimitError) as limited:
            await client.route(router.tiny_model, "k", 5, [])
        assert limited.value.retry_after_s is not None and 60 <= limited.value.retry_after_s <= 120
    finally:
        await client.close()


async def test_concurrent_routes_on_shared_streams_each_get_their_own_answer(router: RunningRouter) -> None:
    main, backup = router.ids
    client = RouterClient(router.address)
    try:
        excluded = [i % 2 == 0 for i in range(60)]
        routed = await asyncio.gather(
            *(client.route(router.model, "k", 5, [main] if skip else []) for skip in excluded)
        )
        assert [r.target.deployment_id for r in routed] == [backup if skip else main for skip in excluded]
    finally:
        await client.close()


async def test_streams_past_their_age_are_retired_and_replaced_without_losing_a_request(
    router: RunningRouter,
) -> None:
    request = router_pb2.RouteRequest(model=router.model)
    # max_age_s=0: every request retires the stream it finds
    async with stream_pool(router.address, streams=2, max_age_s=0) as pool:
        for _ in range(10):
            assert (await pool.route(request, "", 5)).route.target.deployment_id == router.ids[0]
        routed = await asyncio.gather(*(pool.route(request, "", 5) for _ in range(30)))
        assert all(r.route.target.deployment_id == router.ids[0] for r in routed)


@asynccontextmanager
async def stream_pool(address: str, **options: Any) -> AsyncIterator[RouteStreamPool]:
    """A gateway-side pool of RouteStreams to ``address``, closed (channel too) when the block ends."""
    channel = grpc.aio.insecure_channel(address)
    pool = RouteStreamPool(channel, **options)
    try:
        yield pool
    finally:
        await pool.close()
        await channel.close()


async def start_router(
    redis: Redis, unique: str, port: int = 0, servicer_class: type[RouterServicer] = RouterServicer
) -> RouterServer:
    config = parse_config(config_yaml(unique))
    state = RouterState(redis, config.health, key_prefix=f"mr:test:{unique}:")
    await state.load_scripts()
    server = RouterServer(servicer_class(Catalog.from_config(config), state), f"127.0.0.1:{port}")
    await server.start()
    return server


@asynccontextmanager
async def client_of(
    servers: list[RouterServer], redis: Redis, unique: str, servicer_class: type[RouterServicer]
) -> AsyncIterator[tuple[RouterServer, RouterClient]]:
    """A router serving ``servicer_class`` (stopped with ``servers``) and a gateway's client of it."""
    server = await start_router(redis, unique, servicer_class=servicer_class)
    servers.append(server)
    client = RouterClient(f"127.0.0.1:{server.port}")
    try:
        yield server, client
    finally:
        await client.close()


@pytest.fixture
async def servers() -> AsyncIterator[list[RouterServer]]:
    started: list[RouterServer] = []
    yield started
    for server in started:
        await server.stop(0)


async def test_the_client_survives_a_router_restart(servers: list[RouterServer], redis: Redis, unique: str) -> None:
    first = await start_router(redis, unique)
    servers.append(first)
    client = RouterClient(f"127.0.0.1:{first.port}")
    try:
        assert (await client.route(f"chat-{unique}", "k", 5, [])).target.deployment_id == f"{unique}-main"
        await first.stop(grace_s=5)
        with pytest.raises(NoHealthyTargetError) as down:
            await client.route(f"chat-{unique}", "k", 5, [])
        assert down.value.code == "router_unavailable"
        servers.append(await start_router(redis, unique, port=first.port))

        async def routed() -> str:
            return (await client.route(f"chat-{unique}", "k", 5, [])).target.deployment_id

        assert await eventually(routed) == f"{unique}-main"
    finally:
        await client.close()


async def eventually(attempt: Callable[[], object], timeout_s: float = 10) -> object:
    """The first result of ``attempt`` that does not raise (the channel reconnects with backoff)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return await attempt()  # type: ignore[misc]
        except NoHealthyTargetError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


class SlowServicer(RouterServicer):
    """Decides after 0.3 s, so requests are in flight when the server stops."""

    async def _route(
        self, request: router_pb2.RouteRequest, settlements: Sequence[router_pb2.Settlement] = ()
    ) -> router_pb2.RouteResponse:
        await asyncio.sleep(0.3)
        return await super()._route(request, settlements)


async def test_requests_in_flight_when_the_router_stops_are_answered(
    servers: list[RouterServer], redis: Redis, unique: str
) -> None:
    async with client_of(servers, redis, unique, SlowServicer) as (server, client):
        routing = [asyncio.create_task(client.route(f"chat-{unique}", "k", 5, [])) for _ in range(8)]
        await asyncio.sleep(0.1)  # read by the router, not yet decided
        await server.stop(grace_s=5)
        assert [(await r).target.deployment_id for r in routing] == [f"{unique}-main"] * 8


class CountingServicer(RouterServicer):
    """Counts the RouteStream messages it reads and writes, and the requests and answers in them;
    decides after 50 ms, so many answers are ready at once."""

    counts: Counter[str] = Counter()

    async def _route(
        self, request: router_pb2.RouteRequest, settlements: Sequence[router_pb2.Settlement] = ()
    ) -> router_pb2.RouteResponse:
        await asyncio.sleep(0.05)
        return await super()._route(request, settlements)

    async def RouteBatchStream(self, request_iterator: object, context: StreamContext) -> None:
        type(self).counts.update(streams=1)
        await self.streams.serve(_Counted(context, type(self).counts))  # type: ignore[arg-type]


class _Counted:
    def __init__(self, context: StreamContext, counts: Counter[str]) -> None:
        self._context, self._counts = context, counts

    async def read(self) -> object:
        message = await self._context.read()
        if isinstance(message, router_pb2.RouteStreamRequests):
            self._counts.update(messages_read=1, requests=len(message.requests))
        return message

    async def write(self, message: router_pb2.RouteStreamResponses) -> None:
        self._counts.update(messages_written=1, answers=len(message.responses))
        await self._context.write(message)

    async def abort(self, code: grpc.StatusCode, details: str) -> None:
        await self._context.abort(code, details)


async def start_counting_router(servers: list[RouterServer], redis: Redis, unique: str) -> RouterServer:
    """A router whose servicer counts streams, messages, requests and answers (counts reset)."""
    CountingServicer.counts.clear()
    server = await start_router(redis, unique, servicer_class=CountingServicer)
    servers.append(server)
    return server


async def test_requests_and_answers_that_queue_behind_a_write_share_the_next_message(
    servers: list[RouterServer], redis: Redis, unique: str
) -> None:
    server = await start_counting_router(servers, redis, unique)
    request = router_pb2.RouteRequest(model=f"chat-{unique}")
    async with stream_pool(f"127.0.0.1:{server.port}", streams=1) as pool:
        routed = await asyncio.gather(*(pool.route(request, "", 5) for _ in range(40)))
    assert [r.route.target.deployment_id for r in routed] == [f"{unique}-main"] * 40
    counts = CountingServicer.counts
    assert counts["requests"] == counts["answers"] == 40
    # One message each way per request without coalescing; these all queued at once.
    assert counts["messages_read"] <= 2 and counts["messages_written"] < 10, counts


async def test_a_stream_takes_requests_until_it_has_fill_in_flight_then_the_next_one_does(
    servers: list[RouterServer], redis: Redis, unique: str
) -> None:
    server = await start_counting_router(servers, redis, unique)
    request = router_pb2.RouteRequest(model=f"chat-{unique}")
    async with stream_pool(f"127.0.0.1:{server.port}", streams=4, fill=8) as pool:
        light = await asyncio.gather(*(pool.route(request, "", 5) for _ in range(8)))
        assert CountingServicer.counts["streams"] == 1  # a light load shares one stream's messages
        heavy = await asyncio.gather(*(pool.route(request, "", 5) for _ in range(40)))
        assert CountingServicer.counts["streams"] == 4  # past 8 in flight each, every stream takes its share
    assert [r.route.target.deployment_id for r in light + heavy] == [f"{unique}-main"] * 48
    assert CountingServicer.counts["requests"] == CountingServicer.counts["answers"] == 48


class OlderRouter(RouterServicer):
    """A router from before RouteBatchStream: the generated servicer's UNIMPLEMENTED answers it."""

    async def RouteBatchStream(self, request_iterator: object, context: StreamContext) -> None:
        router_pb2_grpc.RouterServicer.RouteBatchStream(self, request_iterator, context)  # type: ignore[arg-type]


async def test_a_gateway_ahead_of_its_router_fails_its_routes_as_router_unavailable(
    servers: list[RouterServer], redis: Redis, unique: str
) -> None:
    """What docs/deploy.md warns of when gateways are upgraded before routers."""
    async with client_of(servers, redis, unique, OlderRouter) as (_, client):
        with pytest.raises(NoHealthyTargetError) as refused:
            await client.route(f"chat-{unique}", "k", 5, [])
        assert refused.value.code == "router_unavailable"


class FirstStreamMisbehaves(RouterServicer):
    """The first RouteStream of a subclass does ``misbehave``; later ones work."""

    misbehaved = 0

    async def misbehave(self, context: StreamContext) -> None:
        raise NotImplementedError

    async def RouteBatchStream(self, request_iterator: object, context: StreamContext) -> None:
        if not type(self).misbehaved:
            type(self).misbehaved += 1
            await self.misbehave(context)
        await super().RouteBatchStream(request_iterator, context)


class FirstStreamBreaks(FirstStreamMisbehaves):
    async def misbehave(self, context: StreamContext) -> None:
        await context.abort(grpc.StatusCode.UNAVAILABLE, "going away")  # nothing read


async def test_a_request_its_stream_dropped_unread_is_sent_again_on_a_new_stream(
    servers: list[RouterServer], redis: Redis, unique: str
) -> None:
    server = await start_router(redis, unique, servicer_class=FirstStreamBreaks)
    servers.append(server)
    async with stream_pool(f"127.0.0.1:{server.port}", streams=1) as pool:
        answer = await pool.route(router_pb2.RouteRequest(model=f"chat-{unique}"), "", 5)
        assert answer.route.target.deployment_id == f"{unique}-main"
        assert FirstStreamBreaks.misbehaved == 1


async def test_a_router_that_never_answers_ends_in_stream_ended() -> None:
    async with stream_pool("127.0.0.1:1", streams=1) as pool:  # nothing listens
        with pytest.raises(StreamEnded) as ended:
            await pool.route(router_pb2.RouteRequest(model="m"), "", 5)
        assert ended.value.error is not None and ended.value.error.code() == grpc.StatusCode.UNAVAILABLE


class FirstStreamHangs(FirstStreamMisbehaves):
    async def misbehave(self, context: StreamContext) -> None:
        while await context.read() is not grpc.aio.EOF:
            pass  # read, never answered, never ended: a stuck router
        await asyncio.Event().wait()


async def test_a_stream_that_timed_out_is_replaced_for_the_next_request(
    servers: list[RouterServer], redis: Redis, unique: str
) -> None:
    server = await start_router(redis, unique, servicer_class=FirstStreamHangs)
    servers.append(server)
    request = router_pb2.RouteRequest(model=f"chat-{unique}")
    async with stream_pool(f"127.0.0.1:{server.port}", streams=1) as pool:
        with pytest.raises(TimeoutError):
            await pool.route(request, "", 0.3)
        answer = await pool.route(request, "", 5)
        assert answer.route.target.deployment_id == f"{unique}-main"
        started = time.perf_counter()
    # closing the pool gave up on the stuck stream, which never ends by itself
    assert time.perf_counter() - started < 5
