"""teams and api_keys: the ledger of client keys (digests only, never secrets)

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-10
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_LIMITS_CHECK = (
    "(rpm IS NULL OR rpm >= 0) AND (tpm IS NULL OR tpm >= 0) AND (max_parallel IS NULL OR max_parallel >= 0)"
    " AND (daily_budget_usd IS NULL OR daily_budget_usd >= 0)"
    " AND (monthly_budget_usd IS NULL OR monthly_budget_usd >= 0)"
)


def _limits() -> list[sa.Column]:
    return [
        sa.Column("rpm", sa.BigInteger(), nullable=True),
        sa.Column("tpm", sa.BigInteger(), nullable=True),
        sa.Column("max_parallel", sa.BigInteger(), nullable=True),
        sa.Column("daily_budget_usd", sa.Numeric(20, 9), nullable=True),
        sa.Column("monthly_budget_usd", sa.Numeric(20, 9), nullable=True),
    ]


def _timestamps() -> list[sa.Column]:
    return [
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("now()")),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("now()")),
    ]


def upgrade() -> None:
    op.create_table(
        "teams",
        sa.Column("id", sa.String(), primary_key=True),
        sa.Column("name", sa.String(), nullable=False),
        *_limits(),
        sa.Column("metadata", postgresql.JSONB(), nullable=False),
        *_timestamps(),
        sa.CheckConstraint(_LIMITS_CHECK, name="ck_teams_limits"),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(), primary_key=True),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("team_id", sa.String(), sa.ForeignKey("teams.id"), nullable=True),
        sa.Column("owner", sa.String(), nullable=True),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("display", sa.String(), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("models", postgresql.ARRAY(sa.String()), nullable=False),
        *_limits(),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("metadata", postgresql.JSONB(), nullable=False),
        sa.Column("previous_secrets", postgresql.JSONB(), nullable=False),
        *_timestamps(),
        sa.CheckConstraint("role IN ('client', 'ops')", name="ck_api_keys_role"),
        sa.CheckConstraint(_LIMITS_CHECK, name="ck_api_keys_limits"),
    )
    op.create_index("ix_api_keys_digest", "api_keys", ["digest"], unique=True)
    op.create_index("ix_api_keys_team_id", "api_keys", ["team_id"])


def downgrade() -> None:
    op.drop_table("api_keys")
    op.drop_table("teams")
