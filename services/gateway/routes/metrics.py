"""``GET /metrics`` (seed 004's endpoint; an ops key or the master key): the gateway's Prometheus
metrics as text, or, to a client whose ``Accept`` asks for ``application/json``, a summary of usage
and cost.

Where the summary comes from is the application's choice (``create_app(usage_summary=...)``): by
default this gateway process's own tallies (``GatewayMetrics.summary``); a cluster-wide one from the
usage ledger can replace it without touching this route. The cluster's scraper reads the same text
without a key on the gateway's internal metrics port (``METRICS_PORT``, ``common.health``), never
from the public application.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel
from starlette.responses import Response

from common.metrics import exposition
from gateway.deps import GatewayDep, Operator
from gateway.responses import RawJSONResponse

# What the JSON branch answers with: called once per such request, never on the generating path.
UsageSummary = Callable[[], Awaitable[Mapping[str, Any]]]

JSON = "application/json"


def wants_json(accept: str) -> bool:
    """Whether the client asked for JSON (``Accept: application/json``, possibly among others);
    anything else, no Accept at all included (a Prometheus scraper's or curl's), gets the text."""
    return any(part.split(";", 1)[0].strip().lower() == JSON for part in accept.split(","))


def router_for(summary: UsageSummary | None) -> APIRouter:
    """The route, answering JSON with ``summary`` (None: the gateway's own ``GatewayMetrics.summary``)."""
    router = APIRouter(tags=["Metrics"])

    @router.get("/metrics")
    async def metrics(request: Request, gateway: GatewayDep, _: Operator) -> Response:
        accept = request.headers.get("accept", "")
        recorder = gateway.dispatcher.metrics
        if wants_json(accept):
            body = await (summary or recorder.summary)()
            return RawJSONResponse(dict(body))
        text, content_type = exposition(recorder.registry, accept)
        return Response(text, media_type=content_type)

    return router


# --- the JSON answer's shape, for the OpenAPI document ---------------------------------------------


class ModelUsage(BaseModel):
    model: str | None
    provider: str | None
    requests: int
    failed_requests: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float


class MetricsSummary(BaseModel):
    object: str
    scope: str
    since: str
    total_requests: int
    successful_requests: int
    failed_requests: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    total_cost_usd: float
    in_flight: int
    by_model: list[ModelUsage]
