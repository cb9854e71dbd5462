"""Exactly one usage event per finished request, to JetStream, off the response path.

Events are gathered for ``linger_s`` (or until a batch is full) and published as one ``UsageBatch``
message: a JetStream publish and its ack cost ~0.2 ms of CPU, which a lone event would pay in full.
Each event still has its own PRODUCER span (from hand-over to JetStream's ack), whose traceparent
travels in the event, so accounting's span for it joins the request's trace.

A batch is deduplicated by JetStream on ``Nats-Msg-Id`` = the batch's id, so a retry after a lost ack
cannot double-bill (and accounting's insert skips request ids already stored). A publish that fails
is retried with backoff; shutdown sends what is gathered and waits for it (``flush``), so a drained
gateway loses none.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass, field

from nats.aio.client import Client as NATS
from nats.errors import Error as NatsError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.errors import NoStreamResponseError
from opentelemetry.trace import Span, StatusCode

from common import subjects
from common.messaging import start_producer_span
from common.telemetry import traceparent_of
from modelrouter.events.v1 import events_pb2

log = logging.getLogger(__name__)

PUBLISH_TIMEOUT_S = 5.0
RETRIES = 5
LINGER_S = 0.01
MAX_EVENTS = 256
# Well under NATS's default 1 MiB message limit, whatever the events hold (error texts are capped).
MAX_BATCH_BYTES = 256 * 1024


@dataclass
class _Batch:
    events: list[events_pb2.UsageEvent] = field(default_factory=list)
    spans: list[Span] = field(default_factory=list)
    size: int = 0


class UsagePublisher:
    def __init__(
        self,
        nc: NATS,
        subject: str = subjects.USAGE,
        *,
        linger_s: float = LINGER_S,
        max_events: int = MAX_EVENTS,
        max_bytes: int = MAX_BATCH_BYTES,
    ) -> None:
        self._js = nc.jetstream(timeout=PUBLISH_TIMEOUT_S)
        self._subject = subject
        self._linger_s = linger_s
        self._max_events = max_events
        self._max_bytes = max_bytes
        self._batch = _Batch()
        self._timer: asyncio.TimerHandle | None = None
        self._pending: set[asyncio.Task[None]] = set()

    def publish(self, event: events_pb2.UsageEvent, parent: str | None = None) -> None:
        """Store ``event`` in the background; ``parent`` is the traceparent of the span that produced
        the usage (the worker's), so the accounting span hangs under it."""
        span = start_producer_span(self._subject, parent)
        span.set_attribute("messaging.message.id", event.request_id)
        event.traceparent = traceparent_of(span)
        batch = self._batch
        batch.events.append(event)
        batch.spans.append(span)
        batch.size += event.ByteSize()
        if len(batch.events) >= self._max_events or batch.size >= self._max_bytes or self._linger_s <= 0:
            self._send_gathered()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._linger_s, self._send_gathered)

    def _send_gathered(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch, self._batch = self._batch, _Batch()
        if batch.events:
            task = asyncio.create_task(self._send(batch))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    async def _send(self, batch: _Batch) -> None:
        payload = events_pb2.UsageBatch(events=batch.events).SerializeToString()
        headers = {subjects.MSG_ID_HEADER: f"batch-{uuid.uuid4().hex}", subjects.USAGE_BATCH_HEADER: "1"}
        try:
            for attempt in range(RETRIES):
                try:
                    await self._js.publish(self._subject, payload, headers=headers)
                    return
                except (NatsTimeoutError, NoStreamResponseError, NatsError) as exc:
                    log.warning("%d usage events not stored yet (%s); retrying", len(batch.events), exc)
                    await asyncio.sleep(0.2 * 2**attempt)
            for event, span in zip(batch.events, batch.spans, strict=True):
                span.set_status(StatusCode.ERROR, "not stored")
                log.error("usage event %s LOST after %d attempts: %s", event.request_id, RETRIES, event)
        finally:
            for span in batch.spans:
                span.end()

    async def flush(self, timeout: float) -> None:
        """Send what is gathered and wait (up to ``timeout``) for every publish in flight."""
        self._send_gathered()
        if self._pending:
            await asyncio.wait(set(self._pending), timeout=timeout)
