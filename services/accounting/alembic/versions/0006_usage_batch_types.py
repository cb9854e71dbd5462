"""usage_record_in, usage_body_in: the row types accounting sends a batch of usage rows and texts as

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07

Accounting's write (accounting.analytics.rollup) passes a batch as one array of rows and one of texts
(``unnest($1::usage_record_in[])``), not an array per column: asyncpg checks every element of an
array in Python, and an array per column made that a large share of the client's time per batch.
The rows need a composite type; these are the batch's own rather than the tables' row types, so that
a column added to or dropped from ``usage_records`` or ``usage_bodies`` does not change what a running
accounting sends (asyncpg caches a type's layout per connection). Attributes are only added here, with
the code that fills them; one is dropped only once no running accounting sends it.

Types only: nothing to do with the rows a database already holds.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Named and typed as the columns they fill (usage_records' as of 0005, without recorded_at, which is
# the database's own; usage_bodies' texts with the request id they join on): the same checks apply on
# the way in (varchar(16), numeric(20, 12)).
USAGE_RECORD_IN = (
    ("request_id", "varchar"),
    ("key_id", "varchar"),
    ("team_id", "varchar"),
    ("endpoint", "varchar"),
    ("requested_model", "varchar"),
    ("provider", "varchar"),
    ("upstream_model", "varchar"),
    ("deployment_id", "varchar"),
    ("status", "varchar(16)"),
    ("http_status", "integer"),
    ("error_type", "varchar"),
    ("error_message", "varchar"),
    ("prompt_tokens", "bigint"),
    ("completion_tokens", "bigint"),
    ("total_tokens", "bigint"),
    ("cached_tokens", "bigint"),
    ("cost_usd", "numeric(20, 12)"),
    ("input_cost_usd", "numeric(20, 12)"),
    ("output_cost_usd", "numeric(20, 12)"),
    ("price_unknown", "boolean"),
    ("stream", "boolean"),
    ("attempts", "integer"),
    ("latency_ms", "double precision"),
    ("ttft_ms", "double precision"),
    ("started_at", "timestamp with time zone"),
    ("finished_at", "timestamp with time zone"),
)
USAGE_BODY_IN = (
    ("request_id", "varchar"),
    ("prompt_text", "text"),
    ("response_text", "text"),
    ("prompt_truncated", "boolean"),
    ("response_truncated", "boolean"),
)


def upgrade() -> None:
    for name, attributes in (("usage_record_in", USAGE_RECORD_IN), ("usage_body_in", USAGE_BODY_IN)):
        op.execute(f"CREATE TYPE {name} AS ({', '.join(f'{a} {t}' for a, t in attributes)})")


def downgrade() -> None:
    op.execute("DROP TYPE usage_body_in")
    op.execute("DROP TYPE usage_record_in")
