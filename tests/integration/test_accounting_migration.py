"""The Alembic migration, run through its CLI as ``make migrate`` does, on a database of its own."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from accounting.analytics.partitions import include_in_comparison
from accounting.analytics.rollup import BODY_COLUMNS, BODY_TYPE, COLUMNS, RECORD_TYPE
from accounting.models import UsageRecord

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
EXPECTED_COLUMNS = {
    "request_id": ("character varying", "NO"),
    "key_id": ("character varying", "NO"),
    "team_id": ("character varying", "YES"),
    "endpoint": ("character varying", "NO"),
    "requested_model": ("character varying", "NO"),
    "provider": ("character varying", "YES"),
    "upstream_model": ("character varying", "YES"),
    "deployment_id": ("character varying", "YES"),
    "status": ("character varying", "NO"),
    "http_status": ("integer", "NO"),
    "error_type": ("character varying", "YES"),
    "error_message": ("character varying", "YES"),
    "prompt_tokens": ("bigint", "NO"),
    "completion_tokens": ("bigint", "NO"),
    "total_tokens": ("bigint", "NO"),
    "cached_tokens": ("bigint", "NO"),
    "cost_usd": ("numeric", "YES"),  # NULL: the price was unknown (0004)
    "input_cost_usd": ("numeric", "YES"),
    "output_cost_usd": ("numeric", "YES"),
    "price_unknown": ("boolean", "NO"),
    "stream": ("boolean", "NO"),
    "attempts": ("integer", "NO"),
    "latency_ms": ("double precision", "NO"),
    "ttft_ms": ("double precision", "YES"),
    "started_at": ("timestamp with time zone", "NO"),
    "finished_at": ("timestamp with time zone", "NO"),
    "recorded_at": ("timestamp with time zone", "NO"),
}
_LIMITS = {
    "rpm": ("bigint", "YES"),
    "tpm": ("bigint", "YES"),
    "max_parallel": ("bigint", "YES"),
    "daily_budget_usd": ("numeric", "YES"),
    "monthly_budget_usd": ("numeric", "YES"),
}
_TIMESTAMPS = {"created_at": ("timestamp with time zone", "NO"), "updated_at": ("timestamp with time zone", "NO")}
EXPECTED_TEAM_COLUMNS = {
    "id": ("character varying", "NO"),
    "name": ("character varying", "NO"),
    **_LIMITS,
    "metadata": ("jsonb", "NO"),
    **_TIMESTAMPS,
}
EXPECTED_KEY_COLUMNS = {
    "id": ("character varying", "NO"),
    "name": ("character varying", "NO"),
    "team_id": ("character varying", "YES"),
    "owner": ("character varying", "YES"),
    "digest": ("character varying", "NO"),
    "display": ("character varying", "NO"),
    "role": ("character varying", "NO"),
    "models": ("ARRAY", "NO"),
    **_LIMITS,
    "expires_at": ("timestamp with time zone", "YES"),
    "revoked_at": ("timestamp with time zone", "YES"),
    "metadata": ("jsonb", "NO"),
    "previous_secrets": ("jsonb", "NO"),
    **_TIMESTAMPS,
    "store_bodies": ("boolean", "YES"),
}


def alembic(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "PYTHONPATH": os.pathsep.join(str(ROOT / p) for p in ("libs", "libs/protos", "services")),
    }
    return subprocess.run(
        [sys.executable, "-m", "alembic", *args],
        cwd=ROOT / "services" / "accounting",
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def _query(url: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


@pytest.fixture
def empty_db(postgres_url: str, unique: str) -> Iterator[str]:
    """A database only this test migrates up and down (the session's database_url is in use)."""
    name = f"mr_test_acct_mig_{unique}"
    asyncio.run(_query(postgres_url, f'CREATE DATABASE "{name}"'))
    base, _, _ = postgres_url.rpartition("/")
    yield f"{base}/{name}"
    asyncio.run(_query(postgres_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _schema_diff(url: str) -> list[Any]:
    async def run() -> list[Any]:
        engine = create_async_engine(url)
        try:
            async with engine.connect() as conn:

                def compare(sync: Connection) -> list[Any]:
                    ctx = MigrationContext.configure(
                        sync,
                        opts={
                            "compare_type": True,
                            "compare_server_default": True,
                            # The monthly partitions are made at run time, not described by a model.
                            "include_object": include_in_comparison,
                        },
                    )
                    return list(compare_metadata(ctx, UsageRecord.metadata))

                return await conn.run_sync(compare)
        finally:
            await engine.dispose()

    return asyncio.run(run())


def _columns(url: str, table: str) -> dict[str, tuple[str, str]]:
    columns = asyncio.run(
        _query(
            url,
            "SELECT column_name, data_type, is_nullable FROM information_schema.columns WHERE table_name = $1",
            table,
        )
    )
    return {c["column_name"]: (c["data_type"], c["is_nullable"]) for c in columns}


def _indexes(url: str, table: str) -> dict[str, str]:
    rows = asyncio.run(_query(url, "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = $1", table))
    return {i["indexname"]: i["indexdef"] for i in rows}


def test_upgrade_head_creates_the_tables_and_downgrade_base_removes_them(empty_db: str) -> None:
    up = alembic(empty_db, "upgrade", "head")
    assert up.returncode == 0, up.stderr

    assert _columns(empty_db, "usage_records") == EXPECTED_COLUMNS
    assert _columns(empty_db, "teams") == EXPECTED_TEAM_COLUMNS
    assert _columns(empty_db, "api_keys") == EXPECTED_KEY_COLUMNS
    precision = asyncio.run(
        _query(
            empty_db,
            "SELECT numeric_precision, numeric_scale FROM information_schema.columns "
            "WHERE table_name = 'usage_records' AND column_name = 'cost_usd'",
        )
    )
    assert (precision[0]["numeric_precision"], precision[0]["numeric_scale"]) == (20, 12)
    defs = _indexes(empty_db, "usage_records")
    # Partitioned by month: the unique key holds the partition key (a redelivery repeats both).
    assert "UNIQUE" in defs["usage_records_pkey"] and "(request_id, started_at)" in defs["usage_records_pkey"]
    assert "(key_id, started_at)" in defs["ix_usage_records_key_id_started_at"]
    assert "(team_id, started_at)" in defs["ix_usage_records_team_id_started_at"]
    assert "(requested_model, started_at)" in defs["ix_usage_records_requested_model_started_at"]
    key_defs = _indexes(empty_db, "api_keys")
    assert "UNIQUE" in key_defs["ix_api_keys_digest"] and "(digest)" in key_defs["ix_api_keys_digest"]
    assert "(team_id)" in key_defs["ix_api_keys_team_id"]
    # The migration (explicit DDL) and the model the code writes through describe the same table.
    assert _schema_diff(empty_db) == []

    down = alembic(empty_db, "downgrade", "base")
    assert down.returncode == 0, down.stderr
    for table in ("usage_records", "teams", "api_keys"):
        assert asyncio.run(_query(empty_db, f"SELECT to_regclass('{table}') AS t"))[0]["t"] is None


def _store_row_r1(url: str) -> None:
    """One usage row, ``r1``, in the columns every revision from 0001 on has."""
    asyncio.run(
        _query(
            url,
            "INSERT INTO usage_records (request_id, key_id, endpoint, requested_model, status, http_status,"
            " prompt_tokens, completion_tokens, total_tokens, cached_tokens, cost_usd, stream, attempts,"
            " latency_ms, started_at, finished_at) VALUES ('r1', 'key_1', '/v1/x', 'm', 'success', 200,"
            " 1, 1, 2, 0, 0.5, false, 1, 1.0, now(), now())",
        )
    )


def test_0002_adds_team_id_to_existing_usage_rows_and_takes_it_back(empty_db: str) -> None:
    """Upgrading a ledger that already holds rows keeps them (team_id NULL); downgrading to 0001
    removes the column and its index and nothing else."""
    assert alembic(empty_db, "upgrade", "0001").returncode == 0
    _store_row_r1(empty_db)
    up = alembic(empty_db, "upgrade", "head")
    assert up.returncode == 0, up.stderr
    rows = asyncio.run(_query(empty_db, "SELECT request_id, team_id FROM usage_records"))
    assert [(r["request_id"], r["team_id"]) for r in rows] == [("r1", None)]

    down = alembic(empty_db, "downgrade", "0001")
    assert down.returncode == 0, down.stderr
    assert "team_id" not in _columns(empty_db, "usage_records")
    assert "ix_usage_records_team_id_started_at" not in _indexes(empty_db, "usage_records")
    assert asyncio.run(_query(empty_db, "SELECT count(*) AS n FROM usage_records"))[0]["n"] == 1


def test_0004_lets_a_cost_be_unknown_keeps_old_rows_and_takes_it_back(empty_db: str) -> None:
    """Rows from before keep their cost (flag false, no breakdown); an unknown cost is NULL; going
    back to 0003 turns an unknown cost into the 0 the old NOT NULL column needs."""
    assert alembic(empty_db, "upgrade", "0003").returncode == 0
    insert = (
        "INSERT INTO usage_records (request_id, key_id, endpoint, requested_model, status, http_status,"
        " prompt_tokens, completion_tokens, total_tokens, cached_tokens, cost_usd, stream, attempts,"
        " latency_ms, started_at, finished_at) VALUES ($1, 'key_1', '/v1/x', 'm', 'success', 200,"
        " 1, 1, 2, 0, $2, false, 1, 1.0, now(), now())"
    )
    asyncio.run(_query(empty_db, insert, "old", Decimal("0.5")))
    up = alembic(empty_db, "upgrade", "head")
    assert up.returncode == 0, up.stderr
    asyncio.run(_query(empty_db, insert, "unpriced", None))
    rows = asyncio.run(
        _query(
            empty_db,
            "SELECT request_id, cost_usd, input_cost_usd, price_unknown FROM usage_records ORDER BY request_id",
        )
    )
    assert [tuple(r) for r in rows] == [("old", Decimal("0.5"), None, False), ("unpriced", None, None, False)]

    down = alembic(empty_db, "downgrade", "0003")
    assert down.returncode == 0, down.stderr
    columns = _columns(empty_db, "usage_records")
    assert columns["cost_usd"] == ("numeric", "NO")
    assert not {"input_cost_usd", "output_cost_usd", "price_unknown"} & set(columns)
    rows = asyncio.run(_query(empty_db, "SELECT request_id, cost_usd FROM usage_records ORDER BY request_id"))
    assert [tuple(r) for r in rows] == [("old", Decimal("0.5")), ("unpriced", Decimal(0))]


def test_migration_takes_the_url_from_database_url(postgres_url: str, unique: str) -> None:
    base, _, _ = postgres_url.rpartition("/")
    missing = f"{base}/mr_test_acct_absent_{unique}"
    failed = alembic(missing, "upgrade", "head")
    assert failed.returncode != 0
    assert f"mr_test_acct_absent_{unique}" in failed.stderr


def test_0005_partitions_existing_rows_builds_their_rollups_and_gives_them_back(empty_db: str) -> None:
    """Upgrading a ledger that holds rows moves them into monthly partitions (months made for them) and
    sums them into both rollups; downgrading to 0003 puts them back in one plain table."""
    assert alembic(empty_db, "upgrade", "0003").returncode == 0
    asyncio.run(
        _query(
            empty_db,
            "INSERT INTO usage_records (request_id, key_id, team_id, endpoint, requested_model, provider, status,"
            " http_status, prompt_tokens, completion_tokens, total_tokens, cached_tokens, cost_usd, stream, attempts,"
            " latency_ms, started_at, finished_at) VALUES"
            " ('old', 'key_1', 't', '/v1/x', 'm', 'fake', 'success', 200, 1, 2, 3, 0, 0.5, false, 1, 10.0,"
            "  '2025-03-15T10:00:00Z', '2025-03-15T10:00:01Z'),"
            " ('new', 'key_1', NULL, '/v1/x', 'm', NULL, 'error', 502, 0, 0, 0, 0, 0, false, 1, 30.0, now(), now())",
        )
    )
    up = alembic(empty_db, "upgrade", "head")
    assert up.returncode == 0, up.stderr
    placed = asyncio.run(_query(empty_db, "SELECT request_id, tableoid::regclass::text AS t FROM usage_records"))
    assert {r["request_id"]: r["t"] for r in placed}["old"] == "usage_records_p202503"
    assert "_default" not in {r["request_id"]: r["t"] for r in placed}["new"]
    daily = asyncio.run(
        _query(empty_db, "SELECT day::text, team_id, provider, requests, errors FROM usage_daily ORDER BY day")
    )
    assert [tuple(r) for r in daily] == [
        ("2025-03-15", "t", "fake", 1, 0),
        (daily[1]["day"], "", "", 1, 1),  # today's; no team, no provider: "" in the rollup
    ]
    totals = asyncio.run(_query(empty_db, "SELECT sum(requests) AS n, sum(cost_usd) AS c FROM usage_daily_totals"))
    assert (totals[0]["n"], float(totals[0]["c"])) == (2, 0.5)
    assert asyncio.run(_query(empty_db, "SELECT extname FROM pg_extension WHERE extname = 'pg_trgm'"))

    down = alembic(empty_db, "downgrade", "0003")
    assert down.returncode == 0, down.stderr
    assert sorted(r["request_id"] for r in asyncio.run(_query(empty_db, "SELECT request_id FROM usage_records"))) == [
        "new",
        "old",
    ]
    for table in ("usage_daily", "usage_daily_totals", "usage_bodies", "usage_records_p202503"):
        assert asyncio.run(_query(empty_db, f"SELECT to_regclass('{table}') AS t"))[0]["t"] is None
    assert "store_bodies" not in _columns(empty_db, "api_keys")
    assert "UNIQUE" in _indexes(empty_db, "usage_records")["usage_records_pkey"]
    assert "(request_id)" in _indexes(empty_db, "usage_records")["usage_records_pkey"]


def test_0005_keeps_an_unknown_cost_unknown_and_sums_what_is_known(empty_db: str) -> None:
    """A row of unknown price (0004: cost NULL, flagged) crosses into the partitioned table as it is,
    and the rollups sum the costs that are known (a NULL would break their NOT NULL sums)."""
    assert alembic(empty_db, "upgrade", "0004").returncode == 0
    asyncio.run(
        _query(
            empty_db,
            "INSERT INTO usage_records (request_id, key_id, endpoint, requested_model, provider, status,"
            " http_status, prompt_tokens, completion_tokens, total_tokens, cached_tokens, cost_usd, input_cost_usd,"
            " output_cost_usd, price_unknown, stream, attempts, latency_ms, started_at, finished_at) VALUES"
            " ('priced', 'key_1', '/v1/x', 'm', 'p', 'success', 200, 1, 2, 3, 0, 0.25, 0.05, 0.2, false, false,"
            "  1, 10.0, now(), now()),"
            " ('unpriced', 'key_1', '/v1/x', 'm', 'p', 'success', 200, 1, 2, 3, 0, NULL, NULL, NULL, true, false,"
            "  1, 10.0, now(), now())",
        )
    )
    up = alembic(empty_db, "upgrade", "head")
    assert up.returncode == 0, up.stderr
    rows = asyncio.run(
        _query(
            empty_db,
            "SELECT request_id, cost_usd, input_cost_usd, output_cost_usd, price_unknown FROM usage_records"
            " ORDER BY request_id",
        )
    )
    assert [tuple(r) for r in rows] == [
        ("priced", Decimal("0.25"), Decimal("0.05"), Decimal("0.2"), False),
        ("unpriced", None, None, None, True),
    ]
    daily = asyncio.run(_query(empty_db, "SELECT requests, cost_usd FROM usage_daily"))
    assert [(r["requests"], r["cost_usd"]) for r in daily] == [(2, Decimal("0.25"))]


def _attributes(url: str, relation: str) -> dict[str, str]:
    """A table's or a composite type's attributes and their types, as Postgres spells them."""
    rows = asyncio.run(
        _query(
            url,
            "SELECT attname, format_type(atttypid, atttypmod) AS t FROM pg_attribute"
            " WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped",
            relation,
        )
    )
    return {r["attname"]: r["t"] for r in rows}


def test_0006_adds_the_batch_row_types_as_the_columns_they_fill_and_takes_them_back(empty_db: str) -> None:
    """The types accounting sends a batch as carry exactly the columns the write fills, typed as those
    columns (a column the model gains without its attribute here would fail every batch); rows stored
    before the upgrade stay as they are."""
    assert alembic(empty_db, "upgrade", "0005").returncode == 0
    _store_row_r1(empty_db)
    up = alembic(empty_db, "upgrade", "head")
    assert up.returncode == 0, up.stderr
    records, bodies = _attributes(empty_db, "usage_records"), _attributes(empty_db, "usage_bodies")
    assert _attributes(empty_db, RECORD_TYPE) == {name: records[name] for name in COLUMNS}
    assert _attributes(empty_db, BODY_TYPE) == {name: bodies[name] for name in ["request_id", *BODY_COLUMNS]}
    assert [r["request_id"] for r in asyncio.run(_query(empty_db, "SELECT request_id FROM usage_records"))] == ["r1"]

    down = alembic(empty_db, "downgrade", "0005")
    assert down.returncode == 0, down.stderr
    for name in (RECORD_TYPE, BODY_TYPE):
        assert asyncio.run(_query(empty_db, f"SELECT to_regtype('{name}') AS t"))[0]["t"] is None
    assert [r["request_id"] for r in asyncio.run(_query(empty_db, "SELECT request_id FROM usage_records"))] == ["r1"]
