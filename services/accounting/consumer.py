"""The durable JetStream pull consumer that turns usage events into rows.

A batch is what one fetch returns plus, when that was short of a full batch, what arrived within
``linger_s`` after it: at a trickle of events each would otherwise cost its own pull request,
transaction and INSERT. A message holds one UsageEvent or (from the gateway) a UsageBatch of them;
each event gets its own CONSUMER span, child of its producer. Per batch: decode every message (an
undecodable one is terminated, never retried), insert all their rows in one transaction with
``ON CONFLICT (request_id) DO NOTHING``, and only after the commit settle each message, once. When
Postgres is unavailable the messages not wholly stored are nak'ed with a growing delay, so nothing
is acked that is not stored; when Postgres rejects a batch's values the rows are retried one by one
so one bad row cannot hold back the others. A row that can never be stored terminates its message
if it came alone, and is dropped (logged) from a UsageBatch whose other rows are kept.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Mapping, Sequence
from contextlib import ExitStack, suppress
from dataclasses import dataclass, field
from typing import Any

from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from accounting.mapping import MalformedEventError, is_batch, rows_from_message
from accounting.metrics import AccountingMetrics
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
class _Message:
    """One fetched message and the rows of its events; it is settled once, after all of them."""

    msg: Msg
    batch: bool
    rows: list[_Pending] = field(default_factory=list)


@dataclass
class _Pending:
    span: Span
    row: dict[str, Any]
    stored: bool = False
    rejected: str | None = None  # why Postgres refused the row, even alone


class UsageConsumer:
    def __init__(
        self,
        js: JetStreamContext,
        store: UsageStore,
        options: ConsumerOptions,
        metrics: AccountingMetrics | None = None,
    ) -> None:
        self._js = js
        self._store = store
        self._options = options
        # Without one of the process's, a registry of the consumer's own (a test's consumer).
        self.metrics = metrics if metrics is not None else AccountingMetrics()
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
        """Store one fetched batch and settle every message once; False if Postgres was unavailable."""
        with ExitStack() as spans:
            messages = [m for msg in msgs if (m := await self._decode(msg, spans)) is not None]
            pending = [p for m in messages for p in m.rows]
            unavailable = await self._insert(pending) if pending else None
            for message in messages:
                await self._settle_message(message, unavailable)
            return unavailable is None

    async def _decode(self, msg: Msg, spans: ExitStack) -> _Message | None:
        """``msg`` with a CONSUMER span per event; None if it was terminated as undecodable."""
        if _num_delivered(msg) > 1:
            self.metrics.redeliveries.inc()
        try:
            events = rows_from_message(msg.data, msg.headers)
        except MalformedEventError as exc:
            self.metrics.events["malformed"].inc()
            await self._terminate(msg, self._span(spans, msg, msg.headers), str(exc))
            return None
        message = _Message(msg, is_batch(msg.headers))
        for event in events:
            # A batch's headers carry no per-event context: each event names its own producer.
            carrier = {"traceparent": event.traceparent} if event.traceparent else msg.headers
            span = self._span(spans, msg, carrier)
            span.set_attribute("messaging.message.id", event.request_id)
            if event.row is None:
                self.metrics.events["dropped"].inc()
                _drop(msg, span, event.request_id, event.error)
            else:
                message.rows.append(_Pending(span, event.row))
        return message

    def _span(self, spans: ExitStack, msg: Msg, carrier: Mapping[str, str] | None) -> Span:
        """A CONSUMER span, child of the producer in ``carrier``, open until the batch is settled."""
        span = spans.enter_context(consumer_span(f"process {msg.subject}", msg.subject, carrier))
        span.set_attribute("messaging.consumer.group.name", self._options.durable)
        return span

    async def _insert(self, pending: list[_Pending]) -> str | None:
        """Insert the rows, marking each stored or rejected; the reason Postgres was unavailable, if
        it was (rows left unmarked are to be retried)."""
        started = time.time_ns()
        try:
            await self._store.insert([p.row for p in pending])
        except RowsRejectedError as exc:
            _end_insert_spans(pending, started, len(pending), str(exc))
            self.metrics.inserted(len(pending), (time.time_ns() - started) / 1e9, "rejected")
            if len(pending) == 1:
                self.metrics.events["rejected"].inc()
                pending[0].rejected = str(exc)
                return None
            log.warning("Postgres rejected a batch of %d usage rows (%s); storing them one by one", len(pending), exc)
            for one in pending:
                if (unavailable := await self._insert([one])) is not None:
                    return unavailable
            return None
        except StoreUnavailableError as exc:
            _end_insert_spans(pending, started, len(pending), str(exc))
            self.metrics.inserted(len(pending), (time.time_ns() - started) / 1e9, "unavailable")
            log.error("storing %d usage rows failed, will retry: %s", len(pending), exc)
            return str(exc)
        _end_insert_spans(pending, started, len(pending), None)
        self.metrics.inserted(len(pending), (time.time_ns() - started) / 1e9, "ok")
        self.metrics.events["stored"].inc(len(pending))
        for p in pending:
            p.stored = True
        return None

    async def _settle_message(self, message: _Message, unavailable: str | None) -> None:
        msg = message.msg
        waiting = [p for p in message.rows if not p.stored and p.rejected is None]
        if waiting:
            # Rows already stored are skipped by the insert when the message comes back.
            for p in waiting:
                p.span.set_status(Status(StatusCode.ERROR, unavailable or "not stored"))
            await _settle(msg.nak(delay=self._options.retry_delay_s(_num_delivered(msg))))
            return
        rejected = [p for p in message.rows if p.rejected is not None]
        if rejected and not message.batch:
            await self._terminate(msg, rejected[0].span, f"rejected by Postgres: {rejected[0].rejected}")
            return
        for p in rejected:
            _drop(msg, p.span, p.row["request_id"], f"rejected by Postgres: {p.rejected}")
        await _settle(msg.ack())

    async def _terminate(self, msg: Msg, span: Span, reason: str) -> None:
        span.set_status(Status(StatusCode.ERROR, reason))
        log.error("dropping usage message (stream seq %s, %d bytes): %s", _stream_seq(msg), len(msg.data), reason)
        await _settle(msg.term())


def _drop(msg: Msg, span: Span, request_id: str, reason: str) -> None:
    """One event of a batch can never be a row: the rest of its message is stored and acked."""
    span.set_status(Status(StatusCode.ERROR, reason))
    log.error("dropping usage event %r of message (stream seq %s): %s", request_id, _stream_seq(msg), reason)


def _end_insert_spans(pending: list[_Pending], started_ns: int, batch_size: int, error: str | None) -> None:
    """One INSERT span under each event's CONSUMER span, all covering the one shared statement."""
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
