"""The operator's endpoints (``gateway.routes.operator``) in the OpenAPI document: their answers'
shapes (``gateway.operator_view`` makes them) and their operations."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from gateway.openapi_operations import Operation

_OPS = "An ops key or the master key. From the routers' shared state (Redis): every gateway answers the same."
_ERRORS = (401, 403, 503)


class DeploymentStats(BaseModel):
    deployment_id: str
    model: str
    provider: str
    strategy: str = Field(description="The model's routing strategy: priority, weighted, least-busy, latency, cost.")
    requests: int
    successes: int
    failures: int
    avg_latency_ms: float | None = Field(description="null before its first request.")
    avg_ttft_ms: float | None = Field(description="Time to first token of streams; null without any.")
    in_flight: int
    traffic_share: float = Field(description="Its share of its model's requests, 0..1.")


class StatsTotals(BaseModel):
    requests: int
    successes: int
    failures: int
    in_flight: int


class RouterStats(BaseModel):
    object: Literal["router.stats"]
    deployments: list[DeploymentStats]
    totals: StatsTotals


class DeploymentHealth(BaseModel):
    deployment_id: str
    model: str
    provider: str
    healthy: bool
    ejected_until: str | None = Field(description="ISO 8601 (UTC) while ejected after consecutive failures, else null.")
    cooling_down: bool = Field(description="Cooling down after an upstream 429 or exhausted quota.")
    cooling_down_until: str | None
    consecutive_failures: int
    times_ejected: int


class RouterHealth(BaseModel):
    object: Literal["router.health"]
    status: Literal["healthy", "degraded", "unhealthy"]
    healthy: int
    unhealthy: int
    deployments: list[DeploymentHealth]


class RateWindow(BaseModel):
    limit: int
    used: int
    remaining: int
    reset: str = Field(description="Until the window has room for the full limit again, as OpenAI writes it: 1m37.5s.")
    reset_at: str | None = Field(description="The same as an ISO 8601 time (UTC).")


class DeploymentRateLimits(BaseModel):
    deployment_id: str
    model: str
    requests: RateWindow | None = Field(description="Its requests per minute; null without such a limit.")
    tokens: RateWindow | None = Field(description="Its tokens per minute; null without such a limit.")


class KeyRateLimits(BaseModel):
    key_id: str
    key: str | None = Field(description="Masked.")
    requests: RateWindow | None
    tokens: RateWindow | None


class RouterRateLimits(BaseModel):
    object: Literal["router.rate_limits"]
    deployments: list[DeploymentRateLimits]
    keys: list[KeyRateLimits] = Field(description="The keys this gateway knows that have rate limits.")


class Provider(BaseModel):
    name: str
    available: bool = Field(description="At least one of its deployments can serve now.")
    models: list[str]
    deployments: int
    healthy_deployments: int


class Providers(BaseModel):
    object: Literal["list"]
    providers: list[Provider]


class BackendSummary(BaseModel):
    total: int
    healthy: int
    unhealthy: int
    providers: int
    models: int


class Backend(BaseModel):
    """A deployment, in the words of seed 001's ``ROUTER_SERVICES`` entries."""

    name: str
    backend_type: str
    model: str
    upstream_model: str
    priority: int
    healthy: bool
    rate_limit_requests: int | None
    rate_limit_window: int | None = Field(description="Seconds: 60 when it has a requests limit.")


class RootInfo(BaseModel):
    name: str
    version: str
    description: str
    docs: str
    backends: BackendSummary


class BackendInfo(BaseModel):
    name: str
    version: str
    summary: BackendSummary
    backends: list[Backend] | None = Field(description="For an ops key or the master key; null otherwise.")


def operations() -> list[Operation]:
    tag = "Operator"
    return [
        Operation(
            "get",
            "/router/stats",
            "routerStats",
            "Per deployment: requests, successes, failures, latency, TTFT, in flight, share",
            tag,
            RouterStats,
            errors=_ERRORS,
            description=_OPS,
        ),
        Operation(
            "get",
            "/router/health",
            "routerHealth",
            "Per deployment: healthy, ejected until, cooling down, consecutive failures",
            tag,
            RouterHealth,
            errors=_ERRORS,
            description=_OPS,
        ),
        Operation(
            "get",
            "/router/rate-limits",
            "routerRateLimits",
            "Per deployment and per key: limit, used, remaining, reset",
            tag,
            RouterRateLimits,
            errors=_ERRORS,
            description=_OPS,
        ),
        Operation(
            "get",
            "/providers",
            "listProviders",
            "Each provider: whether it is available, and its models",
            tag,
            Providers,
            errors=_ERRORS,
            description=_OPS,
        ),
        Operation(
            "get",
            "/",
            "root",
            "The gateway's name, version and a summary of its backends",
            tag,
            RootInfo,
            errors=(503,),
            authenticated=False,
            description="No key needed (seed 001).",
        ),
        Operation(
            "get",
            "/backend/info",
            "backendInfo",
            "Name, version, and the backends (their list for an ops key or the master key)",
            tag,
            BackendInfo,
            errors=(401, 503),
            authenticated=False,
            description="No key needed for the summary (seed 001); a key, when sent, must be valid (401).",
        ),
    ]
