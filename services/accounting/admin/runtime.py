"""Everything accounting serves besides the usage consumer, built and started in one place by
``accounting.main``: the keys bucket (created if missing), its periodic full sync, the admin API
responder and the ledger's spend-query responder, over one Postgres engine with short timeouts."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

from nats.aio.client import Client as NATS

from accounting.admin.bucket import KeyBucket, open_bucket
from accounting.admin.context import AdminContext
from accounting.admin.db import create_admin_engine
from accounting.admin.service import AdminService
from accounting.admin.sync import BucketSync
from accounting.ledger import SpendLedger
from accounting.responder import Responder
from common import subjects
from common.settings import AccountingSettings

log = logging.getLogger(__name__)
# The router waits on a spend query before admitting against a rebuilt budget: keep it short.
SPEND_QUERY_TIMEOUT_S = 2.0


@dataclass
class KeysRuntime:
    responders: list[Responder]
    sync_task: asyncio.Task[None]
    stop_sync: asyncio.Event
    close_engine: contextlib.AsyncExitStack
    synced: asyncio.Event  # set once a full sync round has finished

    async def stop(self, drain_timeout_s: float) -> None:
        for responder in self.responders:
            await responder.stop(drain_timeout_s)
        self.stop_sync.set()
        try:
            await asyncio.wait_for(self.sync_task, timeout=drain_timeout_s)
        except TimeoutError:
            self.sync_task.cancel()
        await self.close_engine.aclose()


async def start_keys(settings: AccountingSettings, nc: NATS) -> KeysRuntime:
    """Open (or create) the bucket, start the sync loop (its first round at once) and subscribe.

    Raises nats errors when the bucket cannot be opened or created (JetStream missing).
    """
    kv = await open_bucket(nc.jetstream(), settings.keys_bucket)
    bucket = KeyBucket(kv)
    engine = create_admin_engine(settings.database_url, timeout_s=settings.admin_db_timeout_s)
    closing = contextlib.AsyncExitStack()
    closing.push_async_callback(engine.dispose)
    stop_sync, synced = asyncio.Event(), asyncio.Event()
    sync_task = asyncio.create_task(
        BucketSync(engine, bucket).run(stop_sync, settings.keys_sync_interval_s, synced=synced)
    )
    admin = AdminService(AdminContext(engine, bucket, settings.admin_db_timeout_s))
    ledger = SpendLedger(engine, min(SPEND_QUERY_TIMEOUT_S, settings.admin_db_timeout_s))
    responders = [
        Responder(nc, settings.admin_subject, subjects.ADMIN_QUEUE, admin.answer),
        Responder(nc, settings.ledger_subject, subjects.LEDGER_QUEUE, ledger.answer),
    ]
    runtime = KeysRuntime(responders, sync_task, stop_sync, closing, synced)
    try:
        for responder in responders:
            await responder.start()
    except BaseException:
        await runtime.stop(0)
        raise
    log.info(
        "admin API on %s, spend queries on %s, keys bucket %s (full sync every %.0fs)",
        settings.admin_subject,
        settings.ledger_subject,
        settings.keys_bucket,
        settings.keys_sync_interval_s,
    )
    return runtime
