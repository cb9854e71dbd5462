"""A NATS request/reply responder in a queue group, answering each request in a task of its own.

nats-py runs a subscription's callback for one message at a time: one request waiting on a
Postgres that does not answer would hold back every other. Here each request gets its own task (up
to ``concurrency`` at once; beyond that they queue), and a stop waits for those in flight.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import Error as NatsError

log = logging.getLogger(__name__)

Answerer = Callable[[bytes], Awaitable[bytes]]


class Responder:
    def __init__(self, nc: NATS, subject: str, queue: str, answer: Answerer, *, concurrency: int = 32) -> None:
        self._nc, self.subject, self._queue, self._answer = nc, subject, queue, answer
        self._slots = asyncio.Semaphore(concurrency)
        self._tasks: set[asyncio.Task[None]] = set()
        self._sub: Subscription | None = None

    async def start(self) -> None:
        self._sub = await self._nc.subscribe(self.subject, queue=self._queue, cb=self._on_message)

    async def _on_message(self, msg: Msg) -> None:
        task = asyncio.create_task(self._respond(msg))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _respond(self, msg: Msg) -> None:
        try:
            async with self._slots:
                reply = await self._answer(msg.data)  # answerers turn every failure into an answer
        except Exception:
            log.exception("answering a request on %s failed", self.subject)
            return  # the requester's own timeout ends its wait
        if not msg.reply:
            return
        try:
            await msg.respond(reply)
        except NatsError as exc:
            log.warning("answering on %s failed: %r", self.subject, exc)

    async def stop(self, timeout_s: float) -> None:
        """Take no more requests; let those in flight answer for up to ``timeout_s``."""
        if self._sub is not None:
            try:
                await self._sub.unsubscribe()
            except NatsError as exc:
                log.warning("unsubscribing from %s failed: %r", self.subject, exc)
            self._sub = None
        if self._tasks:
            _, late = await asyncio.wait(set(self._tasks), timeout=timeout_s)
            for task in late:
                task.cancel()
