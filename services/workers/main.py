"""``python -m workers``: build the worker's objects, run until SIGTERM/SIGINT, then drain."""

from __future__ import annotations

import asyncio
import logging
import os

import prometheus_client
import uvloop

from common import seed_settings
from common.health import HealthServer
from common.lifecycle import install_stop_signals, settle_heap
from common.messaging import DependencyUnavailable, connect_nats
from common.settings import WorkerSettings, load_settings
from common.telemetry import setup
from workers.adapters import AdapterPool
from workers.job import JobExecutor
from workers.metrics import WorkerMetrics
from workers.providers import REGISTRY
from workers.runner import JobRunner

log = logging.getLogger("workers")


async def serve(settings: WorkerSettings, *, jobs_subject: str | None = None) -> None:
    jobs_subject = jobs_subject or settings.jobs_subject
    tracing = setup("workers", settings.log_level)
    # httpx logs every request at INFO; the upstream call's span already records it.
    logging.getLogger("httpx").setLevel(max(logging.WARNING, logging.getLogger().level))
    stop = asyncio.Event()
    install_stop_signals(stop)
    try:
        nc = await connect_nats(settings.nats_url, f"workers-{settings.instance_id}")
        adapters = AdapterPool(REGISTRY)
        executor = JobExecutor(
            nc,
            adapters,
            settings.instance_id,
            # The seeds' key variables as ours, and ROUTER_SERVICES' inline keys (common.seed_settings).
            seed_settings.environment(os.environ),
            accept_delay_s=settings.accept_delay_s,
            heartbeat_s=settings.heartbeat_s,
            # The process's default registry, which the health port serves (with the process's CPU,
            # memory and files, which prometheus-client adds to it).
            metrics=WorkerMetrics(prometheus_client.REGISTRY),
        )
        runner = JobRunner(
            nc,
            executor,
            worker_id=settings.instance_id,
            concurrency=settings.worker_concurrency,
            jobs_subject=jobs_subject,
        )
        health = HealthServer(settings.health_host, settings.health_port, runner.ready)
        await health.start()
        try:
            await runner.start()
            settle_heap()
            log.info(
                "worker %s taking jobs on %s (concurrency %d); health on %s:%d",
                settings.instance_id,
                jobs_subject,
                settings.worker_concurrency,
                settings.health_host,
                health.port,
            )
            await stop.wait()
            log.info("stopping: draining %d jobs in flight", runner.in_flight)
            await runner.drain(settings.drain_timeout_s)
        finally:
            await adapters.aclose()
            await nc.drain()  # flushes the last results before closing
            await health.stop()
    finally:
        tracing.shutdown()


def main(*, jobs_subject: str | None = None) -> int:
    settings = load_settings(WorkerSettings)
    try:
        uvloop.run(serve(settings, jobs_subject=jobs_subject))
    except DependencyUnavailable as exc:
        log.error("%s", exc)
        return 1
    except seed_settings.SeedSettingsError as exc:  # names the variable and field, never a key
        log.error("%s", exc)
        return 2
    return 0
