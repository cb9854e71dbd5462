"""What every admin handler works with, and the shape of its answer."""

from __future__ import annotations

import logging
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

from nats.errors import Error as NatsError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from accounting.admin.bucket import KeyBucket
from accounting.admin.db import transaction

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any


@dataclass(frozen=True)
class AdminContext:
    engine: AsyncEngine
    bucket: KeyBucket
    # Each connect and statement waits at most this long (the engine's timeouts); a whole
    # transaction at most twice it.
    db_timeout_s: float

    def transaction(self) -> AbstractAsyncContextManager[AsyncConnection]:
        return transaction(self.engine, 2 * self.db_timeout_s)

    async def publish(self, entry: str, value: bytes, updated_at_ms: int) -> None:
        """Put a changed record in the bucket after its commit. Postgres is the truth: a failed put
        is logged, not answered as a failure, and the next full sync writes it."""
        try:
            await self.bucket.publish(entry, value, updated_at_ms)
        except (NatsError, TimeoutError) as exc:
            log.warning("publishing %s to the keys bucket failed (the full sync will): %r", entry, exc)

    async def unpublish(self, entry: str) -> None:
        try:
            await self.bucket.remove(entry)
        except (NatsError, TimeoutError) as exc:
            log.warning("deleting %s from the keys bucket failed (the full sync will): %r", entry, exc)
