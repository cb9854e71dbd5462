"""Accounting's metrics against the real NATS JetStream and Postgres, on a private stream per test:
events by outcome (stored, rejected by Postgres, malformed), rows per INSERT and its time by result,
redeliveries after Postgres was unavailable, and the consumer's lag as the server counts it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from accounting.consumer import UsageConsumer
from accounting.metrics import AccountingMetrics, LagSampler
from accounting.store import UsageStore, create_engine
from modelrouter.events.v1 import events_pb2
from modelrouter.router.v1 import router_pb2
from tests.integration.test_accounting_consumer import Lane, usage_event, wait_until


@asynccontextmanager
async def consuming(lane: Lane, store: UsageStore, metrics: AccountingMetrics) -> AsyncIterator[UsageConsumer]:
    """A consumer of ``lane`` recording into ``metrics``, running until the block ends."""
    consumer = UsageConsumer(lane.js, store, lane.options, metrics)
    await consumer.start()
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    try:
        yield consumer
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=10)
        await consumer.close()
        await store.close()


def value(metrics: AccountingMetrics, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(generate_latest(metrics.registry).decode()):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    return 0.0


async def test_events_inserts_and_refusals_are_counted(lane: Lane, migrated_url: str, unique: str) -> None:
    good = [usage_event(f"{unique}-good-{i}") for i in range(3)]
    # 1000 tokens at $1e12 per 1k overflows cost_usd NUMERIC(20, 12): Postgres refuses the row.
    costly = usage_event(
        f"{unique}-costly", usage=events_pb2.Usage(prompt_tokens=1000), price=router_pb2.Price(prompt_per_1k=1e12)
    )
    for event in (*good, costly):  # published before the consumer starts: one batch
        await lane.publish(event, msg_id=event.request_id)
    await lane.publish(b"\xff\xff not a protobuf")
    metrics = AccountingMetrics(CollectorRegistry())
    store = UsageStore(create_engine(migrated_url))
    async with consuming(lane, store, metrics):
        await lane.wait_all_settled(5)
    assert value(metrics, "modelrouter_accounting_events_total", outcome="stored") == 3
    assert value(metrics, "modelrouter_accounting_events_total", outcome="rejected") == 1
    assert value(metrics, "modelrouter_accounting_events_total", outcome="malformed") == 1
    # The batch of four was refused as a whole, then stored one row at a time.
    assert value(metrics, "modelrouter_accounting_insert_seconds_count", result="rejected") == 2
    assert value(metrics, "modelrouter_accounting_insert_seconds_count", result="ok") == 3
    assert value(metrics, "modelrouter_accounting_batch_rows_sum") == 4 + 4 * 1
    assert value(metrics, "modelrouter_accounting_batch_rows_bucket", le="1.0") == 4
    assert value(metrics, "modelrouter_accounting_redeliveries_total") == 0


async def test_redeliveries_after_postgres_was_unavailable(lane: Lane, postgres_url: str, unique: str) -> None:
    base, _, _ = postgres_url.rpartition("/")
    missing = f"{base}/mr_test_acct_missing_{unique}"  # as if Postgres were down
    event = usage_event(f"{unique}-waits")
    metrics = AccountingMetrics(CollectorRegistry())
    async with consuming(lane, UsageStore(create_engine(missing)), metrics):
        await lane.publish(event, msg_id=event.request_id)

        async def redelivered_twice() -> bool:
            return value(metrics, "modelrouter_accounting_redeliveries_total") >= 2

        await wait_until(redelivered_twice, what="redeliveries counted")
    assert value(metrics, "modelrouter_accounting_insert_seconds_count", result="unavailable") >= 3
    assert value(metrics, "modelrouter_accounting_events_total", outcome="stored") == 0


async def test_the_lag_is_what_the_server_says_is_pending(lane: Lane, migrated_url: str, unique: str) -> None:
    metrics = AccountingMetrics(CollectorRegistry())
    store = UsageStore(create_engine(migrated_url))
    consumer = UsageConsumer(lane.js, store, lane.options, metrics)
    await consumer.start()  # the durable exists, nothing is fetched
    try:
        for i in range(7):
            await lane.publish(usage_event(f"{unique}-lag-{i}"))
        sampler = LagSampler(lane.js, lane.stream, lane.options.durable, metrics)
        await sampler.sample()
        assert value(metrics, "modelrouter_accounting_consumer_pending") == 7
        assert value(metrics, "modelrouter_accounting_consumer_ack_pending") == 0
    finally:
        await consumer.close()
        await store.close()
