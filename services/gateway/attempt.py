"""One job on one worker, as the gateway waits on it: the queue its replies arrive on, and whether the
worker is still alive.

A worker names itself on a job's first reply and says how often it will send something
(``Reply.heartbeat_s``): heartbeats fill the silences of a quiet upstream (a long first token, a slow
model). A worker that is killed or cut off from NATS sends nothing more, so a few intervals of silence
mean it is gone, and the request learns that in about a second and a half instead of after the stall
timeout. A worker from before heartbeats says 0, and is only waited on, as before.
"""

from __future__ import annotations

import asyncio

from common.errors import UpstreamError, WorkerLostError, upstream_error_class
from gateway.replies import ReplyHub
from modelrouter.events.v1 import events_pb2
from modelrouter.router.v1 import router_pb2

# Silence, in heartbeat intervals, after which a worker counts as gone: one missed beat can be a busy
# loop on either side; three in a row is a dead process or a lost connection.
SILENT_BEATS = 3


class Attempt:
    __slots__ = ("_hub", "dead_after", "key", "queue", "target", "worker_id")

    def __init__(self, hub: ReplyHub, key: str, queue: asyncio.Queue[events_pb2.Reply], target: router_pb2.Target):
        self._hub, self.key, self.queue, self.target = hub, key, queue, target
        self.worker_id = ""
        self.dead_after = 0.0  # seconds of silence that mean the worker is gone; 0: not known yet

    def named_by(self, reply: events_pb2.Reply) -> None:
        """Learn the worker from a job's first reply (``accepted.worker_id``: a worker from before
        ``Reply.worker_id``), and how long it may stay silent."""
        self.worker_id = reply.worker_id or reply.accepted.worker_id
        self.dead_after = reply.heartbeat_s * SILENT_BEATS

    async def next(self, timeout: float) -> events_pb2.Reply:
        """The next reply that is not a heartbeat. ``TimeoutError`` after ``timeout`` without one;
        ``WorkerLostError`` as soon as the worker has been silent past its heartbeats."""
        if not self.queue.empty():  # under load the reply is often already here: no timer needed
            reply = self.queue.get_nowait()
            if not reply.HasField("heartbeat"):
                return reply
        if not self.dead_after:
            return await self._get(timeout)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (left := deadline - loop.time()) > 0:
            try:
                reply = await self._get(min(left, self.dead_after))
            except TimeoutError:
                if left > self.dead_after:
                    raise WorkerLostError(
                        f"The worker serving this request stopped responding (silent for {self.dead_after:g}s).",
                    ) from None
                raise
            if not reply.HasField("heartbeat"):
                return reply
        raise TimeoutError

    async def _get(self, timeout: float) -> events_pb2.Reply:
        # asyncio.timeout, not wait_for: Python 3.11's wait_for returns a reply that lands in the same
        # loop iteration as a cancel and drops the cancel, so a client that hung up was answered
        # anyway (and billed as a success). It also spares wait_for's extra task per wait.
        async with asyncio.timeout(timeout):
            return await self.queue.get()

    def close(self) -> None:
        self._hub.close(self.key)


def error_from_reply(error: events_pb2.Error) -> UpstreamError:
    return upstream_error_class(error.status)(
        error.message or "The upstream provider failed.",
        upstream_status=error.upstream_status,
        param=error.param or None,
        code=error.code or None,
        retry_after_s=error.retry_after_s or None,
        retryable=error.retryable,
    )
