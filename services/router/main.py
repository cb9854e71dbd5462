"""``python -m router``: build settings, config, Redis, the servicer and the server; serve until
SIGTERM/SIGINT, then drain and exit 0. Exits 1 if Redis is unreachable, 2 on bad settings/config.

NATS is needed only to rebuild a budget's counter from the usage ledger: without it the router still
starts and routes, and such a budget's requests are refused (503) until the connection is up."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Callable
from urllib.parse import urlsplit

import httpx
import uvloop
from prometheus_client import REGISTRY
from redis.asyncio import BlockingConnectionPool, Redis
from redis.exceptions import RedisError

from common import seed_settings, telemetry
from common.config import ModelRouterConfig, load_config_or_exit
from common.health import HealthServer
from common.lifecycle import install_stop_signals, settle_heap
from common.messaging import DependencyUnavailable, connect_nats
from common.settings import RouterSettings, load_settings
from router.catalog_refresh import CatalogRefresher
from router.limits.admission import KeyLimits
from router.limits.ledger import SpendLedger
from router.metrics import RouterMetrics
from router.server import RouterServer
from router.servicer import RouterServicer
from router.state import RouterState
from router.wildcard import routing_table

log = logging.getLogger("router")

# Route runs one short script per request; the pool bounds connections under bursts, and a burst
# beyond them waits for a free one (up to the timeout) rather than failing ("Too many connections").
_REDIS_MAX_CONNECTIONS = 64
_REDIS_TIMEOUT_S = 2.0
_NATS_RETRY_S = 2.0


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@", 1)).geturl()


async def _connect_ledger(settings: RouterSettings, ledger: SpendLedger) -> None:
    """Connect to NATS until it works (once connected, nats-py reconnects by itself)."""
    while True:
        try:
            ledger.connection = await connect_nats(
                settings.nats_url, f"router-{settings.instance_id}", first_connect_timeout_s=_NATS_RETRY_S
            )
            log.info("connected to NATS; budget counters are rebuilt from %s", settings.ledger_subject)
            return
        except DependencyUnavailable as exc:
            log.warning("%s; budgets whose counters are missing refuse requests until it is", exc)
        await asyncio.sleep(_NATS_RETRY_S)


async def _start_health_port(settings: RouterSettings, ready: Callable[[], bool]) -> HealthServer | None:
    """The scraper's port (``HEALTH_PORT``: /metrics, /health, /ready), when one is set."""
    if settings.health_port is None:
        return None
    health = HealthServer(settings.health_host, settings.health_port, ready)
    try:
        await health.start()
    except OSError as exc:
        log.error("cannot serve health and metrics on %s:%d: %s", settings.health_host, settings.health_port, exc)
        raise SystemExit(1) from None
    log.info("health and metrics on %s:%d", settings.health_host, health.port)
    return health


async def serve(settings: RouterSettings, config: ModelRouterConfig) -> None:
    pool = BlockingConnectionPool.from_url(
        settings.redis_url,
        max_connections=_REDIS_MAX_CONNECTIONS,
        timeout=_REDIS_TIMEOUT_S,
        socket_timeout=_REDIS_TIMEOUT_S,
        socket_connect_timeout=_REDIS_TIMEOUT_S,
    )
    redis = Redis.from_pool(pool)  # owns the pool: aclose closes it
    # One pooled client for every catalogue's fetches; redirects are not followed, so the catalogue
    # token goes nowhere but the configured URL.
    http = httpx.AsyncClient(follow_redirects=False)
    ledger = SpendLedger(settings.ledger_subject)
    # The first attempt is awaited (bounded), so a router that starts with NATS up serves budgets
    # from its first request; after a failure it keeps trying in the background.
    connecting = asyncio.create_task(_connect_ledger(settings, ledger))
    await asyncio.wait({connecting}, timeout=_NATS_RETRY_S + 1)
    try:
        state = RouterState(redis, config.health)
        limits = KeyLimits(state, ledger)
        try:
            await state.load_scripts()
            await limits.load_scripts()
        except (RedisError, OSError) as exc:
            raise DependencyUnavailable(
                "redis", _without_password(settings.redis_url), str(exc) or type(exc).__name__
            ) from None
        table = routing_table(config)
        # The seeds' variables as ours (common.seed_settings): the keys discovery lists models with.
        catalogs = CatalogRefresher(config, table, http, seed_settings.environment(os.environ))
        # The process's default registry: prometheus-client adds the process's CPU, memory and files.
        servicer = RouterServicer(table, state, catalogs, limits, RouterMetrics(REGISTRY))
        try:
            server = RouterServer(servicer, settings.router_listen)
        except RuntimeError as exc:  # grpc: "Failed to bind to address ..."
            log.error("cannot listen on %s: %s", settings.router_listen, exc)
            raise SystemExit(1) from None
        stop = asyncio.Event()
        install_stop_signals(stop)
        health: HealthServer | None = None
        # Catalogue models are routable from the first request on; a catalogue that cannot be
        # fetched does not stop the router (its models are absent until a retry succeeds).
        await catalogs.start()
        settle_heap()
        try:
            health = await _start_health_port(settings, ready=lambda: not stop.is_set())
            await server.start()
            log.info("router listening on %s (port %d)", settings.router_listen, server.port)
            await stop.wait()
            log.info("draining for up to %.0fs", settings.drain_timeout_s)
            await server.stop(settings.drain_timeout_s)
        finally:
            await catalogs.stop()
            if health is not None:
                await health.stop()
    finally:
        connecting.cancel()
        if ledger.connection is not None:
            await ledger.connection.close()
        await http.aclose()
        await redis.aclose()


def main() -> None:
    settings = load_settings(RouterSettings)
    config = load_config_or_exit(settings.modelrouter_config)
    tracer_provider = telemetry.setup("router", settings.log_level)
    # httpx logs every catalogue fetch at INFO; the refresher logs what changed and what failed.
    logging.getLogger("httpx").setLevel(max(logging.WARNING, logging.getLogger().level))
    try:
        uvloop.run(serve(settings, config))
    except DependencyUnavailable as exc:
        log.error("%s", exc)
        sys.stderr.flush()
        raise SystemExit(1) from None
    finally:
        tracer_provider.shutdown()
