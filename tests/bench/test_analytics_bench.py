"""``python -m bench.analytics`` at a tiny scale: the load, every timed query and every insert-rate
variant run against the schema as it is (the insert bench once broke silently when the ledger's rows
gained columns)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from accounting.analytics.partitions import ensure_months
from accounting.store import async_database_url
from bench.analytics import DAYS, time_queries
from bench.analytics_data import DB, dsn, load, migrate, recreate
from bench.analytics_insert import VARIANTS, insert_rate

pytestmark = pytest.mark.bench


async def _drop(postgres_url: str, name: str) -> None:
    conn = await asyncpg.connect(dsn(postgres_url))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def test_every_query_runs_on_a_small_load(postgres_url: str, unique: str) -> None:
    name = f"mr_test_bench_analytics_{unique}"
    url = await recreate(postgres_url, name)
    try:
        migrate(url)
        engine = create_async_engine(async_database_url(url))
        try:
            await ensure_months(engine, datetime.now(UTC) - timedelta(days=DAYS), ahead=4)
        finally:
            await engine.dispose()
        await load(url, 3_000)
        results = await time_queries(url, 1)
        assert len(results) >= 10 and all(p50 > 0 and p95 >= p50 for _, p50, p95, _ in results)
    finally:
        await _drop(postgres_url, name)


async def test_every_insert_variant_runs(postgres_url: str) -> None:
    try:
        rates = await insert_rate(postgres_url, batches=2, rounds=1)
    finally:
        await _drop(postgres_url, f"{DB}_insert")
    assert set(rates) == {label for label, _, _ in VARIANTS}
    assert all(rate.best > 0 for rate in rates.values())
    # Read from /proc when Postgres runs on this machine (None in a container of its own).
    assert all(rate.postgres_ms is None or rate.postgres_ms >= 0 for rate in rates.values())
