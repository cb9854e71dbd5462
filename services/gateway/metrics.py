"""The gateway's Prometheus metrics, recorded once per finished request from its usage event (the
record accounting stores), so requests, tokens and cost here add up to the ledger's.

Hot path: a request pays a dict lookup of its (model, provider, status) series, counter increments
and two histogram observations; the labelled children are made once per series and cached, so no
label tuple is resolved by prometheus-client per request (``python -m bench.metrics_record``
measures it). Nothing here awaits, so no lock is held across an await.

Labels stay bounded: ``model`` is the requested model only when the router knew it (it routed the
request, or refused it by a limit), otherwise ``""`` (an unknown or invalid model name must not
create a series); ``provider`` is the deployment's; ``status`` the HTTP status (499: client left).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from common.errors import (
    BudgetExceededError,
    ModelRouterError,
    NoHealthyTargetError,
    RateLimitError,
)
from common.metrics import LATENCY_BUCKETS, error_kind
from common.pricing import Cost
from gateway.router_client import KeyRateLimitError
from modelrouter.events.v1 import events_pb2

# The refusals a limit made, by reason: the most specific class first (a key's rate limit is a
# RateLimitError too).
_REFUSALS: tuple[tuple[type[ModelRouterError], str], ...] = (
    (KeyRateLimitError, "key_rate_limit"),
    (BudgetExceededError, "budget"),
    (RateLimitError, "deployment_rate_limit"),
)
# Every deployment of the model cooling down after failures (not the router or the workers being away).
_NO_HEALTHY_DEPLOYMENT = NoHealthyTargetError.default_code
REFUSAL_REASONS = (*(reason for _, reason in _REFUSALS), "no_healthy_deployment")


def refusal_reason(error: ModelRouterError | None) -> str | None:
    """Which limit refused the request, or None when none did."""
    if error is None:
        return None
    for cls, reason in _REFUSALS:
        if isinstance(error, cls):
            return reason
    if isinstance(error, NoHealthyTargetError) and error.code == _NO_HEALTHY_DEPLOYMENT:
        return "no_healthy_deployment"
    return None


@dataclass(slots=True)
class _Usage:
    """One (model, provider)'s tallies for the JSON summary, beside its Prometheus children."""

    requests: int = 0
    errors: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: Decimal = field(default_factory=Decimal)


@dataclass(slots=True)
class _Series:
    """The labelled children one (model, provider, status) records into, resolved once."""

    requests: Counter
    latency: Histogram
    ttft: Histogram
    prompt_tokens: Counter
    completion_tokens: Counter
    cost: Counter
    usage: _Usage
    failed: bool


class GatewayMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        registry = registry if registry is not None else CollectorRegistry()
        self.registry = registry
        self.started_at = time.time()
        self._requests = Counter(
            "modelrouter_gateway_requests",
            "Finished requests (one per usage record), by model, provider and HTTP status.",
            ["model", "provider", "status"],
            registry=registry,
        )
        self._latency = Histogram(
            "modelrouter_gateway_request_duration_seconds",
            "Time from the request's arrival to its end (the last byte of a stream).",
            ["model", "provider"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self._ttft = Histogram(
            "modelrouter_gateway_time_to_first_token_seconds",
            "Time from a streamed request's arrival to its first chunk.",
            ["model", "provider"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self._tokens = Counter(
            "modelrouter_gateway_tokens",
            "Tokens of finished requests as billed, by model, provider and type (prompt, completion).",
            ["model", "provider", "type"],
            registry=registry,
        )
        self._cost = Counter(
            "modelrouter_gateway_cost_usd",
            "USD billed for finished requests (common.pricing, as accounting stores it).",
            ["model", "provider"],
            registry=registry,
        )
        # A plain int the gauge reads at scrape time: cheaper per request than the gauge's own lock.
        self.in_flight = 0
        Gauge("modelrouter_gateway_requests_in_flight", "Requests being served.", registry=registry).set_function(
            lambda: self.in_flight
        )
        refusals = Counter(
            "modelrouter_gateway_refusals",
            "Requests a limit refused: key_rate_limit (a key's or team's rpm, tpm, parallel), budget, "
            "deployment_rate_limit (every deployment at its rpm/tpm), no_healthy_deployment (all cooling down).",
            ["reason"],
            registry=registry,
        )
        self._refusals = {reason: refusals.labels(reason) for reason in REFUSAL_REASONS}
        self._upstream_errors = Counter(
            "modelrouter_gateway_upstream_errors",
            "Failed upstream attempts (a failover counts each), by provider and kind.",
            ["provider", "kind"],
            registry=registry,
        )
        self._series: dict[tuple[str, str, int], _Series] = {}
        self._usage: dict[tuple[str, str], _Usage] = {}

    # --- recording (the hot path) ------------------------------------------------------------

    def started(self) -> None:
        self.in_flight += 1

    def finished(self, event: events_pb2.UsageEvent, error: ModelRouterError | None, cost: Cost | None) -> None:
        """Record a request that ``started``, from its usage event and what it is billed
        (``admission.billed``; once: it is accounted once)."""
        self.in_flight -= 1
        reason = refusal_reason(error)
        if reason is not None:
            self._refusals[reason].inc()
        known = event.provider != "" or reason is not None
        key = (event.requested_model if known else "", event.provider, event.http_status)
        series = self._series.get(key) or self._new_series(key)
        series.requests.inc()
        series.latency.observe(event.latency_ms / 1000)
        if event.ttft_ms:
            series.ttft.observe(event.ttft_ms / 1000)
        usage = series.usage
        usage.requests += 1
        if series.failed:
            usage.errors += 1
        prompt, completion = event.usage.prompt_tokens, event.usage.completion_tokens
        if prompt or completion:
            series.prompt_tokens.inc(prompt)
            series.completion_tokens.inc(completion)
            usage.prompt_tokens += prompt
            usage.completion_tokens += completion
            if cost is not None and cost.total:  # None: a price unknown, or refused (the ledger's NULL)
                series.cost.inc(float(cost.total))
                usage.cost_usd += cost.total

    def upstream_error(self, provider: str, error: ModelRouterError) -> None:
        """One failed attempt on ``provider`` (retried or not)."""
        self._upstream_errors.labels(provider, error_kind(error.status, error.code)).inc()

    def _new_series(self, key: tuple[str, str, int]) -> _Series:
        model, provider, status = key
        usage = self._usage.get((model, provider))
        if usage is None:
            usage = self._usage[(model, provider)] = _Usage()
        series = self._series[key] = _Series(
            requests=self._requests.labels(model, provider, str(status)),
            latency=self._latency.labels(model, provider),
            ttft=self._ttft.labels(model, provider),
            prompt_tokens=self._tokens.labels(model, provider, "prompt"),
            completion_tokens=self._tokens.labels(model, provider, "completion"),
            cost=self._cost.labels(model, provider),
            usage=usage,
            failed=status >= 400,
        )
        return series

    # --- reading -----------------------------------------------------------------------------

    async def summary(self) -> dict[str, Any]:
        """Usage and cost of the requests this gateway process has finished since it started: the
        default answer of ``GET /metrics`` to a client that asks for JSON."""
        rows = sorted(self._usage.items(), key=lambda item: (-item[1].requests, item[0]))
        total = _Usage()
        for _, usage in rows:
            total.requests += usage.requests
            total.errors += usage.errors
            total.prompt_tokens += usage.prompt_tokens
            total.completion_tokens += usage.completion_tokens
            total.cost_usd += usage.cost_usd
        return {
            "object": "metrics.summary",
            "scope": "gateway",
            "since": _iso(self.started_at),
            "total_requests": total.requests,
            "successful_requests": total.requests - total.errors,
            "failed_requests": total.errors,
            "prompt_tokens": total.prompt_tokens,
            "completion_tokens": total.completion_tokens,
            "total_tokens": total.prompt_tokens + total.completion_tokens,
            "total_cost_usd": float(total.cost_usd),
            "in_flight": self.in_flight,
            "by_model": [
                {
                    "model": model or None,
                    "provider": provider or None,
                    "requests": usage.requests,
                    "failed_requests": usage.errors,
                    "prompt_tokens": usage.prompt_tokens,
                    "completion_tokens": usage.completion_tokens,
                    "cost_usd": float(usage.cost_usd),
                }
                for (model, provider), usage in rows
            ],
        }


def _iso(unix_s: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(unix_s))
