"""Router.Overview: the operator's view of every deployment (traffic, latency, health, limits) and
of the asked keys' rate-limit windows, read from Redis in one script (``lua/overview.lua``), so every
replica answers the same.

The counts come from where they cost nothing more on the hot path: requests from the pick itself,
failures and latency from outcome reports. A model whose strategy does not report every outcome
(priority, weighted, cost) reports only failures (and the success that ends a run of them), so its
successes are its requests that were not reported failed, and it has no latency figures.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from modelrouter.router.v1 import router_pb2
from router import strategies
from router.selection import Candidate, ModelRoute
from router.state import RouterState


async def overview(
    state: RouterState,
    routes: Mapping[str, ModelRoute],
    key_ids: Iterable[str],
    key_base: Callable[[str], str],
) -> router_pb2.OverviewResponse:
    listed = [(route, c) for route in routes.values() for c in route.candidates]
    key_ids = list(dict.fromkeys(key_ids))
    reply = await state.read_overview([c for _, c in listed], [key_base(k) for k in key_ids])
    now_ms = int(reply[0])
    rows = reply[1 : 1 + len(listed)]
    response = router_pb2.OverviewResponse()
    totals: dict[str, int] = {}
    for (route, _), row in zip(listed, rows, strict=True):
        totals[route.model] = totals.get(route.model, 0) + int(row[0])
    for (route, candidate), row in zip(listed, rows, strict=True):
        response.deployments.append(_deployment(route, candidate, row, now_ms, totals[route.model]))
    for key_id, row in zip(key_ids, reply[1 + len(listed) :], strict=True):
        requests_used, requests_reset, tokens_used, tokens_reset = (int(v) for v in row)
        response.keys.append(
            router_pb2.KeyOverview(
                key_id=key_id,
                requests=router_pb2.LimitState(used=requests_used, reset_ms=requests_reset),
                tokens=router_pb2.LimitState(used=tokens_used, reset_ms=tokens_reset),
            )
        )
    return response


def _deployment(
    route: ModelRoute, candidate: Candidate, row: Sequence[Any], now_ms: int, model_requests: int
) -> router_pb2.DeploymentOverview:
    requests, ok, failures = int(row[0]), int(row[1]), int(row[2])
    latency_sum, latency_n, ttft_sum, ttft_n = float(row[3]), int(row[4]), float(row[5]), int(row[6])
    ejected = row[8].decode() if isinstance(row[8], bytes) else str(row[8])
    ejected_until_ms = int(ejected) if ejected else 0
    cooling_ms = int(row[9])
    target = candidate.target
    out = router_pb2.DeploymentOverview(
        deployment_id=candidate.deployment_id,
        model=target.model,
        provider=target.provider,
        upstream_model=target.upstream_model,
        strategy=route.strategy,
        priority=max(candidate.priority, 0),
        weight=candidate.weight,
        requests=requests,
        successes=ok if strategies.needs_outcomes(route.strategy) else max(requests - failures, 0),
        failures=failures,
        avg_latency_ms=latency_sum / latency_n if latency_n else 0.0,
        avg_ttft_ms=ttft_sum / ttft_n if ttft_n else 0.0,
        in_flight=int(row[7]),
        traffic_share=requests / model_requests if model_requests else 0.0,
        healthy=ejected_until_ms <= now_ms and cooling_ms == 0,
        ejected_until=ejected_until_ms / 1000,
        cooling_down_until=(now_ms + cooling_ms) / 1000 if cooling_ms else 0.0,
        consecutive_failures=int(row[10]),
        times_ejected=int(row[11]),
        context_window=target.context_window,
    )
    for limit_state, at in ((out.requests_limit, 12), (out.tokens_limit, 15)):
        limit, remaining, reset_ms = (int(v) for v in row[at : at + 3])
        if limit >= 0:
            limit_state.limit, limit_state.remaining, limit_state.reset_ms = limit, remaining, reset_ms
            limit_state.used = max(limit - remaining, 0)
    return out
