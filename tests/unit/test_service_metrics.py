"""The metrics every service shares or keeps: the internal port's ``/metrics`` (``common.health``),
the kind an upstream failure is counted as, the router's decisions and refusals (and the gateway
telling a key's rate limit from the deployments' by what the router's refusal carries), the worker's
jobs, and accounting's inserts and lag."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from accounting.metrics import AccountingMetrics, LagSampler
from common.errors import (
    DatabaseUnavailableError,
    ModelRouterError,
    NoHealthyTargetError,
    NotFoundError,
    RateLimitError,
)
from common.health import HealthServer
from common.metrics import error_kind
from gateway.router_client import KeyRateLimitError, _route_error
from modelrouter.events.v1 import events_pb2
from modelrouter.router.v1 import router_pb2
from router.grpc_errors import route_error
from router.limits import refusals
from router.metrics import RouterMetrics, refusal_reason
from workers.metrics import WorkerMetrics


def values(registry: CollectorRegistry) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    out = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return values(registry).get((name, frozenset(labels.items())), 0.0)


async def get(port: int, path: str, *headers: str) -> tuple[str, dict[str, str], bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n{''.join(h + chr(13) + chr(10) for h in headers)}\r\n".encode())
    await writer.drain()
    raw = await reader.read()
    writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    fields = dict(line.split(": ", 1) for line in lines[1:])
    return lines[0], {k.lower(): v for k, v in fields.items()}, body


async def test_the_internal_port_serves_metrics_that_move_and_still_its_probes() -> None:
    registry = CollectorRegistry()
    jobs = Counter("demo_jobs", "Jobs.", registry=registry)
    ready = [True]
    server = HealthServer("127.0.0.1", 0, lambda: ready[0], registry=registry)
    await server.start()
    try:
        status, headers, body = await get(server.port, "/metrics")
        assert status == "HTTP/1.1 200 OK"
        assert headers["content-type"].startswith("text/plain; version=0.0.4")
        assert int(headers["content-length"]) == len(body)
        before = {s.name: s.value for f in text_string_to_metric_families(body.decode()) for s in f.samples}
        jobs.inc(3)
        _, _, body = await get(server.port, "/metrics")
        after = {s.name: s.value for f in text_string_to_metric_families(body.decode()) for s in f.samples}
        assert before["demo_jobs_total"] == 0 and after["demo_jobs_total"] == 3

        _, headers, body = await get(server.port, "/metrics", "Accept: application/openmetrics-text; version=1.0.0")
        assert headers["content-type"].startswith("application/openmetrics-text")
        assert body.endswith(b"# EOF\n")

        assert (await get(server.port, "/health"))[0] == "HTTP/1.1 200 OK"
        assert (await get(server.port, "/ready"))[0] == "HTTP/1.1 200 OK"
        ready[0] = False
        assert (await get(server.port, "/ready"))[0] == "HTTP/1.1 503 Service Unavailable"
    finally:
        await server.stop()


@pytest.mark.parametrize(
    ("status", "code", "kind"),
    [
        (400, None, "bad_request"),
        (429, "rate_limit_exceeded", "rate_limited"),
        (503, "upstream_unavailable", "unavailable"),
        (503, "worker_lost", "worker_lost"),
        (504, "upstream_timeout", "timeout"),
        (504, "stream_stalled", "stalled"),
        (499, "cancelled", "cancelled"),
        (502, "some_provider_specific_code", "error"),
        (500, "", "error"),
    ],
)
def test_an_upstream_failure_has_one_of_a_few_kinds(status: int, code: str | None, kind: str) -> None:
    assert error_kind(status, code) == kind


# --- router -------------------------------------------------------------------------------------

KEY_RATE = refusals.rate_limited("key key_a", 1, 10, 10, 1, 1500)
KEY_BUDGET = refusals.budget_exceeded("key key_a", 1, 1000, 900, 0, 200, 0)


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (KEY_RATE, "key_rate_limit"),
        (KEY_BUDGET, "budget"),
        (RateLimitError("every deployment of model 'demo' is over its rate limit"), "deployment_rate_limit"),
        (NoHealthyTargetError("no healthy deployment"), "no_healthy_deployment"),
        (NotFoundError("unknown model"), "unknown_model"),
        (DatabaseUnavailableError("ledger unreachable"), "ledger_unavailable"),
        (ModelRouterError("redis down", code="router_state_unavailable"), "error"),
    ],
)
async def test_router_decisions_and_refusals_are_counted_by_outcome_and_reason(
    error: ModelRouterError, reason: str
) -> None:
    metrics = RouterMetrics(CollectorRegistry())

    async def route(
        request: router_pb2.RouteRequest, settlements: Sequence[router_pb2.Settlement] = ()
    ) -> router_pb2.RouteResponse:
        if request.model == "refused":
            raise error
        return router_pb2.RouteResponse()

    counted = metrics.counted(route)
    await counted(router_pb2.RouteRequest(model="demo"))
    await counted(router_pb2.RouteRequest(model="demo", exclude_deployments=["d1"]))
    with pytest.raises(type(error)):
        await counted(router_pb2.RouteRequest(model="refused"))
    reg = metrics.registry
    assert value(reg, "modelrouter_router_decisions_total", outcome="routed") == 1
    assert value(reg, "modelrouter_router_decisions_total", outcome="failover") == 1
    assert value(reg, "modelrouter_router_decisions_total", outcome="refused") == 1
    assert value(reg, "modelrouter_router_refusals_total", reason=reason) == 1
    assert refusal_reason(error) == reason


def test_router_redis_steps_are_timed_even_when_they_fail() -> None:
    metrics = RouterMetrics(CollectorRegistry())
    with metrics.redis("route"):
        pass
    with pytest.raises(ConnectionError), metrics.redis("admit"):
        raise ConnectionError
    reg = metrics.registry
    assert value(reg, "modelrouter_router_redis_seconds_count", step="route") == 1
    assert value(reg, "modelrouter_router_redis_seconds_count", step="admit") == 1
    assert value(reg, "modelrouter_router_redis_seconds_count", step="settle") == 0


def test_the_gateway_tells_a_keys_rate_limit_from_the_deployments_by_the_refusal_it_gets() -> None:
    # A key's refusal brings the key's limit states (even a parallel-only key's, all zero).
    key_refusal = refusals.rate_limited("key key_a", 3, 2, 2, 1, 1000)
    key_refusal.requests, key_refusal.tokens = router_pb2.LimitState(), router_pb2.LimitState()
    deployments = RateLimitError("every deployment of model 'demo' is over its rate limit", retry_after_s=2)
    as_key = _route_error(route_error(key_refusal), "demo")
    as_deployment = _route_error(route_error(deployments), "demo")
    assert isinstance(as_key, KeyRateLimitError)
    assert not isinstance(as_deployment, KeyRateLimitError) and isinstance(as_deployment, RateLimitError)
    # The client cannot tell: the same 429 and code.
    assert as_key.to_dict()["error"]["code"] == as_deployment.to_dict()["error"]["code"] == "rate_limit_exceeded"
    assert as_key.status == as_deployment.status == 429


# --- workers ------------------------------------------------------------------------------------


def test_worker_jobs_latency_and_errors_by_provider_and_kind() -> None:
    metrics = WorkerMetrics(CollectorRegistry())
    reg = metrics.registry
    for _ in range(3):
        metrics.started()
    assert value(reg, "modelrouter_worker_jobs_in_flight") == 3
    metrics.finished("fake", 0.2, events_pb2.Result(ok=True))
    metrics.finished(
        "broken", 0.01, events_pb2.Result(ok=False, error=events_pb2.Error(status=502, code="upstream_error"))
    )
    metrics.finished(
        "slow", 1.5, events_pb2.Result(ok=False, error=events_pb2.Error(status=504, code="upstream_timeout"))
    )
    assert value(reg, "modelrouter_worker_jobs_in_flight") == 0
    assert value(reg, "modelrouter_worker_jobs_total", provider="fake", outcome="ok") == 1
    assert value(reg, "modelrouter_worker_jobs_total", provider="broken", outcome="error") == 1
    assert value(reg, "modelrouter_worker_upstream_errors_total", provider="broken", kind="error") == 1
    assert value(reg, "modelrouter_worker_upstream_errors_total", provider="slow", kind="timeout") == 1
    assert value(reg, "modelrouter_worker_upstream_duration_seconds_sum", provider="slow") == pytest.approx(1.5)
    assert value(reg, "modelrouter_worker_upstream_duration_seconds_bucket", provider="fake", le="0.25") == 1


# --- accounting ---------------------------------------------------------------------------------


def test_accounting_inserts_by_size_time_and_result() -> None:
    metrics = AccountingMetrics(CollectorRegistry())
    reg = metrics.registry
    metrics.inserted(64, 0.004, "ok")
    metrics.inserted(3, 0.5, "unavailable")
    assert value(reg, "modelrouter_accounting_batch_rows_count") == 2
    assert value(reg, "modelrouter_accounting_batch_rows_sum") == 67
    assert value(reg, "modelrouter_accounting_insert_seconds_count", result="ok") == 1
    assert value(reg, "modelrouter_accounting_insert_seconds_sum", result="unavailable") == pytest.approx(0.5)


async def test_the_consumer_lag_is_sampled_from_the_servers_consumer_info() -> None:
    metrics = AccountingMetrics(CollectorRegistry())
    asked: list[tuple[str, str]] = []

    async def consumer_info(stream: str, durable: str) -> Any:
        asked.append((stream, durable))
        return SimpleNamespace(num_pending=42, num_ack_pending=7)

    js: Any = SimpleNamespace(consumer_info=consumer_info)
    sampler = LagSampler(js, "MR_USAGE", "accounting", metrics, interval_s=0.01)
    sampler.start()
    await asyncio.sleep(0.05)
    await sampler.stop()
    assert value(metrics.registry, "modelrouter_accounting_consumer_pending") == 42
    assert value(metrics.registry, "modelrouter_accounting_consumer_ack_pending") == 7
    # Periodic, not per event: a handful of samples in 50 ms at a 10 ms interval.
    assert 2 <= len(asked) <= 10 and set(asked) == {("MR_USAGE", "accounting")}
