"""The Alembic migration, run through its CLI as ``make migrate`` does, on a database of its own."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from accounting.models import UsageRecord

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
EXPECTED_COLUMNS = {
    "request_id": ("character varying", "NO"),
    "key_id": ("character varying", "NO"),
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
    "cost_usd": ("numeric", "NO"),
    "stream": ("boolean", "NO"),
    "attempts": ("integer", "NO"),
    "latency_ms": ("double precision", "NO"),
    "ttft_ms": ("double precision", "YES"),
    "started_at": ("timestamp with time zone", "NO"),
    "finished_at": ("timestamp with time zone", "NO"),
    "recorded_at": ("timestamp with time zone", "NO"),
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
                    ctx = MigrationContext.configure(sync, opts={"compare_type": True, "compare_server_default": True})
                    return list(compare_metadata(ctx, UsageRecord.metadata))

                return await conn.run_sync(compare)
        finally:
            await engine.dispose()

    return asyncio.run(run())


def test_upgrade_head_creates_the_table_and_downgrade_base_removes_it(empty_db: str) -> None:
    up = alembic(empty_db, "upgrade", "head")
    assert up.returncode == 0, up.stderr

    columns = asyncio.run(
        _query(
            empty_db,
            "SELECT column_name, data_type, is_nullable FROM information_schema.columns "
            "WHERE table_name = 'usage_records'",
        )
    )
    assert {c["column_name"]: (c["data_type"], c["is_nullable"]) for c in columns} == EXPECTED_COLUMNS
    precision = asyncio.run(
        _query(
            empty_db,
            "SELECT numeric_precision, numeric_scale FROM information_schema.columns "
            "WHERE table_name = 'usage_records' AND column_name = 'cost_usd'",
        )
    )
    assert (precision[0]["numeric_precision"], precision[0]["numeric_scale"]) == (20, 12)
    indexes = asyncio.run(
        _query(empty_db, "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'usage_records'")
    )
    defs = {i["indexname"]: i["indexdef"] for i in indexes}
    assert "UNIQUE" in defs["usage_records_pkey"] and "(request_id)" in defs["usage_records_pkey"]
    assert "(key_id, started_at)" in defs["ix_usage_records_key_id_started_at"]
    assert "(requested_model, started_at)" in defs["ix_usage_records_requested_model_started_at"]
    # The migration (explicit DDL) and the model the code writes through describe the same table.
    assert _schema_diff(empty_db) == []

    down = alembic(empty_db, "downgrade", "base")
    assert down.returncode == 0, down.stderr
    assert asyncio.run(_query(empty_db, "SELECT to_regclass('usage_records') AS t"))[0]["t"] is None


def test_migration_takes_the_url_from_database_url(postgres_url: str, unique: str) -> None:
    base, _, _ = postgres_url.rpartition("/")
    missing = f"{base}/mr_test_acct_absent_{unique}"
    failed = alembic(missing, "upgrade", "head")
    assert failed.returncode != 0
    assert f"mr_test_acct_absent_{unique}" in failed.stderr
