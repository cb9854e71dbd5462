"""The operator's view (issue 16, seeds 001 and 004): ``GET /router/stats``, ``/router/health``,
``/router/rate-limits``, ``/providers`` (an ops key or the master key), and seed 001's ``GET /`` and
``GET /backend/info``.

Every answer comes from the router's ``Overview`` RPC, which reads Redis, so any gateway replica
answers the same. ``GET /`` and ``GET /backend/info`` need no key, as in seed 001 (its README calls
them without one): they say the name, the version and how many backends are up; the list of
backends (ids, models, priorities, limits) is only for an ops key or the master key.
"""

from __future__ import annotations

import asyncio
import time
from typing import Annotated

from fastapi import APIRouter, Header
from starlette.responses import Response

from common.errors import AuthenticationError
from gateway import operator_view
from gateway.deps import GatewayDep, Operator
from gateway.openapi import version
from gateway.responses import RawJSONResponse

router = APIRouter(tags=["Operator"])


@router.get("/router/stats")
async def router_stats(gateway: GatewayDep, _: Operator) -> Response:
    return RawJSONResponse(operator_view.stats(await gateway.router.overview([])))


@router.get("/router/health")
async def router_health(gateway: GatewayDep, _: Operator) -> Response:
    return RawJSONResponse(operator_view.health(await gateway.router.overview([]), time.time()))


@router.get("/router/rate-limits")
async def router_rate_limits(gateway: GatewayDep, _: Operator) -> Response:
    limited = gateway.keys.rate_limits()  # the keyring's keys with rpm or tpm: the router counts their use
    overview = await gateway.router.overview(sorted(limited))
    return RawJSONResponse(operator_view.rate_limits(overview, limited, time.time()))


@router.get("/providers")
async def providers(gateway: GatewayDep, _: Operator) -> Response:
    overview, catalogs = await asyncio.gather(gateway.router.overview([]), gateway.router.catalog_status())
    return RawJSONResponse(operator_view.providers(overview, catalogs))


@router.get("/")
async def root(gateway: GatewayDep) -> Response:
    return RawJSONResponse(operator_view.root(version(), await gateway.router.overview([])))


@router.get("/backend/info")
async def backend_info(
    gateway: GatewayDep,
    authorization: Annotated[str | None, Header()] = None,
    x_api_key: Annotated[str | None, Header()] = None,
) -> Response:
    try:
        caller = gateway.keys.authenticate(authorization, x_api_key)
    except AuthenticationError:
        if authorization or x_api_key:  # a wrong key is a 401 here too
            raise
        caller = None
    info = operator_view.backend_info(version(), await gateway.router.overview([]))
    if caller is None or not caller.can_operate:  # without a key, or a client's: the summary only
        info["backends"] = None
    return RawJSONResponse(info)
