"""The daily rollups kept by the consumer: each batch's newly stored rows, summed per UTC day, key,
team, model and provider (``usage_daily``) and per day, model and provider (``usage_daily_totals``),
added in the same transaction as their insert.

Only rows the insert really stored are added (its RETURNING names them): a redelivered event whose row
already exists adds nothing, so the rollup stays equal to a GROUP BY over ``usage_records``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC
from decimal import Decimal
from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects.postgresql import insert

from accounting.models import UsageDaily, UsageDailyTotal
from accounting.models.analytics import NO_PROVIDER, NO_TEAM

DAILY: Table = UsageDaily.__table__  # type: ignore[attr-defined]
TOTALS: Table = UsageDailyTotal.__table__  # type: ignore[attr-defined]
_SUMS = (
    "requests",
    "successes",
    "errors",
    "cancelled",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "cost_usd",
    "latency_ms_sum",
)
_STATUS_COLUMN = {"success": "successes", "error": "errors", "cancelled": "cancelled"}

RollupKey = tuple[Any, str, str, str, str]


def rollup_rows(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """``usage_records`` rows -> ``usage_daily`` rows, sorted by their key (two replicas upserting the
    same rollup rows then lock them in the same order and cannot deadlock)."""
    sums: dict[RollupKey, dict[str, Any]] = {}
    for row in rows:
        key = (
            row["started_at"].astimezone(UTC).date(),
            row["key_id"],
            row["team_id"] or NO_TEAM,
            row["requested_model"],
            row["provider"] or NO_PROVIDER,
        )
        acc = sums.get(key)
        if acc is None:
            acc = sums[key] = {name: 0 for name in _SUMS}
            acc["cost_usd"], acc["latency_ms_sum"] = Decimal(0), 0.0
        acc["requests"] += 1
        acc[_STATUS_COLUMN[row["status"]]] += 1
        acc["prompt_tokens"] += row["prompt_tokens"]
        acc["completion_tokens"] += row["completion_tokens"]
        acc["total_tokens"] += row["total_tokens"]
        acc["cost_usd"] += row["cost_usd"]
        acc["latency_ms_sum"] += row["latency_ms"]
    return [
        {"day": k[0], "key_id": k[1], "team_id": k[2], "model": k[3], "provider": k[4], **sums[k]} for k in sorted(sums)
    ]


def totals_rows(daily: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``usage_daily`` rows summed over keys and teams: ``usage_daily_totals`` rows, sorted."""
    sums: dict[tuple[Any, str, str], dict[str, Any]] = {}
    for row in daily:
        key = (row["day"], row["model"], row["provider"])
        acc = sums.get(key)
        if acc is None:
            sums[key] = {name: row[name] for name in _SUMS}
        else:
            for name in _SUMS:
                acc[name] += row[name]
    return [{"day": k[0], "model": k[1], "provider": k[2], **sums[k]} for k in sorted(sums)]


def upserts(rows: list[dict[str, Any]]) -> list[Any]:
    """The INSERT … ON CONFLICT DO UPDATE statements adding ``rows`` (``rollup_rows``) to both rollups."""
    statements = []
    for table, values in ((DAILY, rows), (TOTALS, totals_rows(rows))):
        stmt = insert(table).values(values)
        statements.append(
            stmt.on_conflict_do_update(
                constraint=f"{table.name}_pkey",
                set_={name: table.c[name] + stmt.excluded[name] for name in _SUMS},
            )
        )
    return statements
