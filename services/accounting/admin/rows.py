"""SQL shared by the key and team handlers: the tables, paging, the updated_at clock, lookups."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import ColumnElement, Table, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from accounting.admin.records import Row
from accounting.admin.schemas import Page
from accounting.models import ApiKey, Team
from common.errors import NotFoundError

KEYS: Table = ApiKey.__table__  # type: ignore[attr-defined]
TEAMS: Table = Team.__table__  # type: ignore[attr-defined]


def next_updated_at(table: Table) -> ColumnElement[Any]:
    """The time of this change, strictly after the row's previous one (by at least 1 ms, the
    records' resolution): the bucket keeps the record with the latest updated_at_ms, so two quick
    changes on two accounting replicas must not tie. clock_timestamp(), not now(): the statement's
    time, after any row lock was granted, not the transaction's start."""
    return func.greatest(func.clock_timestamp(), table.c.updated_at + text("interval '1 millisecond'"))


async def require_team(conn: AsyncConnection, team_id: str) -> None:
    """404 naming team_id unless the team exists; locks it (shared) so it cannot be deleted before
    this transaction commits a key into it."""
    found = await conn.scalar(select(TEAMS.c.id).where(TEAMS.c.id == team_id).with_for_update(read=True))
    if found is None:
        raise NotFoundError(f"team_id: no team {team_id!r}", param="team_id", code="team_not_found")


async def one(conn: AsyncConnection, table: Table, row_id: str, *, lock: bool = False) -> Row:
    query = select(table).where(table.c.id == row_id)
    if lock:
        query = query.with_for_update()
    row = (await conn.execute(query)).mappings().first()
    if row is None:
        raise not_found(table, row_id)
    return row


async def update_one(conn: AsyncConnection, table: Table, row_id: str, **values: Any) -> Row:
    """Change one row (its ``updated_at`` moved on, see ``next_updated_at``) and return it whole."""
    query = (
        update(table)
        .where(table.c.id == row_id)
        .values(**values, updated_at=next_updated_at(table))
        .returning(*table.c)
    )
    return (await conn.execute(query)).mappings().one()


def not_found(table: Table, row_id: str) -> NotFoundError:
    what = "key" if table is KEYS else "team"
    return NotFoundError(f"no {what} with id {row_id!r}", param="id", code=f"{what}_not_found")


async def page_of(
    conn: AsyncConnection,
    table: Table,
    page: Page,
    to_json: Callable[[Row], dict[str, Any]],
    *where: ColumnElement[bool],
) -> dict[str, Any]:
    """One page in creation order, with the total: ``{object: "list", data, page, per_page, total,
    has_more}``."""
    total = int(await conn.scalar(select(func.count()).select_from(table).where(*where)) or 0)
    rows = (
        await conn.execute(
            select(table)
            .where(*where)
            .order_by(table.c.created_at, table.c.id)
            .offset(page.offset)
            .limit(page.per_page)
        )
    ).mappings()
    data = [to_json(row) for row in rows]
    return {
        "object": "list",
        "data": data,
        "page": page.page,
        "per_page": page.per_page,
        "total": total,
        "has_more": page.offset + len(data) < total,
    }
