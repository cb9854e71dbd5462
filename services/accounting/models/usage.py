"""The ``usage_records`` table: one row per finished request, written only by the consumer.

Partitioned by month of ``started_at`` (``accounting.analytics.partitions`` creates the months and
drops those past the retention): a query over a time range reads only its months, and retention is
a DROP TABLE, not a DELETE of millions of rows. A partitioned table's unique key must hold the
partition key, so the primary key is (request_id, started_at): a redelivered event carries the same
started_at as its first delivery (both come from the same UsageEvent bytes), so it still conflicts
and the insert stays exactly-once.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import BigInteger, CheckConstraint, DateTime, Float, Index, Integer, Numeric, String, text
from sqlmodel import Field, SQLModel

from common.pricing import COST_PRECISION, COST_SCALE

STATUSES = ("success", "error", "cancelled")


class UsageRecord(SQLModel, table=True):
    __tablename__ = "usage_records"
    __table_args__ = (
        CheckConstraint(f"status IN {STATUSES!r}", name="ck_usage_records_status"),
        # Per-key and per-model reports over a time range.
        Index("ix_usage_records_key_id_started_at", "key_id", "started_at"),
        # Per-team spend (the ledger's SpendQuery and reports) over a time range.
        Index("ix_usage_records_team_id_started_at", "team_id", "started_at"),
        Index("ix_usage_records_requested_model_started_at", "requested_model", "started_at"),
        Index("ix_usage_records_started_at", "started_at"),
        {"postgresql_partition_by": "RANGE (started_at)"},
    )

    request_id: str = Field(primary_key=True, sa_type=String)
    key_id: str = Field(sa_type=String, description="the key's non-secret id, never the key")
    # The key's team when the request was made; NULL for a key without one (and rows from before).
    team_id: str | None = Field(default=None, sa_type=String)
    endpoint: str = Field(sa_type=String)
    requested_model: str = Field(sa_type=String)
    # NULL when the request ended before a deployment was chosen.
    provider: str | None = Field(default=None, sa_type=String)
    upstream_model: str | None = Field(default=None, sa_type=String)
    deployment_id: str | None = Field(default=None, sa_type=String)
    status: str = Field(sa_type=String(16))
    http_status: int = Field(sa_type=Integer)
    error_type: str | None = Field(default=None, sa_type=String)
    error_message: str | None = Field(default=None, sa_type=String)
    # The event's counters are uint32, beyond INTEGER's range.
    prompt_tokens: int = Field(sa_type=BigInteger)
    completion_tokens: int = Field(sa_type=BigInteger)
    total_tokens: int = Field(sa_type=BigInteger)
    cached_tokens: int = Field(sa_type=BigInteger)
    # NULL when the deployment's price is unknown (``price_unknown``): unknown is not free.
    cost_usd: Decimal | None = Field(default=None, sa_type=Numeric(COST_PRECISION, COST_SCALE))
    # The two sides of cost_usd (= input + output), as the answer's usage showed them.
    input_cost_usd: Decimal | None = Field(default=None, sa_type=Numeric(COST_PRECISION, COST_SCALE))
    output_cost_usd: Decimal | None = Field(default=None, sa_type=Numeric(COST_PRECISION, COST_SCALE))
    price_unknown: bool = Field(default=False, sa_column_kwargs={"server_default": text("false")})
    stream: bool
    attempts: int = Field(sa_type=Integer)
    latency_ms: float = Field(sa_type=Float)
    ttft_ms: float | None = Field(default=None, sa_type=Float, description="NULL when nothing streamed")
    started_at: datetime = Field(primary_key=True, sa_type=DateTime(timezone=True))
    finished_at: datetime = Field(sa_type=DateTime(timezone=True))
    recorded_at: datetime | None = Field(
        default=None,
        sa_type=DateTime(timezone=True),
        nullable=False,
        sa_column_kwargs={"server_default": text("now()")},
    )
