"""From a validated request to an answer: route, hand the job to a worker, relay its replies, fail
over, and account for the request exactly once.

Failover: an attempt that fails with a retryable error (connect error, timeout, 429, 5xx) before
anything reached the client is retried on the next target the router offers (``exclude`` grows
with each tried deployment). Once a chunk has been sent, a failure ends the stream with an in-band
error event instead. A silent worker is detected by timeouts, never waited on forever.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Coroutine
from typing import Any

from nats.aio.client import Client as NATS

from common import subjects
from common.errors import (
    ModelRouterError,
    NoHealthyTargetError,
    RateLimitError,
    UpstreamError,
    UpstreamTimeoutError,
    WorkerLostError,
)
from common.messaging import producer_span
from common.route_metadata import RouteMetadata, explain
from gateway import attempt_outcome, ratelimit_headers, sse
from gateway.admission import billed, settlement_of
from gateway.attempt import Attempt, error_from_reply
from gateway.call import Call
from gateway.job_bodies import JobBodies
from gateway.ledger import Ledger
from gateway.metrics import GatewayMetrics
from gateway.replies import ReplyHub
from gateway.router_client import RouterClient
from gateway.usage import UsagePublisher
from modelrouter.events.v1 import events_pb2
from modelrouter.router.v1 import router_pb2

log = logging.getLogger(__name__)

# A worker's own upstream timeout fires first; this margin only catches a worker that died.
RESULT_MARGIN_S = 5.0
# After a client disconnects, how long to wait for the worker's partial usage.
CANCEL_USAGE_WAIT_S = 2.0


async def _prepend(head: bytes, rest: AsyncGenerator[bytes, None]) -> AsyncIterator[bytes]:
    try:
        if head:
            yield head
        async for frame in rest:
            yield frame
    finally:
        await rest.aclose()


class Dispatcher:
    def __init__(
        self,
        router: RouterClient,
        nc: NATS,
        hub: ReplyHub,
        usage: UsagePublisher,
        bodies: JobBodies,
        *,
        accept_timeout_s: float,
        stall_timeout_s: float,
        max_attempts: int,
        jobs_subject: str = subjects.JOBS,
        metrics: GatewayMetrics | None = None,
    ) -> None:
        self._router, self._nc, self._hub, self._usage, self._bodies = router, nc, hub, usage, bodies
        # Without one of the process's, a registry of the dispatcher's own (a test's dispatcher).
        self.metrics = metrics if metrics is not None else GatewayMetrics()
        self._jobs_subject = jobs_subject
        self._accept_timeout_s = accept_timeout_s
        self._stall_timeout_s = stall_timeout_s
        self._max_attempts = max_attempts
        self._background: set[asyncio.Future[Any]] = set()

    # --- the two ways to answer --------------------------------------------------------------

    async def complete(self, call: Call) -> bytes:
        """The whole response body of a non-streaming request."""
        self.metrics.started()
        ledger = Ledger()
        try:
            reply = await self._first_reply(call, ledger)
            body = await self._join_body(ledger, reply) if reply.HasField("chunk") else reply.result.body
            ledger.usage, ledger.worker_span = reply.result.usage, reply.result.traceparent
            call.usage = reply.result.usage
            if call.bodies is not None:
                call.bodies.answer = body
            return body
        except ModelRouterError as exc:
            ledger.error = exc
            raise
        except asyncio.CancelledError:  # the client went away
            self._finish_cancelled(call, ledger)
            raise
        except Exception as exc:  # a bug or a refused publish: a clean 500, accounted as one
            ledger.error = _internal_error(call, exc)
            raise ledger.error from None
        finally:
            if not ledger.cancelled:
                ledger.close_attempt()
                self._finish(call, ledger)

    async def _join_body(self, ledger: Ledger, reply: events_pb2.Reply) -> bytes:
        """A non-streamed answer too big for one message arrives as chunks, then its result (which
        ``reply`` becomes)."""
        attempt = ledger.attempt
        assert attempt is not None
        parts: list[bytes] = []
        try:
            while reply.HasField("chunk"):
                parts.append(reply.chunk.data)
                try:
                    reply.CopyFrom(await attempt.next(self._stall_timeout_s))
                except TimeoutError:  # (a lost worker raises WorkerLostError, which fails the request)
                    raise UpstreamTimeoutError(
                        "The worker stopped sending the answer.", code="stream_stalled"
                    ) from None
            if not reply.result.ok:
                raise error_from_reply(reply.result.error)
        except UpstreamError as exc:
            self.metrics.upstream_error(attempt.target.provider, exc)
            raise
        return b"".join(parts)

    async def open_stream(self, call: Call, encoder: sse.StreamEncoder | None = None) -> AsyncIterator[bytes]:
        """The encoded stream of a streaming request (OpenAI SSE unless ``encoder`` says otherwise).
        Routing and failover happen before this returns, so errors before the first chunk still get
        their own HTTP status."""
        self.metrics.started()
        ledger = Ledger()
        try:
            first = await self._first_reply(call, ledger)
        except asyncio.CancelledError:
            self._finish_cancelled(call, ledger)
            raise
        except Exception as exc:
            ledger.error = exc if isinstance(exc, ModelRouterError) else _internal_error(call, exc)
            ledger.close_attempt()
            self._finish(call, ledger)
            raise ledger.error from None
        relay = self._relay(call, ledger, first, encoder or sse.OpenAIEncoder())
        # Start the relay now: a started async generator is always finalised (asyncio closes it when
        # it is dropped), so its accounting runs even if the client leaves before the body is sent.
        try:
            head = await anext(relay)
        except StopAsyncIteration:
            head = b""
        return _prepend(head, relay)

    async def _relay(
        self, call: Call, ledger: Ledger, reply: events_pb2.Reply, encoder: sse.StreamEncoder
    ) -> AsyncGenerator[bytes, None]:
        attempt = ledger.attempt
        assert attempt is not None
        finished = False
        try:
            while True:
                if reply.HasField("chunk"):
                    if ledger.first_byte_at is None:
                        ledger.first_byte_at = time.perf_counter()
                    ledger.relayed(reply.chunk)
                    if call.bodies is not None:
                        call.bodies.chunk(reply.chunk)
                    if encoded := encoder.chunk(reply.chunk.data):
                        yield encoded
                elif reply.HasField("result"):
                    finished = True
                    ledger.usage, ledger.worker_span = reply.result.usage, reply.result.traceparent
                    if reply.result.ok:
                        yield encoder.done(reply.result.usage)
                    else:
                        ledger.error = error_from_reply(reply.result.error)
                        self.metrics.upstream_error(attempt.target.provider, ledger.error)
                        yield encoder.error(ledger.error)
                    return
                try:
                    reply = await attempt.next(self._stall_timeout_s)
                except (TimeoutError, WorkerLostError) as exc:
                    # The stream cannot go on: end it in band, billing what the client received.
                    finished = True
                    if isinstance(exc, WorkerLostError):
                        ledger.error = exc
                    else:
                        self._cancel_worker(call, attempt)
                        ledger.error = UpstreamTimeoutError(
                            f"The upstream stream stalled for {self._stall_timeout_s:g}s.", code="stream_stalled"
                        )
                    self.metrics.upstream_error(attempt.target.provider, ledger.error)
                    ledger.bill_relayed()
                    yield encoder.error(ledger.error)
                    return
        finally:
            if finished:
                ledger.close_attempt()
                self._finish(call, ledger)
            else:  # the client disconnected mid-stream (GeneratorExit or cancellation)
                self._finish_cancelled(call, ledger)

    def reject(self, call: Call, error: ModelRouterError) -> None:
        """Account for a request refused before dispatch (invalid body, too large)."""
        self.metrics.started()  # in the request counts too, ended by ``_account`` as every request is
        self._finish(call, Ledger(error=error))

    # --- attempts ----------------------------------------------------------------------------

    async def _first_reply(self, call: Call, ledger: Ledger) -> events_pb2.Reply:
        """Route and retry until an attempt produced its first chunk or a successful result."""
        exclude: list[str] = []
        last_error: UpstreamError | None = None
        for n in range(self._max_attempts):
            if call.admission is not None:
                call.admission.first = n == 0  # later attempts ride on the first one's reservation
            try:
                route = await self._router.route(
                    call.model,
                    call.key_id,
                    call.estimated_tokens,
                    exclude,
                    call.admission,
                    call.max_tokens,
                    prompt_class=call.prompt_class,
                )
            except (NoHealthyTargetError, RateLimitError):
                if last_error is not None:  # the first failure says more than "nothing left"
                    raise last_error from None
                raise
            call.limit_headers = ratelimit_headers.of(route)
            target = route.target
            ledger.target, ledger.attempts = target, n + 1
            attempt = ledger.attempt = await self._send_job(call, route, n)
            attempt_outcome.attempt_started(ledger, target)
            try:
                reply = await self._await_first(call, attempt)
                if reply.HasField("result") and not reply.result.ok:
                    raise error_from_reply(reply.result.error)
            except UpstreamError as exc:
                ledger.close_attempt()
                attempt_outcome.report_failed_attempt(self._router, ledger, target, exc)
                self.metrics.upstream_error(target.provider, exc)
                if not exc.retryable:
                    raise
                last_error = exc
                if exc.blames_deployment:
                    if not route.fallbacks:
                        raise
                    exclude.append(target.deployment_id)
                # else the same deployment may serve it again, on another worker
                if n + 1 == self._max_attempts:
                    raise
                log.info("attempt %d on %s failed (%s); trying again", n + 1, target.deployment_id, exc.message)
                continue
            attempt_outcome.report_served(self._router, target)
            call.route = RouteMetadata.of(target, route.explanation, n + 1, call.model)
            call.price = target.price
            return reply
        raise AssertionError("unreachable: the loop returns or raises")

    async def _send_job(self, call: Call, route: router_pb2.RouteResponse, n: int) -> Attempt:
        key = f"{call.request_id}-{n}"
        reply_subject, queue = self._hub.open(key)
        target = route.target
        job = events_pb2.Job(
            request_id=call.request_id,
            reply_subject=reply_subject,
            target=target,
            operation=call.operation,
            stream=call.stream,
            include_usage=call.include_usage,
            attempt=n,
            explanation=route.explanation,
        )
        explain(job.explanation, call.model)  # for the answer's router_metadata
        if self._bodies.fits_in_job(call.body):
            job.body = call.body
        else:  # the worker fetches it from this process (every attempt's worker: held until _finish)
            job.body_subject = self._bodies.hold(call.request_id, call.body)
            job.body_size = len(call.body)
        with producer_span(self._jobs_subject) as (_, headers):
            await self._nc.publish(self._jobs_subject, job.SerializeToString(), headers=headers)
        return Attempt(self._hub, key, queue, target)

    async def _await_first(self, call: Call, attempt: Attempt) -> events_pb2.Reply:
        try:
            reply = await attempt.next(self._accept_timeout_s)
        except TimeoutError:
            raise NoHealthyTargetError(
                f"No worker took the request within {self._accept_timeout_s:g}s.", code="no_worker_available"
            ) from None
        # A job's first reply names its worker: ``accepted`` when the job is slow to answer, else its
        # first chunk or result.
        attempt.named_by(reply)
        if reply.HasField("accepted"):
            try:
                reply = await attempt.next(attempt.target.timeout_s + RESULT_MARGIN_S)
            except TimeoutError:
                self._cancel_worker(call, attempt)
                raise UpstreamTimeoutError(
                    f"No answer from the worker within {attempt.target.timeout_s + RESULT_MARGIN_S:g}s."
                ) from None
        return reply

    # --- ending a request --------------------------------------------------------------------

    def _cancel_worker(self, call: Call, attempt: Attempt) -> None:
        # Without a worker id (no reply yet) ``_account_after_cancel`` cancels once one arrives.
        if attempt.worker_id:
            payload = events_pb2.Cancel(request_id=call.request_id).SerializeToString()
            self._spawn(self._nc.publish(subjects.cancel(attempt.worker_id), payload))

    def _finish_cancelled(self, call: Call, ledger: Ledger) -> None:
        """Stop the worker, then account with whatever usage it reports within a short wait."""
        ledger.cancelled = True
        attempt, ledger.attempt = ledger.attempt, None
        if attempt is None:
            self._finish(call, ledger)
            return
        self._cancel_worker(call, attempt)
        self._spawn(self._account_after_cancel(call, ledger, attempt))

    async def _account_after_cancel(self, call: Call, ledger: Ledger, attempt: Attempt) -> None:
        deadline = time.perf_counter() + CANCEL_USAGE_WAIT_S
        try:
            while (left := deadline - time.perf_counter()) > 0:
                reply = await attempt.next(left)
                if not attempt.worker_id:
                    # The client left before the worker named itself (its accepted is delayed, or it
                    # had not picked the job up yet): stop it as soon as it does.
                    attempt.named_by(reply)
                    self._cancel_worker(call, attempt)
                if reply.HasField("result"):
                    ledger.usage, ledger.worker_span = reply.result.usage, reply.result.traceparent
                    break
        except (TimeoutError, WorkerLostError):
            log.warning("request %s: no partial usage from the worker after cancel", call.request_id)
        finally:
            attempt.close()
            self._finish(call, ledger)

    def _finish(self, call: Call, ledger: Ledger) -> None:
        """Account for the request. The event is built and published on the loop's next turn: a
        non-streamed answer is then already written to the client, not waiting behind it."""
        asyncio.get_running_loop().call_soon(self._account, call, ledger, time.perf_counter())

    def _account(self, call: Call, ledger: Ledger, now: float) -> None:
        self._bodies.release(call.request_id)
        attempt_outcome.report_finished(self._router, ledger, now)
        event = ledger.event(call, now)
        if call.bodies is not None:
            call.bodies.fill(event)
        # A governed request some Route admitted (it has a target) holds a reservation: give back
        # what it did not use.
        # Once: the settlement and the metrics count the figure accounting stores (a whole answer's
        # was computed for its cost header already).
        cost = call.answer_cost() if call.usage is not None else billed(event)
        if call.admission is not None and ledger.target is not None:
            self._router.settle(settlement_of(event, cost))
        self._usage.publish(event, ledger.worker_span or None)
        self.metrics.finished(event, ledger.error, cost)

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def drain(self, timeout: float) -> None:
        if self._background:
            await asyncio.wait(set(self._background), timeout=timeout)


def _internal_error(call: Call, exc: Exception) -> ModelRouterError:
    log.error("request %s failed in the gateway", call.request_id, exc_info=exc)
    return ModelRouterError("The gateway failed while serving this request.")
