"""``python -m router``: build settings, config, Redis, the servicer and the server; serve until
SIGTERM/SIGINT, then drain and exit 0. Exits 1 if Redis is unreachable, 2 on bad settings/config."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from urllib.parse import urlsplit

import httpx
import uvloop
from redis.asyncio import Redis
from redis.exceptions import RedisError

from common import telemetry
from common.config import ModelRouterConfig, load_config_or_exit
from common.lifecycle import install_stop_signals, settle_heap
from common.messaging import DependencyUnavailable
from common.settings import RouterSettings, load_settings
from router.catalog_refresh import CatalogRefresher
from router.selection import LiveCatalog
from router.server import RouterServer
from router.servicer import RouterServicer
from router.state import RouterState

log = logging.getLogger("router")

# Route runs one short script per request; the pool bounds connections under bursts.
_REDIS_MAX_CONNECTIONS = 64
_REDIS_TIMEOUT_S = 2.0


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@", 1)).geturl()


async def serve(settings: RouterSettings, config: ModelRouterConfig) -> None:
    redis = Redis.from_url(
        settings.redis_url,
        max_connections=_REDIS_MAX_CONNECTIONS,
        socket_timeout=_REDIS_TIMEOUT_S,
        socket_connect_timeout=_REDIS_TIMEOUT_S,
    )
    # One pooled client for every catalogue's fetches; redirects are not followed, so the catalogue
    # token goes nowhere but the configured URL.
    http = httpx.AsyncClient(follow_redirects=False)
    try:
        state = RouterState(redis, config.health)
        try:
            await state.load_scripts()
        except (RedisError, OSError) as exc:
            raise DependencyUnavailable(
                "redis", _without_password(settings.redis_url), str(exc) or type(exc).__name__
            ) from None
        table = LiveCatalog(config)
        catalogs = CatalogRefresher(config, table, http, os.environ)
        servicer = RouterServicer(table, state, catalogs)
        try:
            server = RouterServer(servicer, settings.router_listen)
        except RuntimeError as exc:  # grpc: "Failed to bind to address ..."
            log.error("cannot listen on %s: %s", settings.router_listen, exc)
            raise SystemExit(1) from None
        stop = asyncio.Event()
        install_stop_signals(stop)
        # Catalogue models are routable from the first request on; a catalogue that cannot be
        # fetched does not stop the router (its models are absent until a retry succeeds).
        await catalogs.start()
        settle_heap()
        try:
            await server.start()
            log.info("router listening on %s (port %d)", settings.router_listen, server.port)
            await stop.wait()
            log.info("draining for up to %.0fs", settings.drain_timeout_s)
            await server.stop(settings.drain_timeout_s)
        finally:
            await catalogs.stop()
    finally:
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
