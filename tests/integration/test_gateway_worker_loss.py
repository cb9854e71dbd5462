"""The gateway's dispatcher against workers that vanish, over real NATS. A worker here is a plain NATS
subscriber speaking the worker's wire (Reply messages on the job's reply subject): it can name itself,
promise heartbeats, send a chunk, and then fall silent as a killed process does (the process-level
drill, with SIGKILL, is in tests/e2e/test_worker_loss.py).

Before the first byte the request goes to another worker and the client sees a normal answer; after
it, the stream ends with an in-band ``worker_lost`` error well inside 2 s, billed for what the client
received. A worker from before heartbeats (heartbeat_s 0) is waited on as before. A job the message
bus refuses is a clean 500, accounted once."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.errors import ConnectionClosedError

from common import subjects
from common.errors import ModelRouterError, WorkerLostError
from common.token_estimate import estimate_tokens
from gateway.call import Call
from gateway.dispatch import Dispatcher
from gateway.job_bodies import JobBodies
from gateway.replies import ReplyHub
from modelrouter.events.v1 import events_pb2
from modelrouter.router.v1 import router_pb2
from tests.integration.test_gateway_cancel import _Router, _Usage, gateway_nc, hub
from tests.integration.test_gateway_cancel import call as cancel_call

pytestmark = pytest.mark.integration
__all__ = ["gateway_nc", "hub"]  # the fixtures, shared with test_gateway_cancel

HEARTBEAT_S = 0.2  # a quick drill: silence of 3 beats (0.6 s) means the worker is gone
PROMPT = "Where is the worker?"
ANSWER = {"id": "x", "object": "chat.completion", "choices": [{"message": {"content": "Here."}}]}


def chunk(text: str, prompt_tokens: int = 0) -> events_pb2.Reply:
    data = orjson.dumps({"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": text}}]})
    return events_pb2.Reply(chunk=events_pb2.Chunk(data=data, text_chars=len(text), prompt_tokens=prompt_tokens))


Behaviour = Callable[[NATS, events_pb2.Job], Any]


async def dies_after_accepting(nc: NATS, job: events_pb2.Job) -> None:
    await nc.publish(
        job.reply_subject,
        events_pb2.Reply(
            accepted=events_pb2.Accepted(worker_id="w-dead"), worker_id="w-dead", heartbeat_s=HEARTBEAT_S
        ).SerializeToString(),
    )


async def dies_mid_stream(nc: NATS, job: events_pb2.Job) -> None:
    first = chunk("The worker ", prompt_tokens=estimate_tokens(len(PROMPT)))
    first.worker_id, first.heartbeat_s = "w-dead", HEARTBEAT_S
    await nc.publish(job.reply_subject, first.SerializeToString())
    await nc.publish(job.reply_subject, chunk("was here").SerializeToString())


async def answers(nc: NATS, job: events_pb2.Job) -> None:
    if job.stream:
        first = chunk("Here.", prompt_tokens=5)
        first.worker_id, first.heartbeat_s = "w-alive", HEARTBEAT_S
        await nc.publish(job.reply_subject, first.SerializeToString())
        result = events_pb2.Result(ok=True, usage=events_pb2.Usage(prompt_tokens=5, completion_tokens=2))
        await nc.publish(job.reply_subject, events_pb2.Reply(result=result).SerializeToString())
        return
    result = events_pb2.Result(
        ok=True, body=orjson.dumps(ANSWER), usage=events_pb2.Usage(prompt_tokens=5, completion_tokens=2)
    )
    reply = events_pb2.Reply(result=result, worker_id="w-alive", heartbeat_s=HEARTBEAT_S)
    await nc.publish(job.reply_subject, reply.SerializeToString())


async def old_worker_slow_to_answer(nc: NATS, job: events_pb2.Job) -> None:
    """A worker from before heartbeats: accepted without heartbeat_s, then silent for a while."""
    accepted = events_pb2.Reply(accepted=events_pb2.Accepted(worker_id="w-old"), worker_id="w-old")
    await nc.publish(job.reply_subject, accepted.SerializeToString())
    await asyncio.sleep(4 * HEARTBEAT_S * 3)
    await answers(nc, job)


class FakeWorkers:
    """Takes the jobs on a subject of its own; attempt ``n`` of a request behaves as ``script[n]``."""

    def __init__(self, nc: NATS, script: list[Behaviour]) -> None:
        self.nc, self.script = nc, script
        self.subject = f"test.jobs.{uuid.uuid4().hex[:10]}"
        self.jobs: list[events_pb2.Job] = []
        self._running: set[asyncio.Future[Any]] = set()

    async def __aenter__(self) -> FakeWorkers:
        self._sub = await self.nc.subscribe(self.subject, cb=self._on_job)
        await self.nc.flush()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._sub.unsubscribe()

    async def _on_job(self, msg: Msg) -> None:
        job = events_pb2.Job.FromString(msg.data)
        self.jobs.append(job)
        task = asyncio.ensure_future(self.script[min(job.attempt, len(self.script) - 1)](self.nc, job))
        self._running.add(task)
        task.add_done_callback(self._running.discard)


def dispatcher_for(
    nc: Any, hub: ReplyHub, usage: _Usage, jobs_subject: str, router: Any = None, bodies: JobBodies | None = None
) -> Dispatcher:
    target = router_pb2.Target(deployment_id="dep-1", provider="fake", upstream_model="m", timeout_s=30)
    return Dispatcher(
        router or _Router(target),
        nc,
        hub,
        usage,  # type: ignore[arg-type]
        bodies or JobBodies(nc, "unused"),
        accept_timeout_s=5,
        stall_timeout_s=30,  # far longer than a lost worker may take to notice
        max_attempts=3,
        jobs_subject=jobs_subject,
    )


def call(*, stream: bool, prompt: str = PROMPT) -> Call:
    return cancel_call(stream=stream, prompt=prompt)


class _CountingRouter(_Router):
    def __init__(self, target: router_pb2.Target) -> None:
        super().__init__(target)
        self.excluded: list[list[str]] = []
        self.reports: list[tuple[str, bool]] = []

    async def route(
        self,
        model: str,
        key_id: str,
        estimated_tokens: int,
        exclude: list[str],
        admission: object = None,
        max_tokens: int = 0,
        prompt_class: str = "",
    ) -> Any:
        self.excluded.append(list(exclude))
        return await super().route(model, key_id, estimated_tokens, exclude)

    def report(
        self, deployment_id: str, success: bool, status_code: int = 0, retry_after_s: float = 0, **measured: float | str
    ) -> None:
        self.reports.append((deployment_id, success))


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
async def test_a_worker_lost_before_the_first_byte_is_replaced_by_another(
    gateway_nc: NATS, hub: ReplyHub, stream: bool
) -> None:
    usage = _Usage()
    target = router_pb2.Target(deployment_id="dep-1", provider="fake", upstream_model="m", timeout_s=30)
    router = _CountingRouter(target)
    async with FakeWorkers(gateway_nc, [dies_after_accepting, answers]) as workers:
        dispatcher = dispatcher_for(gateway_nc, hub, usage, workers.subject, router)
        started = time.monotonic()
        if stream:
            frames = await dispatcher.open_stream(call(stream=True))
            body = b"".join([frame async for frame in frames])
            assert b"Here." in body and body.endswith(b"data: [DONE]\n\n")
        else:
            body = await dispatcher.complete(call(stream=False))
            assert orjson.loads(body) == ANSWER
        elapsed = time.monotonic() - started

    assert [job.attempt for job in workers.jobs] == [0, 1]
    assert elapsed < 2.0, elapsed  # silence of 3 x 0.2 s, then the second worker answers at once
    # The deployment was not at fault: not reported as failed, not excluded from the retry.
    assert router.excluded == [[], []] and router.reports == []
    event = await asyncio.wait_for(usage.events.get(), 5)
    assert event.status == events_pb2.REQUEST_STATUS_SUCCESS and event.attempts == 2
    await dispatcher.drain(1)


async def test_a_worker_lost_mid_stream_ends_it_in_band_and_bills_what_was_relayed(
    gateway_nc: NATS, hub: ReplyHub
) -> None:
    usage = _Usage()
    async with FakeWorkers(gateway_nc, [dies_mid_stream]) as workers:
        dispatcher = dispatcher_for(gateway_nc, hub, usage, workers.subject)
        frames = await dispatcher.open_stream(call(stream=True))
        first = await anext(frames)
        last_chunk_at = time.monotonic()
        rest = b"".join([frame async for frame in frames])
        silent_for = time.monotonic() - last_chunk_at

    body = first + rest
    assert b"The worker " in body and b"was here" in body
    error = orjson.loads(rest.split(b"data: ")[-1])["error"]
    assert error["code"] == "worker_lost" and error["type"] == "api_error"
    assert "stopped responding" in error["message"]
    assert silent_for < 3 * HEARTBEAT_S + 0.5, silent_for
    event = await asyncio.wait_for(usage.events.get(), 5)
    assert event.status == events_pb2.REQUEST_STATUS_ERROR and event.http_status == 503
    assert event.usage.prompt_tokens == estimate_tokens(len(PROMPT))
    assert event.usage.completion_tokens == estimate_tokens(len("The worker was here"))
    assert event.usage.total_tokens == event.usage.prompt_tokens + event.usage.completion_tokens
    await dispatcher.drain(1)


async def test_a_worker_without_heartbeats_is_waited_on(gateway_nc: NATS, hub: ReplyHub) -> None:
    usage = _Usage()
    async with FakeWorkers(gateway_nc, [old_worker_slow_to_answer]) as workers:
        dispatcher = dispatcher_for(gateway_nc, hub, usage, workers.subject)
        body = await dispatcher.complete(call(stream=False))
    assert orjson.loads(body) == ANSWER
    assert [job.attempt for job in workers.jobs] == [0]
    await dispatcher.drain(1)


async def test_a_body_too_big_for_a_job_is_held_for_the_request_and_released_after_it(
    gateway_nc: NATS, hub: ReplyHub
) -> None:
    usage = _Usage()
    bodies = JobBodies(gateway_nc, f"gw{uuid.uuid4().hex[:8]}")
    big = call(stream=False, prompt="x" * gateway_nc.max_payload)
    async with FakeWorkers(gateway_nc, [dies_after_accepting, answers]) as workers:
        dispatcher = dispatcher_for(gateway_nc, hub, usage, workers.subject, bodies=bodies)
        assert orjson.loads(await dispatcher.complete(big)) == ANSWER
    # Both attempts' jobs named the body instead of carrying it.
    assert [(job.body, job.body_size) for job in workers.jobs] == [(b"", len(big.body))] * 2
    assert {job.body_subject for job in workers.jobs} == {subjects.body(bodies._gateway_id, big.request_id)}
    await asyncio.wait_for(usage.events.get(), 5)
    assert bodies.held == 0
    await dispatcher.drain(1)


class _RefusingNats:
    """A connection that refuses every publish, as a closed one does."""

    max_payload = 1024 * 1024

    async def publish(self, subject: str, payload: bytes = b"", headers: Any = None) -> None:
        raise ConnectionClosedError


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
async def test_a_job_the_bus_refuses_is_a_clean_500_accounted_once(hub: ReplyHub, stream: bool) -> None:
    usage = _Usage()
    dispatcher = dispatcher_for(_RefusingNats(), hub, usage, "test.jobs.nowhere")
    with pytest.raises(ModelRouterError) as failed:
        if stream:
            await dispatcher.open_stream(call(stream=True))
        else:
            await dispatcher.complete(call(stream=False))
    assert type(failed.value) is ModelRouterError and failed.value.status == 500
    assert failed.value.to_dict()["error"]["code"] == "internal_error"
    event = await asyncio.wait_for(usage.events.get(), 5)
    assert event.status == events_pb2.REQUEST_STATUS_ERROR and event.http_status == 500
    await asyncio.sleep(0.05)
    assert usage.events.empty()


def test_worker_lost_is_retryable_and_not_the_deployments_fault() -> None:
    error = WorkerLostError("gone")
    assert error.retryable and not error.blames_deployment and error.status == 503
