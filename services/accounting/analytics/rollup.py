"""One batch of usage rows, the daily rollups and the texts, written by one statement.

The rows are passed as one array of ``usage_record_in`` rows and the texts as one of ``usage_body_in``
rows (migration 0006: the batch's own row types), expanded by ``unnest`` (the statement's text is the
same whatever the batch's size, so asyncpg prepares it once per connection). The rows are inserted
with ``ON CONFLICT (request_id, started_at) DO NOTHING``, and only the rows that insert RETURNS (those
really stored: a redelivered event's row already exists, an event twice in one batch is stored once)
are summed into ``usage_daily`` (per UTC day, key, team, model, provider) and ``usage_daily_totals``
(per day, model, provider), and have their texts stored. All of it is one statement, hence one
transaction (sent outside a transaction block, a statement is a transaction of its own) and one round
trip, so the rollups always equal a GROUP BY over ``usage_records``. The rollup rows are upserted in
key order, so two replicas writing the same rollup rows lock them in the same order and cannot
deadlock.

Why arrays of rows (``arguments``: one dict per row, which asyncpg encodes as the composite type, field
by field): asyncpg checks every element of an array for being a nested array, through Python-level
ABC checks, so an array per column (26 arrays of 64) spent 12-20% of the client's CPU per batch on
those checks (measured against this); an array of rows is checked once per row. Postgres also decodes
two arrays instead of 31. The types are the batch's own, not the tables' row types, so that a column
added to a table does not change what a running accounting sends (asyncpg caches a composite's layout
per connection; ``store`` replaces its connections if the batch's types change under it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Table

from accounting.models import UsageBody, UsageDaily, UsageDailyTotal, UsageRecord
from accounting.models.analytics import DailySums

USAGE: Table = UsageRecord.__table__  # type: ignore[attr-defined]
DAILY: Table = UsageDaily.__table__  # type: ignore[attr-defined]
TOTALS: Table = UsageDailyTotal.__table__  # type: ignore[attr-defined]
BODIES_TABLE: Table = UsageBody.__table__  # type: ignore[attr-defined]
# The columns a usage row dict fills (recorded_at is the database's own).
COLUMNS = [c.name for c in USAGE.columns if c.name != "recorded_at"]
BODY_COLUMNS = ["prompt_text", "response_text", "prompt_truncated", "response_truncated"]
# The batch's row types (migration 0006), named and typed as the columns they fill.
RECORD_TYPE = "usage_record_in"
BODY_TYPE = "usage_body_in"
# Both rollups' sum columns, in the order _SUMMED computes them.
SUMS = tuple(DailySums.model_fields)
_SUMMED = (
    "count(*), count(*) FILTER (WHERE status = 'success'), count(*) FILTER (WHERE status = 'error'),"
    " count(*) FILTER (WHERE status = 'cancelled'), sum(prompt_tokens), sum(completion_tokens),"
    # A row of unknown price (cost NULL) adds no cost; the rollup's sum counts what is known.
    " sum(total_tokens), coalesce(sum(cost_usd), 0), sum(latency_ms)"
)


def _upsert(table: Table, keys: str, grouped: str) -> str:
    added = ", ".join(f"{name} = {table.name}.{name} + EXCLUDED.{name}" for name in SUMS)
    key_columns = "day, key_id, team_id," if keys else "day,"
    return (
        f"INSERT INTO {table.name} ({key_columns} model, provider, {', '.join(SUMS)})"
        f" SELECT (started_at AT TIME ZONE 'UTC')::date, {keys} requested_model,"
        f" coalesce(provider, ''), {_SUMMED} FROM stored GROUP BY {grouped} ORDER BY {grouped}"
        f" ON CONFLICT ON CONSTRAINT {table.name}_pkey DO UPDATE SET {added}"
    )


def _statement() -> str:
    return f"""
WITH stored AS (
  INSERT INTO {USAGE.name} ({", ".join(COLUMNS)})
  SELECT {", ".join(f"r.{name}" for name in COLUMNS)} FROM unnest($1::{RECORD_TYPE}[]) AS r
  ON CONFLICT (request_id, started_at) DO NOTHING
  RETURNING request_id, started_at, key_id, team_id, requested_model, provider, status, prompt_tokens,
            completion_tokens, total_tokens, cost_usd, latency_ms
), daily AS (
  {_upsert(DAILY, "key_id, coalesce(team_id, ''),", "1, 2, 3, 4, 5")}
), totals AS (
  {_upsert(TOTALS, "", "1, 2, 3")}
), texts AS (
  INSERT INTO {BODIES_TABLE.name} (request_id, started_at, key_id, team_id, {", ".join(BODY_COLUMNS)})
  SELECT s.request_id, s.started_at, s.key_id, s.team_id, {", ".join(f"b.{c}" for c in BODY_COLUMNS)}
  FROM stored s JOIN unnest($2::{BODY_TYPE}[]) AS b USING (request_id)
  ON CONFLICT (request_id, started_at) DO NOTHING
)
SELECT count(*) FROM stored
"""


WRITE_SQL = _statement()


def arguments(rows: Sequence[dict[str, Any]], bodies_key: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``rows`` (usage row dicts, texts under ``bodies_key`` or None) as ``WRITE_SQL``'s $1 and $2: each
    row's columns, and each text's request id and columns."""
    records = [{name: row[name] for name in COLUMNS} for row in rows]
    texts = [
        {"request_id": row["request_id"], **{name: row[bodies_key][name] for name in BODY_COLUMNS}}
        for row in rows
        if row.get(bodies_key) is not None
    ]
    return records, texts
