"""The gateway's Route calls, sent over a few long-lived RouteBatchStreams (``router.route_stream``).

A stream message costs about half a grpc.aio unary call, on both sides. Each request gets an id on
its stream and goes out in the stream's next message (requests queued while a message is being
written share the next one); one reader task per stream hands every answer to the request waiting
for it.

A request goes on the stream the previous one took until that stream has ``fill`` requests in
flight, and only then on the next: requests that share a stream share its messages, so spreading a
light load over every stream would cost a message each (with one stream instead of four, c=16 on
the bench took 16% less CPU per request). Past ``fill`` per stream, the load spreads over all of them.

Streams are opened when first needed and replaced when they end. A stream is retired after
``max_age_s`` (half-closed: what it carries is still answered) so that router replicas added later
get their share: the channel's round_robin balancer places each new stream on the next replica.
A request the router never read (its stream ended first) is sent once more on a fresh stream.

A settlement waits up to ``SETTLE_LINGER_S`` for the next Route and goes out in its message: under
steady traffic it then costs no message of its own (a separate write cost a request at c=1 about 0.1
ms, the gateway's time between one answer and the next request), and the router applies it in that
Route's own script when the key is the same. The reservation ends that much later at most: for that
long a key's parallel slot, tokens and budget stay held, erring on the safe side.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

import grpc
import grpc.aio

from common.coalesce import CoalescingWriter
from modelrouter.router.v1 import router_pb2, router_pb2_grpc

log = logging.getLogger(__name__)

STREAMS = 4
FILL = 16
MAX_AGE_S = 60.0
# How long closing waits for the answers its streams still owe (a stuck router owes them forever).
CLOSE_WAIT_S = 2.0
# How long a settlement waits for a Route to ride with before it is sent alone: longer than a
# sequential client's next request takes to reach the router, short next to any request.
SETTLE_LINGER_S = 0.002


# What a write on a call that is over (broken, cancelled or half-closed) raises.
_WRITE_ERRORS = (grpc.aio.AioRpcError, grpc.aio.UsageError, grpc.aio.InternalError)


class StreamEnded(Exception):
    """The stream ended before answering; ``error`` says why when it broke rather than retired."""

    def __init__(self, error: grpc.aio.AioRpcError | None = None) -> None:
        super().__init__(error)
        self.error = error


def _ended_by(error: Exception) -> Exception:
    if isinstance(error, _WRITE_ERRORS):
        return StreamEnded(error if isinstance(error, grpc.aio.AioRpcError) else None)
    return error  # not the stream's end but a fault of ours: let it show as what it is


# Fire-and-forget items: settlements and outcome reports (a broken stream hands back the unsent).
Report = router_pb2.Settlement | router_pb2.OutcomeReport
Unsent = Callable[[list[Report]], None]
_Outgoing = router_pb2.RouteStreamRequest | router_pb2.Settlement | router_pb2.OutcomeReport


class _Stream:
    __slots__ = ("_call", "_next_id", "_outbox", "_pending", "_unsent", "born", "open", "reader")

    def __init__(self, stub: router_pb2_grpc.RouterStub, unsent: Unsent) -> None:
        self._call = stub.RouteBatchStream()
        self._pending: dict[int, asyncio.Future[router_pb2.RouteStreamResponse]] = {}
        self._outbox: CoalescingWriter[_Outgoing] = CoalescingWriter(self._write, self._not_sent)
        self._unsent = unsent
        self._next_id = 0
        self.born = time.monotonic()
        self.open = True  # takes new requests
        self.reader = asyncio.create_task(self._read())

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    async def ask(
        self, route: router_pb2.RouteRequest, traceparent: str, timeout_s: float
    ) -> router_pb2.RouteStreamResponse:
        """The router's answer; raises StreamEnded (nothing was decided: send it again elsewhere)
        or TimeoutError."""
        self._next_id += 1
        request_id = self._next_id
        answer = self._pending[request_id] = asyncio.get_running_loop().create_future()
        self._outbox.put(router_pb2.RouteStreamRequest(id=request_id, route=route, traceparent=traceparent))
        try:
            async with asyncio.timeout(timeout_s):
                return await answer
        finally:
            self._pending.pop(request_id, None)

    def settle(self, item: Report) -> None:
        """A settlement or an outcome report: goes out with the next message; nothing answers it."""
        self._outbox.put(item)

    async def _write(self, items: list[_Outgoing]) -> None:
        message = router_pb2.RouteStreamRequests()
        for item in items:
            if isinstance(item, router_pb2.Settlement):
                message.settlements.append(item)
            elif isinstance(item, router_pb2.OutcomeReport):
                message.outcomes.append(item)
            else:
                message.requests.append(item)
        await self._call.write(message)

    def _not_sent(self, items: list[_Outgoing], error: Exception) -> None:
        """A write failed: the stream is over (or half-closed), and the router never saw these."""
        self.open = False
        unsent: list[Report] = []
        for item in items:
            if isinstance(item, (router_pb2.Settlement, router_pb2.OutcomeReport)):
                unsent.append(item)
            elif (waiting := self._pending.pop(item.id, None)) is not None and not waiting.done():
                waiting.set_exception(_ended_by(error))
        if unsent:
            self._unsent(unsent)

    async def _read(self) -> None:
        error: grpc.aio.AioRpcError | None = None
        try:
            while (message := await self._call.read()) is not grpc.aio.EOF:
                assert isinstance(message, router_pb2.RouteStreamResponses)
                for answer in message.responses:
                    waiting = self._pending.pop(answer.id, None)
                    if waiting is not None and not waiting.done():
                        waiting.set_result(answer)
        except grpc.aio.AioRpcError as exc:
            error = exc
            if exc.code() != grpc.StatusCode.CANCELLED:
                log.info("route stream ended: %s %s", exc.code(), exc.details())
        finally:
            self.open = False
            for waiting in self._pending.values():
                if not waiting.done():
                    waiting.set_exception(StreamEnded(error))
            self._pending.clear()

    async def retire(self) -> None:
        """Half-close: the router answers what it has and ends the call; the reader then finishes.
        Cancelled (nobody waits any longer), it ends the call at once."""
        self.open = False
        try:
            await self._outbox.flushed()  # nothing is queued after this: the stream takes no requests
            with contextlib.suppress(*_WRITE_ERRORS):
                await self._call.done_writing()  # (unless it is already over)
            await self.reader
        except asyncio.CancelledError:
            self._call.cancel()
            raise


class RouteStreamPool:
    def __init__(
        self,
        channel: grpc.aio.Channel,
        streams: int = STREAMS,
        max_age_s: float = MAX_AGE_S,
        fill: int = FILL,
        unsent_settlements: Unsent | None = None,
    ) -> None:
        self._stub = router_pb2_grpc.RouterStub(channel)
        self._unsent: Unsent = unsent_settlements or (lambda settlements: None)
        self._slots: list[_Stream | None] = [None] * streams
        self._turn = 0
        self._fill = fill
        self._max_age_s = max_age_s
        self._retiring: set[asyncio.Task[None]] = set()
        self._held: list[Report] = []
        self._release: asyncio.TimerHandle | None = None

    async def route(
        self, request: router_pb2.RouteRequest, traceparent: str, timeout_s: float
    ) -> router_pb2.RouteStreamResponse:
        """Raises StreamEnded when two streams in a row ended before answering, TimeoutError when
        the router took longer than ``timeout_s`` (that stream is then retired: the next request
        goes on a fresh one rather than behind a stuck router or a dead connection)."""
        stream = self._stream()
        if self._held:
            self._send_held(stream)
        try:
            return await stream.ask(request, traceparent, timeout_s)
        except StreamEnded:
            stream = self._stream()
            return await stream.ask(request, traceparent, timeout_s)
        except TimeoutError:
            if stream.open:
                self._retire(stream)
            raise

    def _stream(self) -> _Stream:
        stream = self._slots[self._turn]
        if stream is not None and stream.open and stream.in_flight >= self._fill:
            self._turn = (self._turn + 1) % len(self._slots)
            stream = self._slots[self._turn]
        if stream is not None and stream.open and time.monotonic() - stream.born > self._max_age_s:
            self._retire(stream)
        if stream is None or not stream.open:
            stream = self._slots[self._turn] = _Stream(self._stub, self._unsent)
        return stream

    def settle(self, item: Report) -> None:
        """A settlement or an outcome report: goes out with the next Route, or alone after
        ``SETTLE_LINGER_S``."""
        self._held.append(item)
        if self._release is None:
            self._release = asyncio.get_running_loop().call_later(SETTLE_LINGER_S, self._send_held)

    def _send_held(self, stream: _Stream | None = None) -> None:
        if self._release is not None:
            self._release.cancel()
            self._release = None
        held, self._held = self._held, []
        stream = stream or self._stream()
        for item in held:
            stream.settle(item)

    def _retire(self, stream: _Stream) -> None:
        stream.open = False  # now, not when the task starts: no request may pick it meanwhile
        task = asyncio.create_task(stream.retire())
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    async def close(self) -> None:
        """Retire every stream, letting the answers they owe arrive for up to ``CLOSE_WAIT_S``."""
        if self._held:
            self._send_held()
        for stream in self._slots:
            if stream is not None and stream.open:
                self._retire(stream)
        self._slots = [None] * len(self._slots)
        if self._retiring:
            _, stuck = await asyncio.wait(self._retiring, timeout=CLOSE_WAIT_S)
            for task in stuck:
                task.cancel()
            if stuck:
                await asyncio.wait(stuck)
