"""Accounting's analytics side, started by ``accounting.main`` beside the keys: the analytics API's
responder and the partition upkeep (months made ahead, retention applied) at start and every
``ANALYTICS_UPKEEP_INTERVAL_S``, over an engine of its own (a slow report must not hold the
connections that admin requests and spend queries need)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from nats.aio.client import Client as NATS
from sqlalchemy.ext.asyncio import AsyncEngine

from accounting.admin.db import create_admin_engine
from accounting.analytics.partitions import drop_expired, ensure_months
from accounting.analytics.service import AnalyticsService
from accounting.responder import Responder
from common import subjects
from common.settings import AccountingSettings

log = logging.getLogger(__name__)


async def upkeep(engine: AsyncEngine, retention_days: int, now: datetime | None = None) -> None:
    """One round: this month's and the next months' partitions, then the retention (if any)."""
    moment = now or datetime.now(UTC)
    await ensure_months(engine, moment)
    if retention_days > 0:
        await drop_expired(engine, moment, retention_days)


async def _upkeep_loop(engine: AsyncEngine, settings: AccountingSettings, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            await upkeep(engine, settings.usage_retention_days)
        except Exception as exc:  # Postgres away: the DEFAULT partition takes rows until the next round
            log.warning("partition upkeep failed, will retry: %r", exc)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=settings.analytics_upkeep_interval_s)


@dataclass
class AnalyticsRuntime:
    responder: Responder
    upkeep_task: asyncio.Task[None]
    stop_upkeep: asyncio.Event
    engine: AsyncEngine

    async def stop(self, drain_timeout_s: float) -> None:
        await self.responder.stop(drain_timeout_s)
        self.stop_upkeep.set()
        try:
            await asyncio.wait_for(self.upkeep_task, timeout=drain_timeout_s)
        except TimeoutError:
            self.upkeep_task.cancel()
        await self.engine.dispose()


async def start_analytics(settings: AccountingSettings, nc: NATS) -> AnalyticsRuntime:
    engine = create_admin_engine(settings.database_url, timeout_s=settings.analytics_db_timeout_s)
    service = AnalyticsService(engine, settings.analytics_db_timeout_s)
    responder = Responder(nc, settings.analytics_subject, subjects.ANALYTICS_QUEUE, service.answer)
    stop = asyncio.Event()
    runtime = AnalyticsRuntime(responder, asyncio.create_task(_upkeep_loop(engine, settings, stop)), stop, engine)
    try:
        await responder.start()
    except BaseException:
        await runtime.stop(0)
        raise
    log.info(
        "analytics on %s; usage kept %s",
        settings.analytics_subject,
        f"{settings.usage_retention_days} days" if settings.usage_retention_days else "for ever",
    )
    return runtime
