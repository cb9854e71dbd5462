"""The usage consumer against the real NATS JetStream and Postgres, each test on its own stream."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from nats.js import JetStreamContext
from nats.js.api import ConsumerInfo
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from accounting.consumer import ConsumerOptions, UsageConsumer
from accounting.store import UsageStore, create_engine
from common import subjects
from common.messaging import producer_span
from modelrouter.events.v1 import events_pb2
from modelrouter.router.v1 import router_pb2

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def migrate(database_url: str, *target: str) -> None:
    """Run the Alembic CLI exactly as ``make migrate`` does, against ``database_url``."""
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "PYTHONPATH": os.pathsep.join(str(ROOT / p) for p in ("libs", "libs/protos", "services")),
    }
    done = subprocess.run(
        [sys.executable, "-m", "alembic", *(target or ("upgrade", "head"))],
        cwd=ROOT / "services" / "accounting",
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr


def pg_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://")


def usage_event(request_id: str, **overrides: Any) -> events_pb2.UsageEvent:
    fields: dict[str, Any] = {
        "request_id": request_id,
        "key_id": "key_00000000deadbeef",
        "endpoint": "/v1/chat/completions",
        "requested_model": "demo-chat",
        "provider": "fake",
        "upstream_model": "fake-echo",
        "deployment_id": "fake-primary",
        "status": events_pb2.REQUEST_STATUS_SUCCESS,
        "http_status": 200,
        "usage": events_pb2.Usage(prompt_tokens=10, completion_tokens=20, total_tokens=30),
        "price": router_pb2.Price(prompt_per_1k=0.001, completion_per_1k=0.002),
        "attempts": 1,
        "latency_ms": 12.5,
        "started_at_unix_ms": 1_760_000_000_000,
        "finished_at_unix_ms": 1_760_000_000_013,
    }
    fields.update(overrides)
    return events_pb2.UsageEvent(**fields)


async def wait_until(check: Callable[[], Awaitable[bool]], timeout: float = 15.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or check}")
        await asyncio.sleep(0.05)


async def rows(database_url: str, request_ids: list[str]) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(pg_dsn(database_url))
    try:
        return list(
            await conn.fetch(
                "SELECT * FROM usage_records WHERE request_id = ANY($1::text[]) ORDER BY request_id", request_ids
            )
        )
    finally:
        await conn.close()


class Lane:
    """A private stream + subject + durable for one test (the shared MR_USAGE is never touched)."""

    def __init__(self, js: JetStreamContext, unique: str) -> None:
        self.js = js
        self.stream = f"ACCT_TEST_{unique}"
        self.subject = f"test.accounting.{unique}.usage"
        self.options = ConsumerOptions(
            stream=self.stream,
            subject=self.subject,
            durable=f"acct_{unique}",
            fetch_timeout_s=0.5,
            retry_base_s=0.1,
            retry_max_s=0.3,
        )

    async def publish(self, event: events_pb2.UsageEvent | bytes, *, msg_id: str | None = None) -> None:
        data = event if isinstance(event, bytes) else event.SerializeToString()
        headers = {subjects.MSG_ID_HEADER: msg_id} if msg_id else None
        await self.js.publish(self.subject, data, headers=headers)

    async def info(self) -> ConsumerInfo:
        return await self.js.consumer_info(self.stream, self.options.durable)

    async def acked_through(self) -> int:
        """The stream sequence up to which every message is acked (or terminated)."""
        floor = (await self.info()).ack_floor
        return (floor.stream_seq or 0) if floor else 0

    async def wait_all_settled(self, count: int) -> ConsumerInfo:
        """Until the first ``count`` stream messages are acked or terminated and none is pending."""

        async def settled() -> bool:
            return await self.acked_through() >= count and (await self.info()).num_ack_pending == 0

        await wait_until(settled, what=f"{count} messages settled on {self.stream}")
        return await self.info()


@asynccontextmanager
async def consuming(lane: Lane, database_url: str, **options: Any) -> AsyncIterator[UsageStore]:
    async with running_consumer(lane, UsageStore(create_engine(database_url)), **options) as store:
        yield store


@asynccontextmanager
async def running_consumer(lane: Lane, store: UsageStore, **options: Any) -> AsyncIterator[UsageStore]:
    """A consumer of ``lane`` (its options changed by ``options``) running until the block ends; then
    stopped and ``store`` closed."""
    opts = dataclasses.replace(lane.options, **options)
    consumer = UsageConsumer(lane.js, store, opts)
    await consumer.start()
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    try:
        yield store
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=10)
        await consumer.close()
        await store.close()


async def test_events_become_rows_with_every_field_mapped(lane: Lane, migrated_url: str, unique: str) -> None:
    streamed = usage_event(
        f"{unique}-ok",
        team_id="team_00000000feedf00d",
        usage=events_pb2.Usage(prompt_tokens=1200, completion_tokens=345, total_tokens=1545, cached_tokens=200),
        price=router_pb2.Price(prompt_per_1k=0.0015, completion_per_1k=0.002),
        stream=True,
        attempts=2,
        latency_ms=812.5,
        ttft_ms=95.25,
        started_at_unix_ms=1_760_000_000_123,
        finished_at_unix_ms=1_760_000_001_456,
    )
    failed = usage_event(
        f"{unique}-err",
        provider="",
        upstream_model="",
        deployment_id="",
        status=events_pb2.REQUEST_STATUS_ERROR,
        http_status=503,
        error_type="api_error",
        error_message="no healthy target for demo-chat",
        usage=events_pb2.Usage(),
        price=router_pb2.Price(),
    )
    cancelled = usage_event(f"{unique}-cxl", status=events_pb2.REQUEST_STATUS_CANCELLED, http_status=499)
    before = datetime.now(UTC)
    async with consuming(lane, migrated_url):
        for event in (streamed, failed, cancelled):
            await lane.publish(event, msg_id=event.request_id)
        ids = [streamed.request_id, failed.request_id, cancelled.request_id]
        await wait_until(lambda: _count(migrated_url, ids, 3), what="3 rows")

    by_id = {r["request_id"]: dict(r) for r in await rows(migrated_url, ids)}
    ok = by_id[streamed.request_id]
    assert before <= ok.pop("recorded_at") <= datetime.now(UTC)
    assert ok == {
        "request_id": streamed.request_id,
        "key_id": "key_00000000deadbeef",
        "team_id": "team_00000000feedf00d",
        "endpoint": "/v1/chat/completions",
        "requested_model": "demo-chat",
        "provider": "fake",
        "upstream_model": "fake-echo",
        "deployment_id": "fake-primary",
        "status": "success",
        "http_status": 200,
        "error_type": None,
        "error_message": None,
        "prompt_tokens": 1200,
        "completion_tokens": 345,
        "total_tokens": 1545,
        "cached_tokens": 200,
        "cost_usd": Decimal("0.00249"),
        "input_cost_usd": Decimal("0.0018"),
        "output_cost_usd": Decimal("0.00069"),
        "price_unknown": False,
        "stream": True,
        "attempts": 2,
        "latency_ms": 812.5,
        "ttft_ms": 95.25,
        "started_at": datetime(2025, 10, 9, 8, 53, 20, 123000, tzinfo=UTC),
        "finished_at": datetime(2025, 10, 9, 8, 53, 21, 456000, tzinfo=UTC),
    }
    err = by_id[failed.request_id]
    assert (err["status"], err["http_status"], err["error_type"], err["error_message"]) == (
        "error",
        503,
        "api_error",
        "no healthy target for demo-chat",
    )
    assert (err["provider"], err["deployment_id"], err["ttft_ms"], err["cost_usd"]) == (None, None, None, Decimal(0))
    assert err["team_id"] is None  # "" on the wire: a key without a team
    assert (by_id[cancelled.request_id]["status"], by_id[cancelled.request_id]["cost_usd"]) == (
        "cancelled",
        Decimal("0.00005"),
    )


async def _count(database_url: str, request_ids: list[str], expected: int) -> bool:
    return len(await rows(database_url, request_ids)) >= expected


async def test_same_request_id_published_twice_with_msg_id_is_one_row(
    lane: Lane, migrated_url: str, unique: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="accounting.consumer")
    first, other = usage_event(f"{unique}-a"), usage_event(f"{unique}-b")
    async with consuming(lane, migrated_url):
        await lane.publish(first, msg_id=first.request_id)
        await lane.publish(first, msg_id=first.request_id)
        await lane.publish(other, msg_id=other.request_id)
        await wait_until(lambda: _count(migrated_url, [other.request_id], 1), what="the later row")
    assert len(await rows(migrated_url, [first.request_id])) == 1
    assert not caplog.records, "a duplicate must be skipped by the insert, not rejected and dropped"


async def test_same_event_delivered_again_outside_dedup_window_is_still_one_row(
    lane: Lane, migrated_url: str, unique: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="accounting.consumer")
    rid = f"{unique}-dup"
    async with consuming(lane, migrated_url):
        # Without a msg id JetStream stores every copy: the consumer sees the event three times,
        # twice in one batch and once in a later one. The row keeps the first copy's values.
        await lane.publish(usage_event(rid, latency_ms=1.0))
        await lane.publish(usage_event(rid, latency_ms=2.0))
        await lane.wait_all_settled(2)
        await lane.publish(usage_event(rid, latency_ms=3.0))
        await lane.wait_all_settled(3)
    stored = await rows(migrated_url, [rid])
    assert [r["latency_ms"] for r in stored] == [1.0]
    assert not caplog.records, "a duplicate must be skipped by the insert, not rejected and dropped"


async def test_db_unavailable_message_is_redelivered_and_stored_when_db_is_back(
    lane: Lane, postgres_url: str, unique: str
) -> None:
    # The consumer points at a database that does not exist yet, as if Postgres were down.
    base, _, _ = postgres_url.rpartition("/")
    late_name = f"mr_test_acct_late_{unique}"
    late_url = f"{base}/{late_name}"
    admin = await asyncpg.connect(pg_dsn(postgres_url))
    event = usage_event(f"{unique}-late")
    try:
        async with consuming(lane, late_url) as store:
            await lane.publish(event, msg_id=event.request_id)

            async def redelivered() -> bool:
                return ((await lane.info()).num_redelivered or 0) >= 1

            await wait_until(redelivered, what="a redelivery after the failed insert")
            info = await lane.info()
            assert info.num_ack_pending == 1 and await lane.acked_through() == 0
            assert store.healthy is False

            await admin.execute(f'CREATE DATABASE "{late_name}"')
            await asyncio.to_thread(migrate, late_url)
            await wait_until(lambda: _count(late_url, [event.request_id], 1), what="the row once the DB is back")
            await lane.wait_all_settled(1)
            assert store.healthy is True
        assert len(await rows(late_url, [event.request_id])) == 1
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{late_name}" WITH (FORCE)')
        await admin.close()


async def test_connections_dropped_by_postgres_are_replaced(lane: Lane, migrated_url: str, unique: str) -> None:
    before, after = usage_event(f"{unique}-before"), usage_event(f"{unique}-after")
    async with consuming(lane, migrated_url):
        await lane.publish(before, msg_id=before.request_id)
        await wait_until(lambda: _count(migrated_url, [before.request_id], 1), what="the first row")
        assert await kill_connections(migrated_url) >= 1
        await lane.publish(after, msg_id=after.request_id)
        await wait_until(lambda: _count(migrated_url, [after.request_id], 1), what="the row after the kill")
        await lane.wait_all_settled(2)


async def test_undecodable_message_is_terminated_and_the_next_is_stored(
    lane: Lane, migrated_url: str, unique: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="accounting.consumer")
    valid = usage_event(f"{unique}-after-poison")
    async with consuming(lane, migrated_url):
        await lane.publish(b"\xff\xff not a protobuf")
        await lane.publish(valid, msg_id=valid.request_id)
        await wait_until(lambda: _count(migrated_url, [valid.request_id], 1), what="the valid row")
        info = await lane.wait_all_settled(2)
    assert info.num_redelivered == 0 and info.delivered is not None and info.delivered.stream_seq == 2
    assert any("dropping usage message (stream seq 1" in r.getMessage() for r in caplog.records)


async def test_rows_postgres_rejects_are_terminated_without_holding_back_their_batch(
    lane: Lane, migrated_url: str, unique: str
) -> None:
    good_a, good_b = usage_event(f"{unique}-ga"), usage_event(f"{unique}-gb")
    # 1000 tokens at $1e12 per 1k overflows cost_usd NUMERIC(20, 12): Postgres refuses the value.
    costly = usage_event(
        f"{unique}-costly", usage=events_pb2.Usage(prompt_tokens=1000), price=router_pb2.Price(prompt_per_1k=1e12)
    )
    # A uint32 beyond INTEGER: asyncpg refuses to encode it.
    odd_status = usage_event(f"{unique}-status", http_status=3_000_000_000)
    events = (good_a, costly, odd_status, good_b)
    for event in events:  # all published before the consumer starts: they arrive as one batch
        await lane.publish(event, msg_id=event.request_id)
    async with consuming(lane, migrated_url):
        info = await lane.wait_all_settled(len(events))
    assert info.num_redelivered == 0
    stored = await rows(migrated_url, [e.request_id for e in events])
    assert [r["request_id"] for r in stored] == sorted([good_a.request_id, good_b.request_id])


async def test_consumer_span_is_child_of_the_publishers_traceparent(
    lane: Lane, migrated_url: str, unique: str, spans: InMemorySpanExporter
) -> None:
    event = usage_event(f"{unique}-traced")
    async with consuming(lane, migrated_url):
        with producer_span(lane.subject, {subjects.MSG_ID_HEADER: event.request_id}) as (publish, headers):
            await lane.js.publish(lane.subject, event.SerializeToString(), headers=headers)
        await wait_until(lambda: _count(migrated_url, [event.request_id], 1), what="the traced row")
        await lane.wait_all_settled(1)
    trace_id = publish.get_span_context().trace_id
    traced = [s for s in spans.get_finished_spans() if s.context.trace_id == trace_id]
    consumer = [s for s in traced if s.kind is SpanKind.CONSUMER]
    assert len(consumer) == 1
    assert consumer[0].parent is not None and consumer[0].parent.span_id == publish.get_span_context().span_id
    assert consumer[0].attributes is not None and consumer[0].attributes["messaging.message.id"] == event.request_id
    inserts = [s for s in traced if s.name == "INSERT usage_records"]
    assert len(inserts) == 1
    assert inserts[0].parent is not None and inserts[0].parent.span_id == consumer[0].context.span_id
    assert inserts[0].kind is SpanKind.CLIENT


BURST = 5_000


async def test_burst_of_5000_events_is_ingested_once_each(lane: Lane, migrated_url: str, unique: str) -> None:
    ids = [f"{unique}-burst-{i}" for i in range(BURST)]
    acks = [
        lane.js.publish(lane.subject, usage_event(rid).SerializeToString(), headers={subjects.MSG_ID_HEADER: rid})
        for rid in ids
    ]
    await asyncio.gather(*acks)

    async def all_stored() -> bool:
        conn = await asyncpg.connect(pg_dsn(migrated_url))
        try:
            n = await conn.fetchval("SELECT count(*) FROM usage_records WHERE request_id LIKE $1", f"{unique}-burst-%")
        finally:
            await conn.close()
        return bool(n == BURST)

    started = time.perf_counter()
    async with consuming(lane, migrated_url, batch=64):
        await wait_until(all_stored, timeout=120, what=f"{BURST} rows")
        elapsed = time.perf_counter() - started
        info = await lane.wait_all_settled(BURST)
    assert info.num_redelivered == 0
    rate = BURST / elapsed
    print(f"\naccounting ingest: {BURST} events in {elapsed:.2f}s = {rate:,.0f} rows/s (batch 64)")
    # Far below what a healthy run does; catches a consumer that degraded to one row per round trip.
    assert rate > 200


async def kill_connections(database_url: str) -> int:
    """Terminate every other connection to the database (as a Postgres restart would); how many."""
    admin = await asyncpg.connect(pg_dsn(database_url))
    try:
        killed: int = await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    finally:
        await admin.close()
    return killed
