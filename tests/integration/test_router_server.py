"""The real grpc.aio router server on an ephemeral port, driven by a real client over a channel."""

from __future__ import annotations

import asyncio
import statistics
import time

import grpc
import grpc.aio
import pytest
from grpc_health.v1 import health_pb2
from opentelemetry.trace import SpanKind

from modelrouter.router.v1 import router_pb2
from router.selection import MODELS_CREATED
from router.server import ROUTER_SERVICE
from tests.integration.conftest import RunningRouter

pytestmark = pytest.mark.integration


async def test_route_returns_first_target_and_usable_fallbacks(router: RunningRouter) -> None:
    response = await router.stub.Route(router_pb2.RouteRequest(model=router.model, estimated_tokens=10))
    main, backup = router.ids
    assert response.target == router_pb2.Target(
        deployment_id=main,
        provider="fake",
        upstream_model="fake-1",
        base_url="http://fake.local/v1",
        price=router_pb2.Price(prompt_per_1k=0.5, completion_per_1k=1.5),
        timeout_s=9,
        options={"x": "1"},
        model=router.model,
    )
    assert [t.deployment_id for t in response.fallbacks] == [backup]
    assert response.fallbacks[0].provider == "openai"
    assert response.fallbacks[0].api_key_env == "UP_KEY"


async def test_route_skips_excluded_and_is_unavailable_when_all_are_excluded(router: RunningRouter) -> None:
    main, backup = router.ids
    response = await router.stub.Route(router_pb2.RouteRequest(model=router.model, exclude_deployments=[main]))
    assert response.target.deployment_id == backup
    assert list(response.fallbacks) == []
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await router.stub.Route(router_pb2.RouteRequest(model=router.model, exclude_deployments=[main, backup]))
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_unknown_model_is_not_found(router: RunningRouter) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await router.stub.Route(router_pb2.RouteRequest(model="no-such-model"))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert "no-such-model" in (info.value.details() or "")


async def test_over_limit_is_resource_exhausted_with_retry_after(router: RunningRouter) -> None:
    await router.stub.Route(router_pb2.RouteRequest(model=router.tiny_model))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await router.stub.Route(router_pb2.RouteRequest(model=router.tiny_model))
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    retry_after = dict(info.value.trailing_metadata() or ())["retry-after"]
    # rpm 1, one request this minute: the slot frees within one to two minutes.
    assert 60 <= int(retry_after) <= 120


async def test_report_outcome_drives_health_seen_by_route(router: RunningRouter) -> None:
    main, backup = router.ids
    failure = router_pb2.OutcomeReport(deployment_id=main, success=False, status_code=500)
    assert (await router.stub.ReportOutcome(failure)).healthy
    response = await router.stub.Route(router_pb2.RouteRequest(model=router.model))
    assert (response.target.deployment_id, response.target.recent_failures) == (main, 1)
    assert not (await router.stub.ReportOutcome(failure)).healthy  # threshold 2
    response = await router.stub.Route(router_pb2.RouteRequest(model=router.model))
    assert response.target.deployment_id == backup
    assert list(response.fallbacks) == []


async def test_report_outcome_for_unknown_deployment_is_not_found(router: RunningRouter) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await router.stub.ReportOutcome(router_pb2.OutcomeReport(deployment_id="nope", success=True))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


async def test_list_models(router: RunningRouter) -> None:
    response = await router.stub.ListModels(router_pb2.ListModelsRequest())
    assert {(m.id, m.owned_by, m.created) for m in response.models} == {
        (router.model, "demo", MODELS_CREATED),
        (router.tiny_model, "demo", MODELS_CREATED),
    }


async def test_health_is_serving_then_not_serving_while_draining(router: RunningRouter) -> None:
    for service in ("", ROUTER_SERVICE):
        reply = await router.health.Check(health_pb2.HealthCheckRequest(service=service))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    watch = router.health.Watch(health_pb2.HealthCheckRequest(service=ROUTER_SERVICE))
    first = await asyncio.wait_for(watch.read(), timeout=5)
    assert first.status == health_pb2.HealthCheckResponse.SERVING
    stopping = asyncio.create_task(router.server.stop(grace_s=1))
    changed = await asyncio.wait_for(watch.read(), timeout=5)
    assert changed.status == health_pb2.HealthCheckResponse.NOT_SERVING
    watch.cancel()  # the open stream would otherwise hold the server for the whole grace period
    await stopping


async def test_server_span_joins_the_callers_trace(router: RunningRouter) -> None:
    trace_id, parent_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    await router.stub.Route(
        router_pb2.RouteRequest(model=router.model),
        metadata=(("traceparent", f"00-{trace_id}-{parent_id}-01"),),
    )
    [span] = [s for s in router.spans.get_finished_spans() if s.kind == SpanKind.SERVER]
    assert span.name == "/modelrouter.router.v1.Router/Route"
    assert format(span.context.trace_id, "032x") == trace_id
    assert span.parent is not None and format(span.parent.span_id, "016x") == parent_id
    assert span.attributes is not None and span.attributes["modelrouter.deployment_id"] == router.ids[0]


async def test_route_latency_over_a_real_channel(router: RunningRouter) -> None:
    """2,000 sequential Routes (one EVALSHA each); prints the p50/p99 for the record."""
    request = router_pb2.RouteRequest(model=router.model, estimated_tokens=100)
    for _ in range(50):  # warm the channel and the connection pool
        await router.stub.Route(request)
    samples = []
    for _ in range(2000):
        started = time.perf_counter()
        response = await router.stub.Route(request)
        samples.append(time.perf_counter() - started)
        assert response.target.deployment_id == router.ids[0]
    cuts = statistics.quantiles(samples, n=100)
    print(f"\nRoute over localhost gRPC: p50 {cuts[49] * 1000:.2f} ms, p99 {cuts[98] * 1000:.2f} ms")
    # A loose ceiling: it only catches a reconnect or an extra round trip per call gone badly wrong.
    assert cuts[49] < 0.02
