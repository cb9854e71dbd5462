"""analytics: usage_records partitioned by month, the usage_daily(_totals) rollups, usage_bodies, api_keys.store_bodies

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07

usage_records becomes a table partitioned by month of started_at (its rows copied over; the primary
key becomes (request_id, started_at), which a partitioned table requires and which keeps the insert
exactly-once: a redelivered event carries its first delivery's started_at). usage_daily is filled from
the rows already stored. The partitions of the months the rows span, and of this month and the next
two, are made here; accounting makes later ones (accounting.analytics.partitions).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_STATUS_CHECK = "status IN ('success', 'error', 'cancelled')"
_USAGE_INDEXES = {
    "ix_usage_records_key_id_started_at": ["key_id", "started_at"],
    "ix_usage_records_team_id_started_at": ["team_id", "started_at"],
    "ix_usage_records_requested_model_started_at": ["requested_model", "started_at"],
    "ix_usage_records_started_at": ["started_at"],
}
MONTHS_AHEAD = 2
ROLLUP_FILLFACTOR = 50


def _usage_columns() -> list[sa.Column]:
    return [
        sa.Column("request_id", sa.String(), nullable=False),
        sa.Column("key_id", sa.String(), nullable=False),
        sa.Column("endpoint", sa.String(), nullable=False),
        sa.Column("requested_model", sa.String(), nullable=False),
        sa.Column("provider", sa.String(), nullable=True),
        sa.Column("upstream_model", sa.String(), nullable=True),
        sa.Column("deployment_id", sa.String(), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("http_status", sa.Integer(), nullable=False),
        sa.Column("error_type", sa.String(), nullable=True),
        sa.Column("error_message", sa.String(), nullable=True),
        sa.Column("prompt_tokens", sa.BigInteger(), nullable=False),
        sa.Column("completion_tokens", sa.BigInteger(), nullable=False),
        sa.Column("total_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cached_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cost_usd", sa.Numeric(20, 12), nullable=True),  # NULL: price unknown (0004)
        sa.Column("input_cost_usd", sa.Numeric(20, 12), nullable=True),
        sa.Column("output_cost_usd", sa.Numeric(20, 12), nullable=True),
        sa.Column("price_unknown", sa.Boolean(), nullable=False, server_default=sa.text("false")),
        sa.Column("stream", sa.Boolean(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.Column("ttft_ms", sa.Float(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("now()")),
        sa.Column("team_id", sa.String(), nullable=True),
    ]


def _sums() -> list[sa.Column]:
    return [
        *(
            sa.Column(name, sa.BigInteger(), nullable=False)
            for name in (
                "requests",
                "successes",
                "errors",
                "cancelled",
                "prompt_tokens",
                "completion_tokens",
                "total_tokens",
            )
        ),
        sa.Column("cost_usd", sa.Numeric(20, 12), nullable=False),
        sa.Column("latency_ms_sum", sa.Float(), nullable=False),
    ]


def _months(first: datetime, last: datetime) -> list[tuple[datetime, datetime]]:
    """[start, next start) of every month from ``first``'s to ``last``'s."""
    out = []
    y, m = first.year, first.month
    while (y, m) <= (last.year, last.month):
        ny, nm = y + m // 12, m % 12 + 1
        out.append((datetime(y, m, 1, tzinfo=UTC), datetime(ny, nm, 1, tzinfo=UTC)))
        y, m = ny, nm
    return out


def _partition(table: str, lo: datetime, hi: datetime) -> None:
    op.execute(
        f"CREATE TABLE {table}_p{lo.year:04d}{lo.month:02d} PARTITION OF {table} "
        f"FOR VALUES FROM ('{lo.isoformat()}') TO ('{hi.isoformat()}')"
    )


def _partitions(table: str, first: datetime, now: datetime) -> None:
    ahead_y, ahead_m = now.year + (now.month - 1 + MONTHS_AHEAD) // 12, (now.month - 1 + MONTHS_AHEAD) % 12 + 1
    for lo, hi in _months(min(first, now), datetime(ahead_y, ahead_m, 1, tzinfo=UTC)):
        _partition(table, lo, hi)
    op.execute(f"CREATE TABLE {table}_default PARTITION OF {table} DEFAULT")


def upgrade() -> None:
    # Trusted since Postgres 13: the database owner may create it.
    op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    bind = op.get_bind()
    now = datetime.now(UTC)
    first = bind.execute(sa.text("SELECT min(started_at) FROM usage_records")).scalar() or now

    op.rename_table("usage_records", "usage_records_0003")
    for name in _USAGE_INDEXES:
        op.drop_index(name, table_name="usage_records_0003")
    op.execute("ALTER TABLE usage_records_0003 RENAME CONSTRAINT usage_records_pkey TO usage_records_0003_pkey")
    op.execute(
        "ALTER TABLE usage_records_0003 RENAME CONSTRAINT ck_usage_records_status TO ck_usage_records_0003_status"
    )
    op.create_table(
        "usage_records",
        *_usage_columns(),
        sa.PrimaryKeyConstraint("request_id", "started_at", name="usage_records_pkey"),
        sa.CheckConstraint(_STATUS_CHECK, name="ck_usage_records_status"),
        postgresql_partition_by="RANGE (started_at)",
    )
    _partitions("usage_records", first, now)
    columns = ", ".join(c.name for c in _usage_columns())
    op.execute(f"INSERT INTO usage_records ({columns}) SELECT {columns} FROM usage_records_0003")
    op.drop_table("usage_records_0003")
    for name, cols in _USAGE_INDEXES.items():
        op.create_index(name, "usage_records", cols)

    # The rollups: a key's days are its primary key's range; updated rows fit on their page (HOT).
    for table, key in (("usage_daily", ("key_id", "day", "team_id")), ("usage_daily_totals", ("day",))):
        op.create_table(
            table,
            sa.Column("day", sa.Date(), nullable=False),
            *(sa.Column(k, sa.String(), nullable=False) for k in key if k != "day"),
            sa.Column("model", sa.String(), nullable=False),
            sa.Column("provider", sa.String(), nullable=False),
            *_sums(),
            sa.PrimaryKeyConstraint(*key, "model", "provider", name=f"{table}_pkey"),
            postgresql_with={"fillfactor": ROLLUP_FILLFACTOR},
        )
    for table, keys, grouped in (
        ("usage_daily", "key_id, coalesce(team_id, ''),", "1, 2, 3, 4, 5"),
        ("usage_daily_totals", "", "1, 2, 3"),
    ):
        op.execute(
            f"INSERT INTO {table} SELECT (started_at AT TIME ZONE 'UTC')::date, {keys}"
            " requested_model, coalesce(provider, ''), count(*), count(*) FILTER (WHERE status = 'success'),"
            " count(*) FILTER (WHERE status = 'error'), count(*) FILTER (WHERE status = 'cancelled'),"
            " sum(prompt_tokens), sum(completion_tokens), sum(total_tokens), coalesce(sum(cost_usd), 0),"
            " sum(latency_ms)"
            f" FROM usage_records GROUP BY {grouped}"
        )
    op.create_index("ix_usage_daily_team_id_day", "usage_daily", ["team_id", "day"])

    op.create_table(
        "usage_bodies",
        sa.Column("request_id", sa.String(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("key_id", sa.String(), nullable=False),
        sa.Column("team_id", sa.String(), nullable=True),
        sa.Column("prompt_text", sa.Text(), nullable=False),
        sa.Column("response_text", sa.Text(), nullable=False),
        sa.Column("prompt_truncated", sa.Boolean(), nullable=False),
        sa.Column("response_truncated", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("request_id", "started_at", name="usage_bodies_pkey"),
        postgresql_partition_by="RANGE (started_at)",
    )
    _partitions("usage_bodies", now, now)
    op.create_index("ix_usage_bodies_key_id_started_at", "usage_bodies", ["key_id", "started_at"])
    op.create_index(
        "ix_usage_bodies_prompt_trgm",
        "usage_bodies",
        ["prompt_text"],
        postgresql_using="gin",
        postgresql_ops={"prompt_text": "gin_trgm_ops"},
    )

    op.add_column("api_keys", sa.Column("store_bodies", sa.Boolean(), nullable=True))


def downgrade() -> None:
    op.drop_column("api_keys", "store_bodies")
    op.drop_table("usage_bodies")
    op.drop_table("usage_daily_totals")
    op.drop_table("usage_daily")
    op.rename_table("usage_records", "usage_records_0005")
    for name in _USAGE_INDEXES:
        op.drop_index(name, table_name="usage_records_0005")
    op.execute("ALTER TABLE usage_records_0005 RENAME CONSTRAINT usage_records_pkey TO usage_records_0005_pkey")
    op.execute(
        "ALTER TABLE usage_records_0005 RENAME CONSTRAINT ck_usage_records_status TO ck_usage_records_0005_status"
    )
    op.create_table(
        "usage_records",
        *_usage_columns(),
        sa.PrimaryKeyConstraint("request_id", name="usage_records_pkey"),
        sa.CheckConstraint(_STATUS_CHECK, name="ck_usage_records_status"),
    )
    columns = ", ".join(c.name for c in _usage_columns())
    # Back to one row per request id: should two rows share one (only possible with different
    # started_at, which no redelivery produces), the first stored is kept.
    op.execute(
        f"INSERT INTO usage_records ({columns}) SELECT DISTINCT ON (request_id) {columns} FROM usage_records_0005"
        " ORDER BY request_id, recorded_at"
    )
    op.drop_table("usage_records_0005")
    for name, cols in _USAGE_INDEXES.items():
        op.create_index(name, "usage_records", cols)
