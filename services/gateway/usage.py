"""Exactly one usage event per finished request, to JetStream, off the response path.

Publishing is deduplicated by JetStream on ``Nats-Msg-Id`` = request id, so a retry after a lost
ack cannot double-bill. A publish that fails is retried with backoff; shutdown waits for pending
publishes (``flush``), so a drained gateway loses none.
"""

from __future__ import annotations

import asyncio
import logging

from nats.aio.client import Client as NATS
from nats.errors import Error as NatsError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.errors import NoStreamResponseError

from common import subjects
from common.messaging import producer_span
from modelrouter.events.v1 import events_pb2

log = logging.getLogger(__name__)

PUBLISH_TIMEOUT_S = 5.0
RETRIES = 5


class UsagePublisher:
    def __init__(self, nc: NATS, subject: str = subjects.USAGE) -> None:
        self._js = nc.jetstream(timeout=PUBLISH_TIMEOUT_S)
        self._subject = subject
        self._pending: set[asyncio.Task[None]] = set()

    def publish(self, event: events_pb2.UsageEvent, parent: str | None = None) -> None:
        """Store ``event`` in the background; ``parent`` is the traceparent of the span that produced
        the usage (the worker's), so the accounting span hangs under it."""
        task = asyncio.create_task(self._publish(event, parent))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _publish(self, event: events_pb2.UsageEvent, parent: str | None) -> None:
        payload = event.SerializeToString()
        with producer_span(self._subject, {subjects.MSG_ID_HEADER: event.request_id}, parent) as (_, headers):
            for attempt in range(RETRIES):
                try:
                    await self._js.publish(self._subject, payload, headers=headers)
                    return
                except (NatsTimeoutError, NoStreamResponseError, NatsError) as exc:
                    log.warning("usage event %s not stored yet (%s); retrying", event.request_id, exc)
                    await asyncio.sleep(0.2 * 2**attempt)
        log.error("usage event %s LOST after %d attempts: %s", event.request_id, RETRIES, event)

    async def flush(self, timeout: float) -> None:
        if self._pending:
            await asyncio.wait(set(self._pending), timeout=timeout)
