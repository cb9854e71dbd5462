"""Shared by the admin API tests: accounting's keys runtime (admin responder, spend-query responder,
bucket sync) started in this process over the real Postgres and NATS, with a bucket and subjects of
the test's own, and a client speaking the JSON envelope of ``subjects.ADMIN``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from nats.aio.client import Client as NATS
from nats.js.kv import KeyValue
from sqlalchemy.ext.asyncio import AsyncEngine

from accounting.admin.bucket import KeyBucket
from accounting.admin.db import create_admin_engine
from accounting.admin.runtime import KeysRuntime, start_keys
from accounting.admin.sync import BucketSync
from common.settings import AccountingSettings
from modelrouter.keys.v1 import keys_pb2


def settings_for(database_url: str, nats_url: str, unique: str, **overrides: Any) -> AccountingSettings:
    fields: dict[str, Any] = {
        "database_url": database_url,
        "nats_url": nats_url,
        "keys_bucket": f"MR_KEYS_TEST_{unique}",
        "admin_subject": f"test.{unique}.admin",
        "ledger_subject": f"test.{unique}.ledger.spend",
        "keys_sync_interval_s": 3600,  # tests run the sync themselves (sync_once) unless they say
    }
    return AccountingSettings(**{**fields, **overrides})


@dataclass
class AdminClient:
    nc: NATS
    settings: AccountingSettings
    runtime: KeysRuntime
    kv: KeyValue
    engine: AsyncEngine

    async def call(
        self, method: str, path: str, body: Any = None, query: dict[str, str] | None = None, timeout: float = 15.0
    ) -> tuple[int, Any]:
        envelope = {"method": method, "path": path, "query": query or {}, "body": body}
        reply = await self.nc.request(self.settings.admin_subject, orjson.dumps(envelope), timeout=timeout)
        answer = orjson.loads(reply.data)
        return answer["status"], answer["body"]

    async def ok(self, method: str, path: str, body: Any = None, status: int = 200, **kw: Any) -> Any:
        got, answer = await self.call(method, path, body, **kw)
        assert got == status, answer
        return answer

    async def key_record(self, key_id: str) -> keys_pb2.KeyRecord:
        return keys_pb2.KeyRecord.FromString((await self.kv.get(f"key.{key_id}")).value)

    async def team_record(self, team_id: str) -> keys_pb2.TeamRecord:
        return keys_pb2.TeamRecord.FromString((await self.kv.get(f"team.{team_id}")).value)

    def sync(self) -> BucketSync:
        return BucketSync(self.engine, KeyBucket(self.kv))


@pytest.fixture
async def admin(migrated_url: str, nats_url: str, nc: NATS, unique: str) -> AsyncIterator[AdminClient]:
    settings = settings_for(migrated_url, nats_url, unique)
    runtime = await start_keys(settings, nc)
    # The service's first sync round runs at start; the tests' own rounds must not race it.
    await asyncio.wait_for(runtime.synced.wait(), 30)
    js = nc.jetstream()
    engine = create_admin_engine(migrated_url, timeout_s=3)
    try:
        yield AdminClient(nc, settings, runtime, await js.key_value(settings.keys_bucket), engine)
    finally:
        await runtime.stop(5)
        await engine.dispose()
        await js.delete_key_value(settings.keys_bucket)


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 5.0, what: str = "") -> float:
    """Seconds until ``check`` held; AssertionError after ``timeout``."""
    started = time.monotonic()
    while not await check():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.02)
    return time.monotonic() - started
