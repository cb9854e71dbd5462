"""``python -m accounting``: JetStream usage events -> Postgres, until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import uvloop
from nats.aio.client import Client as NATS
from nats.errors import Error as NatsError
from prometheus_client import REGISTRY

from accounting.admin.runtime import start_keys
from accounting.analytics.runtime import start_analytics
from accounting.consumer import ConsumerOptions, UsageConsumer
from accounting.metrics import AccountingMetrics, LagSampler
from accounting.store import SchemaMissingError, UsageStore, create_engine
from common.health import HealthServer
from common.lifecycle import install_stop_signals, settle_heap
from common.messaging import START_HINTS, DependencyUnavailable, connect_nats, ensure_usage_stream
from common.settings import AccountingSettings, load_settings
from common.telemetry import setup

log = logging.getLogger("accounting")


class StartupError(RuntimeError):
    pass


async def serve(settings: AccountingSettings, options: ConsumerOptions, stop: asyncio.Event) -> None:
    """Consume until ``stop`` is set, then finish the batch in hand and close everything.

    Raises StartupError (with the message to show) when a dependency is missing at start.
    """
    store = UsageStore(create_engine(settings.database_url, command_timeout_s=options.ack_wait_s / 2))
    try:
        try:
            await store.check()
            nc = await connect_nats(settings.nats_url, name=f"accounting-{settings.instance_id}")
        except (DependencyUnavailable, SchemaMissingError) as exc:
            raise StartupError(str(exc)) from None
        try:
            await _consume(settings, options, stop, store, nc)
        finally:
            await nc.close()
    finally:
        await store.close()


async def _consume(
    settings: AccountingSettings, options: ConsumerOptions, stop: asyncio.Event, store: UsageStore, nc: NATS
) -> None:
    # The process's default registry, which the health port serves (with the process's CPU, memory
    # and files, which prometheus-client adds to it).
    consumer = UsageConsumer(nc.jetstream(), store, options, AccountingMetrics(REGISTRY))
    try:
        await ensure_usage_stream(nc, options.stream, options.subject)
        await consumer.start()
    except NatsError as exc:
        raise StartupError(
            f"cannot set up JetStream stream {options.stream} / consumer {options.durable} at "
            f"{settings.nats_url} ({exc!r}); is JetStream enabled? {START_HINTS['nats']}"
        ) from None
    try:
        keys = await start_keys(settings, nc)
    except NatsError as exc:
        await consumer.close()
        raise StartupError(
            f"cannot open or create the JetStream key-value bucket {settings.keys_bucket} at "
            f"{settings.nats_url} ({exc!r}); {START_HINTS['nats']}"
        ) from None
    try:
        analytics = await start_analytics(settings, nc)
    except BaseException:
        await keys.stop(0)
        await consumer.close()
        raise
    try:
        await _serve(settings, options, stop, store, nc, consumer)
    finally:
        # Admin requests, spend queries and analytics in flight get their answers before NATS is closed.
        await analytics.stop(settings.drain_timeout_s)
        await keys.stop(settings.drain_timeout_s)


async def _serve(
    settings: AccountingSettings,
    options: ConsumerOptions,
    stop: asyncio.Event,
    store: UsageStore,
    nc: NATS,
    consumer: UsageConsumer,
) -> None:
    health = HealthServer(
        settings.health_host,
        settings.health_port,
        ready=lambda: not stop.is_set() and nc.is_connected and store.healthy,
    )
    try:
        await health.start()
    except OSError as exc:
        raise StartupError(f"cannot serve health on {settings.health_host}:{settings.health_port}: {exc}") from None
    log.info(
        "consuming %s (stream %s, durable %s) into %s; health on %s:%d",
        options.subject,
        options.stream,
        options.durable,
        store.display_url,
        settings.health_host,
        health.port,
    )
    lag = LagSampler(nc.jetstream(), options.stream, options.durable, consumer.metrics)
    lag.start()
    settle_heap()
    running = asyncio.create_task(consumer.run(stop))
    stopping = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({running, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if not running.done():
            log.info("stopping: finishing the batch in hand (up to %.0fs)", settings.drain_timeout_s)
            # The loop checks stop between batches and a fetch waits at most fetch_timeout_s.
            await asyncio.wait({running}, timeout=settings.drain_timeout_s + options.fetch_timeout_s)
        if not running.done():
            log.warning("drain timed out; unacked usage events will be redelivered")
            running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running  # re-raises a crash of the loop
    finally:
        stopping.cancel()
        await lag.stop()
        await health.stop()
        await consumer.close()


async def _amain(settings: AccountingSettings) -> int:
    stop = asyncio.Event()
    install_stop_signals(stop)
    try:
        options = ConsumerOptions(
            stream=settings.usage_stream,
            subject=settings.usage_subject,
            durable=settings.accounting_durable,
            batch=settings.accounting_batch,
            linger_s=settings.accounting_linger_s,
        )
        await serve(settings, options, stop)
    except StartupError as exc:
        log.error("cannot start: %s", exc)
        return 1
    log.info("stopped")
    return 0


def main() -> int:
    settings = load_settings(AccountingSettings)
    tracer_provider = setup("accounting", settings.log_level)
    try:
        return uvloop.run(_amain(settings))
    finally:
        tracer_provider.shutdown()
