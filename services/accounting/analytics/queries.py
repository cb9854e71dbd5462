"""The analytics API's answers, from Postgres: the usage summary and /user/stats from the daily
rollup, the request list and a request's detail from ``usage_records`` (and ``usage_bodies``).

Every query is narrowed by the caller's scope first (a key's id, a team's), which the indexes lead
with; time ranges prune the monthly partitions.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, Table, and_, case, func, literal, literal_column, select, true
from sqlalchemy.ext.asyncio import AsyncConnection

from accounting.admin.records import iso
from accounting.analytics.rollup import DAILY, TOTALS
from accounting.models import UsageBody, UsageRecord
from common.analytics import RequestQuery, RequestsQuery, Scope, UsageQuery
from common.errors import NotFoundError

USAGE: Table = UsageRecord.__table__  # type: ignore[attr-defined]
BODIES: Table = UsageBody.__table__  # type: ignore[attr-defined]
PREVIEW_CHARS = 100
TOP_MODELS = 5
_STATUS_SUM = {"success": "successes", "error": "errors", "cancelled": "cancelled"}


def _money(value: Decimal | None) -> float:
    return float(value) if value is not None else 0.0


def _money_or_none(value: Decimal | None) -> float | None:
    """One request's cost: None when its price was unknown (a sum over none is 0, ``_money``)."""
    return float(value) if value is not None else None


def _scoped(table: Table, scope: Scope) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = []
    if scope.key_id is not None:
        where.append(table.c.key_id == scope.key_id)
    if scope.team_id is not None:
        where.append(table.c.team_id == scope.team_id)
    return where


def rollup_of(scope: Scope) -> Table:
    """The rollup that answers for ``scope``: the totals (a few rows a day) for everyone's, the per-key
    one (indexed by key and by team) otherwise."""
    return TOTALS if scope.key_id is None and scope.team_id is None else DAILY


def today(now: datetime | None = None) -> date:
    return (now or datetime.now(UTC)).astimezone(UTC).date()


# --- GET /v1/analytics/usage ------------------------------------------------------------------


async def usage(conn: AsyncConnection, scope: Scope, query: UsageQuery, now: datetime | None = None) -> dict[str, Any]:
    """Seed 003's usage summary over the last ``days`` UTC days (today included), in one scan of the
    rollup: the totals, by provider, by model and by day are four grouping sets of it."""
    since = today(now) - timedelta(days=query.days - 1)
    table = rollup_of(scope)
    d = table.c
    grouping = func.grouping(d.provider, d.model, d.day)
    stmt = (
        select(
            grouping.label("g"),
            d.provider,
            d.model,
            d.day,
            func.sum(d.requests).label("requests"),
            func.sum(d.successes).label("successes"),
            func.sum(d.cost_usd).label("cost_usd"),
            func.sum(d.latency_ms_sum).label("latency_ms_sum"),
        )
        .where(d.day >= since, *_scoped(table, scope))
        .group_by(
            func.grouping_sets(
                literal_column("()"),
                d.provider,
                d.model,
                d.day,
            )
        )
    )
    rows = (await conn.execute(stmt)).mappings().all()
    # grouping(provider, model, day): a bit set for each column NOT grouped by (4, 2, 1).
    by = {0b111: [], 0b011: [], 0b101: [], 0b110: []}  # type: dict[int, list[Any]]
    for row in rows:
        by.setdefault(row["g"], []).append(row)
    total = by[0b111][0] if by[0b111] and by[0b111][0]["requests"] else None
    requests = int(total["requests"]) if total else 0

    def ranked(rows: list[Any], name: str) -> list[dict[str, Any]]:
        items = [
            {name: row[name] or None, "requests": int(row["requests"]), "cost_usd": _money(row["cost_usd"])}
            for row in rows
        ]
        return sorted(items, key=lambda item: (-item["requests"], str(item[name])))

    return {
        "total_requests": requests,
        "total_cost_usd": _money(total["cost_usd"]) if total else 0.0,
        "avg_latency_ms": round(total["latency_ms_sum"] / requests, 6) if total else None,
        "success_rate": round(int(total["successes"]) / requests, 6) if total else None,
        "by_provider": ranked(by[0b011], "provider"),
        "by_model": ranked(by[0b101], "model"),
        "daily_stats": [
            {"date": row["day"].isoformat(), "requests": int(row["requests"]), "cost_usd": _money(row["cost_usd"])}
            for row in sorted(by[0b110], key=lambda row: row["day"])
        ],
    }


# --- GET /v1/analytics/requests ---------------------------------------------------------------


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _request_filters(scope: Scope, query: RequestsQuery) -> list[ColumnElement[bool]]:
    u = USAGE.c
    where = _scoped(USAGE, scope)
    if query.model is not None:
        where.append(u.requested_model == query.model)
    if query.status is not None:
        where.append(u.status == query.status)
    if query.start_date is not None:
        where.append(u.started_at >= query.start_date)
    if query.end_date is not None:
        where.append(u.started_at <= query.end_date)
    return where


def _joined() -> Any:
    return USAGE.outerjoin(
        BODIES, and_(BODIES.c.request_id == USAGE.c.request_id, BODIES.c.started_at == USAGE.c.started_at)
    )


async def _total(conn: AsyncConnection, scope: Scope, query: RequestsQuery) -> int:
    """How many rows the list's filters match. Without a search or a date range the rollup knows
    (its rows are a few per key and day); otherwise the rows are counted."""
    if query.search is None and query.start_date is None and query.end_date is None:
        table = rollup_of(scope)
        d = table.c
        where = _scoped(table, scope)
        if query.model is not None:
            where.append(d.model == query.model)
        counted = d[_STATUS_SUM[query.status]] if query.status is not None else d.requests
        return int(await conn.scalar(select(func.coalesce(func.sum(counted), 0)).where(*where)) or 0)
    where = _request_filters(scope, query)
    if query.search is None:
        return int(await conn.scalar(select(func.count()).select_from(USAGE).where(*where)) or 0)
    return int(
        await conn.scalar(select(func.count()).select_from(_joined()).where(*where, *_search(scope, query))) or 0
    )


def _search(scope: Scope, query: RequestsQuery) -> list[ColumnElement[bool]]:
    """The search's conditions on usage_bodies, the scope and range repeated on the bodies' own columns
    so that Postgres narrows there before joining.

    Across keys the trigram index finds the texts (ILIKE). Within one key its own texts are few (its
    index on (key_id, started_at) finds them) and are read and matched one by one: the same match
    spelled with lower() on both sides, which the trigram index cannot serve, because Postgres
    underestimates how many texts share a search's trigrams and would otherwise scan the whole
    trigram index of every month for a handful of rows.
    """
    assert query.search is not None
    b = BODIES.c
    pattern = f"%{_escape_like(query.search)}%"
    if scope.key_id is not None:
        matches = func.lower(b.prompt_text).like(func.lower(pattern), escape="\\")
    else:
        matches = b.prompt_text.ilike(pattern, escape="\\")
    where = [matches, *_scoped(BODIES, scope)]
    if query.start_date is not None:
        where.append(b.started_at >= query.start_date)
    if query.end_date is not None:
        where.append(b.started_at <= query.end_date)
    return where


async def requests(conn: AsyncConnection, scope: Scope, query: RequestsQuery) -> dict[str, Any]:
    """One page of seed 003's request list, newest first, with the total the filters match."""
    u, b = USAGE.c, BODIES.c
    columns = (
        u.request_id,
        u.started_at,
        u.requested_model,
        u.provider,
        func.left(b.prompt_text, PREVIEW_CHARS).label("prompt_preview"),
        u.prompt_tokens,
        u.completion_tokens,
        u.cost_usd,
        u.latency_ms,
        u.status,
    )
    newest_first = (u.started_at.desc(), u.request_id.desc())
    if query.search is not None and query.model is None and query.status is None:
        # Only the texts decide: their page and their number come from usage_bodies alone, and only the
        # page's rows are then read from usage_records (not every match's).
        page = (
            select(b.request_id, b.started_at, func.count().over().label("matched"))
            .where(*_search(scope, query))
            .order_by(b.started_at.desc(), b.request_id.desc())
            .offset(query.offset)
            .limit(query.per_page)
            .subquery()
        )
        stmt = (
            select(*columns, page.c.matched)
            .select_from(
                page.join(USAGE, and_(u.request_id == page.c.request_id, u.started_at == page.c.started_at)).join(
                    BODIES, and_(b.request_id == page.c.request_id, b.started_at == page.c.started_at)
                )
            )
            .order_by(*newest_first)
        )
    else:
        where = _request_filters(scope, query)
        if query.search is not None:
            where += _search(scope, query)
        stmt = (
            select(*columns)
            .select_from(_joined())
            .where(*where)
            .order_by(*newest_first)
            .offset(query.offset)
            .limit(query.per_page)
        )
        if query.search is not None:
            # The matches are found once: the page and (over all of them) their number in one query.
            stmt = stmt.add_columns(func.count().over().label("matched"))
    rows = (await conn.execute(stmt)).mappings().all()
    if query.search is not None and rows:
        total = int(rows[0]["matched"])
    else:  # no search, or a page past the last one
        total = await _total(conn, scope, query)
    return {
        "requests": [
            {
                "id": row["request_id"],
                "created_at": iso(row["started_at"]),
                "model": row["requested_model"],
                "provider": row["provider"],
                "prompt_preview": row["prompt_preview"],
                "input_tokens": row["prompt_tokens"],
                "output_tokens": row["completion_tokens"],
                "total_cost_usd": _money_or_none(row["cost_usd"]),
                "latency_ms": row["latency_ms"],
                "status": row["status"],
            }
            for row in rows
        ],
        "total": total,
        "page": query.page,
        "per_page": query.per_page,
        "total_pages": -(-total // query.per_page),
    }


# --- GET /v1/analytics/requests/{id} ----------------------------------------------------------


async def request(conn: AsyncConnection, scope: Scope, query: RequestQuery) -> dict[str, Any]:
    """Seed 003's detail of one request; 404 when there is none with that id in the caller's scope
    (another key's request is not told apart from a missing one)."""
    u, b = USAGE.c, BODIES.c
    stmt = (
        select(USAGE, b.prompt_text, b.response_text)
        .select_from(_joined())
        .where(u.request_id == query.id, *_scoped(USAGE, scope))
        .order_by(u.started_at)
        .limit(1)
    )
    row = (await conn.execute(stmt)).mappings().first()
    if row is None:
        raise NotFoundError(f"No request with id {query.id!r}.", param="id", code="request_not_found")
    return {
        "id": row["request_id"],
        "created_at": iso(row["started_at"]),
        "completed_at": iso(row["finished_at"]),
        "model": row["requested_model"],
        "provider": row["provider"],
        "prompt_text": row["prompt_text"],
        "response_text": row["response_text"],
        "input_tokens": row["prompt_tokens"],
        "output_tokens": row["completion_tokens"],
        "total_tokens": row["total_tokens"],
        # null when the deployment's price is unknown (price_unknown): unknown is not free.
        "input_cost_usd": _money_or_none(row["input_cost_usd"]),
        "output_cost_usd": _money_or_none(row["output_cost_usd"]),
        "total_cost_usd": _money_or_none(row["cost_usd"]),
        "latency_ms": row["latency_ms"],
        "status": row["status"],
        "error_message": row["error_message"],
    }


# --- GET /user/stats ---------------------------------------------------------------------------


async def user_stats(conn: AsyncConnection, scope: Scope, now: datetime | None = None) -> dict[str, Any]:
    """The caller's requests, tokens and cost today and this month, its top models this month, and
    what its team spent (for the team's budgets): one scan of the rollup's month for the key, one for
    the team."""
    day = today(now)
    month_start = day.replace(day=1)
    d = DAILY.c
    is_today = d.day == day
    stmt = (
        select(
            d.model,
            func.sum(d.requests).label("requests"),
            func.sum(d.total_tokens).label("tokens"),
            func.sum(d.cost_usd).label("cost"),
            func.sum(case((is_today, d.requests), else_=0)).label("requests_today"),
            func.sum(case((is_today, d.total_tokens), else_=0)).label("tokens_today"),
            func.sum(case((is_today, d.cost_usd), else_=literal(0))).label("cost_today"),
        )
        .where(d.day >= month_start, d.key_id == scope.key_id if scope.key_id is not None else true())
        .group_by(d.model)
    )
    rows = (await conn.execute(stmt)).mappings().all()

    def period(suffix: str) -> dict[str, Any]:
        return {
            "requests": sum(int(r[f"requests{suffix}"]) for r in rows),
            "tokens": sum(int(r[f"tokens{suffix}"]) for r in rows),
            "cost_usd": _money(sum((r[f"cost{suffix}"] or Decimal(0) for r in rows), Decimal(0))),
        }

    top = sorted(rows, key=lambda r: (-int(r["requests"]), r["model"]))[:TOP_MODELS]
    answer: dict[str, Any] = {
        "today": period("_today"),
        "this_month": period(""),
        "top_models": [
            {
                "model": r["model"],
                "requests": int(r["requests"]),
                "tokens": int(r["tokens"]),
                "cost_usd": _money(r["cost"]),
            }
            for r in top
        ],
        "team": None,
    }
    if scope.team_id is not None:
        team = (
            await conn.execute(
                select(
                    func.coalesce(func.sum(d.cost_usd), 0).label("month"),
                    func.coalesce(func.sum(case((is_today, d.cost_usd), else_=literal(0))), 0).label("today"),
                ).where(d.team_id == scope.team_id, d.day >= month_start)
            )
        ).one()
        answer["team"] = {"cost_usd_today": _money(team.today), "cost_usd_this_month": _money(team.month)}
    return answer
