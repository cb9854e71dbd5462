"""The routing brain across three ``python -m router`` processes sharing one Redis: strategies,
outlier detection, cooldowns, fallbacks across models, the context-window fit, auto routing by prompt
class, and Overview. Outcomes go to the routers as gateways send them, on RouteBatchStreams; every
check that is about sharing sends its Routes and outcomes to different replicas."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import grpc
import grpc.aio
import pytest
from redis.asyncio import Redis

from modelrouter.router.v1 import router_pb2
from tests.integration.limits_helpers import governed
from tests.integration.router_replicas import Replicas, request_ids, start_replicas, stop_replicas

pytestmark = pytest.mark.integration

BASE_EJECTION_S = 1.0
QUOTA_COOLDOWN_S = 2.0
INVALID_ARGUMENT = grpc.StatusCode.INVALID_ARGUMENT.value[0]


def brain_config(t: str) -> str:
    def dep(name: str, model: str, extra: str = "") -> str:
        return f"  - {{id: {t}-{name}, model: {model}-{t}, provider: p{', ' + extra if extra else ''}}}\n"

    return (
        "providers: {p: {adapter: fake}}\n"
        "deployments:\n"
        + dep("w5", "w", "weight: 5")
        + dep("w3", "w", "weight: 3")
        + dep("w2", "w", "weight: 2")
        + dep("dear", "c", "price: {prompt_per_1k: 0.01, completion_per_1k: 0.03}")
        + dep("cheap", "c", "priority: 5, price: {prompt_per_1k: 0.001, completion_per_1k: 0.002}")
        + dep("cheap2", "c", "priority: 6, price: {prompt_per_1k: 0.001, completion_per_1k: 0.002}")
        + dep("lba", "lb")
        + dep("lbb", "lb", "priority: 1")
        + dep("lata", "lat")
        + dep("latb", "lat", "priority: 1")
        + dep("ejx", "ej")
        + dep("ejy", "ej", "priority: 1")
        + dep("rx", "r")
        + dep("ry", "r", "priority: 1")
        + dep("qx", "q")
        + dep("qy", "q", "priority: 1")
        + dep("px", "pair")
        + dep("py", "pair", "priority: 1")
        + dep("f1", "fb")
        + dep("f2", "fb2")
        + dep("small", "small", "context_window: 1000")
        + dep("big", "big", "context_window: 100000")
        + dep("ova", "ov", "rpm: 1000, tpm: 100000")
        + dep("ovb", "ov", "priority: 1")
        + f"models: {{w-{t}: {{strategy: weighted}}, c-{t}: {{strategy: cost}}, lb-{t}: {{strategy: least-busy}},\n"
        f"  lat-{t}: {{strategy: latency}}, ov-{t}: {{strategy: least-busy}}}}\n"
        f"fallbacks: {{fb-{t}: [fb2-{t}], small-{t}: [big-{t}]}}\n"
        f"auto: {{classes: {{code: [c-{t}], simple: [w-{t}], general: [pair-{t}, c-{t}]}}}}\n"
        f"health: {{failure_threshold: 2, cooldown_s: {BASE_EJECTION_S}, max_ejection_s: 3,\n"
        f"  max_ejection_share: 0.5, quota_cooldown_s: {QUOTA_COOLDOWN_S}}}\n"
    )


@pytest.fixture(scope="module")
def t() -> str:
    return uuid.uuid4().hex[:10]


@pytest.fixture(scope="module")
async def replicas(
    tmp_path_factory: pytest.TempPathFactory, redis_url: str, nats_url: str, t: str
) -> AsyncIterator[Replicas]:
    config = Path(tmp_path_factory.mktemp("brain")) / "modelrouter.yaml"
    config.write_text(brain_config(t))
    env = {"REDIS_URL": redis_url, "NATS_URL": nats_url, "DRAIN_TIMEOUT_S": "2"}
    running = await start_replicas(3, config, env)
    yield running
    await stop_replicas(running)


@pytest.fixture(scope="module")
async def redis(redis_url: str, t: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    for pattern in (f"mr:dep:{t}-*", f"mr:key:key_{t}*"):
        keys = [key async for key in client.scan_iter(match=pattern)]
        if keys:
            await client.delete(*keys)
    await client.aclose()


async def route(replicas: Replicas, model: str, replica: int = 0, **fields: object) -> router_pb2.RouteResponse:
    answer = await replicas.route_one(router_pb2.RouteRequest(model=model, **fields), replica)  # type: ignore[arg-type]
    assert answer.WhichOneof("outcome") == "route", answer.error
    return answer.route


async def refused(replicas: Replicas, model: str, replica: int = 0, **fields: object) -> router_pb2.RouteError:
    answer = await replicas.route_one(router_pb2.RouteRequest(model=model, **fields), replica)  # type: ignore[arg-type]
    assert answer.WhichOneof("outcome") == "error", answer.route
    return answer.error


async def report(replicas: Replicas, *outcomes: router_pb2.OutcomeReport, replica: int = 0) -> None:
    """Outcomes on a RouteBatchStream, as a gateway sends them; the stream ends once they are applied."""
    call = replicas.stubs[replica].RouteBatchStream()
    await call.write(router_pb2.RouteStreamRequests(outcomes=list(outcomes)))
    await call.done_writing()
    assert await asyncio.wait_for(call.read(), timeout=10) is grpc.aio.EOF
    assert await call.code() == grpc.StatusCode.OK


def ok(dep: str, latency_ms: float = 0.0, ttft_ms: float = 0.0) -> router_pb2.OutcomeReport:
    return router_pb2.OutcomeReport(deployment_id=dep, success=True, latency_ms=latency_ms, ttft_ms=ttft_ms)


def failed(dep: str, status: int = 500, retry_after_s: float = 0, code: str = "") -> router_pb2.OutcomeReport:
    return router_pb2.OutcomeReport(
        deployment_id=dep, success=False, status_code=status, retry_after_s=retry_after_s, error_code=code
    )


async def overview(replicas: Replicas, replica: int = 0, keys: Sequence[str] = ()) -> router_pb2.OverviewResponse:
    return await replicas.stubs[replica].Overview(router_pb2.OverviewRequest(key_ids=list(keys)), timeout=10)


def of(response: router_pb2.OverviewResponse, dep: str) -> router_pb2.DeploymentOverview:
    [found] = [d for d in response.deployments if d.deployment_id == dep]
    return found


# --- strategies ----------------------------------------------------------------------------------


async def test_weighted_split_over_3000_requests_is_within_3_percent(replicas: Replicas, t: str) -> None:
    answers = await replicas.route_all([router_pb2.RouteRequest(model=f"w-{t}") for _ in range(3000)])
    counts = Counter(a.route.target.deployment_id for a in answers)
    assert sum(counts.values()) == 3000
    for name, weight in (("w5", 0.5), ("w3", 0.3), ("w2", 0.2)):
        assert abs(counts[f"{t}-{name}"] / 3000 - weight) < 0.03, counts
    first = answers[0].route
    assert (first.explanation.strategy, first.explanation.requested_model) == ("weighted", f"w-{t}")
    assert not first.target.report_outcome  # weighted needs no outcomes: nothing more per request


async def test_cost_picks_the_cheapest_ties_by_priority(replicas: Replicas, t: str) -> None:
    answers = await replicas.route_all([router_pb2.RouteRequest(model=f"c-{t}") for _ in range(30)])
    assert {a.route.target.deployment_id for a in answers} == {f"{t}-cheap"}
    first = answers[0].route
    assert [f.deployment_id for f in first.fallbacks] == [f"{t}-cheap2", f"{t}-dear"]
    assert first.explanation.strategy == "cost"
    assert "cheapest" in first.explanation.reason


async def test_least_busy_steers_away_from_a_slow_deployment(replicas: Replicas, t: str) -> None:
    a, b = f"{t}-lba", f"{t}-lbb"
    first = await route(replicas, f"lb-{t}", 0)
    assert first.target.deployment_id == a and first.target.report_outcome  # a tie goes by priority
    # a's request is slow (not finished); every quick one on b finishes before the next is routed.
    for i in range(9):
        picked = (await route(replicas, f"lb-{t}", i % 3)).target.deployment_id
        assert picked == b
        await report(replicas, ok(b, latency_ms=20), replica=(i + 1) % 3)
    assert of(await overview(replicas, 2), a).in_flight == 1
    await report(replicas, ok(a, latency_ms=3000), replica=1)  # a's slow request ends
    assert (await route(replicas, f"lb-{t}", 2)).target.deployment_id == a
    await report(replicas, ok(a), replica=0)


async def test_latency_prefers_the_lowest_ewma(replicas: Replicas, t: str) -> None:
    a, b = f"{t}-lata", f"{t}-latb"
    assert (await route(replicas, f"lat-{t}", 0)).target.deployment_id == a
    await report(replicas, ok(a, latency_ms=900, ttft_ms=400), replica=1)
    assert (await route(replicas, f"lat-{t}", 1)).target.deployment_id == b  # never measured: tried next
    await report(replicas, ok(b, latency_ms=60, ttft_ms=20), replica=2)
    for i in range(6):
        picked = await route(replicas, f"lat-{t}", i % 3)
        assert picked.target.deployment_id == b
        await report(replicas, ok(b, latency_ms=60, ttft_ms=20), replica=i % 3)
    assert picked.explanation.strategy == "latency"
    # b turns slow: its average rises past a's, and a takes over.
    for _ in range(10):
        await report(replicas, ok(b, latency_ms=3000), replica=1)
    assert (await route(replicas, f"lat-{t}", 2)).target.deployment_id == a
    view = await overview(replicas, 0)
    assert of(view, a).avg_latency_ms == pytest.approx(900) and of(view, a).avg_ttft_ms == pytest.approx(400)


# --- health --------------------------------------------------------------------------------------


async def test_ejection_probe_and_recovery(replicas: Replicas, t: str) -> None:
    x, y = f"{t}-ejx", f"{t}-ejy"
    await report(replicas, failed(x, 502), failed(x, 0), replica=1)  # threshold 2: ejected for 1 s
    assert (await route(replicas, f"ej-{t}", 0)).target.deployment_id == y
    view = of(await overview(replicas, 2), x)
    assert not view.healthy and view.times_ejected == 1 and view.consecutive_failures == 2
    assert view.ejected_until == pytest.approx(time.time() + BASE_EJECTION_S, abs=0.5)

    await asyncio.sleep(BASE_EJECTION_S + 0.1)
    probe = await route(replicas, f"ej-{t}", 2)
    assert probe.target.deployment_id == x and probe.target.recent_failures == 2  # asks for a report
    # One probe at a time: meanwhile the others still go to y.
    assert (await route(replicas, f"ej-{t}", 1)).target.deployment_id == y
    await report(replicas, failed(x, 503), replica=0)  # the probe failed: out for twice as long
    view = of(await overview(replicas, 1), x)
    assert view.times_ejected == 2
    assert view.ejected_until == pytest.approx(time.time() + 2 * BASE_EJECTION_S, abs=0.5)

    await asyncio.sleep(2 * BASE_EJECTION_S + 0.1)
    assert (await route(replicas, f"ej-{t}", 1)).target.deployment_id == x
    await report(replicas, ok(x), replica=2)  # the probe worked: back in rotation
    back = await route(replicas, f"ej-{t}", 0)
    assert (back.target.deployment_id, back.target.recent_failures) == (x, 0)
    assert of(await overview(replicas, 0), x).healthy


async def test_429_cools_down_for_exactly_its_retry_after(replicas: Replicas, t: str) -> None:
    x, y = f"{t}-rx", f"{t}-ry"
    await report(replicas, failed(x, 429, retry_after_s=1.5), replica=2)
    assert (await route(replicas, f"r-{t}", 0)).target.deployment_id == y
    view = of(await overview(replicas, 1), x)
    assert not view.healthy and view.ejected_until == 0
    assert view.cooling_down_until == pytest.approx(time.time() + 1.5, abs=0.5)
    await asyncio.sleep(0.8)
    assert (await route(replicas, f"r-{t}", 1)).target.deployment_id == y
    await asyncio.sleep(0.9)
    assert (await route(replicas, f"r-{t}", 2)).target.deployment_id == x


@pytest.mark.parametrize("status", [429, 402])
async def test_a_quota_that_is_gone_cools_the_deployment_down(replicas: Replicas, t: str, status: int) -> None:
    x, y = f"{t}-qx", f"{t}-qy"
    code = "insufficient_quota" if status == 429 else ""
    await report(replicas, failed(x, status, code=code), replica=1)  # no Retry-After: the configured rest
    assert (await route(replicas, f"q-{t}", 0)).target.deployment_id == y
    view = of(await overview(replicas, 2), x)
    assert view.cooling_down_until == pytest.approx(time.time() + QUOTA_COOLDOWN_S, abs=0.5)
    assert view.consecutive_failures == 0  # a rest the upstream asked for, not an outlier
    await asyncio.sleep(QUOTA_COOLDOWN_S + 0.1)
    assert (await route(replicas, f"q-{t}", 2)).target.deployment_id == x


async def test_a_model_keeps_serving_while_one_deployment_is_left(replicas: Replicas, t: str) -> None:
    x, y = f"{t}-px", f"{t}-py"
    await report(replicas, failed(x), failed(x), replica=0)
    await report(replicas, *(failed(y) for _ in range(5)), replica=1)  # half of two is out already
    for replica in range(3):
        served = await route(replicas, f"pair-{t}", replica)
        assert (served.target.deployment_id, served.target.recent_failures) == (y, 5)
    view = await overview(replicas, 2)
    assert (of(view, x).healthy, of(view, y).healthy, of(view, y).times_ejected) == (False, True, 0)


# --- fallbacks across models, context windows ------------------------------------------------------


async def test_fallback_to_another_model(replicas: Replicas, t: str) -> None:
    f1, f2 = f"{t}-f1", f"{t}-f2"
    usual = await route(replicas, f"fb-{t}", 0)
    assert (usual.target.deployment_id, usual.explanation.fallback) == (f1, False)
    # The gateway fails over while fallbacks are listed: the fallback model's deployment is among them.
    assert [(f.deployment_id, f.model) for f in usual.fallbacks] == [(f2, f"fb2-{t}")]
    # Its failover list ran out (f1 tried and excluded): the fallback model serves.
    after = await route(replicas, f"fb-{t}", 1, exclude_deployments=[f1])
    assert (after.target.deployment_id, after.target.model) == (f2, f"fb2-{t}")
    # f1 out altogether (the upstream asked it to rest): the fallback model serves at once.
    await report(replicas, failed(f1, 429, retry_after_s=30), replica=2)
    served = await route(replicas, f"fb-{t}", 2)
    assert (served.target.deployment_id, served.target.model) == (f2, f"fb2-{t}")
    explained = served.explanation
    assert (explained.requested_model, explained.fallback, explained.strategy) == (f"fb-{t}", True, "priority")
    assert explained.reason.startswith(f"No deployment of fb-{t} could serve the request")


async def test_a_request_that_does_not_fit_the_context_window_falls_back(replicas: Replicas, t: str) -> None:
    fits = await route(replicas, f"small-{t}", 0, estimated_tokens=700, max_tokens=300)
    assert (fits.target.deployment_id, fits.target.context_window, fits.explanation.fallback) == (
        f"{t}-small",
        1000,
        False,
    )
    larger = await route(replicas, f"small-{t}", 1, estimated_tokens=700, max_tokens=301)
    assert (larger.target.deployment_id, larger.target.model, larger.explanation.fallback) == (
        f"{t}-big",
        f"big-{t}",
        True,
    )
    too_big = await refused(replicas, f"small-{t}", 2, estimated_tokens=100_000, max_tokens=1)
    assert (too_big.grpc_code, too_big.code) == (INVALID_ARGUMENT, "context_length_exceeded")
    # Fallbacks are chosen by the same rule: big's own window still holds a request small cannot.
    assert (await route(replicas, f"big-{t}", 0, estimated_tokens=5000)).target.deployment_id == f"{t}-big"


# --- auto ------------------------------------------------------------------------------------------


async def test_auto_picks_per_prompt_class_and_explains_it(replicas: Replicas, t: str) -> None:
    code = await route(replicas, "auto", 0, prompt_class="code")
    assert (code.target.deployment_id, code.target.model) == (f"{t}-cheap", f"c-{t}")
    assert (code.explanation.prompt_class, code.explanation.strategy, code.explanation.requested_model) == (
        "code",
        "cost",
        "auto",
    )
    assert "code" in code.explanation.reason and "cheapest" in code.explanation.reason
    # simple: the weighted model's deployments, the cheapest first (all free: by priority)
    simple = await route(replicas, "auto", 1, prompt_class="simple")
    assert simple.target.model == f"w-{t}"
    # general spans two models: the cheapest of all their deployments (pair's are free)
    general = await route(replicas, "auto", 2, prompt_class="general")
    assert general.target.model == f"pair-{t}"
    # a class the config does not map, or none, routes as general
    assert (await route(replicas, "auto", 0, prompt_class="complex")).explanation.prompt_class == "general"
    assert (await route(replicas, "auto", 0)).target.model == f"pair-{t}"
    models = await replicas.stubs[0].ListModels(router_pb2.ListModelsRequest())
    assert "auto" in {m.id for m in models.models}


# --- overview --------------------------------------------------------------------------------------


async def test_overview_numbers_match_the_requests_made(replicas: Replicas, t: str) -> None:
    a, b = f"{t}-ova", f"{t}-ovb"
    key = f"key_{t}_ov"
    routed = [
        answer.route.target.deployment_id
        for answer in await replicas.route_all(
            [governed(f"ov-{t}", key, rid, key={"rpm": 100, "tpm": 10_000}) for rid in request_ids(key, 6)]
        )
    ]
    # Nothing reported yet: least-busy spread them over both.
    assert Counter(routed) == {a: 3, b: 3}
    await report(replicas, ok(a, 100, 10), ok(a, 300, 30), failed(a, 500), replica=0)
    await report(replicas, ok(b, 50), replica=1)
    views = [await overview(replicas, i, keys=[key]) for i in range(3)]
    counted = [
        [(d.deployment_id, d.requests, d.successes, d.failures, d.in_flight, d.ejected_until) for d in v.deployments]
        for v in views
    ]
    assert counted[0] == counted[1] == counted[2]  # every replica answers the same
    view_a, view_b = of(views[0], a), of(views[0], b)
    assert (view_a.requests, view_a.successes, view_a.failures, view_a.in_flight) == (3, 2, 1, 0)
    assert (view_b.requests, view_b.successes, view_b.failures, view_b.in_flight) == (3, 1, 0, 2)
    assert (view_a.avg_latency_ms, view_a.avg_ttft_ms, view_b.avg_latency_ms) == (200, 20, 50)
    assert view_a.traffic_share == pytest.approx(0.5)
    assert (view_a.strategy, view_a.model, view_a.provider) == ("least-busy", f"ov-{t}", "fake")
    assert (view_a.requests_limit.limit, view_a.requests_limit.used) == (1000, 3)
    assert (view_a.tokens_limit.limit, view_a.tokens_limit.used) == (100_000, 30)  # 3 requests of 10 estimated tokens
    assert (view_b.requests_limit.limit, view_b.healthy) == (0, True)
    [key_view] = views[0].keys
    assert (key_view.key_id, key_view.requests.used, key_view.tokens.used) == (key, 6, 60)
    assert key_view.requests.reset_ms > 0


async def test_a_leaked_in_flight_count_goes_stale(replicas: Replicas, redis: Redis, t: str) -> None:
    """A gateway that died with requests open never reports them: after ten minutes without an
    outcome, least-busy counts the deployment as idle again."""
    a, b = f"{t}-lba", f"{t}-lbb"
    seconds, micros = await redis.time()
    now_ms = int(seconds) * 1000 + int(micros) // 1000
    await redis.hset(f"mr:dep:{a}:s", mapping={"f": 5, "at": now_ms - 60_000})
    assert (await route(replicas, f"lb-{t}", 0)).target.deployment_id == b  # five in flight, recently
    await report(replicas, ok(b), replica=0)
    await redis.hset(f"mr:dep:{a}:s", mapping={"f": 5, "at": now_ms - 601_000})
    assert (await route(replicas, f"lb-{t}", 1)).target.deployment_id == a  # stale: counted as zero
    assert of(await overview(replicas, 2), a).in_flight == 1
    await report(replicas, ok(a), replica=2)
