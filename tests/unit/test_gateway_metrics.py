"""The gateway's metrics (``gateway.metrics``), recorded from usage events as the dispatcher records
them and read back through Prometheus's own text parser: series by model, provider and status,
tokens, cost as accounting bills it, refusals by the limit that made them, upstream errors by kind,
in flight, and the JSON summary's totals."""

from __future__ import annotations

from decimal import Decimal

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from common.errors import (
    BudgetExceededError,
    InvalidRequestError,
    ModelRouterError,
    NoHealthyTargetError,
    NotFoundError,
    RateLimitError,
    UpstreamError,
    UpstreamTimeoutError,
    WorkerLostError,
)
from common.metrics import exposition
from common.pricing import cost_usd
from gateway.admission import billed
from gateway.metrics import REFUSAL_REASONS, GatewayMetrics, refusal_reason
from gateway.router_client import KeyRateLimitError
from modelrouter.events.v1 import events_pb2
from modelrouter.router.v1 import router_pb2

PRICE = router_pb2.Price(prompt_per_1k=0.5, completion_per_1k=1.5)


def samples(metrics: GatewayMetrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of the exposition, parsed by prometheus-client's parser, by name and labels."""
    text, content_type = exposition(metrics.registry)
    assert content_type.startswith("text/plain")
    out: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(text.decode()):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def value(metrics: GatewayMetrics, name: str, **labels: str) -> float:
    return samples(metrics).get((name, frozenset(labels.items())), 0.0)


def event(
    model: str = "demo",
    provider: str = "fake",
    status: int = 200,
    prompt: int = 0,
    completion: int = 0,
    latency_ms: float = 120.0,
    ttft_ms: float = 0.0,
) -> events_pb2.UsageEvent:
    e = events_pb2.UsageEvent(
        requested_model=model,
        provider=provider,
        http_status=status,
        latency_ms=latency_ms,
        ttft_ms=ttft_ms,
        usage=events_pb2.Usage(prompt_tokens=prompt, completion_tokens=completion),
    )
    if provider:
        e.price.CopyFrom(PRICE)
    return e


def record(metrics: GatewayMetrics, e: events_pb2.UsageEvent, error: ModelRouterError | None = None) -> None:
    metrics.started()
    metrics.finished(e, error, billed(e))


@pytest.fixture
def metrics() -> GatewayMetrics:
    return GatewayMetrics(CollectorRegistry())


def test_requests_tokens_and_cost_move_with_each_request_by_model_provider_and_status(metrics: GatewayMetrics) -> None:
    record(metrics, event(prompt=11, completion=7))
    record(metrics, event(prompt=3, completion=5, ttft_ms=40.0))
    record(metrics, event(model="other", provider="openai", prompt=2, completion=1))
    record(metrics, event(status=502, prompt=4), UpstreamError("boom"))

    assert value(metrics, "modelrouter_gateway_requests_total", model="demo", provider="fake", status="200") == 2
    assert value(metrics, "modelrouter_gateway_requests_total", model="demo", provider="fake", status="502") == 1
    assert value(metrics, "modelrouter_gateway_requests_total", model="other", provider="openai", status="200") == 1
    tokens = "modelrouter_gateway_tokens_total"
    assert value(metrics, tokens, model="demo", provider="fake", type="prompt") == 11 + 3 + 4
    assert value(metrics, tokens, model="demo", provider="fake", type="completion") == 7 + 5
    # The cost is accounting's (common.pricing, exact decimals), summed.
    billed = sum(cost_usd(p, c, 0.5, 1.5) for p, c in ((11, 7), (3, 5), (4, 0)))
    cost = value(metrics, "modelrouter_gateway_cost_usd_total", model="demo", provider="fake")
    assert cost == pytest.approx(float(billed), rel=1e-12)
    assert billed == Decimal("0.027")  # (16 + 9 + 2) thousandths of a dollar


def test_latency_for_every_request_and_time_to_first_token_only_for_streams(metrics: GatewayMetrics) -> None:
    record(metrics, event(latency_ms=30.0))
    record(metrics, event(latency_ms=700.0, ttft_ms=80.0))
    latency = "modelrouter_gateway_request_duration_seconds"
    assert value(metrics, f"{latency}_count", model="demo", provider="fake") == 2
    assert value(metrics, f"{latency}_sum", model="demo", provider="fake") == pytest.approx(0.73)
    assert value(metrics, f"{latency}_bucket", model="demo", provider="fake", le="0.05") == 1
    ttft = "modelrouter_gateway_time_to_first_token_seconds"
    assert value(metrics, f"{ttft}_count", model="demo", provider="fake") == 1
    assert value(metrics, f"{ttft}_sum", model="demo", provider="fake") == pytest.approx(0.08)


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (KeyRateLimitError("Rate limit reached for key key_a (requests per minute)"), "key_rate_limit"),
        (BudgetExceededError("Budget exceeded for key key_a"), "budget"),
        (RateLimitError("every deployment of model 'demo' is over its rate limit"), "deployment_rate_limit"),
        (NoHealthyTargetError("no healthy deployment of model 'demo'"), "no_healthy_deployment"),
        (NoHealthyTargetError("The router is unavailable.", code="router_unavailable"), None),
        (UpstreamError("boom"), None),
        (InvalidRequestError("bad"), None),
    ],
)
def test_a_refusal_is_counted_by_the_limit_that_made_it(
    metrics: GatewayMetrics, error: ModelRouterError, reason: str | None
) -> None:
    assert refusal_reason(error) == reason
    record(metrics, event(provider="", status=error.status), error)
    refusals = {
        dict(labels)["reason"]: v
        for (name, labels), v in samples(metrics).items()
        if name == "modelrouter_gateway_refusals_total"
    }
    # Every reason's series exists from the start (at 0), so a rate over it is never "no data".
    assert set(refusals) == set(REFUSAL_REASONS)
    assert {r: v for r, v in refusals.items() if v} == ({reason: 1.0} if reason else {})
    # A model the router refused by a limit is a known one: it keeps its label.
    model = "demo" if reason else ""
    assert value(metrics, "modelrouter_gateway_requests_total", model=model, provider="", status=str(error.status)) == 1


def test_an_unknown_or_invalid_model_name_makes_no_series_of_its_own(metrics: GatewayMetrics) -> None:
    for name in ("no-such-model-1", "no-such-model-2", "x" * 200):
        record(metrics, event(model=name, provider="", status=404), NotFoundError("unknown"))
    requests = [labels for (n, labels), _ in samples(metrics).items() if n == "modelrouter_gateway_requests_total"]
    assert requests == [frozenset({("model", ""), ("provider", ""), ("status", "404")})]
    assert value(metrics, "modelrouter_gateway_requests_total", model="", provider="", status="404") == 3


def test_upstream_errors_by_provider_and_kind(metrics: GatewayMetrics) -> None:
    metrics.upstream_error("broken", UpstreamError("boom", upstream_status=500))
    metrics.upstream_error("broken", UpstreamError("boom again", upstream_status=500))
    metrics.upstream_error("slow", UpstreamTimeoutError("late"))
    metrics.upstream_error("slow", UpstreamTimeoutError("stalled", code="stream_stalled"))
    metrics.upstream_error("fake", WorkerLostError("gone"))
    name = "modelrouter_gateway_upstream_errors_total"
    assert value(metrics, name, provider="broken", kind="error") == 2
    assert value(metrics, name, provider="slow", kind="timeout") == 1
    assert value(metrics, name, provider="slow", kind="stalled") == 1
    assert value(metrics, name, provider="fake", kind="worker_lost") == 1


def test_in_flight_counts_requests_started_and_not_finished(metrics: GatewayMetrics) -> None:
    metrics.started()
    metrics.started()
    assert value(metrics, "modelrouter_gateway_requests_in_flight") == 2
    metrics.finished(event(), None, billed(event()))
    assert value(metrics, "modelrouter_gateway_requests_in_flight") == 1


async def test_the_summary_adds_up_the_requests_it_recorded(metrics: GatewayMetrics) -> None:
    record(metrics, event(prompt=100, completion=10))
    record(metrics, event(prompt=50, completion=0))
    record(metrics, event(status=429, provider=""), RateLimitError("limit"))
    record(metrics, event(model="other", provider="openai", prompt=1, completion=1))
    summary = await metrics.summary()
    assert summary["total_requests"] == 4
    assert summary["successful_requests"] == 3 and summary["failed_requests"] == 1
    assert summary["prompt_tokens"] == 151 and summary["completion_tokens"] == 11 and summary["total_tokens"] == 162
    expected = cost_usd(100, 10, 0.5, 1.5) + cost_usd(50, 0, 0.5, 1.5) + cost_usd(1, 1, 0.5, 1.5)
    assert summary["total_cost_usd"] == float(expected)
    by_model = {(row["model"], row["provider"]): row for row in summary["by_model"]}
    assert by_model[("demo", "fake")]["requests"] == 2
    assert by_model[("demo", "fake")]["cost_usd"] == float(cost_usd(100, 10, 0.5, 1.5) + cost_usd(50, 0, 0.5, 1.5))
    assert by_model[("demo", None)]["failed_requests"] == 1
    assert summary["in_flight"] == 0
