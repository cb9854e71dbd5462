"""What route handlers get: from FastAPI's dependency injection, or (on the plain Starlette routes of
the hot path) by calling ``gateway_of`` and ``Keyring.authenticate`` directly."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Header, Request
from nats.aio.client import Client as NATS

from common.config import ModelRouterConfig
from common.errors import PayloadTooLargeError, PermissionDeniedError
from common.settings import GatewaySettings
from gateway.auto_routing import AutoRouting
from gateway.dispatch import Dispatcher
from gateway.keyring import Keyring, Principal
from gateway.keyring_watch import KeyringWatch
from gateway.router_client import RouterClient


@dataclass(slots=True)
class Gateway:
    """Everything a request needs, built once by ``main`` and kept on ``app.state.gateway``."""

    settings: GatewaySettings
    keys: Keyring
    router: RouterClient
    dispatcher: Dispatcher
    nats: NATS
    watch: KeyringWatch | None = None  # keeps ``keys`` equal to the keys bucket
    draining: bool = False
    auto: AutoRouting = field(default_factory=AutoRouting)  # the default model and the prompt classifier
    config: ModelRouterConfig | None = None  # the YAML config it started with (prices, store_bodies)


def gateway_of(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway


async def get_gateway(request: Request) -> Gateway:
    return gateway_of(request)


GatewayDep = Annotated[Gateway, Depends(get_gateway)]


async def authenticate(
    gateway: GatewayDep,
    authorization: Annotated[str | None, Header()] = None,
    x_api_key: Annotated[str | None, Header()] = None,
) -> Principal:
    return gateway.keys.authenticate(authorization, x_api_key)


Caller = Annotated[Principal, Depends(authenticate)]


async def operator(caller: Caller) -> Principal:
    """The master key or an ``ops`` key: who may read the operator's endpoints."""
    if not caller.can_operate:
        raise PermissionDeniedError("This endpoint needs an ops key or the master key.", code="ops_key_required")
    return caller


Operator = Annotated[Principal, Depends(operator)]


async def master(caller: Caller) -> Principal:
    if caller.role != "master":
        raise PermissionDeniedError(
            "The admin API needs the master key (MODELROUTER_MASTER_KEY).", code="master_key_required"
        )
    return caller


Master = Annotated[Principal, Depends(master)]


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing (413) as soon as it is known to exceed ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLargeError(f"Request body is larger than the limit of {limit} bytes.")
    parts: list[bytes] = []
    size = 0
    async for part in request.stream():
        size += len(part)
        if size > limit:
            raise PayloadTooLargeError(f"Request body is larger than the limit of {limit} bytes.")
        parts.append(part)
    return b"".join(parts)
