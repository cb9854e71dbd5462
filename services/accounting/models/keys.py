"""The ``teams`` and ``api_keys`` tables: the ledger of client keys, written only by the admin service.

A key's secret is never stored: only its hex SHA-256 (``digest``) and a display form. Limits and
budgets are NULL when there is none (0 is a limit of zero). Gateways never read these tables: they
watch the records accounting publishes in the key-value bucket (``accounting.admin.bucket``).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import ARRAY, BigInteger, CheckConstraint, Column, DateTime, ForeignKey, Index, Numeric, String, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

ROLES = ("client", "ops")
# Budgets are counted in nano-USD (common.pricing.NANO_USD_PER_USD): nine decimals hold them exactly.
BUDGET_PRECISION, BUDGET_SCALE = 20, 9
_LIMITS_CHECK = (
    "(rpm IS NULL OR rpm >= 0) AND (tpm IS NULL OR tpm >= 0) AND (max_parallel IS NULL OR max_parallel >= 0)"
    " AND (daily_budget_usd IS NULL OR daily_budget_usd >= 0)"
    " AND (monthly_budget_usd IS NULL OR monthly_budget_usd >= 0)"
)


def _timestamp(nullable: bool) -> Any:
    if nullable:
        return Field(default=None, sa_type=DateTime(timezone=True))
    return Field(
        default=None,
        sa_type=DateTime(timezone=True),
        nullable=False,
        sa_column_kwargs={"server_default": text("now()")},
    )


class Team(SQLModel, table=True):
    __tablename__ = "teams"
    __table_args__ = (CheckConstraint(_LIMITS_CHECK, name="ck_teams_limits"),)

    id: str = Field(primary_key=True, sa_type=String)
    name: str = Field(sa_type=String)
    # uint32 on the wire (keys.v1.Limits), beyond INTEGER's range.
    rpm: int | None = Field(default=None, sa_type=BigInteger)
    tpm: int | None = Field(default=None, sa_type=BigInteger)
    max_parallel: int | None = Field(default=None, sa_type=BigInteger)
    daily_budget_usd: Decimal | None = Field(default=None, sa_type=Numeric(BUDGET_PRECISION, BUDGET_SCALE))
    monthly_budget_usd: Decimal | None = Field(default=None, sa_type=Numeric(BUDGET_PRECISION, BUDGET_SCALE))
    # "metadata" is SQLAlchemy's own attribute on a model: the column keeps the name, the field not.
    meta: dict[str, Any] = Field(default_factory=dict, sa_column=Column("metadata", JSONB, nullable=False))
    created_at: datetime | None = _timestamp(nullable=False)
    updated_at: datetime | None = _timestamp(nullable=False)


class ApiKey(SQLModel, table=True):
    __tablename__ = "api_keys"
    __table_args__ = (
        CheckConstraint(f"role IN {ROLES!r}", name="ck_api_keys_role"),
        CheckConstraint(_LIMITS_CHECK, name="ck_api_keys_limits"),
        Index("ix_api_keys_digest", "digest", unique=True),
        Index("ix_api_keys_team_id", "team_id"),
    )

    id: str = Field(primary_key=True, sa_type=String)
    name: str = Field(sa_type=String)
    # A team is deleted only once none of its keys is active; its revoked keys are detached first.
    team_id: str | None = Field(default=None, sa_column=Column(String, ForeignKey("teams.id"), nullable=True))
    owner: str | None = Field(default=None, sa_type=String, description="user id or e-mail")
    digest: str = Field(sa_type=String(64), description="hex SHA-256 of the secret, never the secret")
    display: str = Field(sa_type=String, description="sk-mr-…abcd")
    role: str = Field(sa_type=String(16))
    models: list[str] = Field(default_factory=list, sa_column=Column(ARRAY(String), nullable=False))
    rpm: int | None = Field(default=None, sa_type=BigInteger)
    tpm: int | None = Field(default=None, sa_type=BigInteger)
    max_parallel: int | None = Field(default=None, sa_type=BigInteger)
    daily_budget_usd: Decimal | None = Field(default=None, sa_type=Numeric(BUDGET_PRECISION, BUDGET_SCALE))
    monthly_budget_usd: Decimal | None = Field(default=None, sa_type=Numeric(BUDGET_PRECISION, BUDGET_SCALE))
    expires_at: datetime | None = _timestamp(nullable=True)
    revoked_at: datetime | None = _timestamp(nullable=True)
    meta: dict[str, Any] = Field(default_factory=dict, sa_column=Column("metadata", JSONB, nullable=False))
    # Rotated-out secrets still accepted: [{"digest": hex, "valid_until_ms": Unix ms}], pruned when
    # the key is next rotated (the gateway checks valid_until_ms itself).
    previous_secrets: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSONB, nullable=False))
    # Keep this key's prompt and answer texts (true/false); NULL: the deployment's store_bodies decides.
    store_bodies: bool | None = Field(default=None, nullable=True)
    created_at: datetime | None = _timestamp(nullable=False)
    updated_at: datetime | None = _timestamp(nullable=False)
