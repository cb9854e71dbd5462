"""One job, start to end: accept it, call the adapter, relay each chunk as it arrives, and finish with
exactly one result, whatever happened (success, provider error, cancel, a bug)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, Mapping
from typing import Any

import orjson
from nats.aio.client import Client as NATS
from nats.errors import MaxPayloadError
from opentelemetry.trace import Span, Status, StatusCode

from common.config import ProviderConfig
from common.errors import InvalidRequestError, ModelRouterError, UpstreamError
from common.messaging import consumer_span
from common.providers.base import Operation, ProviderAdapter, ProviderCall, StreamChunk, Usage
from common.settings import WorkerSettings
from common.telemetry import traceparent_of
from modelrouter.events.v1 import events_pb2
from workers.adapters import AdapterPool
from workers.answer_extras import AnswerExtras, StreamTail
from workers.job_body import fetch_body
from workers.metrics import WorkerMetrics
from workers.outcome import WorkerShutdownError, error_message, failed, usage_message
from workers.usage import UsageMeter

log = logging.getLogger(__name__)

OPERATIONS: dict[int, str] = {
    events_pb2.OPERATION_CHAT_COMPLETIONS: Operation.CHAT,
    events_pb2.OPERATION_COMPLETIONS: Operation.COMPLETIONS,
    events_pb2.OPERATION_EMBEDDINGS: Operation.EMBEDDINGS,
    events_pb2.OPERATION_IMAGES: Operation.IMAGES,
}
# For a target that arrives without a timeout: the config's default for a provider.
DEFAULT_TIMEOUT_S: float = ProviderConfig.model_fields["timeout_s"].default
# How long a job may run before it sends Reply{accepted} (see WorkerSettings.accept_delay_s).
ACCEPT_DELAY_S: float = WorkerSettings.model_fields["accept_delay_s"].default
HEARTBEAT_S: float = WorkerSettings.model_fields["heartbeat_s"].default


class MissingApiKeyError(ModelRouterError):
    default_code = "missing_api_key"


class JobControl:
    """A job in flight as the runner sees it: what it can stop, and why it stopped it."""

    __slots__ = ("in_call", "job", "replies", "stop_reason", "task")

    def __init__(self, job: events_pb2.Job) -> None:
        self.job = job
        self.task: asyncio.Task[None] | None = None
        self.replies: Replies | None = None  # once the job runs: where its heartbeats go
        self.stop_reason: UpstreamError | None = None
        self.in_call = False  # only the provider call is interrupted; replies are always sent

    def stop(self, reason: UpstreamError) -> None:
        if self.stop_reason is not None:  # the first reason stands; cancelling once is enough
            return
        self.stop_reason = reason
        if self.in_call and self.task is not None:
            self.task.cancel()


# Room left in a NATS message for the Reply envelope around a body piece (protobuf framing, headers).
RESULT_ENVELOPE_BYTES = 4096


class Replies:
    """One job's replies to the gateway. The first one carries this worker's id, which is where the
    gateway sends a Cancel, and the heartbeat interval it promises. ``accepted`` goes out only if the
    job has sent nothing after ``accept_delay_s``: a fast job answers with one message instead of two.
    After that, ``beat`` (called by the runner's ticker) fills any silence of ``heartbeat_s``."""

    __slots__ = (
        "_closed",
        "_heartbeat_s",
        "_late",
        "_loop",
        "_named",
        "_nc",
        "_subject",
        "_timer",
        "_worker_id",
        "last_sent",
    )

    def __init__(
        self, nc: NATS, subject: str, worker_id: str, accept_delay_s: float, heartbeat_s: float = HEARTBEAT_S
    ) -> None:
        self._nc, self._subject, self._worker_id = nc, subject, worker_id
        self._heartbeat_s = heartbeat_s
        self._named = self._closed = False
        self._late: asyncio.Task[None] | None = None
        self._loop = asyncio.get_running_loop()
        self.last_sent = self._loop.time()
        self._timer = self._loop.call_later(accept_delay_s, self._accept_late)

    async def send(self, reply: events_pb2.Reply) -> None:
        first = not self._named
        if first:
            # Flagged before publishing: nats-py queues a publish synchronously, so whichever
            # reply gets here first is also first on the wire.
            self._named = True
            self._timer.cancel()
            reply.worker_id = self._worker_id
            reply.heartbeat_s = self._heartbeat_s
        try:
            await self._nc.publish(self._subject, reply.SerializeToString())
        except Exception:  # refused (too large, connection closed...): the next reply is the first
            if first:
                self._named = False
            raise
        self.last_sent = self._loop.time()

    async def beat(self, quiet_s: float) -> None:
        """A heartbeat if the job has said nothing for ``quiet_s`` since naming its worker."""
        if self._named and not self._closed and self._loop.time() - self.last_sent >= quiet_s:
            await self.send(events_pb2.Reply(heartbeat=events_pb2.Heartbeat()))

    async def accepted(self) -> None:
        if not self._named:  # a chunk or result may have gone out since the timer fired
            await self.send(events_pb2.Reply(accepted=events_pb2.Accepted(worker_id=self._worker_id)))

    def close(self) -> None:
        self._closed = True
        self._timer.cancel()

    def _accept_late(self) -> None:
        if not self._named:
            self._late = asyncio.ensure_future(self._accept_logged())

    async def _accept_logged(self) -> None:
        try:
            await self.accepted()
        except Exception:  # no job task to raise into; the job's next reply names the worker instead
            log.warning("could not send accepted on %s", self._subject, exc_info=True)


class JobExecutor:
    def __init__(
        self,
        nc: NATS,
        adapters: AdapterPool,
        worker_id: str,
        env: Mapping[str, str],
        *,
        accept_delay_s: float = ACCEPT_DELAY_S,
        heartbeat_s: float = HEARTBEAT_S,
        metrics: WorkerMetrics | None = None,
    ) -> None:
        self._nc = nc
        # Without one of the process's, a registry of the executor's own (a test's executor).
        self.metrics = metrics if metrics is not None else WorkerMetrics()
        self._adapters = adapters
        self._worker_id = worker_id
        self._env = env
        self._accept_delay_s = accept_delay_s
        self.heartbeat_s = heartbeat_s

    async def run(self, control: JobControl, subject: str, headers: Mapping[str, str] | None) -> None:
        job = control.job
        with consumer_span(f"process {subject}", subject, headers) as span:
            span.set_attributes(
                {
                    "modelrouter.request_id": job.request_id,
                    "modelrouter.deployment_id": job.target.deployment_id,
                    "modelrouter.provider": job.target.provider,
                    "modelrouter.attempt": job.attempt,
                    "modelrouter.stream": job.stream,
                    "gen_ai.request.model": job.target.upstream_model,
                }
            )
            replies = control.replies = Replies(
                self._nc, job.reply_subject, self._worker_id, self._accept_delay_s, self.heartbeat_s
            )
            try:
                if self._accept_delay_s <= 0:
                    await replies.accepted()
                self.metrics.started()
                started = time.perf_counter()
                result = await self._attempt(control, replies)
                self.metrics.finished(job.target.provider, time.perf_counter() - started, result)
                result.traceparent = traceparent_of(span)
                _record(span, result)
                await self._send_result(replies, result)
            finally:
                replies.close()

    async def _send_result(self, replies: Replies, result: events_pb2.Result) -> None:
        """The result, its body split over chunk messages first when it outgrows one NATS message
        (an image, a big embeddings batch); the gateway joins a non-streamed answer's chunks."""
        piece = max(1024, self._nc.max_payload - RESULT_ENVELOPE_BYTES)
        if len(result.body) > piece:
            body = result.body
            for start in range(0, len(body), piece):
                await replies.send(events_pb2.Reply(chunk=events_pb2.Chunk(data=body[start : start + piece])))
            result.body = b""
        try:
            await replies.send(events_pb2.Reply(result=result))
        except MaxPayloadError:  # only the error text or trace fields could still be this large
            error = UpstreamError(
                "The answer is larger than the message bus allows.", code="response_too_large", retryable=False
            )
            too_large = events_pb2.Result(
                ok=False, error=error_message(error), usage=result.usage, traceparent=result.traceparent
            )
            await replies.send(events_pb2.Reply(result=too_large))

    async def _attempt(self, control: JobControl, replies: Replies) -> events_pb2.Result:
        job = control.job
        meter: UsageMeter | None = None
        control.in_call = True
        try:
            if control.stop_reason is not None:  # stopped between arriving and starting
                raise control.stop_reason
            if job.body_subject:
                job.body = await fetch_body(self._nc, job)
            call = self._call_of(job)
            adapter = self._adapters.get(job.target.provider, job.target.base_url)
            meter = UsageMeter(call.body)
            extras = AnswerExtras.for_job(job)
            if job.stream:
                await self._relay(job, replies, adapter, call, meter, StreamTail(extras))
                return events_pb2.Result(ok=True, usage=usage_message(meter.counted(prompt_sent=True)))
            response = await adapter.send(call)
            body = extras.whole(response) if extras is not None else response.body
            return events_pb2.Result(ok=True, body=body, usage=usage_message(response.usage))
        except ModelRouterError as exc:
            return failed(exc, meter.counted(prompt_sent=False) if meter else Usage())
        except asyncio.CancelledError:
            # The runner stopped the call (a Cancel from the gateway, or shutdown). The job still
            # ends with a result carrying the usage so far, so take the cancellation back.
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            reason = control.stop_reason or WorkerShutdownError("The worker stopped the call.")
            return failed(reason, meter.counted(prompt_sent=True) if meter else Usage())
        except Exception:
            log.exception("job %s failed unexpectedly", job.request_id)
            error = UpstreamError("The worker failed while calling the upstream provider.")
            return failed(error, meter.counted(prompt_sent=True) if meter else Usage())
        finally:
            control.in_call = False

    async def _relay(
        self,
        job: events_pb2.Job,
        replies: Replies,
        adapter: ProviderAdapter,
        call: ProviderCall,
        meter: UsageMeter,
        tail: StreamTail,
    ) -> None:
        chunks = adapter.stream(call)
        # Each chunk says what it adds to the bill, the first one the prompt's estimate too: what the
        # gateway charges for what it relayed if this worker dies before its result.
        prompt_tokens = meter.prompt_estimate

        async def send(chunk: StreamChunk) -> None:
            nonlocal prompt_tokens
            sent = events_pb2.Chunk(data=chunk.data, text_chars=chunk.text_chars, prompt_tokens=prompt_tokens)
            prompt_tokens = 0
            await replies.send(events_pb2.Reply(chunk=sent))

        try:
            async for chunk in chunks:
                meter.observe(chunk)
                if chunk.usage_only and not job.include_usage:
                    continue
                for ready in tail.push(chunk):
                    await send(ready)
            if (last := tail.end(meter.counted(prompt_sent=True))) is not None:
                await send(last)
        except ModelRouterError:
            if (held := tail.release()) is not None:  # what came before the failure still goes out
                await send(held)
            raise
        finally:
            # Closing the generator closes its upstream response: a cancelled job hangs up at once.
            if isinstance(chunks, AsyncGenerator):
                await chunks.aclose()

    def _call_of(self, job: events_pb2.Job) -> ProviderCall:
        try:
            body: Any = orjson.loads(job.body)
        except orjson.JSONDecodeError:
            body = None
        if not isinstance(body, dict):
            raise InvalidRequestError("The request body must be a JSON object.")
        operation = OPERATIONS.get(job.operation)
        if operation is None:
            raise InvalidRequestError(f"The job names no known operation ({job.operation}).")
        return ProviderCall(
            request_id=job.request_id,
            operation=operation,
            body=body,
            upstream_model=job.target.upstream_model,
            api_key=self._api_key(job.target.api_key_env),
            timeout_s=job.target.timeout_s or DEFAULT_TIMEOUT_S,
            stream=job.stream,
            include_usage=job.include_usage,
            options=dict(job.target.options),
        )

    def _api_key(self, env_name: str) -> str | None:
        if not env_name:
            return None
        key = self._env.get(env_name)
        if not key:
            raise MissingApiKeyError(f"The worker has no API key for this deployment: {env_name} is not set.")
        return key


def _record(span: Span, result: events_pb2.Result) -> None:
    span.set_attribute("gen_ai.usage.input_tokens", result.usage.prompt_tokens)
    span.set_attribute("gen_ai.usage.output_tokens", result.usage.completion_tokens)
    if not result.ok:
        span.set_attribute("error.type", result.error.type)
        span.set_status(Status(StatusCode.ERROR, result.error.message))
