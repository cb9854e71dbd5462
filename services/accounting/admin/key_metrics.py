"""Seed 001's per-key metrics (``GET /auth/metrics`` at the gateway): from the usage ledger, so every
gateway replica answers the same. One grouped scan of ``usage_records`` (its key_id index serves it);
the analytics work of a later issue may answer it from rollups instead."""

from __future__ import annotations

from sqlalchemy import func, select

from accounting.admin.context import AdminContext, Answer
from accounting.admin.records import iso
from accounting.models import UsageRecord

_USAGE = UsageRecord.__table__  # type: ignore[attr-defined]


async def key_metrics(ctx: AdminContext) -> Answer:
    success = _USAGE.c.status == "success"
    query = (
        select(
            _USAGE.c.key_id,
            func.count().label("requests"),
            func.count().filter(success).label("successes"),
            func.count().filter(~success).label("failures"),
            func.max(_USAGE.c.finished_at).label("last_used"),
        )
        .group_by(_USAGE.c.key_id)
        .order_by(_USAGE.c.key_id)
    )
    async with ctx.transaction() as conn:
        rows = (await conn.execute(query)).mappings().all()
    data = [
        {
            "key_id": row["key_id"],
            "requests": row["requests"],
            "successes": row["successes"],
            "failures": row["failures"],
            "last_used": iso(row["last_used"]),
        }
        for row in rows
    ]
    return Answer(200, {"object": "list", "data": data})
