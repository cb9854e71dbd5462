"""Batching a trickle of usage events (``linger_s``) and replacing dropped Postgres connections,
against the real NATS JetStream and Postgres; each test on its own stream."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import pytest
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from accounting.consumer import UsageConsumer
from accounting.mapping import row_from_event
from accounting.store import UsageStore, create_engine
from tests.integration.test_accounting_consumer import Lane, kill_connections, rows, usage_event, wait_until

pytestmark = pytest.mark.integration


class RecordingStore(UsageStore):
    """The real store, noting the request ids of each INSERT it is asked to run."""

    def __init__(self, database_url: str) -> None:
        super().__init__(create_engine(database_url))
        self.batches: list[list[str]] = []

    async def insert(self, rows: Sequence[dict[str, Any]]) -> None:
        self.batches.append([row["request_id"] for row in rows])
        await super().insert(rows)


class Running:
    def __init__(self, store: RecordingStore, stop: asyncio.Event, task: asyncio.Task[None]) -> None:
        self.store, self.stop, self.task = store, stop, task
        self.pull_requests = 0


@asynccontextmanager
async def consuming(lane: Lane, nc: NATS, database_url: str, **options: Any) -> AsyncIterator[Running]:
    """A consumer on ``lane`` with ``options``, counting the pull requests it sends to JetStream."""
    store = RecordingStore(database_url)
    opts = dataclasses.replace(lane.options, **options)
    consumer = UsageConsumer(lane.js, store, opts)
    await consumer.start()
    stop = asyncio.Event()
    running = Running(store, stop, asyncio.create_task(consumer.run(stop)))

    async def count(_: Msg) -> None:
        running.pull_requests += 1

    pulls = await nc.subscribe(f"$JS.API.CONSUMER.MSG.NEXT.{lane.stream}.{opts.durable}", cb=count)
    try:
        yield running
    finally:
        stop.set()
        await asyncio.wait_for(running.task, timeout=10)
        await pulls.unsubscribe()
        await consumer.close()
        await store.close()


async def _stored(database_url: str, ids: list[str]) -> bool:
    return len(await rows(database_url, ids)) == len(ids)


async def test_events_trickling_in_are_stored_in_few_inserts_and_pull_requests(
    lane: Lane, nc: NATS, migrated_url: str, unique: str
) -> None:
    count = 20
    ids = [f"{unique}-trickle-{i}" for i in range(count)]
    async with consuming(lane, nc, migrated_url, linger_s=0.5) as running:
        await asyncio.sleep(0.1)  # the consumer is waiting in a fetch, as when idle
        running.pull_requests = 0
        for rid in ids:  # one at a time, 10 ms apart: all well within one linger window
            await lane.publish(usage_event(rid), msg_id=rid)
            await asyncio.sleep(0.01)
        await wait_until(lambda: _stored(migrated_url, ids), what=f"{count} rows")
        info = await lane.wait_all_settled(count)
        pulls = running.pull_requests
    batches = running.store.batches
    assert sorted(rid for batch in batches for rid in batch) == sorted(ids)
    # Without the linger each event is its own fetch, INSERT and transaction.
    assert len(batches) <= 3, [len(b) for b in batches]
    assert pulls <= count // 2, f"{pulls} pull requests for {count} events"
    assert info.num_redelivered == 0


async def test_a_lone_event_is_stored_soon_after_the_linger(
    lane: Lane, nc: NATS, migrated_url: str, unique: str
) -> None:
    rid = f"{unique}-lone"
    linger = 0.2
    # A long fetch timeout: the batch must not wait for the fetch to expire or fill up.
    async with consuming(lane, nc, migrated_url, linger_s=linger, fetch_timeout_s=3.0) as running:
        await asyncio.sleep(0.1)
        published = time.monotonic()
        await lane.publish(usage_event(rid), msg_id=rid)
        await wait_until(lambda: _stored(migrated_url, [rid]), timeout=10, what="the lone row")
        elapsed = time.monotonic() - published
        await lane.wait_all_settled(1)
    assert running.store.batches == [[rid]]
    assert elapsed < linger + 1.0, f"stored {elapsed:.2f}s after publishing with a {linger}s linger"


async def test_stop_during_the_linger_stores_the_batch_in_hand(
    lane: Lane, nc: NATS, migrated_url: str, unique: str
) -> None:
    rid = f"{unique}-in-hand"
    async with consuming(lane, nc, migrated_url, linger_s=30.0) as running:
        await lane.publish(usage_event(rid), msg_id=rid)

        async def fetched() -> bool:
            info = await lane.info()
            return (info.num_ack_pending or 0) == 1 and (info.num_pending or 0) == 0

        await wait_until(fetched, what="the event delivered to the consumer")
        await asyncio.sleep(0.1)  # now lingering, 30 s to go
        assert running.store.batches == [] and not running.task.done()
        stopped = time.monotonic()
        running.stop.set()
        await asyncio.wait_for(running.task, timeout=5)
        assert time.monotonic() - stopped < 2.0
        assert running.store.batches == [[rid]]
        assert len(await rows(migrated_url, [rid])) == 1
        await lane.wait_all_settled(1)


async def test_insert_replaces_a_connection_postgres_dropped(migrated_url: str, unique: str) -> None:
    # Without pool_pre_ping the pooled connection is only found dead by the insert itself: the store
    # must retry on a new connection rather than report Postgres unavailable (and nak the batch).
    store = UsageStore(create_engine(migrated_url))
    try:
        first, second = usage_event(f"{unique}-pooled"), usage_event(f"{unique}-after-kill")
        await store.insert([row_from_event(first)])
        assert await kill_connections(migrated_url) >= 1
        await store.insert([row_from_event(second)])
        assert store.healthy is True
        assert len(await rows(migrated_url, [first.request_id, second.request_id])) == 2
    finally:
        await store.close()
