"""The analytics API (seed 003) and ``/user/stats`` (seed 004): any key, each its own rows; the
master key everyone's, with ``key_id`` / ``team_id`` filters.

The query string is checked here (400 naming the parameter) before accounting is asked over NATS;
accounting answers from Postgres, and its answer is relayed as it is.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from common.analytics import Op, RequestQuery, RequestsQuery, Scope, UsageQuery, UserStatsQuery, envelope, parse
from gateway.analytics.link import ask
from gateway.analytics.model_prices import model_list
from gateway.analytics.scope import scope_of
from gateway.analytics.user_stats import stats_answer
from gateway.deps import Caller, Gateway, GatewayDep
from gateway.responses import RawJSONResponse

router = APIRouter(tags=["Analytics"])


async def _asked(gateway: Gateway, op: Op, scope: Scope, query: Any) -> tuple[int, Any]:
    return await ask(gateway.nats, gateway.settings.analytics_subject, envelope(op, scope, query))


@router.get("/v1/analytics/usage")
async def usage(request: Request, gateway: GatewayDep, caller: Caller) -> Response:
    query = parse(UsageQuery, dict(request.query_params))
    status, body = await _asked(gateway, "usage", scope_of(caller, query.key_id, query.team_id), query)
    return RawJSONResponse(body, status_code=status)


@router.get("/v1/analytics/requests")
async def requests(request: Request, gateway: GatewayDep, caller: Caller) -> Response:
    query = parse(RequestsQuery, dict(request.query_params))
    status, body = await _asked(gateway, "requests", scope_of(caller, query.key_id, query.team_id), query)
    return RawJSONResponse(body, status_code=status)


@router.get("/v1/analytics/requests/{request_id}")
async def request_detail(request_id: str, gateway: GatewayDep, caller: Caller) -> Response:
    query = parse(RequestQuery, {"id": request_id})
    status, body = await _asked(gateway, "request", scope_of(caller), query)
    return RawJSONResponse(body, status_code=status)


@router.get("/v1/analytics/models")
async def models(gateway: GatewayDep, caller: Caller) -> Response:
    return RawJSONResponse(model_list(await gateway.router.list_models(), gateway.config, caller))


@router.get("/user/stats")
async def user_stats(request: Request, gateway: GatewayDep, caller: Caller) -> Response:
    parse(UserStatsQuery, dict(request.query_params))  # it takes none: an unknown one is a 400
    scope = Scope(key_id=caller.key_id, team_id=caller.team_id or None)
    status, body = await _asked(gateway, "user_stats", scope, UserStatsQuery())
    if status != 200:
        return RawJSONResponse(body, status_code=status)
    return RawJSONResponse(stats_answer(caller, body))
