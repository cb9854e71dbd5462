"""Keys' limits and budgets are exact across router replicas: three ``python -m router`` processes
share one Redis and one config, and 300 concurrent Routes spread over them admit exactly what the
limit allows. Budgets' counters come from a fake accounting answering SpendQuery on NATS; a private
redis-server shows a budget surviving Redis losing everything."""

from __future__ import annotations

import asyncio
import random
import shutil
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest
from nats.aio.client import Client as NATS
from redis.asyncio import Redis
from redis.exceptions import RedisError

from common.pricing import cost_usd, max_cost_nano_usd, to_nano_usd
from modelrouter.router.v1 import router_pb2
from tests.integration.limits_helpers import FakeLedger, fake_ledger, governed, settlement
from tests.integration.router_replicas import (
    Replicas,
    replica_config,
    request_ids,
    start_replicas,
    stop_replicas,
)
from tests.integration.test_router_main import free_port
from tests.integration.test_router_state import MINUTE_MS, redis_now_ms

pytestmark = pytest.mark.integration

DAY_MS = 86_400_000
EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
UNAVAILABLE = grpc.StatusCode.UNAVAILABLE.value[0]


@pytest.fixture(scope="module")
def tag() -> str:
    import uuid

    return uuid.uuid4().hex[:10]


@pytest.fixture(scope="module")
def config_dir(tmp_path_factory: pytest.TempPathFactory, tag: str) -> Path:
    path = tmp_path_factory.mktemp("replicas")
    (path / "modelrouter.yaml").write_text(replica_config(tag))
    return path


@pytest.fixture(scope="module")
async def module_nc(nats_url: str) -> AsyncIterator[NATS]:
    import nats

    conn = await nats.connect(nats_url)
    yield conn
    await conn.close()


@pytest.fixture(scope="module")
async def ledger(module_nc: NATS, tag: str) -> AsyncIterator[FakeLedger]:
    async with fake_ledger(module_nc, f"test.{tag}.ledger") as fake:
        yield fake


@pytest.fixture(scope="module")
async def replicas(
    config_dir: Path, redis_url: str, nats_url: str, tag: str, ledger: FakeLedger
) -> AsyncIterator[Replicas]:
    env = {"REDIS_URL": redis_url, "NATS_URL": nats_url, "LEDGER_SUBJECT": f"test.{tag}.ledger", "DRAIN_TIMEOUT_S": "2"}
    running = await start_replicas(3, config_dir / "modelrouter.yaml", env)
    yield running
    await stop_replicas(running)


@pytest.fixture(scope="module")
async def redis(redis_url: str, tag: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    # The routers use production's "mr:" prefix; everything of this module's keys, teams and deployments.
    for pattern in (f"mr:key:key_{tag}*", f"mr:team:team_{tag}*", f"mr:dep:{tag}-*"):
        keys = [key async for key in client.scan_iter(match=pattern)]
        if keys:
            await client.delete(*keys)
    await client.aclose()


@pytest.fixture
def key(tag: str, unique: str) -> str:
    return f"key_{tag}_{unique}"


@pytest.fixture
def model(tag: str) -> str:
    return f"m-{tag}"


async def in_early_window(redis: Redis, room_ms: int = 20_000) -> None:
    """The rate window's arithmetic is exact within one window: start a burst with room left in it."""
    left = MINUTE_MS - await redis_now_ms(redis) % MINUTE_MS
    if left < room_ms:
        await asyncio.sleep(left / 1000 + 0.05)


def admitted(answers: Sequence[router_pb2.RouteStreamResponse]) -> list[int]:
    return [i for i, a in enumerate(answers) if a.WhichOneof("outcome") == "route"]


def refusals(answers: Sequence[router_pb2.RouteStreamResponse]) -> list[router_pb2.RouteError]:
    return [a.error for a in answers if a.WhichOneof("outcome") == "error"]


# --- exactness across three replicas -------------------------------------------------------------


async def test_rpm_100_admits_exactly_100_of_300(replicas: Replicas, redis: Redis, model: str, key: str) -> None:
    await in_early_window(redis)
    answers = await replicas.route_all([governed(model, key, rid, key={"rpm": 100}) for rid in request_ids(key, 300)])
    assert len(admitted(answers)) == 100
    refused = refusals(answers)
    assert {(e.grpc_code, e.code) for e in refused} == {(EXHAUSTED, "rate_limit_exceeded")}
    assert all(
        e.message.startswith(f"Rate limit reached for key {key} (requests per minute): limit 100") for e in refused
    )
    assert all(e.retry_after_s >= 1 and e.requests.limit == 100 and e.requests.remaining == 0 for e in refused)
    remaining = sorted(answers[i].route.requests.remaining for i in admitted(answers))
    assert remaining == list(range(100))  # each admission saw its own slot taken


async def test_tpm_admits_exactly_what_fits(replicas: Replicas, redis: Redis, model: str, key: str) -> None:
    await in_early_window(redis)
    # 30 estimated + 70 max output = 100 reserved each: 10,000 tpm holds exactly 100 of them.
    requests = [
        governed(model, key, rid, key={"tpm": 10_000}, estimated_tokens=30, max_output_tokens=70)
        for rid in request_ids(key, 300)
    ]
    answers = await replicas.route_all(requests)
    assert len(admitted(answers)) == 100
    assert all("(tokens per minute): limit 10000, used 10000, requested 100" in e.message for e in refusals(answers))
    assert all(e.tokens.limit == 10_000 and e.tokens.remaining == 0 for e in refusals(answers))


async def test_max_parallel_holds_until_settled(replicas: Replicas, model: str, key: str) -> None:
    lim = {"max_parallel": 50}
    ids = request_ids(key, 300)
    answers = await replicas.route_all([governed(model, key, rid, key=lim) for rid in ids])
    held = [ids[i] for i in admitted(answers)]
    assert len(held) == 50
    assert all("(parallel requests): limit 50, used 50, requested 1" in e.message for e in refusals(answers))
    await replicas.settle_on_streams([settlement(rid, key) for rid in held[:20]])
    again = await replicas.route_all([governed(model, key, rid, key=lim) for rid in request_ids(key, 300)])
    assert len(admitted(again)) == 20


async def test_team_limit_is_shared_by_its_two_keys(
    replicas: Replicas, redis: Redis, model: str, tag: str, unique: str
) -> None:
    await in_early_window(redis)
    team = f"team_{tag}_{unique}"
    keys = [f"key_{tag}_{unique}_{i}" for i in range(2)]
    requests = [
        governed(model, keys[i % 2], rid, key={"rpm": 1000}, team_id=team, team={"rpm": 100})
        for i, rid in enumerate(request_ids(team, 300))
    ]
    answers = await replicas.route_all(requests)
    assert len(admitted(answers)) == 100
    assert {requests[i].key_id for i in admitted(answers)} == set(keys)
    assert all(f"for team {team} (requests per minute): limit 100" in e.message for e in refusals(answers))


async def test_daily_budget_is_never_overspent(
    replicas: Replicas, ledger: FakeLedger, redis: Redis, model: str, key: str
) -> None:
    """300 clients at once, each settling its real cost as soon as it is admitted: spend ends within
    the budget, however the admissions and settlements interleave across the replicas."""
    budget, already = 1_000_000_000, 990_000_000  # $1.00 daily, $0.99 spent in the ledger
    ledger.spent[("key", key)] = already
    max_cost = max_cost_nano_usd(100, 100, 0.003, 0.004)  # at the pricier deployment: $0.0007
    rng = random.Random(15)
    settled: list[int] = []

    async def client(rid: str, replica: int) -> router_pb2.RouteStreamResponse:
        request = governed(model, key, rid, key={"daily_budget_usd": 1.0}, estimated_tokens=100, max_output_tokens=100)
        answer = await replicas.route_one(request, replica)
        if answer.WhichOneof("outcome") == "route":
            await asyncio.sleep(rng.random() / 20)
            completion = rng.randint(0, 100)
            price = answer.route.target.price
            cost = to_nano_usd(cost_usd(100, completion, price.prompt_per_1k, price.completion_per_1k))
            settled.append(cost)
            await replicas.stubs[(replica + 1) % 3].Settle(
                router_pb2.Settlements(
                    settlements=[settlement(rid, key, used_tokens=100 + completion, cost_nano_usd=cost)]
                )
            )
        return answer

    answers = await asyncio.gather(*(client(rid, i % 3) for i, rid in enumerate(request_ids(key, 300))))
    spent = await redis.get(f"mr:key:{key}:sd:{await redis_now_ms(redis) // DAY_MS}")
    assert int(spent) == already + sum(settled) <= budget
    assert len(settled) > 10  # settled costs made room for more than the 14 reservations that fit at once
    refused = refusals(answers)
    assert refused and {(e.code, e.grpc_code) for e in refused} == {("insufficient_quota", EXHAUSTED)}
    assert all(f"Budget exceeded for key {key}: daily budget $1.00, spent $0.99" in e.message for e in refused)
    # What is left is less than one more request's reservation: the budget was used, not wasted.
    assert budget - already - sum(settled) < max_cost * 300


async def test_reservations_expire_by_themselves(replicas: Replicas, model: str, key: str) -> None:
    lim = {"max_parallel": 10}
    answers = await replicas.route_all([governed(model, key, rid, key=lim, hold_s=1) for rid in request_ids(key, 60)])
    assert len(admitted(answers)) == 10
    await asyncio.sleep(1.2)  # nobody settles: the gateway "died"
    later = await replicas.route_all([governed(model, key, rid, key=lim, hold_s=1) for rid in request_ids(key, 60)])
    assert len(admitted(later)) == 10


async def test_settling_twice_on_two_replicas_counts_once(
    replicas: Replicas, ledger: FakeLedger, redis: Redis, model: str, key: str
) -> None:
    ledger.spent[("key", key)] = 0
    [rid] = request_ids(key, 1)
    lim = {"daily_budget_usd": 1.0, "max_parallel": 1}
    assert (await replicas.route_one(governed(model, key, rid, key=lim, max_output_tokens=10))).HasField("route")
    done = router_pb2.Settlements(settlements=[settlement(rid, key, used_tokens=20, cost_nano_usd=777)])
    await asyncio.gather(*(stub.Settle(done) for stub in replicas.stubs))
    await replicas.settle_on_streams([done.settlements[0]] * 3)
    assert int(await redis.get(f"mr:key:{key}:sd:{await redis_now_ms(redis) // DAY_MS}")) == 777
    assert (await replicas.route_one(governed(model, key, rid + "-next", key=lim))).HasField("route")


async def test_ledger_unreachable_refuses_503_not_admits(
    replicas: Replicas, ledger: FakeLedger, model: str, key: str
) -> None:
    ledger.error = "postgres is down"
    try:
        answer = await replicas.route_one(governed(model, key, "r", key={"monthly_budget_usd": 100.0}))
    finally:
        ledger.error = ""
    assert answer.WhichOneof("outcome") == "error"
    assert (answer.error.grpc_code, answer.error.code) == (UNAVAILABLE, "database_unavailable")
    assert "the usage ledger is unreachable" in answer.error.message


# --- Redis losing everything ---------------------------------------------------------------------


class PrivateRedis:
    """A redis-server of the test's own, keeping nothing on disk (as in production); ``restart``
    brings it back empty."""

    def __init__(self, directory: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is not installed")
        self.port = free_port()
        self._command = [binary, "--port", str(self.port), "--save", "", "--appendonly", "no", "--dir", str(directory)]
        self._process: asyncio.subprocess.Process | None = None
        self.client = Redis(port=self.port)

    async def start(self) -> None:
        self._process = await asyncio.create_subprocess_exec(*self._command, stdout=asyncio.subprocess.DEVNULL)
        for _ in range(100):
            try:
                await self.client.ping()
                return
            except RedisError:
                await asyncio.sleep(0.05)
        raise AssertionError("the private redis-server did not start")

    async def stop(self) -> None:
        if self._process is not None and self._process.returncode is None:
            self._process.terminate()
            await self._process.wait()

    async def restart(self) -> None:
        await self.stop()
        await self.start()


@pytest.fixture
async def private_redis(tmp_path: Path) -> AsyncIterator[PrivateRedis]:
    server = PrivateRedis(tmp_path)
    await server.start()
    yield server
    await server.client.aclose()
    await server.stop()


async def test_budget_survives_redis_losing_everything(
    private_redis: PrivateRedis, config_dir: Path, nats_url: str, tag: str, ledger: FakeLedger, model: str, key: str
) -> None:
    env = {
        "REDIS_URL": f"redis://127.0.0.1:{private_redis.port}/0",
        "NATS_URL": nats_url,
        "LEDGER_SUBJECT": f"test.{tag}.ledger",
        "DRAIN_TIMEOUT_S": "1",
    }
    router = await start_replicas(1, config_dir / "modelrouter.yaml", env)
    try:
        ledger.spent[("key", key)] = 4_990_000_000  # $4.99 of $5.00, in Postgres
        lim = {"daily_budget_usd": 5.0}
        queries = len(ledger.queries)
        cheap = await router.route_one(governed(model, key, "r1", key=lim, estimated_tokens=10, max_output_tokens=10))
        assert cheap.HasField("route")
        await router.stubs[0].Settle(router_pb2.Settlements(settlements=[settlement("r1", key, cost_nano_usd=50_000)]))
        ledger.spent[("key", key)] += 50_000  # accounting stored that request too

        # Redis restarts empty mid-day: counters, reservations and scripts are gone.
        await private_redis.restart()
        assert await private_redis.client.dbsize() == 0

        # Up to $0.02 (2,000 output tokens at the pricier $0.004/1k + 10 prompt): over the $0.00995 left.
        big = governed(model, key, "r2", key=lim, estimated_tokens=10, max_output_tokens=5000)
        answer = await router.route_one(big)
        for _ in range(3):  # the first Route after the restart may find the router's connection broken
            if answer.WhichOneof("outcome") == "error" and answer.error.code != "router_state_unavailable":
                break
            answer = await router.route_one(big)
        assert answer.WhichOneof("outcome") == "error", "admitted against a counter restarted at zero"
        assert answer.error.code == "insufficient_quota"
        assert "spent $4.99005" in answer.error.message
        assert len(ledger.queries) - queries == 2  # seeded once before the restart, once after
        tomorrow = datetime.fromtimestamp((ledger.queries[-1].since_ms + DAY_MS) / 1000, UTC)
        assert f"It resets at {tomorrow:%Y-%m-%dT%H:%M:%SZ}." in answer.error.message
    finally:
        await stop_replicas(router)
