"""The full sync: make the keys bucket say what Postgres says, at start and then periodically.

Each round puts every key and team whose bucket value differs (or is missing) and deletes entries
Postgres no longer has, so a bucket that was lost, restored from an old backup, edited by hand or
missed a put (NATS down right after a commit) heals within one interval. Revoked keys stay in the
bucket (a gateway answers "revoked", not "unknown") until REVOKED_RETENTION after revocation.

With several accounting replicas (or an admin write) writing meanwhile, the round never replaces
something newer than what it read: it reads the bucket first, then Postgres, and writes each entry
only if it still holds the revision read (a change after that came from a later commit). An entry
Postgres lacks is looked up again, alone, before it is deleted: the key may have been created
after Postgres was read.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import suppress
from dataclasses import dataclass
from datetime import timedelta

from nats.errors import Error as NatsError
from sqlalchemy import ColumnElement, func, or_, select
from sqlalchemy.ext.asyncio import AsyncEngine

from accounting.admin import records
from accounting.admin.bucket import KeyBucket
from accounting.admin.db import transaction
from accounting.admin.rows import KEYS, TEAMS
from common.errors import DatabaseUnavailableError

log = logging.getLogger(__name__)
REVOKED_RETENTION = timedelta(days=30)
# Reading every key and team can take longer than one admin request may.
_READ_LIMIT_S = 30.0


@dataclass(frozen=True)
class SyncReport:
    put: int
    deleted: int


def _published_keys() -> ColumnElement[bool]:
    return or_(KEYS.c.revoked_at.is_(None), KEYS.c.revoked_at > func.now() - REVOKED_RETENTION)


class BucketSync:
    def __init__(self, engine: AsyncEngine, bucket: KeyBucket) -> None:
        self._engine, self._bucket = engine, bucket

    async def _desired(self) -> dict[str, bytes]:
        async with transaction(self._engine, _READ_LIMIT_S) as conn:
            key_rows = (await conn.execute(select(KEYS).where(_published_keys()))).mappings().all()
            team_rows = (await conn.execute(select(TEAMS))).mappings().all()
        wanted = {records.key_entry(r["id"]): records.encode(records.key_record(r)) for r in key_rows}
        wanted.update({records.team_entry(r["id"]): records.encode(records.team_record(r)) for r in team_rows})
        return wanted

    async def _still_published(self, entry: str) -> bool:
        if entry.startswith(records.KEY_PREFIX):
            key_id = entry.removeprefix(records.KEY_PREFIX)
            query = select(KEYS.c.id).where(KEYS.c.id == key_id, _published_keys())
        elif entry.startswith(records.TEAM_PREFIX):
            query = select(TEAMS.c.id).where(TEAMS.c.id == entry.removeprefix(records.TEAM_PREFIX))
        else:
            return False  # not an entry of ours at all
        async with transaction(self._engine, _READ_LIMIT_S) as conn:
            return await conn.scalar(query) is not None

    async def sync_once(self) -> SyncReport:
        tombstones: dict[str, int] = {}
        seen = await self._bucket.snapshot(tombstones)
        wanted = await self._desired()
        put = deleted = 0
        for entry, value in wanted.items():
            have = seen.get(entry)
            if have is not None and have.value == value:
                continue
            if await self._bucket.replace(entry, value, have, tombstones.get(entry, 0)):
                put += 1
        for entry in seen.keys() - wanted.keys():
            if not await self._still_published(entry):
                await self._bucket.remove_seen(entry, seen[entry])
                deleted += 1
        if put or deleted:
            log.info("keys bucket synced from Postgres: %d entries written, %d deleted", put, deleted)
        return SyncReport(put, deleted)

    async def run(self, stop: asyncio.Event, interval_s: float, synced: asyncio.Event | None = None) -> None:
        """Sync now, then every ``interval_s`` until ``stop``; a failed round is retried next time.
        ``synced`` is set once a round has finished."""
        failing = False
        while not stop.is_set():
            try:
                await self.sync_once()
                if synced is not None:
                    synced.set()
                if failing:
                    log.info("keys bucket sync works again")
                failing = False
            except (DatabaseUnavailableError, NatsError, TimeoutError) as exc:
                if not failing:  # once per outage, not every round
                    log.warning("keys bucket sync failed, retrying every %.0fs: %s", interval_s, _reason(exc))
                failing = True
            except Exception:
                log.exception("keys bucket sync failed")
            with suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval_s)


def _reason(exc: BaseException) -> str:
    return getattr(exc, "message", None) or repr(exc)
