"""What the analytics API reads besides ``usage_records``: the daily rollup and the stored texts.

``usage_daily`` holds one row per UTC day, key, team, model and provider with the sums the usage
endpoint and /user/stats need (``usage_daily_totals`` the same without key and team, for the master
key's questions about everything). The consumer adds each batch's newly stored rows to it in the same
transaction as their insert, so it always equals a GROUP BY over ``usage_records`` while being a few
hundred times smaller (a month of one key is tens of rows, not tens of thousands).

``usage_bodies`` holds the prompt and answer texts of the requests whose key stores bodies, apart from
the hot usage table (most rows have none, and a text is far wider than a usage row). It carries the
key, team and start time itself so that a search is one trigram index scan on this table, and it is
partitioned by month like ``usage_records`` so that retention drops both together.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import BigInteger, Date, DateTime, Float, Index, Numeric, String, Text
from sqlmodel import Field, SQLModel

from common.pricing import COST_PRECISION, COST_SCALE

# The rollup's key columns cannot be NULL (they form its primary key): "" stands for "none".
NO_TEAM = ""
NO_PROVIDER = ""
# The rollups' rows are updated with every batch: half of each page is left free for the updates.
ROLLUP_FILLFACTOR = 50


class DailySums(SQLModel):
    """What both rollups sum per row (``analytics.rollup``): one day's requests of one group."""

    requests: int = Field(sa_type=BigInteger)
    successes: int = Field(sa_type=BigInteger)
    errors: int = Field(sa_type=BigInteger)
    cancelled: int = Field(sa_type=BigInteger)
    prompt_tokens: int = Field(sa_type=BigInteger)
    completion_tokens: int = Field(sa_type=BigInteger)
    total_tokens: int = Field(sa_type=BigInteger)
    cost_usd: Decimal = Field(sa_type=Numeric(COST_PRECISION, COST_SCALE))
    latency_ms_sum: float = Field(sa_type=Float)


class UsageDaily(DailySums, table=True):
    __tablename__ = "usage_daily"
    __table_args__ = (
        # The key (key_id, day, ...) serves a key's days; this, a team's.
        Index("ix_usage_daily_team_id_day", "team_id", "day"),
        # Room on each page for the new version of an updated row: the sums change, no indexed column
        # does, so the update is HOT and writes no index entry.
        {"postgresql_with": {"fillfactor": ROLLUP_FILLFACTOR}},
    )

    key_id: str = Field(primary_key=True, sa_type=String)
    day: date = Field(primary_key=True, sa_type=Date)
    team_id: str = Field(primary_key=True, sa_type=String)
    model: str = Field(primary_key=True, sa_type=String)
    provider: str = Field(primary_key=True, sa_type=String)


class UsageDailyTotal(DailySums, table=True):
    """``usage_daily`` summed over keys and teams: what the master key's unfiltered questions read (a
    day has a row per model and provider, so a year is a few thousand rows, whatever the keys)."""

    __tablename__ = "usage_daily_totals"
    __table_args__ = ({"postgresql_with": {"fillfactor": ROLLUP_FILLFACTOR}},)

    day: date = Field(primary_key=True, sa_type=Date)
    model: str = Field(primary_key=True, sa_type=String)
    provider: str = Field(primary_key=True, sa_type=String)


class UsageBody(SQLModel, table=True):
    __tablename__ = "usage_bodies"
    __table_args__ = (
        Index("ix_usage_bodies_key_id_started_at", "key_id", "started_at"),
        # Substring search (ILIKE '%word%') in the prompt: a trigram GIN index answers it without
        # reading every text.
        Index(
            "ix_usage_bodies_prompt_trgm",
            "prompt_text",
            postgresql_using="gin",
            postgresql_ops={"prompt_text": "gin_trgm_ops"},
        ),
        {"postgresql_partition_by": "RANGE (started_at)"},
    )

    request_id: str = Field(primary_key=True, sa_type=String)
    started_at: datetime = Field(primary_key=True, sa_type=DateTime(timezone=True))
    key_id: str = Field(sa_type=String)
    team_id: str | None = Field(default=None, sa_type=String)
    prompt_text: str = Field(sa_type=Text)
    response_text: str = Field(sa_type=Text)
    prompt_truncated: bool
    response_truncated: bool
