"""The operator's endpoints' JSON, shaped from the router's ``Overview`` (and ``Status``): pure
functions, so what each field means is tested without a router.

Conventions: times are ISO 8601 in UTC, ``null`` when there is none (the router's 0); an average over
no requests is ``null``, not 0; a limit the deployment or key does not have is ``null``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from gateway.ratelimit_headers import go_duration
from modelrouter.router.v1 import router_pb2

NAME = "ModelRouter"
DESCRIPTION = "An OpenAI-compatible LLM gateway in front of many providers."


def iso(unix_s: float) -> str | None:
    return datetime.fromtimestamp(unix_s, UTC).isoformat().replace("+00:00", "Z") if unix_s > 0 else None


def _average(value: float, over: int) -> float | None:
    return round(value, 3) if over and value > 0 else None


def stats(overview: router_pb2.OverviewResponse) -> dict[str, Any]:
    deployments = [
        {
            "deployment_id": d.deployment_id,
            "model": d.model,
            "provider": d.provider,
            "strategy": d.strategy,
            "requests": d.requests,
            "successes": d.successes,
            "failures": d.failures,
            "avg_latency_ms": _average(d.avg_latency_ms, d.requests),
            "avg_ttft_ms": _average(d.avg_ttft_ms, d.requests),
            "in_flight": d.in_flight,
            "traffic_share": round(d.traffic_share, 4),
        }
        for d in overview.deployments
    ]
    totals = {
        "requests": sum(d.requests for d in overview.deployments),
        "successes": sum(d.successes for d in overview.deployments),
        "failures": sum(d.failures for d in overview.deployments),
        "in_flight": sum(d.in_flight for d in overview.deployments),
    }
    return {"object": "router.stats", "deployments": deployments, "totals": totals}


def health(overview: router_pb2.OverviewResponse, now_s: float) -> dict[str, Any]:
    deployments = [
        {
            "deployment_id": d.deployment_id,
            "model": d.model,
            "provider": d.provider,
            "healthy": d.healthy,
            "ejected_until": iso(d.ejected_until) if d.ejected_until > now_s else None,
            "cooling_down": d.cooling_down_until > now_s,
            "cooling_down_until": iso(d.cooling_down_until) if d.cooling_down_until > now_s else None,
            "consecutive_failures": d.consecutive_failures,
            "times_ejected": d.times_ejected,
        }
        for d in overview.deployments
    ]
    healthy = sum(1 for d in deployments if d["healthy"])
    return {
        "object": "router.health",
        "status": "healthy" if healthy == len(deployments) else ("degraded" if healthy else "unhealthy"),
        "healthy": healthy,
        "unhealthy": len(deployments) - healthy,
        "deployments": deployments,
    }


def limit(state: router_pb2.LimitState, now_s: float) -> dict[str, Any] | None:
    """One rate window: ``null`` when there is no such limit (the router's ``limit`` 0)."""
    if not state.limit:
        return None
    return limit_dict(state.limit, max(0, state.limit - state.remaining), state.remaining, state.reset_ms, now_s)


def window(limit: int, used: int, reset_ms: int, now_s: float) -> dict[str, Any] | None:
    """A key's rate window: its limit (the keyring's), what the router counted in it; ``null`` when
    the key has no such limit."""
    if not limit:
        return None
    return limit_dict(limit, min(used, limit), max(0, limit - used), reset_ms, now_s)


def limit_dict(limit: int, used: int, remaining: int, reset_ms: int, now_s: float) -> dict[str, Any]:
    return {
        "limit": limit,
        "used": used,
        "remaining": remaining,
        "reset": go_duration(reset_ms),  # as OpenAI's x-ratelimit-reset-* headers write it
        "reset_at": iso(now_s + reset_ms / 1000),
    }


def rate_limits(
    overview: router_pb2.OverviewResponse, keys: Mapping[str, tuple[str, int, int]], now_s: float
) -> dict[str, Any]:
    """``keys``: key id -> (masked key, rpm, tpm), as ``Keyring.rate_limits`` gives them."""
    deployments = [
        {
            "deployment_id": d.deployment_id,
            "model": d.model,
            "requests": limit(d.requests_limit, now_s),
            "tokens": limit(d.tokens_limit, now_s),
        }
        for d in overview.deployments
    ]
    shown = []
    for k in overview.keys:
        if k.key_id not in keys:
            continue
        display, rpm, tpm = keys[k.key_id]
        shown.append(
            {
                "key_id": k.key_id,
                "key": display or None,  # masked
                "requests": window(rpm, k.requests.used, k.requests.reset_ms, now_s),
                "tokens": window(tpm, k.tokens.used, k.tokens.reset_ms, now_s),
            }
        )
    return {"object": "router.rate_limits", "deployments": deployments, "keys": shown}


def providers(
    overview: router_pb2.OverviewResponse, catalogs: Iterable[router_pb2.CatalogStatus] | None
) -> dict[str, Any]:
    """Seed 004's ``/providers``: each provider, whether any of its deployments can serve now, and its
    models. A provider whose remote catalogue has not listed anything yet shows, unavailable."""
    by_name: dict[str, dict[str, Any]] = {}
    for d in overview.deployments:
        entry = by_name.setdefault(d.provider, {"name": d.provider, "models": [], "deployments": 0, "healthy": 0})
        entry["deployments"] += 1
        entry["healthy"] += int(d.healthy)
        if d.model not in entry["models"]:
            entry["models"].append(d.model)
    for catalog in catalogs or ():
        by_name.setdefault(catalog.provider, {"name": catalog.provider, "models": [], "deployments": 0, "healthy": 0})
    out = [
        {
            "name": e["name"],
            "available": e["healthy"] > 0,
            "models": sorted(e["models"]),
            "deployments": e["deployments"],
            "healthy_deployments": e["healthy"],
        }
        for e in sorted(by_name.values(), key=lambda e: e["name"])
    ]
    return {"object": "list", "providers": out}


def backends(overview: router_pb2.OverviewResponse) -> list[dict[str, Any]]:
    """Seed 001's backends, in the words of its ``ROUTER_SERVICES`` entries (``name``,
    ``backend_type``, ``priority``, ``rate_limit_requests``); nothing secret, no URLs."""
    return [
        {
            "name": d.deployment_id,
            "backend_type": d.provider,
            "model": d.model,
            "upstream_model": d.upstream_model,
            "priority": d.priority,
            "healthy": d.healthy,
            "rate_limit_requests": d.requests_limit.limit or None,
            "rate_limit_window": 60 if d.requests_limit.limit else None,  # the router's limits are per minute
        }
        for d in overview.deployments
    ]


def summary(overview: router_pb2.OverviewResponse) -> dict[str, Any]:
    healthy = sum(1 for d in overview.deployments if d.healthy)
    return {
        "total": len(overview.deployments),
        "healthy": healthy,
        "unhealthy": len(overview.deployments) - healthy,
        "providers": len({d.provider for d in overview.deployments}),
        "models": len({d.model for d in overview.deployments}),
    }


def root(version: str, overview: router_pb2.OverviewResponse) -> dict[str, Any]:
    """Seed 001's ``GET /``: name, version, a summary of the backends."""
    return {
        "name": NAME,
        "version": version,
        "description": DESCRIPTION,
        "docs": "/docs",
        "backends": summary(overview),
    }


def backend_info(version: str, overview: router_pb2.OverviewResponse) -> dict[str, Any]:
    """Seed 001's ``GET /backend/info``: the same, with each backend."""
    return {"name": NAME, "version": version, "summary": summary(overview), "backends": backends(overview)}
