"""usage_records: the cost's two sides, and a cost that is unknown rather than free

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Each step is a catalogue change only (no table rewrite): dropping NOT NULL, and adding nullable
    # columns or one with a constant default (PostgreSQL 11+ stores the default, not the rows).
    op.alter_column("usage_records", "cost_usd", existing_type=sa.Numeric(20, 12), nullable=True)
    op.add_column("usage_records", sa.Column("input_cost_usd", sa.Numeric(20, 12), nullable=True))
    op.add_column("usage_records", sa.Column("output_cost_usd", sa.Numeric(20, 12), nullable=True))
    op.add_column(
        "usage_records",
        sa.Column("price_unknown", sa.Boolean(), nullable=False, server_default=sa.text("false")),
    )


def downgrade() -> None:
    op.drop_column("usage_records", "price_unknown")
    op.drop_column("usage_records", "output_cost_usd")
    op.drop_column("usage_records", "input_cost_usd")
    # Rows whose price was unknown had no cost: 0 is the only value the old NOT NULL column can hold.
    op.execute("UPDATE usage_records SET cost_usd = 0 WHERE cost_usd IS NULL")
    op.alter_column("usage_records", "cost_usd", existing_type=sa.Numeric(20, 12), nullable=False)
