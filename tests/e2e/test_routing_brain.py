"""The routing brain end to end: the four services on a config of their own, fake upstreams (the
``fake`` provider, slow or broken by its options) and the OpenAI SDK. The answer's ``model`` is the
serving deployment's upstream model, which tells which one served. The router's Overview is read over
gRPC from the stack's router."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import grpc.aio
import openai
import pytest

from modelrouter.router.v1 import router_pb2, router_pb2_grpc
from tests.e2e.helpers import OwnStack, own_stack

pytestmark = pytest.mark.e2e

KEY = "sk-e2e-brain-key-0123456789"
SLOW_MS = 300
QUOTA_COOLDOWN_S = 30


def brain_config(u: str) -> str:
    return f"""
providers:
  fake: {{adapter: fake}}
  slow: {{adapter: fake, options: {{latency_ms: "{SLOW_MS}"}}}}
  broken: {{adapter: fake, options: {{fail_status: "500"}}}}
  no_credit: {{adapter: fake, options: {{fail_status: "402"}}}}
deployments:
  - {{id: lb-slow-{u}, model: lb, provider: slow, upstream_model: lb-slow}}
  - {{id: lb-fast-{u}, model: lb, provider: fake, upstream_model: lb-fast, priority: 1}}
  - {{id: lat-slow-{u}, model: lat, provider: slow, upstream_model: lat-slow}}
  - {{id: lat-fast-{u}, model: lat, provider: fake, upstream_model: lat-fast, priority: 1}}
  - {{id: fb-broken-{u}, model: fb, provider: broken, upstream_model: fb-broken}}
  - {{id: fb-ok-{u}, model: fb-other, provider: fake, upstream_model: fb-other}}
  - {{id: small-{u}, model: small, provider: fake, upstream_model: small, context_window: 200}}
  - {{id: big-{u}, model: big, provider: fake, upstream_model: big, context_window: 100000}}
  - {{id: q-broke-{u}, model: q, provider: no_credit, upstream_model: q-broke}}
  - {{id: q-ok-{u}, model: q, provider: fake, upstream_model: q-ok, priority: 1}}
  - {{id: cheap-{u}, model: cheap, provider: fake, upstream_model: cheap,
      price: {{prompt_per_1k: 0.0001, completion_per_1k: 0.0002}}}}
  - {{id: dear-{u}, model: dear, provider: fake, upstream_model: dear,
      price: {{prompt_per_1k: 0.01, completion_per_1k: 0.03}}}}
models: {{lb: {{strategy: least-busy}}, lat: {{strategy: latency}}}}
fallbacks: {{fb: [fb-other], small: [big]}}
auto: {{classes: {{general: [dear, cheap]}}}}
keys:
  - {{key: {KEY}, id: brain}}
health: {{failure_threshold: 1000, cooldown_s: 1, quota_cooldown_s: {QUOTA_COOLDOWN_S}}}
"""


@pytest.fixture(scope="module")
def stack(
    redis_url: str, nats_url: str, database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OwnStack]:
    u = uuid.uuid4().hex[:8]
    with own_stack(
        brain_config(u),
        redis_url=redis_url,
        nats_url=nats_url,
        database_url=database_url,
        workdir=Path(tmp_path_factory.mktemp("brain")),
    ) as running:
        yield running


@pytest.fixture
def client(stack: OwnStack) -> Iterator[openai.AsyncOpenAI]:
    client = openai.AsyncOpenAI(api_key=KEY, base_url=f"{stack.base_url}/v1", max_retries=0, timeout=30)
    yield client


async def ask(client: openai.AsyncOpenAI, model: str, text: str = "hello", max_tokens: int = 16) -> str:
    answer = await client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": text}], max_tokens=max_tokens
    )
    return answer.model


async def streamed(client: openai.AsyncOpenAI, model: str) -> str:
    served = ""
    async for chunk in await client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "hello"}], max_tokens=16, stream=True
    ):
        served = chunk.model or served
    return served


async def overview(stack: OwnStack) -> dict[str, router_pb2.DeploymentOverview]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{stack.stack.ports.router}") as channel:
        view = await router_pb2_grpc.RouterStub(channel).Overview(router_pb2.OverviewRequest(), timeout=10)
    return {d.deployment_id.rsplit("-", 1)[0]: d for d in view.deployments}


async def test_least_busy_steers_away_from_a_slow_upstream(stack: OwnStack, client: openai.AsyncOpenAI) -> None:
    served: list[str] = []

    async def user(n: int) -> None:
        for _ in range(n):
            served.append(await ask(client, "lb"))

    await asyncio.gather(*(user(8) for _ in range(4)))  # four at a time, 32 in all
    counts = Counter(served)
    assert counts["lb-fast"] >= 0.7 * len(served), counts
    await asyncio.sleep(0.5)  # the last outcome reports (fire and forget) reach the router
    view = await overview(stack)
    slow, fast = view["lb-slow"], view["lb-fast"]
    # Every attempt was picked once and reported once: nothing is left in flight.
    assert (slow.requests, fast.requests) == (counts["lb-slow"], counts["lb-fast"])
    assert (slow.successes, fast.successes, slow.failures, slow.in_flight, fast.in_flight) == (
        counts["lb-slow"],
        counts["lb-fast"],
        0,
        0,
        0,
    )
    assert slow.avg_latency_ms >= SLOW_MS > fast.avg_latency_ms
    assert slow.traffic_share + fast.traffic_share == pytest.approx(1)


async def test_latency_steers_away_from_a_slow_upstream(stack: OwnStack, client: openai.AsyncOpenAI) -> None:
    served = []
    for _ in range(8):
        served.append(await ask(client, "lat"))
        await asyncio.sleep(0.05)  # the outcome (fire and forget) is in before the next Route
    served.append(await streamed(client, "lat"))
    # Both are tried once (neither measured yet: priority breaks the tie), then the faster one stays.
    assert served[:2] == ["lat-slow", "lat-fast"]
    assert set(served[2:]) == {"lat-fast"}
    await asyncio.sleep(0.3)
    fast = (await overview(stack))["lat-fast"]
    assert fast.avg_ttft_ms > 0  # the stream's time to first token
    assert fast.requests == fast.successes == 8


async def test_a_model_whose_deployments_fail_falls_back_to_another(
    stack: OwnStack, client: openai.AsyncOpenAI
) -> None:
    assert await ask(client, "fb") == "fb-other"
    assert await streamed(client, "fb") == "fb-other"
    view = await overview(stack)
    assert view["fb-broken"].failures == 2 and view["fb-broken"].requests == 2
    assert view["fb-ok"].requests == 2


async def test_a_prompt_too_long_for_a_context_window_falls_back_to_a_larger_one(
    stack: OwnStack, client: openai.AsyncOpenAI
) -> None:
    assert await ask(client, "small") == "small"
    assert await ask(client, "small", "word " * 1000) == "big"
    with pytest.raises(openai.BadRequestError) as info:
        await ask(client, "big", "word " * 100, max_tokens=200_000)
    assert info.value.code == "context_length_exceeded"


async def test_an_upstream_without_credit_is_cooled_down(stack: OwnStack, client: openai.AsyncOpenAI) -> None:
    # The deployment's account has no credit: the request fails over to the other deployment ...
    answer = await client.chat.completions.create(model="q", messages=[{"role": "user", "content": "hi"}])
    assert answer.model == "q-ok" and (answer.model_extra or {})["router_metadata"]["attempts"] == 2
    await asyncio.sleep(0.3)
    # ... and the next one goes straight there, the first cooled down.
    answer = await client.chat.completions.create(model="q", messages=[{"role": "user", "content": "hi"}])
    assert answer.model == "q-ok" and (answer.model_extra or {})["router_metadata"]["attempts"] == 1
    assert (await overview(stack))["q-broke"].cooling_down_until > 0


async def test_auto_picks_the_cheapest_of_its_class(client: openai.AsyncOpenAI) -> None:
    assert await ask(client, "auto") == "cheap"
