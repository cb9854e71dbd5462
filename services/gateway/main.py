"""``python -m gateway``: build the gateway's clients, serve HTTP, drain on SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Iterator
from types import FrameType

import uvicorn
import uvloop
from prometheus_client import REGISTRY

from common import telemetry
from common.config import ModelRouterConfig, load_config_or_exit
from common.health import HealthServer
from common.lifecycle import settle_heap
from common.messaging import DependencyUnavailable, connect_nats, ensure_usage_stream
from common.settings import GatewaySettings, load_settings
from gateway.app import create_app
from gateway.auto_routing import AutoRouting
from gateway.deps import Gateway
from gateway.dispatch import Dispatcher
from gateway.job_bodies import JobBodies
from gateway.keyring import Keyring
from gateway.keyring_watch import KeyringWatch
from gateway.metrics import GatewayMetrics
from gateway.prompt_class import UnknownClassifierError
from gateway.replies import ReplyHub
from gateway.router_client import RouterClient
from gateway.usage import UsagePublisher

log = logging.getLogger(__name__)


class _DrainingServer(uvicorn.Server):
    """uvicorn's server, marking the gateway not-ready the moment a stop signal arrives."""

    def __init__(self, config: uvicorn.Config, gateway: Gateway) -> None:
        super().__init__(config)
        self._gateway = gateway

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self._gateway.draining = True
        super().handle_exit(sig, frame)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # uvicorn's own version re-raises the signal once serving stops, which would kill the
        # process before ``serve`` flushes usage events and traces; a stop signal only starts a drain.
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.handle_exit, sig, None)
        yield


async def build_gateway(
    settings: GatewaySettings, config: ModelRouterConfig
) -> tuple[Gateway, ReplyHub, JobBodies, UsagePublisher]:
    auto = AutoRouting.configured(settings, config)  # first: a bad PROMPT_CLASSIFIER stops the start
    nc = await connect_nats(settings.nats_url, f"gateway-{settings.instance_id}")
    await ensure_usage_stream(nc, settings.usage_stream, settings.usage_subject)
    hub = ReplyHub(nc, settings.instance_id)
    await hub.start()
    bodies = JobBodies(nc, settings.instance_id)
    await bodies.start()
    usage = UsagePublisher(nc, settings.usage_subject, linger_s=settings.usage_linger_s)
    router = RouterClient(settings.router_addr)
    # The process's default registry: prometheus-client adds the process's CPU, memory and files.
    metrics = GatewayMetrics(REGISTRY)
    dispatcher = Dispatcher(
        router,
        nc,
        hub,
        usage,
        bodies,
        accept_timeout_s=settings.accept_timeout_s,
        stall_timeout_s=settings.stall_timeout_s,
        max_attempts=settings.max_attempts,
        jobs_subject=settings.jobs_subject,
        metrics=metrics,
    )
    keys = Keyring(settings, list(config.keys))
    watch = KeyringWatch(nc, keys, settings.keys_bucket, resync_s=settings.keys_resync_s)
    await watch.start()
    return Gateway(settings, keys, router, dispatcher, nc, watch=watch, auto=auto, config=config), hub, bodies, usage


async def _start_metrics_port(settings: GatewaySettings, gateway: Gateway) -> HealthServer | None:
    """The scraper's port (``METRICS_PORT``), when one is set: metrics without a key, off the public app."""
    if settings.metrics_port is None:
        return None
    server = HealthServer(
        settings.metrics_host,
        settings.metrics_port,
        ready=lambda: not gateway.draining,
        registry=gateway.dispatcher.metrics.registry,
    )
    await server.start()
    log.info("metrics for the scraper on %s:%d/metrics", settings.metrics_host, server.port)
    return server


async def serve(settings: GatewaySettings, config: ModelRouterConfig) -> None:
    gateway, hub, bodies, usage = await build_gateway(settings, config)
    if not settings.enable_auth:
        log.warning(
            "AUTHENTICATION IS OFF (ENABLE_AUTH=false): anyone who reaches port %d may use every model. "
            "For local development only.",
            settings.gateway_port,
        )
    elif not len(gateway.keys):
        log.warning(
            "no client keys configured (API_KEYS, the config's keys or the admin API): every request will get 401"
        )
    server = _DrainingServer(
        uvicorn.Config(
            create_app(gateway),
            host=settings.gateway_host,
            port=settings.gateway_port,
            loop="none",
            http="httptools",
            lifespan="off",
            access_log=False,
            log_config=None,
            timeout_graceful_shutdown=int(settings.drain_timeout_s),
        ),
        gateway,
    )
    internal = await _start_metrics_port(settings, gateway)
    settle_heap()
    try:
        await server.serve()
    finally:
        gateway.draining = True
        await gateway.dispatcher.drain(settings.drain_timeout_s)
        await usage.flush(settings.drain_timeout_s)
        await hub.stop()
        await bodies.stop()
        if gateway.watch is not None:
            await gateway.watch.stop()
        await gateway.router.close()
        await gateway.nats.drain()
        if internal is not None:  # last: the scraper sees the drain through
            await internal.stop()


def main() -> None:
    settings = load_settings(GatewaySettings)
    config = load_config_or_exit(settings.modelrouter_config)
    tracer_provider = telemetry.setup("gateway", settings.log_level)
    try:
        uvloop.run(serve(settings, config))
    except DependencyUnavailable as exc:
        sys.stderr.write(f"gateway: {exc}\n")
        raise SystemExit(1) from None
    except UnknownClassifierError as exc:
        sys.stderr.write(f"gateway: PROMPT_CLASSIFIER: {exc}\n")
        raise SystemExit(2) from None
    finally:
        tracer_provider.shutdown()
