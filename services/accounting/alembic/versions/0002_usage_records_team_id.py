"""usage_records.team_id: spend per team in one query

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-10
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A nullable column without a default is a catalogue change only: no rewrite of the table.
    op.add_column("usage_records", sa.Column("team_id", sa.String(), nullable=True))
    # usage_records is large and written all the time: build the index without blocking inserts
    # (CONCURRENTLY cannot run inside the migration's transaction).
    with op.get_context().autocommit_block():
        op.create_index(
            "ix_usage_records_team_id_started_at",
            "usage_records",
            ["team_id", "started_at"],
            postgresql_concurrently=True,
            if_not_exists=True,
        )


def downgrade() -> None:
    op.drop_index("ix_usage_records_team_id_started_at", table_name="usage_records")
    op.drop_column("usage_records", "team_id")
