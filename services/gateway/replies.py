"""Worker replies for every request of this gateway process arrive on one NATS subscription and are
handed to the waiting request by the request id in the subject (no subscription per request)."""

from __future__ import annotations

import asyncio
import logging

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from common import subjects
from modelrouter.events.v1 import events_pb2

log = logging.getLogger(__name__)


class ReplyHub:
    def __init__(self, nc: NATS, gateway_id: str) -> None:
        self._nc = nc
        self._gateway_id = gateway_id
        self._waiting: dict[str, asyncio.Queue[events_pb2.Reply]] = {}
        self._sub: Subscription | None = None

    async def start(self) -> None:
        self._sub = await self._nc.subscribe(
            subjects.replies_wildcard(self._gateway_id), cb=self._on_reply, pending_msgs_limit=1_000_000
        )

    async def stop(self) -> None:
        if self._sub is not None:
            await self._sub.unsubscribe()

    def open(self, request_id: str) -> tuple[str, asyncio.Queue[events_pb2.Reply]]:
        """The reply subject to put in the job, and the queue its replies will arrive on."""
        queue: asyncio.Queue[events_pb2.Reply] = asyncio.Queue()
        self._waiting[request_id] = queue
        return subjects.reply(self._gateway_id, request_id), queue

    def close(self, request_id: str) -> None:
        self._waiting.pop(request_id, None)

    async def _on_reply(self, msg: Msg) -> None:
        queue = self._waiting.get(subjects.request_id_of_reply(msg.subject))
        if queue is None:
            return  # the request already ended (late result of a cancelled or failed-over attempt)
        try:
            queue.put_nowait(events_pb2.Reply.FromString(msg.data))
        except Exception:  # a malformed reply must not kill the subscription
            log.exception("dropping malformed reply on %s", msg.subject)
