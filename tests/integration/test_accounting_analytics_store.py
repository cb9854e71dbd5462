"""The partitioned ledger, its rollup and its texts against the real Postgres, on a database of this
module's own (retention drops partitions): exactly-once through redeliveries, the rollup equal to a
GROUP BY of the rows, months made ahead and after their rows arrived, whole months dropped."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from accounting.analytics import rollup
from accounting.analytics.partitions import Month, drop_expired, ensure_months, existing_months
from accounting.analytics.runtime import upkeep
from accounting.mapping import row_from_event
from accounting.store import RowsRejectedError, UsageStore, create_engine
from modelrouter.events.v1 import events_pb2
from tests.integration.test_accounting_consumer import migrate, pg_dsn, usage_event

pytestmark = pytest.mark.integration

_GROUPED = """
SELECT (started_at AT TIME ZONE 'UTC')::date AS day, key_id, coalesce(team_id, '') AS team_id,
       requested_model AS model, coalesce(provider, '') AS provider, count(*) AS requests,
       count(*) FILTER (WHERE status = 'success') AS successes, count(*) FILTER (WHERE status = 'error') AS errors,
       count(*) FILTER (WHERE status = 'cancelled') AS cancelled, sum(prompt_tokens) AS prompt_tokens,
       sum(completion_tokens) AS completion_tokens, sum(total_tokens) AS total_tokens, sum(cost_usd) AS cost_usd,
       sum(latency_ms) AS latency_ms_sum
FROM usage_records GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5
"""


async def _sql(url: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(pg_dsn(url))
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def own_db(postgres_url: str) -> Iterator[str]:
    name = f"mr_test_acct_analytics_{uuid.uuid4().hex[:8]}"
    asyncio.run(_sql(postgres_url, f'CREATE DATABASE "{name}"'))
    url = f"{postgres_url.rpartition('/')[0]}/{name}"
    migrate(url)
    yield url
    asyncio.run(_sql(postgres_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
async def engine(own_db: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(own_db)
    yield engine
    await engine.dispose()


def _at(moment: datetime, request_id: str, **overrides: Any) -> dict[str, Any]:
    ms = int(moment.timestamp() * 1000)
    return row_from_event(usage_event(request_id, started_at_unix_ms=ms, finished_at_unix_ms=ms + 20, **overrides))


async def _rollup(url: str, key_id: str) -> list[dict[str, Any]]:
    rows = await _sql(url, "SELECT * FROM usage_daily WHERE key_id = $1 ORDER BY day, model", key_id)
    return [dict(r) for r in rows]


async def _totals(url: str) -> list[dict[str, Any]]:
    return [dict(r) for r in await _sql(url, "SELECT * FROM usage_daily_totals ORDER BY day, model, provider")]


async def _totals_grouped(url: str) -> list[dict[str, Any]]:
    sums = "requests, successes, errors, cancelled, prompt_tokens, completion_tokens, total_tokens, cost_usd"
    rows = await _sql(
        url,
        f"SELECT day, model, provider, {', '.join(f'sum({c}) AS {c}' for c in sums.split(', '))},"
        f" sum(latency_ms_sum) AS latency_ms_sum FROM ({_GROUPED}) g GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
    )
    return [dict(r) for r in rows]


async def _grouped(url: str, key_id: str) -> list[dict[str, Any]]:
    return [dict(r) for r in await _sql(url, _GROUPED) if r["key_id"] == key_id]


async def test_redelivered_rows_are_stored_and_counted_once(own_db: str, engine: AsyncEngine) -> None:
    key = f"key_{uuid.uuid4().hex[:16]}"
    now = datetime.now(UTC)
    batch = [
        _at(now, f"r1-{key}", key_id=key, team_id="team_t"),
        _at(now, f"r2-{key}", key_id=key, status=events_pb2.REQUEST_STATUS_ERROR, http_status=502),
        _at(now - timedelta(days=1), f"r3-{key}", key_id=key, requested_model="other"),
    ]
    batch[0]["bodies"] = {
        "prompt_text": "hello",
        "response_text": "hi",
        "prompt_truncated": False,
        "response_truncated": False,
    }
    store = UsageStore(engine)
    await store.insert(batch)
    await store.insert(batch)  # a whole batch redelivered (lost ack)
    await store.insert([batch[1], batch[1]])  # the same event twice in one batch, again
    stored = await _sql(own_db, "SELECT request_id FROM usage_records WHERE key_id = $1", key)
    assert sorted(r["request_id"] for r in stored) == sorted(r["request_id"] for r in batch)
    rollup = await _rollup(own_db, key)
    assert rollup == await _grouped(own_db, key)  # the rollup is the GROUP BY, not 3x it
    assert sum(r["requests"] for r in rollup) == 3 and sum(r["errors"] for r in rollup) == 1
    assert sum(r["cost_usd"] for r in rollup) == sum(Decimal(str(r["cost_usd"])) for r in batch)
    # The totals (the master key's rollup) are the same rows summed over keys and teams.
    assert await _totals(own_db) == await _totals_grouped(own_db)
    bodies = await _sql(own_db, "SELECT * FROM usage_bodies WHERE key_id = $1", key)
    assert [(b["request_id"], b["prompt_text"], b["team_id"]) for b in bodies] == [(f"r1-{key}", "hello", "team_t")]


async def test_a_batch_rejected_by_postgres_leaves_no_rollup_behind(own_db: str, engine: AsyncEngine) -> None:
    """The rollup is in the insert's transaction: a batch that fails stores neither."""
    key = f"key_{uuid.uuid4().hex[:16]}"
    good = _at(datetime.now(UTC), f"ok-{key}", key_id=key)
    bad = _at(datetime.now(UTC), f"bad-{key}", key_id=key)
    bad["status"] = "exploded"  # violates ck_usage_records_status
    with pytest.raises(RowsRejectedError, match=r"ck_usage_records_status"):
        await UsageStore(engine).insert([good, bad])
    assert await _rollup(own_db, key) == []
    await UsageStore(engine).insert([good])
    assert [r["requests"] for r in await _rollup(own_db, key)] == [1]


async def test_a_batch_is_one_statement_sent_without_begin_or_commit(own_db: str, engine: AsyncEngine) -> None:
    """The write is one round trip: the statement alone, in autocommit (a transaction of its own), with
    every column of the row where it belongs."""
    key = f"key_{uuid.uuid4().hex[:16]}"
    row = _at(datetime.now(UTC), f"one-{key}", key_id=key, team_id="team_t", error_message="e", ttft_ms=3.5)
    executed: list[tuple[str, Any]] = []
    sent_alone: list[str] = []  # what asyncpg sends outside a prepared statement: BEGIN, COMMIT, ...

    def on_execute(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        executed.append((statement, conn.get_execution_options().get("isolation_level")))

    def on_checkout(dbapi_conn: Any, *_: Any) -> None:
        dbapi_conn.driver_connection.add_query_logger(lambda record: sent_alone.append(record.query))

    store = UsageStore(engine)
    await store.insert([_at(datetime.now(UTC), f"warm-{key}", key_id=key)])  # asyncpg reads the arrays' types once
    event.listen(engine.sync_engine, "before_cursor_execute", on_execute)
    event.listen(engine.sync_engine.pool, "checkout", on_checkout)
    try:
        await store.insert([row])
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", on_execute)
        event.remove(engine.sync_engine.pool, "checkout", on_checkout)
    assert executed == [(rollup.WRITE_SQL, "AUTOCOMMIT")]
    assert sent_alone == []
    stored = await _sql(own_db, "SELECT * FROM usage_records WHERE request_id = $1", row["request_id"])
    assert {name: stored[0][name] for name in rollup.COLUMNS} == {name: row[name] for name in rollup.COLUMNS}


async def test_columns_added_while_accounting_runs_do_not_stop_its_inserts(postgres_url: str, unique: str) -> None:
    """asyncpg caches the batch's row types' layout per connection. A column added to a table leaves
    them as they are; an attribute added to them (for newer code, in a rolling deploy) is read again on
    a new connection: the next batch is stored, not refused until a restart."""
    name = f"mr_test_acct_rowtype_{unique}"
    await _sql(postgres_url, f'CREATE DATABASE "{name}"')
    url = f"{postgres_url.rpartition('/')[0]}/{name}"
    engine = create_engine(url)
    try:
        await asyncio.to_thread(migrate, url)
        store = UsageStore(engine)
        texts = {"prompt_text": "p", "response_text": "r", "prompt_truncated": False, "response_truncated": False}
        now = datetime.now(UTC)
        await store.insert([{**_at(now, "first"), "bodies": texts}])
        await _sql(url, "ALTER TABLE usage_records ADD COLUMN extra integer NOT NULL DEFAULT 7")
        await store.insert([{**_at(now, "second"), "bodies": texts}])
        await _sql(url, f"ALTER TYPE {rollup.RECORD_TYPE} ADD ATTRIBUTE extra integer")
        await _sql(url, f"ALTER TYPE {rollup.BODY_TYPE} ADD ATTRIBUTE extra text")
        await store.insert([{**_at(now, "third"), "bodies": texts}])
        stored = await _sql(url, "SELECT request_id, extra FROM usage_records ORDER BY request_id")
        assert [tuple(r) for r in stored] == [("first", 7), ("second", 7), ("third", 7)]
        bodies = await _sql(url, "SELECT request_id FROM usage_bodies ORDER BY request_id")
        assert [r["request_id"] for r in bodies] == ["first", "second", "third"]
        assert [r["requests"] for r in await _sql(url, "SELECT requests FROM usage_daily_totals")] == [3]
    finally:
        await engine.dispose()
        await _sql(postgres_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def test_months_are_made_ahead_and_after_their_rows_arrived(own_db: str, engine: AsyncEngine) -> None:
    far = datetime(2031, 5, 17, tzinfo=UTC)
    key = f"key_{uuid.uuid4().hex[:16]}"
    await UsageStore(engine).insert([_at(far, f"far-{key}", key_id=key)])
    where = await _sql(own_db, "SELECT tableoid::regclass::text AS t FROM usage_records WHERE key_id = $1", key)
    assert [r["t"] for r in where] == ["usage_records_default"]  # no month for it yet

    made = await ensure_months(engine, far, ahead=1)
    assert set(made) == {
        "usage_records_p203105",
        "usage_records_p203106",
        "usage_bodies_p203105",
        "usage_bodies_p203106",
    }
    where = await _sql(own_db, "SELECT tableoid::regclass::text AS t FROM usage_records WHERE key_id = $1", key)
    assert [r["t"] for r in where] == ["usage_records_p203105"]  # moved out of DEFAULT
    assert await ensure_months(engine, far, ahead=1) == []  # idempotent
    # The exactly-once key still holds in the month made afterwards.
    await UsageStore(engine).insert([_at(far, f"far-{key}", key_id=key)])
    assert len(await _sql(own_db, "SELECT 1 FROM usage_records WHERE key_id = $1", key)) == 1


async def test_retention_drops_whole_months_and_their_rollup(own_db: str, engine: AsyncEngine) -> None:
    key = f"key_{uuid.uuid4().hex[:16]}"
    now = datetime(2031, 9, 10, tzinfo=UTC)
    old, recent = datetime(2031, 7, 20, tzinfo=UTC), datetime(2031, 9, 2, tzinfo=UTC)
    await ensure_months(engine, datetime(2031, 7, 1, tzinfo=UTC), ahead=2)
    await UsageStore(engine).insert([_at(old, f"old-{key}", key_id=key), _at(recent, f"new-{key}", key_id=key)])

    # 45 days before 2031-09-10 is 2031-07-27: July does not end before it and stays (the months of
    # the other tests, years before, go).
    dropped = await drop_expired(engine, now, retention_days=45)
    assert not any(name.endswith(("_p203107", "_p203108", "_p203109")) for name in dropped)
    assert len(await _sql(own_db, "SELECT 1 FROM usage_records WHERE key_id = $1", key)) == 2
    # 40 days: the cutoff 2031-08-01 ends July; August and September stay.
    dropped = await drop_expired(engine, now, retention_days=40)
    assert "usage_records_p203107" in dropped and "usage_bodies_p203107" in dropped
    assert Month(2031, 7) not in await existing_months_of(engine, "usage_records")
    assert Month(2031, 8) in await existing_months_of(engine, "usage_records")
    left = await _sql(own_db, "SELECT request_id FROM usage_records WHERE key_id = $1", key)
    assert [r["request_id"] for r in left] == [f"new-{key}"]
    assert [r["day"].isoformat() for r in await _rollup(own_db, key)] == ["2031-09-02"]


async def test_upkeep_makes_this_month_and_applies_no_retention_when_none_is_set(engine: AsyncEngine) -> None:
    now = datetime(2032, 3, 5, tzinfo=UTC)
    await upkeep(engine, 0, now)
    months = await existing_months_of(engine, "usage_bodies")
    assert {Month(2032, 3), Month(2032, 4), Month(2032, 5)} <= set(months)


async def existing_months_of(engine: AsyncEngine, table: str) -> list[Month]:
    async with engine.connect() as conn:
        return await existing_months(conn, table)
