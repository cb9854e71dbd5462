"""The durable JetStream pull consumer that turns usage events into rows.

A batch is what one fetch returns plus, when that was short of a full batch, what arrived within
``linger_s`` after it: at a trickle of events each would otherwise cost its own pull request,
transaction and INSERT. Per batch: decode every message (an undecodable one is terminated, never
retried), insert the rows in one transaction with ``ON CONFLICT (request_id) DO NOTHING``, and
only after the commit ack each message. When Postgres is unavailable the batch is nak'ed with a
growing delay, so nothing is acked that is not stored; when Postgres rejects a batch's values the
batch is retried row by row so one bad row cannot hold back the others.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Sequence
from contextlib import ExitStack, suppress
from dataclasses import dataclass
from typing import Any

from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from accounting.mapping import MalformedEventError, row_from_message
from accounting.store import TABLE, RowsRejectedError, StoreUnavailableError, UsageStore
from common import subjects
from common.messaging import consumer_span
from common.settings import AccountingSettings

log = logging.getLogger(__name__)
_tracer = trace.get_tracer("modelrouter.accounting")
# How long the fetch that ends a linger window waits when nothing arrived in the window; the
# events that did arrive are already on the server and come back at once.
_SWEEP_TIMEOUT_S = 0.01


@dataclass(frozen=True)
class ConsumerOptions:
    stream: str = subjects.USAGE_STREAM
    subject: str = subjects.USAGE
    durable: str = subjects.ACCOUNTING_DURABLE
    batch: int = 64
    # Longest a fetch waits for a first message; also bounds how long a stop waits for the loop.
    fetch_timeout_s: float = 1.0
    # After a short fetch, how long to let further events gather before storing the batch; 0 stores
    # every fetch as it comes.
    linger_s: float = AccountingSettings.model_fields["accounting_linger_s"].default
    # Longer than a batch insert can take (the engine's command timeout is below it).
    ack_wait_s: float = 30.0
    # With the nak backoff capped at retry_max_s, about a day of Postgres outage before JetStream
    # gives a message up; undecodable messages are terminated and never count against this.
    max_deliver: int = 2880
    retry_base_s: float = 1.0
    retry_max_s: float = 30.0

    def consumer_config(self) -> ConsumerConfig:
        return ConsumerConfig(
            durable_name=self.durable,
            name=self.durable,
            filter_subject=self.subject,
            deliver_policy=DeliverPolicy.ALL,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=self.ack_wait_s,
            max_deliver=self.max_deliver,
        )

    def retry_delay_s(self, num_delivered: int) -> float:
        return min(self.retry_max_s, self.retry_base_s * 2 ** max(0, num_delivered - 1))


@dataclass
class _Pending:
    msg: Msg
    span: Span
    row: dict[str, Any]


class UsageConsumer:
    def __init__(self, js: JetStreamContext, store: UsageStore, options: ConsumerOptions) -> None:
        self._js = js
        self._store = store
        self._options = options
        self._sub: JetStreamContext.PullSubscription | None = None

    async def start(self) -> None:
        """Create (or update to this config) the durable consumer and bind to it."""
        opts = self._options
        await self._js.add_consumer(opts.stream, config=opts.consumer_config())
        self._sub = await self._js.pull_subscribe_bind(durable=opts.durable, stream=opts.stream, name=opts.durable)

    async def run(self, stop: asyncio.Event) -> None:
        """Fetch and store batches until ``stop`` is set; the batch in hand is always finished."""
        if self._sub is None:
            raise RuntimeError("UsageConsumer.start() was not awaited")
        sub = self._sub
        while not stop.is_set():
            try:
                msgs = await sub.fetch(self._options.batch, timeout=self._options.fetch_timeout_s)
            except TimeoutError:
                continue  # nothing published: check stop and fetch again
            except NatsError as exc:
                log.warning("fetching usage events failed: %s", exc)
                await _sleep_unless(stop, self._options.retry_base_s)
                continue
            msgs = await self._linger(sub, msgs, stop)
            if not await self.process(msgs):
                # Postgres is down: don't spin through the backlog naking everything at once.
                await _sleep_unless(stop, self._options.retry_base_s)

    async def _linger(self, sub: JetStreamContext.PullSubscription, msgs: list[Msg], stop: asyncio.Event) -> list[Msg]:
        """``msgs`` plus what arrives within ``linger_s``, up to a full batch; cut short by ``stop``.

        A fetch with nothing waiting returns as soon as one message arrives, so fetching again and
        again through the window would cost a pull request per message. Instead the window's events
        wait on the server and one fetch takes them all.
        """
        wanted = self._options.batch - len(msgs)
        if wanted <= 0 or self._options.linger_s <= 0:
            return msgs
        await _sleep_unless(stop, self._options.linger_s)
        if stop.is_set():
            return msgs  # the caller stores the batch in hand; later events stay on the server
        try:
            more = await sub.fetch(wanted, timeout=_SWEEP_TIMEOUT_S)
        except TimeoutError:
            return msgs  # none arrived (one arriving late is delivered to the next fetch)
        except NatsError as exc:
            log.warning("fetching usage events failed: %s", exc)
            return msgs
        return msgs + more

    async def close(self) -> None:
        if self._sub is not None:
            await self._sub.unsubscribe()
            self._sub = None

    async def process(self, msgs: Sequence[Msg]) -> bool:
        """Store one fetched batch and settle every message; False if Postgres was unavailable."""
        with ExitStack() as spans:
            pending: list[_Pending] = []
            for msg in msgs:
                span = spans.enter_context(consumer_span(f"process {msg.subject}", msg.subject, msg.headers))
                span.set_attribute("messaging.consumer.group.name", self._options.durable)
                try:
                    row = row_from_message(msg.data)
                except MalformedEventError as exc:
                    await self._terminate(msg, span, str(exc))
                    continue
                span.set_attribute("messaging.message.id", row["request_id"])
                pending.append(_Pending(msg, span, row))
            if not pending:
                return True
            return await self._insert_and_settle(pending)

    async def _insert_and_settle(self, pending: list[_Pending]) -> bool:
        started = time.time_ns()
        try:
            await self._store.insert([p.row for p in pending])
        except RowsRejectedError as exc:
            _end_insert_spans(pending, started, len(pending), str(exc))
            if len(pending) == 1:
                await self._terminate(pending[0].msg, pending[0].span, f"rejected by Postgres: {exc}")
                return True
            log.warning("Postgres rejected a batch of %d usage rows (%s); storing them one by one", len(pending), exc)
            for i, one in enumerate(pending):
                if not await self._insert_and_settle([one]):
                    await self._retry_later(pending[i + 1 :], "Postgres became unavailable")
                    return False
            return True
        except StoreUnavailableError as exc:
            _end_insert_spans(pending, started, len(pending), str(exc))
            log.error("storing %d usage rows failed, will retry: %s", len(pending), exc)
            await self._retry_later(pending, str(exc))
            return False
        _end_insert_spans(pending, started, len(pending), None)
        for p in pending:
            await _settle(p.msg.ack())
        return True

    async def _retry_later(self, pending: list[_Pending], reason: str) -> None:
        for p in pending:
            p.span.set_status(Status(StatusCode.ERROR, reason))
            await _settle(p.msg.nak(delay=self._options.retry_delay_s(_num_delivered(p.msg))))

    async def _terminate(self, msg: Msg, span: Span, reason: str) -> None:
        span.set_status(Status(StatusCode.ERROR, reason))
        log.error("dropping usage message (stream seq %s, %d bytes): %s", _stream_seq(msg), len(msg.data), reason)
        await _settle(msg.term())


def _end_insert_spans(pending: list[_Pending], started_ns: int, batch_size: int, error: str | None) -> None:
    """One INSERT span under each message's CONSUMER span, all covering the one shared statement."""
    ended = time.time_ns()
    for p in pending:
        span = _tracer.start_span(
            f"INSERT {TABLE}",
            context=trace.set_span_in_context(p.span),
            kind=SpanKind.CLIENT,
            start_time=started_ns,
            attributes={
                "db.system": "postgresql",
                "db.operation": "INSERT",
                "db.sql.table": TABLE,
                "db.operation.batch.size": batch_size,
            },
        )
        if error is not None:
            span.set_status(Status(StatusCode.ERROR, error))
        span.end(end_time=ended)


async def _settle(action: Awaitable[None]) -> None:
    # A lost ack/nak only means a redelivery, which the idempotent insert absorbs.
    try:
        await action
    except NatsError as exc:
        log.warning("acknowledging a usage message failed (it will be redelivered): %s", exc)


def _num_delivered(msg: Msg) -> int:
    try:
        return int(msg.metadata.num_delivered)
    except (NatsError, ValueError, IndexError, TypeError, AttributeError):
        return 1


def _stream_seq(msg: Msg) -> str:
    try:
        return str(msg.metadata.sequence.stream)
    except (NatsError, ValueError, IndexError, TypeError, AttributeError):
        return "?"


async def _sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    with suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
