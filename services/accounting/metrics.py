"""Accounting's Prometheus metrics, served on its health port (``common.health``): usage events by
outcome, the size and time of each INSERT, redelivered messages, and the consumer's lag.

The lag is JetStream's count of messages not yet delivered to the durable consumer (``num_pending``)
and of those delivered but not yet acknowledged (``num_ack_pending``), asked of the server every
``LAG_INTERVAL_S`` by one task (``LagSampler``), never per event.
"""

from __future__ import annotations

import asyncio
import logging

from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from common.metrics import FAST_BUCKETS

log = logging.getLogger(__name__)

LAG_INTERVAL_S = 5.0
# Rows per INSERT: one event alone up to a full fetch of full UsageBatches.
BATCH_BUCKETS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000)
EVENT_OUTCOMES = ("stored", "rejected", "dropped", "malformed")
INSERT_RESULTS = ("ok", "rejected", "unavailable")


class AccountingMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        events = Counter(
            "modelrouter_accounting_events",
            "Usage events by outcome: stored (a row, or already one: a redelivery), rejected (Postgres "
            "refused the row even alone), dropped (an event that cannot be a row), malformed (an "
            "undecodable message).",
            ["outcome"],
            registry=self.registry,
        )
        self.events = {outcome: events.labels(outcome) for outcome in EVENT_OUTCOMES}
        self.batch_rows = Histogram(
            "modelrouter_accounting_batch_rows",
            "Rows per INSERT statement.",
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        insert = Histogram(
            "modelrouter_accounting_insert_seconds",
            "Time of one INSERT transaction, by result (ok, rejected, unavailable).",
            ["result"],
            buckets=FAST_BUCKETS,
            registry=self.registry,
        )
        self._insert = {result: insert.labels(result) for result in INSERT_RESULTS}
        self.redeliveries = Counter(
            "modelrouter_accounting_redeliveries",
            "Usage messages delivered more than once (a nak after a Postgres outage, an ack lost or late).",
            registry=self.registry,
        )
        self.pending = Gauge(
            "modelrouter_accounting_consumer_pending",
            "Usage messages in the stream not yet delivered to accounting's durable consumer (sampled).",
            registry=self.registry,
        )
        self.ack_pending = Gauge(
            "modelrouter_accounting_consumer_ack_pending",
            "Usage messages delivered but not yet acknowledged (sampled).",
            registry=self.registry,
        )

    def inserted(self, rows: int, seconds: float, result: str) -> None:
        """One INSERT of ``rows`` rows took ``seconds`` and ended ``result`` (``INSERT_RESULTS``)."""
        self.batch_rows.observe(rows)
        self._insert[result].observe(seconds)


class LagSampler:
    """Every ``interval_s``, the durable consumer's lag as the server counts it."""

    def __init__(
        self,
        js: JetStreamContext,
        stream: str,
        durable: str,
        metrics: AccountingMetrics,
        interval_s: float = LAG_INTERVAL_S,
    ) -> None:
        self._js, self._stream, self._durable = js, stream, durable
        self._metrics, self._interval_s = metrics, interval_s
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="consumer lag")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def sample(self) -> None:
        info = await self._js.consumer_info(self._stream, self._durable)
        self._metrics.pending.set(info.num_pending or 0)
        self._metrics.ack_pending.set(info.num_ack_pending or 0)

    async def _run(self) -> None:
        while True:
            try:
                await self.sample()
            except (NatsError, TimeoutError) as exc:  # NATS reconnecting: the last sample stands
                log.debug("consumer lag not sampled: %s", exc)
            await asyncio.sleep(self._interval_s)
