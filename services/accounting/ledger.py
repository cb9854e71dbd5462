"""The ledger's spend query (``subjects.LEDGER_SPEND``): what a key or a team has spent since a
moment, from ``usage_records``, for the router to rebuild a budget counter Redis lost.

``keys.v1.SpendQuery`` in, ``keys.v1.SpendAnswer`` out: the sum of ``cost_usd`` of the rows started
at or after ``since_ms``, in nano-USD rounded up (common.pricing.to_nano_usd, as budgets are
charged). When Postgres cannot answer within the time limit the answer carries ``error`` instead:
the router must then not admit against that budget, and it must never wait forever.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from google.protobuf.message import DecodeError
from sqlalchemy import Table, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from accounting.admin.db import is_unavailable
from accounting.models import UsageRecord
from common.pricing import to_nano_usd
from modelrouter.keys.v1 import keys_pb2

log = logging.getLogger(__name__)
USAGE: Table = UsageRecord.__table__  # type: ignore[attr-defined]
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class SpendLedger:
    def __init__(self, engine: AsyncEngine, timeout_s: float = 2.0) -> None:
        self._engine, self._timeout_s = engine, timeout_s

    async def answer(self, data: bytes) -> bytes:
        """The SpendAnswer for one SpendQuery; never raises."""
        return (await self._answer(data)).SerializeToString()

    async def _answer(self, data: bytes) -> keys_pb2.SpendAnswer:
        try:
            query = keys_pb2.SpendQuery.FromString(data)
        except DecodeError:
            return keys_pb2.SpendAnswer(error="not a keys.v1.SpendQuery")
        if bool(query.key_id) == bool(query.team_id):
            return keys_pb2.SpendAnswer(error="exactly one of key_id and team_id must be set")
        try:
            since = _EPOCH + timedelta(milliseconds=query.since_ms)
        except OverflowError:
            return keys_pb2.SpendAnswer(error=f"since_ms {query.since_ms} is out of range")
        try:
            async with asyncio.timeout(self._timeout_s):
                spent = await self.spent_usd(query, since)
        except Exception as exc:
            if not is_unavailable(exc):
                log.exception("spend query failed")
                return keys_pb2.SpendAnswer(error="the ledger could not be read")
            log.warning("spend query: the database is unreachable (%s)", type(exc).__name__)
            return keys_pb2.SpendAnswer(error=f"the database is unreachable ({type(exc).__name__})")
        return keys_pb2.SpendAnswer(spent_nano_usd=to_nano_usd(spent))

    async def spent_usd(self, query: keys_pb2.SpendQuery, since: datetime) -> Decimal:
        # One index range scan: (key_id, started_at) or (team_id, started_at).
        column = USAGE.c.key_id if query.key_id else USAGE.c.team_id
        statement = select(func.coalesce(func.sum(USAGE.c.cost_usd), 0)).where(
            column == (query.key_id or query.team_id), USAGE.c.started_at >= since
        )
        async with self._engine.connect() as conn:
            return Decimal(await conn.scalar(statement) or 0)
