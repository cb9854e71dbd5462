"""``/admin/teams``: create, list, get, patch and delete teams (there is no rotate: a team has no
secret).

A team's limits and budgets bind the sum of its keys. Deleting a team that still has keys not
revoked is refused (409): silently detaching them would free them from the team's budgets. Its
revoked keys are detached (team_id NULL) and the team row is deleted; their usage rows keep the
team id. A team's change rewrites only its own record in the bucket (keys name their team).
"""

from __future__ import annotations

import logging
import secrets
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from accounting.admin import records
from accounting.admin.context import AdminContext, Answer
from accounting.admin.records import Row
from accounting.admin.rows import KEYS, TEAMS, next_updated_at, one, page_of, update_one
from accounting.admin.schemas import Page, TeamCreate, TeamPatch, budget_decimal, parse_body, parse_query
from common.errors import ConflictError

log = logging.getLogger(__name__)


def _columns(fields: dict[str, Any]) -> dict[str, Any]:
    values = dict(fields)
    for name in records.BUDGET_FIELDS:
        if name in values:
            values[name] = budget_decimal(values[name])
    return values


async def _members(conn: AsyncConnection, team_id: str) -> list[Row]:
    """The team's keys not revoked, oldest first."""
    query = (
        select(KEYS.c.id, KEYS.c.name)
        .where(KEYS.c.team_id == team_id, KEYS.c.revoked_at.is_(None))
        .order_by(KEYS.c.created_at, KEYS.c.id)
    )
    return list((await conn.execute(query)).mappings())


async def _published(ctx: AdminContext, row: Row) -> None:
    record = records.team_record(row)
    await ctx.publish(records.team_entry(row["id"]), records.encode(record), record.updated_at_ms)


async def create_team(ctx: AdminContext, body: Any) -> Answer:
    fields = parse_body(TeamCreate, body).model_dump()
    values = {**_columns(fields), "id": f"team_{secrets.token_hex(8)}"}
    async with ctx.transaction() as conn:
        row = (await conn.execute(insert(TEAMS).values(**values).returning(*TEAMS.c))).mappings().one()
    log.info("created team %s", row["id"])
    await _published(ctx, row)
    return Answer(201, records.team_json(row, []))


async def list_teams(ctx: AdminContext, query: dict[str, str]) -> Answer:
    page = parse_query(Page, query)
    async with ctx.transaction() as conn:
        return Answer(200, await page_of(conn, TEAMS, page, records.team_json))


async def get_team(ctx: AdminContext, team_id: str) -> Answer:
    async with ctx.transaction() as conn:
        row = await one(conn, TEAMS, team_id)
        return Answer(200, records.team_json(row, await _members(conn, team_id)))


async def patch_team(ctx: AdminContext, team_id: str, body: Any) -> Answer:
    fields = parse_body(TeamPatch, body).given()
    async with ctx.transaction() as conn:
        row = await one(conn, TEAMS, team_id, lock=True)
        if fields:
            row = await update_one(conn, TEAMS, team_id, **_columns(fields))
        members = await _members(conn, team_id)
    if fields:
        log.info("updated team %s (%s)", team_id, ", ".join(sorted(fields)))
        await _published(ctx, row)
    return Answer(200, records.team_json(row, members))


async def delete_team(ctx: AdminContext, team_id: str) -> Answer:
    async with ctx.transaction() as conn:
        await one(conn, TEAMS, team_id, lock=True)  # waits for keys being added to it (FOR SHARE)
        active = int(
            await conn.scalar(select(func.count()).where(KEYS.c.team_id == team_id, KEYS.c.revoked_at.is_(None))) or 0
        )
        if active:
            raise ConflictError(
                f"team {team_id!r} still has {active} key(s) not revoked; revoke them or move them "
                "to another team (PATCH /admin/keys/{id} with team_id) first",
                param="id",
                code="team_has_keys",
            )
        detached = list(
            (
                await conn.execute(
                    update(KEYS)
                    .where(KEYS.c.team_id == team_id)
                    .values(team_id=None, updated_at=next_updated_at(KEYS))
                    .returning(*KEYS.c)
                )
            ).mappings()
        )
        await conn.execute(delete(TEAMS).where(TEAMS.c.id == team_id))
    log.info("deleted team %s (%d revoked keys detached)", team_id, len(detached))
    for key in detached:
        record = records.key_record(key)
        await ctx.publish(records.key_entry(key["id"]), records.encode(record), record.updated_at_ms)
    await ctx.unpublish(records.team_entry(team_id))
    return Answer(200, {"id": team_id, "object": "team", "deleted": True})
