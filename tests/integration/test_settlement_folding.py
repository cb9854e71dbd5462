"""A settlement rides with the gateway's next Route and, when the key is the same, is applied by that
Route's own admission script: one script call instead of two, and in order, so the request before
frees its parallel slot for the next one. Alone, it still goes out within the linger."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import grpc
import pytest
from redis.asyncio import Redis

from gateway.route_streams import SETTLE_LINGER_S
from modelrouter.router.v1 import router_pb2, router_pb2_grpc
from router.limits.admission import KeyLimits, folds_into
from router.limits.refusals import KeyRateLimitError
from router.route_stream import StreamContext
from router.selection import Candidate
from router.server import RouterServer
from router.servicer import RouterServicer
from router.state import RouterState
from tests.integration.limits_helpers import governed, settlement
from tests.integration.test_route_stream import answers, start_router, stream_pool
from tests.integration.test_router_limits import cs, in_early_window
from tests.integration.test_router_state import MINUTE_MS, prefix, redis, redis_now_ms, state

pytestmark = pytest.mark.integration
__all__ = ["cs", "prefix", "redis", "state"]


@pytest.fixture
def limits(state: RouterState) -> KeyLimits:
    return KeyLimits(state)


def test_only_a_governed_route_of_the_same_key_and_subjects_takes_a_settlement() -> None:
    route = governed("m", "k1", "r2", team_id="t1", team={"rpm": 5})
    assert folds_into(settlement("r1", "k1"), route)
    assert folds_into(settlement("r1", "k1", team_id="t1"), route)
    assert not folds_into(settlement("r1", "k2"), route)
    # The team holds nothing of this route's subjects unless it has limits: settled on its own.
    assert not folds_into(settlement("r1", "k1", team_id="t1"), governed("m", "k1", "r2", team_id="t1"))
    assert not folds_into(settlement("r1", "k1", team_id="t2"), route)
    assert not folds_into(settlement("r1", "k1"), router_pb2.RouteRequest(model="m", key_id="k1"))


async def test_a_folded_settlement_ends_the_reservation_before_the_admission_counts(
    limits: KeyLimits, cs: list[Candidate], redis: Redis, unique: str
) -> None:
    await in_early_window(redis)
    key = f"key_{unique}"
    rules = {"max_parallel": 1, "tpm": 1000}
    await limits.admit(governed("m", key, "r1", key=rules, estimated_tokens=100, max_output_tokens=300), cs)
    # r1 still holds the key's one slot: r2 alone is refused ...
    with pytest.raises(KeyRateLimitError, match="parallel requests"):
        await limits.admit(governed("m", key, "r2", key=rules), cs)
    # ... and admitted with r1's settlement folded in, which gives back 250 of r1's 400 tokens first.
    done = settlement("r1", key, used_tokens=150)
    pick = await limits.admit(
        governed("m", key, "r2", key=rules, estimated_tokens=100, max_output_tokens=300), cs, settlements=[done]
    )
    assert pick.tokens is not None and pick.tokens.remaining == 1000 - 150 - 400
    base = limits.subject_key("key", key)
    assert {k.decode() for k in await redis.hkeys(f"{base}:held")} <= {"$cost", "r2"}
    assert await redis.hexists(f"{base}:held", "r2")
    # Applied once, even when the same settlement comes again (a retried script, a resent message).
    await limits.settle([done])
    now = await redis_now_ms(redis)
    tokens = await redis.get(f"{base}:t:{now // MINUTE_MS}")
    assert int(tokens) == 150 + 400


async def test_a_folded_settlement_adds_its_cost_to_the_budget_once(
    limits: KeyLimits, cs: list[Candidate], redis: Redis, unique: str
) -> None:
    key = f"key_{unique}"
    base = limits.subject_key("key", key)
    now = await redis_now_ms(redis)
    day_counter = f"{base}:sd:{now // 86_400_000}"
    await redis.set(day_counter, 0, ex=86_400 * 2)  # seeded, as the ledger would
    rules = {"daily_budget_usd": 1.0}
    await limits.admit(governed("m", key, "r1", key=rules, max_output_tokens=10), cs)
    done = settlement("r1", key, used_tokens=20, cost_nano_usd=777)
    await limits.admit(governed("m", key, "r2", key=rules, max_output_tokens=10), cs, settlements=[done])
    await limits.admit(governed("m", key, "r3", key=rules, max_output_tokens=10), cs, settlements=[done])
    assert int(await redis.get(day_counter)) == 777
    held = {k.decode() for k in await redis.hkeys(f"{base}:held")}
    assert held == {"$cost", "r2", "r3"}


# --- on the wire ---------------------------------------------------------------------------------


class RecordingServicer(RouterServicer):
    """Records, per stream message read, how many requests and settlements it carried."""

    messages: list[tuple[int, int]] = []

    async def RouteBatchStream(self, request_iterator: object, context: StreamContext) -> None:
        await self.streams.serve(_Recorded(context, type(self).messages))  # type: ignore[arg-type]


class _Recorded:
    def __init__(self, context: StreamContext, messages: list[tuple[int, int]]) -> None:
        self._context, self._messages = context, messages

    async def read(self) -> object:
        message = await self._context.read()
        if isinstance(message, router_pb2.RouteStreamRequests):
            self._messages.append((len(message.requests), len(message.settlements)))
        return message

    async def write(self, message: object) -> None:
        await self._context.write(message)

    async def abort(self, code: grpc.StatusCode, details: str) -> None:
        await self._context.abort(code, details)


@pytest.fixture
async def recording_router(redis: Redis, unique: str) -> AsyncIterator[RouterServer]:
    RecordingServicer.messages = []
    server = await start_router(redis, unique, servicer_class=RecordingServicer)
    yield server
    await server.stop(0)


def _stream_message(route: router_pb2.RouteRequest, *settled: router_pb2.Settlement) -> router_pb2.RouteStreamRequests:
    return router_pb2.RouteStreamRequests(
        requests=[router_pb2.RouteStreamRequest(id=1, route=route)], settlements=list(settled)
    )


async def test_a_settlement_in_the_same_message_frees_the_slot_for_the_route_beside_it(
    recording_router: RouterServer, unique: str
) -> None:
    """Before folding, the Route beside it was decided first and refused (max_parallel 1)."""
    model, key, rules = f"chat-{unique}", f"key_{unique}", {"max_parallel": 1}
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{recording_router.port}")
    call = router_pb2_grpc.RouterStub(channel).RouteBatchStream()
    await call.write(_stream_message(governed(model, key, "r1", key=rules)))
    assert (await answers(call, 1))[1].HasField("route")
    await call.write(_stream_message(governed(model, key, "r2", key=rules), settlement("r1", key)))
    answer = (await answers(call, 1))[1]
    assert answer.HasField("route"), answer.error.message
    # An unknown model refuses the route, and the settlement folded into it is applied all the same.
    await call.write(_stream_message(governed("no-such-model", key, "r3", key=rules), settlement("r2", key)))
    assert (await answers(call, 1))[1].error.grpc_code == grpc.StatusCode.NOT_FOUND.value[0]
    await call.write(_stream_message(governed(model, key, "r4", key=rules)))
    answer = (await answers(call, 1))[1]
    assert answer.HasField("route"), answer.error.message
    call.cancel()
    await channel.close()


async def test_the_gateway_sends_a_settlement_with_its_next_route_or_alone_after_the_linger(
    recording_router: RouterServer, redis: Redis, unique: str
) -> None:
    model, key, rules = f"chat-{unique}", f"key_{unique}", {"max_parallel": 1}
    held = f"mr:test:{unique}:key:{key}:held"
    async with stream_pool(f"127.0.0.1:{recording_router.port}", streams=1) as pool:
        first = await pool.route(governed(model, key, "r1", key=rules), "", 5)
        assert first.HasField("route")
        pool.settle(settlement("r1", key))
        second = await pool.route(governed(model, key, "r2", key=rules), "", 5)
        assert second.HasField("route"), second.error.message
        assert RecordingServicer.messages == [(1, 0), (1, 1)]  # the settlement rode with r2

        pool.settle(settlement("r2", key))
        started = time.monotonic()
        while await redis.hexists(held, "r2"):
            assert time.monotonic() - started < 1.0, "a lone settlement was never sent"
            await asyncio.sleep(0.001)
        assert RecordingServicer.messages[2:] == [(0, 1)]
        assert time.monotonic() - started >= SETTLE_LINGER_S * 0.5
