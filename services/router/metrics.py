"""The router's Prometheus metrics: its decisions by outcome, its refusals by reason, and the time of
its Redis steps (each one Lua script), served on its health port (``common.health``).

A decision is ``routed`` (a request's first Route), ``failover`` (a Route that excludes deployments
already tried) or ``refused``; a refusal's reason is the limit or state that made it. The labelled
children are resolved once here, so a Route pays an increment and, for Redis, one observation.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.context_managers import Timer

from common.errors import (
    DatabaseUnavailableError,
    ModelRouterError,
    NoHealthyTargetError,
    NotFoundError,
    RateLimitError,
)
from common.metrics import FAST_BUCKETS
from modelrouter.router.v1 import router_pb2
from router.limits.refusals import KeyBudgetExceededError, KeyRateLimitError

# The most specific class first: a key's rate limit is a RateLimitError too.
_REASONS: tuple[tuple[type[ModelRouterError], str], ...] = (
    (KeyRateLimitError, "key_rate_limit"),
    (KeyBudgetExceededError, "budget"),
    (RateLimitError, "deployment_rate_limit"),
    (NoHealthyTargetError, "no_healthy_deployment"),
    (NotFoundError, "unknown_model"),
    (DatabaseUnavailableError, "ledger_unavailable"),
)
REFUSAL_REASONS = (*(reason for _, reason in _REASONS), "error")
REDIS_STEPS = ("route", "admit", "report_outcome", "settle")

# A Route's decision, with the settlements folded into it (router.route_stream.Decide).
RouteFn = Callable[[router_pb2.RouteRequest, Sequence[router_pb2.Settlement]], Awaitable[router_pb2.RouteResponse]]


def refusal_reason(error: ModelRouterError) -> str:
    for cls, reason in _REASONS:
        if isinstance(error, cls):
            return reason
    return "error"  # Redis unreachable, a bug: a failure rather than a limit


class RouterMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        decisions = Counter(
            "modelrouter_router_decisions",
            "Route decisions by outcome: routed (a first attempt), failover (a retry excluding tried "
            "deployments), refused.",
            ["outcome"],
            registry=self.registry,
        )
        self._routed, self._failover, self._refused = (decisions.labels(o) for o in ("routed", "failover", "refused"))
        refusals = Counter(
            "modelrouter_router_refusals",
            "Refused Routes by reason: key_rate_limit, budget, deployment_rate_limit, no_healthy_deployment, "
            "unknown_model, ledger_unavailable, error.",
            ["reason"],
            registry=self.registry,
        )
        self._refusals = {reason: refusals.labels(reason) for reason in REFUSAL_REASONS}
        redis = Histogram(
            "modelrouter_router_redis_seconds",
            "Time of the router's Redis steps, each one Lua script (an admission that must rebuild a budget's "
            "counter includes the ledger's answer).",
            ["step"],
            buckets=FAST_BUCKETS,
            registry=self.registry,
        )
        self._redis = {step: redis.labels(step) for step in REDIS_STEPS}

    def counted(self, route: RouteFn) -> RouteFn:
        """``route`` with its outcome counted (unary Route and the streams share it)."""

        async def counted_route(
            request: router_pb2.RouteRequest, settlements: Sequence[router_pb2.Settlement] = ()
        ) -> router_pb2.RouteResponse:
            try:
                response = await route(request, settlements)
            except ModelRouterError as exc:
                self._refused.inc()
                self._refusals[refusal_reason(exc)].inc()
                raise
            (self._failover if request.exclude_deployments else self._routed).inc()
            return response

        return counted_route

    def redis(self, step: str) -> Timer:
        """Time one Redis step (``REDIS_STEPS``), whether it succeeds or raises: prometheus-client's
        own timer, a third of what a generator-based context manager costs."""
        return self._redis[step].time()
