"""The gateway's usage publisher against the real NATS JetStream, each test on its own stream: events
gathered into UsageBatch messages, each event with its own PRODUCER span, nothing held back on flush."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from common import subjects
from common.messaging import ensure_usage_stream
from gateway.usage import UsagePublisher
from modelrouter.events.v1 import events_pb2

pytestmark = pytest.mark.integration

WORKER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
WORKER_SPAN = "00f067aa0ba902b7"


@pytest.fixture
async def stream(nc: NATS, unique: str) -> AsyncIterator[tuple[str, str]]:
    name, subject = f"USAGE_PUB_{unique}", f"test.usage.pub.{unique}"
    await ensure_usage_stream(nc, name, subject)
    yield name, subject
    await nc.jetstream().delete_stream(name)


async def stored(nc: NATS, stream: tuple[str, str], at_least: int, timeout: float = 5.0) -> list[Msg]:
    """Every message in the stream, once it holds ``at_least`` events."""
    name, subject = stream
    js = nc.jetstream()
    deadline = time.monotonic() + timeout
    while True:
        info = await js.stream_info(name)
        msgs = [await js.get_msg(name, seq) for seq in range(1, info.state.messages + 1)]
        if sum(len(events_pb2.UsageBatch.FromString(m.data).events) for m in msgs) >= at_least:
            return msgs
        assert time.monotonic() < deadline, f"only {len(msgs)} messages in {subject}"
        await asyncio.sleep(0.02)


def event(request_id: str) -> events_pb2.UsageEvent:
    return events_pb2.UsageEvent(request_id=request_id, status=events_pb2.REQUEST_STATUS_SUCCESS, http_status=200)


async def test_events_of_a_moment_go_as_one_batch_message(nc: NATS, stream: tuple[str, str]) -> None:
    publisher = UsagePublisher(nc, stream[1], linger_s=0.05)
    for i in range(20):
        publisher.publish(event(f"req-{i}"))
    [msg] = await stored(nc, stream, at_least=20)
    assert msg.headers is not None
    assert msg.headers[subjects.USAGE_BATCH_HEADER] == "1"
    assert msg.headers[subjects.MSG_ID_HEADER].startswith("batch-")
    batch = events_pb2.UsageBatch.FromString(msg.data)
    assert [e.request_id for e in batch.events] == [f"req-{i}" for i in range(20)]


async def test_each_event_has_its_own_producer_span_under_the_worker_span(
    nc: NATS, stream: tuple[str, str], spans: InMemorySpanExporter
) -> None:
    spans.clear()
    publisher = UsagePublisher(nc, stream[1], linger_s=0.01)
    parent = f"00-{WORKER_TRACE}-{WORKER_SPAN}-01"
    publisher.publish(event("req-a"), parent)
    publisher.publish(event("req-b"), parent)
    [msg] = await stored(nc, stream, at_least=2)
    await publisher.flush(timeout=5)
    events = events_pb2.UsageBatch.FromString(msg.data).events
    producers = {
        format(s.context.span_id, "016x"): s for s in spans.get_finished_spans() if s.kind is SpanKind.PRODUCER
    }
    for e in events:
        _, trace_id, span_id, _ = e.traceparent.split("-")
        assert trace_id == WORKER_TRACE
        span = producers[span_id]  # ended once JetStream acknowledged the batch
        assert span.parent is not None and format(span.parent.span_id, "016x") == WORKER_SPAN
        assert dict(span.attributes or {})["messaging.message.id"] == e.request_id
    assert len({e.traceparent for e in events}) == 2


async def test_a_lone_event_is_sent_after_the_linger(nc: NATS, stream: tuple[str, str]) -> None:
    publisher = UsagePublisher(nc, stream[1], linger_s=0.05)
    started = time.monotonic()
    publisher.publish(event("lone"))
    await stored(nc, stream, at_least=1)
    assert time.monotonic() - started < 1.0


async def test_a_full_batch_goes_at_once_and_the_rest_follows(nc: NATS, stream: tuple[str, str]) -> None:
    publisher = UsagePublisher(nc, stream[1], linger_s=30, max_events=4)
    for i in range(9):
        publisher.publish(event(f"req-{i}"))
    msgs = await stored(nc, stream, at_least=8)  # two full batches, without waiting for the linger
    assert [len(events_pb2.UsageBatch.FromString(m.data).events) for m in msgs] == [4, 4]
    await publisher.flush(timeout=5)  # a draining gateway sends the ninth now, not in 30 s
    msgs = await stored(nc, stream, at_least=9, timeout=1)
    assert [len(events_pb2.UsageBatch.FromString(m.data).events) for m in msgs] == [4, 4, 1]


async def test_no_linger_means_a_message_per_event(nc: NATS, stream: tuple[str, str]) -> None:
    publisher = UsagePublisher(nc, stream[1], linger_s=0)
    for i in range(3):
        publisher.publish(event(f"req-{i}"))
    msgs = await stored(nc, stream, at_least=3)
    assert len(msgs) == 3
