"""One batch of usage rows, the daily rollups and the texts, written by one statement.

The rows are passed as one array per column and expanded by ``unnest`` (the statement's text is the
same whatever the batch's size, so asyncpg prepares it once per connection), inserted with
``ON CONFLICT (request_id, started_at) DO NOTHING``, and only the rows that insert RETURNS (those
really stored: a redelivered event's row already exists, an event twice in one batch is stored
once) are summed into ``usage_daily`` (per UTC day, key, team, model, provider) and
``usage_daily_totals`` (per day, model, provider), and have their texts stored. All of it is one
statement, hence one transaction (sent outside a transaction block, a statement is a transaction of
its own) and one round trip, so the rollups always equal a GROUP BY over ``usage_records``. The
rollup rows are upserted in key order, so two replicas writing the same rollup rows lock them in the
same order and cannot deadlock.

The store sends ``WRITE_SQL`` with ``arguments()``: the statement compiled once for asyncpg
(``$1::VARCHAR[]``, ...) and the arrays in its order, which the driver encodes as they are. Executed
as ``text()``, SQLAlchemy would copy every array element by element on every batch to apply bind
processors that, for these types, add nothing to asyncpg's own checks (only the booleans have one, a
strict ``bool`` check, which asyncpg's encoder makes too).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ARRAY, Table, TextClause, bindparam, text
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect
from sqlalchemy.types import TypeEngine

from accounting.models import UsageBody, UsageDaily, UsageDailyTotal, UsageRecord
from accounting.models.analytics import DailySums

USAGE: Table = UsageRecord.__table__  # type: ignore[attr-defined]
DAILY: Table = UsageDaily.__table__  # type: ignore[attr-defined]
TOTALS: Table = UsageDailyTotal.__table__  # type: ignore[attr-defined]
BODIES_TABLE: Table = UsageBody.__table__  # type: ignore[attr-defined]
# The columns a usage row dict fills (recorded_at is the database's own).
COLUMNS = [c.name for c in USAGE.columns if c.name != "recorded_at"]
BODY_COLUMNS = ["prompt_text", "response_text", "prompt_truncated", "response_truncated"]
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


def _statement() -> TextClause:
    columns = ", ".join(COLUMNS)
    arrays = ", ".join(f":{name}" for name in COLUMNS)
    body_arrays = ", ".join(f":body_{name}" for name in ["request_id", *BODY_COLUMNS])
    sql = f"""
WITH stored AS (
  INSERT INTO {USAGE.name} ({columns}) SELECT * FROM unnest({arrays})
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
  FROM stored s JOIN unnest({body_arrays}) AS b(request_id, {", ".join(BODY_COLUMNS)}) USING (request_id)
  ON CONFLICT (request_id, started_at) DO NOTHING
)
SELECT count(*) FROM stored
"""
    params = [bindparam(name, type_=ARRAY(_type(USAGE, name))) for name in COLUMNS]
    params += [bindparam("body_request_id", type_=ARRAY(_type(USAGE, "request_id")))]
    params += [bindparam(f"body_{name}", type_=ARRAY(_type(BODIES_TABLE, name))) for name in BODY_COLUMNS]
    return text(sql).bindparams(*params)


def _type(table: Table, name: str) -> TypeEngine[Any]:
    return table.c[name].type


WRITE = _statement()
_COMPILED = WRITE.compile(dialect=asyncpg_dialect())
WRITE_SQL: str = _COMPILED.string
# The parameters' names in the order of WRITE_SQL's $1, $2, ...
WRITE_ORDER: tuple[str, ...] = tuple(_COMPILED.positiontup or ())


def parameters(rows: Sequence[dict[str, Any]], bodies_key: str) -> dict[str, list[Any]]:
    """``rows`` (usage row dicts, texts under ``bodies_key`` or None) as the statement's arrays."""
    params: dict[str, list[Any]] = {name: [row[name] for row in rows] for name in COLUMNS}
    with_texts = [row for row in rows if row.get(bodies_key) is not None]
    params["body_request_id"] = [row["request_id"] for row in with_texts]
    for name in BODY_COLUMNS:
        params[f"body_{name}"] = [row[bodies_key][name] for row in with_texts]
    return params


def arguments(rows: Sequence[dict[str, Any]], bodies_key: str) -> tuple[list[Any], ...]:
    """``parameters`` in ``WRITE_SQL``'s positional order."""
    params = parameters(rows, bodies_key)
    return tuple(params[name] for name in WRITE_ORDER)
