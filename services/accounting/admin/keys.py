"""``/admin/keys``: create, list, get, patch, revoke (DELETE) and rotate client keys.

A key's secret (``sk-mr-`` + 32 random bytes, URL-safe) exists only in the answer to its creation
or rotation: Postgres and the bucket hold its SHA-256, and nothing here logs either. After each
commit the key's record is put in the bucket the gateways watch.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
from typing import Any

from sqlalchemy import insert

from accounting.admin import records
from accounting.admin.context import AdminContext, Answer
from accounting.admin.records import Row
from accounting.admin.rows import KEYS, next_updated_at, one, page_of, require_team, update_one
from accounting.admin.schemas import KeyCreate, KeyPage, KeyPatch, Rotate, budget_decimal, parse_body, parse_query
from common.errors import ConflictError

log = logging.getLogger(__name__)
SECRET_PREFIX = "sk-mr-"


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def digest_of(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def display_of(secret: str) -> str:
    return f"{SECRET_PREFIX}…{secret[-4:]}"


def _columns(fields: dict[str, Any]) -> dict[str, Any]:
    """Validated request fields -> column values (budgets exact, metadata under its column name)."""
    values = dict(fields)
    for name in records.BUDGET_FIELDS:
        if name in values:
            values[name] = budget_decimal(values[name])
    return values


async def _published(ctx: AdminContext, row: Row) -> None:
    record = records.key_record(row)
    await ctx.publish(records.key_entry(row["id"]), records.encode(record), record.updated_at_ms)


async def create_key(ctx: AdminContext, body: Any) -> Answer:
    fields = parse_body(KeyCreate, body).model_dump()
    secret = new_secret()
    values = {
        **_columns(fields),
        "id": f"key_{secrets.token_hex(8)}",
        "digest": digest_of(secret),
        "display": display_of(secret),
        "previous_secrets": [],
    }
    async with ctx.transaction() as conn:
        if values["team_id"] is not None:
            await require_team(conn, values["team_id"])
        row = (await conn.execute(insert(KEYS).values(**values).returning(*KEYS.c))).mappings().one()
    log.info("created key %s (team %s)", row["id"], row["team_id"] or "-")
    await _published(ctx, row)
    return Answer(201, {**records.key_json(row), "key": secret})


async def list_keys(ctx: AdminContext, query: dict[str, str]) -> Answer:
    page = parse_query(KeyPage, query)
    where = [KEYS.c.team_id == page.team_id] if page.team_id is not None else []
    async with ctx.transaction() as conn:
        return Answer(200, await page_of(conn, KEYS, page, records.key_json, *where))


async def get_key(ctx: AdminContext, key_id: str) -> Answer:
    async with ctx.transaction() as conn:
        return Answer(200, records.key_json(await one(conn, KEYS, key_id)))


async def patch_key(ctx: AdminContext, key_id: str, body: Any) -> Answer:
    fields = parse_body(KeyPatch, body).given()
    async with ctx.transaction() as conn:
        row = await one(conn, KEYS, key_id, lock=True)
        if not fields:
            return Answer(200, records.key_json(row))
        if fields.get("team_id") is not None:
            await require_team(conn, fields["team_id"])
        row = await update_one(conn, KEYS, key_id, **_columns(fields))
    log.info("updated key %s (%s)", key_id, ", ".join(sorted(fields)))
    await _published(ctx, row)
    return Answer(200, records.key_json(row))


async def revoke_key(ctx: AdminContext, key_id: str) -> Answer:
    """DELETE: the key stops working, its row stays (usage refers to it). Revoking twice keeps the
    first revocation's time."""
    async with ctx.transaction() as conn:
        row = await one(conn, KEYS, key_id, lock=True)
        if row["revoked_at"] is not None:
            return Answer(200, records.key_json(row))
        row = await update_one(conn, KEYS, key_id, revoked_at=next_updated_at(KEYS))
    log.info("revoked key %s", key_id)
    await _published(ctx, row)
    return Answer(200, records.key_json(row))


async def rotate_key(ctx: AdminContext, key_id: str, body: Any) -> Answer:
    """A new secret; the old one stays valid for ``grace_period_s`` (0: not at all). Earlier secrets
    whose grace has ended are dropped from the row."""
    grace_s = parse_body(Rotate, body, optional=True).grace_period_s
    secret = new_secret()
    async with ctx.transaction() as conn:
        row = await one(conn, KEYS, key_id, lock=True)
        if row["revoked_at"] is not None:
            raise ConflictError(f"key {key_id!r} is revoked; create a new key instead", param="id")
        now_ms = int(time.time() * 1000)
        previous = [p for p in row["previous_secrets"] if int(p["valid_until_ms"]) > now_ms]
        if grace_s > 0:
            previous.append({"digest": row["digest"], "valid_until_ms": now_ms + grace_s * 1000})
        row = await update_one(
            conn, KEYS, key_id, digest=digest_of(secret), display=display_of(secret), previous_secrets=previous
        )
    log.info("rotated key %s (old secret valid for %ds more)", key_id, grace_s)
    await _published(ctx, row)
    return Answer(200, {**records.key_json(row), "key": secret})
