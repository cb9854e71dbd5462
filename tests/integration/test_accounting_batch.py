"""UsageBatch messages (many events in one JetStream message) against the real NATS JetStream and
Postgres: one row per event, one settlement per message, one CONSUMER span per event."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import pytest
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from accounting.store import StoreUnavailableError, UsageStore, create_engine
from common import subjects
from common.messaging import producer_span
from common.telemetry import traceparent_of
from modelrouter.events.v1 import events_pb2
from modelrouter.router.v1 import router_pb2
from tests.integration.test_accounting_consumer import (
    Lane,
    migrate,
    pg_dsn,
    rows,
    running_consumer,
    usage_event,
    wait_until,
)

pytestmark = pytest.mark.integration


class Settlements:
    """Every ack/nak/term the consumer sends for ``lane``'s messages, as (stream seq, verb), seen on
    the wire: JetStream takes them on the message's reply subject, which a plain subscriber hears too."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, str]] = []

    async def record(self, msg: Msg) -> None:
        # $JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<timestamp>.<pending>
        stream_seq = int(msg.subject.split(".")[5])
        verb = msg.data.split(b" ", 1)[0].decode() or "+ACK"  # an empty payload is an ack (nats-py sends that)
        self.seen.append((stream_seq, verb))

    def of(self, stream_seq: int) -> list[str]:
        return [verb for seq, verb in self.seen if seq == stream_seq]


@asynccontextmanager
async def consuming(lane: Lane, nc: NATS, store: UsageStore, **options: Any) -> AsyncIterator[Settlements]:
    settlements = Settlements()
    sub = await nc.subscribe(f"$JS.ACK.{lane.stream}.>", cb=settlements.record)
    try:
        async with running_consumer(lane, store, **options):
            yield settlements
    finally:
        await nc.flush()
        await sub.unsubscribe()


async def publish_batch(
    lane: Lane, batch_id: str, events: Sequence[events_pb2.UsageEvent], headers: dict[str, str] | None = None
) -> None:
    data = events_pb2.UsageBatch(events=events).SerializeToString()
    await publish_raw(lane, batch_id, data, headers)


async def publish_raw(lane: Lane, batch_id: str, data: bytes, headers: dict[str, str] | None = None) -> None:
    batch_headers = {**(headers or {}), subjects.USAGE_BATCH_HEADER: "1", subjects.MSG_ID_HEADER: batch_id}
    await lane.js.publish(lane.subject, data, headers=batch_headers)


async def count_rows(database_url: str, prefix: str) -> dict[str, int]:
    conn = await asyncpg.connect(pg_dsn(database_url))
    try:
        found = await conn.fetch(
            "SELECT request_id, count(*) AS n FROM usage_records WHERE request_id LIKE $1 GROUP BY request_id",
            f"{prefix}%",
        )
    finally:
        await conn.close()
    return {r["request_id"]: r["n"] for r in found}


async def test_a_batch_of_n_events_is_n_rows_and_one_ack(
    lane: Lane, nc: NATS, migrated_url: str, unique: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="accounting.consumer")
    events = [usage_event(f"{unique}-b{i}", latency_ms=float(i)) for i in range(10)]
    async with consuming(lane, nc, UsageStore(create_engine(migrated_url))) as settled:
        await publish_batch(lane, f"{unique}-batch", events)
        info = await lane.wait_all_settled(1)
    assert info.num_redelivered == 0
    assert settled.of(1) == ["+ACK"]
    # A second ack of the same message is refused by nats-py before the wire, and logged.
    assert not caplog.records, [r.getMessage()[:120] for r in caplog.records]
    stored = await rows(migrated_url, [e.request_id for e in events])
    assert {r["request_id"]: r["latency_ms"] for r in stored} == {e.request_id: e.latency_ms for e in events}


async def test_batches_and_single_events_are_stored_together(
    lane: Lane, nc: NATS, migrated_url: str, unique: str
) -> None:
    # Old publishers keep sending one event per message while the gateway sends batches.
    single = usage_event(f"{unique}-single")
    first = [usage_event(f"{unique}-x{i}") for i in range(3)]
    second = [usage_event(f"{unique}-y{i}") for i in range(4)]
    await publish_batch(lane, f"{unique}-batch-1", first)
    await lane.publish(single, msg_id=single.request_id)
    await publish_batch(lane, f"{unique}-batch-2", second)
    async with consuming(lane, nc, UsageStore(create_engine(migrated_url))) as settled:
        await lane.wait_all_settled(3)
    assert [settled.of(seq) for seq in (1, 2, 3)] == [["+ACK"]] * 3
    assert await count_rows(migrated_url, unique) == {e.request_id: 1 for e in [single, *first, *second]}


async def test_a_bad_event_is_dropped_from_its_batch_and_the_rest_stored_and_acked(
    lane: Lane, nc: NATS, migrated_url: str, unique: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="accounting.consumer")
    good = [usage_event(f"{unique}-good{i}") for i in range(3)]
    nameless = usage_event("", latency_ms=99.0)  # MalformedEventError: can never be a row
    # 1000 tokens at $1e12 per 1k overflows cost_usd NUMERIC(20, 12): Postgres refuses it, even alone.
    costly = usage_event(
        f"{unique}-costly", usage=events_pb2.Usage(prompt_tokens=1000), price=router_pb2.Price(prompt_per_1k=1e12)
    )
    rejected_alone = usage_event(f"{unique}-alone", http_status=3_000_000_000)  # beyond INTEGER
    await publish_batch(lane, f"{unique}-batch", [good[0], nameless, good[1], costly, good[2]])
    await lane.publish(rejected_alone, msg_id=rejected_alone.request_id)
    async with consuming(lane, nc, UsageStore(create_engine(migrated_url))) as settled:
        info = await lane.wait_all_settled(2)
    assert info.num_redelivered == 0
    # The batch is acked once; a single-event message that can never be stored is still terminated.
    assert (settled.of(1), settled.of(2)) == (["+ACK"], ["+TERM"])
    assert await count_rows(migrated_url, unique) == {e.request_id: 1 for e in good}
    assert await rows(migrated_url, [""]) == []  # the nameless event is nowhere, in any test's rows
    dropped = [r.getMessage() for r in caplog.records if "dropping usage event" in r.getMessage()]
    assert len(dropped) == 2
    assert "''" in dropped[0] and "no request_id" in dropped[0]
    assert costly.request_id in dropped[1] and "rejected by Postgres" in dropped[1]


async def test_an_undecodable_batch_is_terminated_and_the_next_is_stored(
    lane: Lane, nc: NATS, migrated_url: str, unique: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="accounting.consumer")
    after = [usage_event(f"{unique}-after{i}") for i in range(2)]
    await publish_raw(lane, f"{unique}-poison", b"\xff\xff not a protobuf")
    await publish_batch(lane, f"{unique}-batch", after)
    async with consuming(lane, nc, UsageStore(create_engine(migrated_url))) as settled:
        info = await lane.wait_all_settled(2)
    assert info.num_redelivered == 0
    assert (settled.of(1), settled.of(2)) == (["+TERM"], ["+ACK"])
    assert await count_rows(migrated_url, unique) == {e.request_id: 1 for e in after}
    assert any("stream seq 1" in r.getMessage() and "not a UsageBatch" in r.getMessage() for r in caplog.records)


async def test_a_batch_is_nacked_while_postgres_is_down_and_stored_once_when_it_is_back(
    lane: Lane, nc: NATS, postgres_url: str, unique: str
) -> None:
    base, _, _ = postgres_url.rpartition("/")
    late_name = f"mr_test_acct_batch_{unique}"
    late_url = f"{base}/{late_name}"
    events = [usage_event(f"{unique}-late{i}") for i in range(5)]
    admin = await asyncpg.connect(pg_dsn(postgres_url))
    try:
        async with consuming(lane, nc, UsageStore(create_engine(late_url))) as settled:
            await publish_batch(lane, f"{unique}-batch", events)
            await wait_until(lambda: _redelivered(lane), what="a redelivery after the failed insert")
            assert await lane.acked_through() == 0
            assert "-NAK" in settled.of(1) and "+ACK" not in settled.of(1)

            await admin.execute(f'CREATE DATABASE "{late_name}"')
            await asyncio.to_thread(migrate, late_url)
            await lane.wait_all_settled(1)
        verbs = settled.of(1)
        assert verbs[-1] == "+ACK" and verbs.count("+ACK") == 1 and set(verbs[:-1]) == {"-NAK"}
        assert await count_rows(late_url, unique) == {e.request_id: 1 for e in events}
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{late_name}" WITH (FORCE)')
        await admin.close()


async def _redelivered(lane: Lane) -> bool:
    return ((await lane.info()).num_redelivered or 0) >= 1


class FailingOnce(UsageStore):
    """The real store, except that Postgres is "unavailable" for the ``fail_at``-th insert."""

    def __init__(self, database_url: str, fail_at: int) -> None:
        super().__init__(create_engine(database_url))
        self.fail_at = fail_at
        self.inserts: list[list[str]] = []

    async def insert(self, rows: Sequence[dict[str, Any]]) -> None:
        self.inserts.append([row["request_id"] for row in rows])
        if len(self.inserts) == self.fail_at:
            raise StoreUnavailableError("simulated outage")
        await super().insert(rows)


async def test_a_batch_partly_stored_when_postgres_went_away_is_redelivered_and_completed(
    lane: Lane, nc: NATS, migrated_url: str, unique: str
) -> None:
    a, b, c = (usage_event(f"{unique}-{n}") for n in "abc")
    costly = usage_event(
        f"{unique}-costly", usage=events_pb2.Usage(prompt_tokens=1000), price=router_pb2.Price(prompt_per_1k=1e12)
    )
    # Insert 1 (all four) is rejected for ``costly``, so they are retried one by one: ``a`` is
    # stored, ``costly`` rejected, and Postgres "goes away" for ``b``: the message holds a stored
    # row and must still be nak'ed, not acked, and never terminated.
    store = FailingOnce(migrated_url, fail_at=4)
    await publish_batch(lane, f"{unique}-batch", [a, costly, b, c])
    async with consuming(lane, nc, store) as settled:
        await lane.wait_all_settled(1)
    assert settled.of(1) == ["-NAK", "+ACK"]
    assert store.inserts[:4] == [[a.request_id, costly.request_id, b.request_id, c.request_id]] + [
        [r] for r in (a.request_id, costly.request_id, b.request_id)
    ]
    assert await count_rows(migrated_url, unique) == {e.request_id: 1 for e in (a, b, c)}


async def test_each_events_consumer_span_is_a_child_of_its_own_traceparent(
    lane: Lane, nc: NATS, migrated_url: str, unique: str, spans: InMemorySpanExporter
) -> None:
    events, producers = [], []
    for i in range(3):  # three requests, three traces, as the gateway would batch them
        with producer_span(lane.subject) as (producer, _):
            producers.append(producer)
            events.append(usage_event(f"{unique}-t{i}", traceparent=traceparent_of(producer)))
    untraced = usage_event(f"{unique}-untraced")  # no traceparent of its own: the message's context
    with producer_span(lane.subject) as (batch_span, headers):
        await publish_batch(lane, f"{unique}-batch", [*events, untraced], headers)
    async with consuming(lane, nc, UsageStore(create_engine(migrated_url))):
        await lane.wait_all_settled(1)
    finished = spans.get_finished_spans()
    consumers = {
        s.attributes["messaging.message.id"]: s
        for s in finished
        if s.kind is SpanKind.CONSUMER
        and s.attributes
        and str(s.attributes.get("messaging.message.id", "")).startswith(unique)
    }
    assert set(consumers) == {e.request_id for e in [*events, untraced]}
    for event, parent in [*zip(events, producers, strict=True), (untraced, batch_span)]:
        span = consumers[event.request_id]
        assert span.name == f"process {lane.subject}"
        assert span.parent is not None
        assert (span.context.trace_id, span.parent.span_id) == (
            parent.get_span_context().trace_id,
            parent.get_span_context().span_id,
        ), event.request_id
        inserts = [
            s
            for s in finished
            if s.name == "INSERT usage_records" and s.parent and s.parent.span_id == span.context.span_id
        ]
        assert len(inserts) == 1 and inserts[0].kind is SpanKind.CLIENT
        assert inserts[0].attributes is not None and inserts[0].attributes["db.operation.batch.size"] == 4
