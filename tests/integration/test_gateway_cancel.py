"""The gateway's dispatcher against a real worker over NATS: a client that leaves, or a stream that
stalls, stops the worker's upstream call even when the worker never sent ``accepted`` (a job's first
chunk names its worker) or had not sent it yet (``accepted`` waits for the worker's accept delay).
And a whole answer is returned before its usage event is built."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import orjson
import pytest
from nats.aio.client import Client as NATS

from common.messaging import connect_nats
from gateway.call import Call
from gateway.dispatch import Dispatcher
from gateway.job_bodies import JobBodies
from gateway.replies import ReplyHub
from modelrouter.events.v1 import events_pb2
from modelrouter.router.v1 import router_pb2
from tests.contract import story
from tests.contract.server import HoldStream, Stall, UpstreamServer
from tests.contract.worker_jobs import InProcessWorker, in_process_worker
from workers.usage import estimate_tokens

pytestmark = pytest.mark.integration

# Shorter than the worker's accept delay (0.1 s): the client is gone before the worker named itself.
CLIENT_PATIENCE_S = 0.02
# Not what these tests check: long, so a slow CI machine is not mistaken for a missing worker.
ACCEPT_TIMEOUT_S = 30


class _Router:
    def __init__(self, target: router_pb2.Target) -> None:
        self.target = target

    async def route(
        self,
        model: str,
        key_id: str,
        estimated_tokens: int,
        exclude: list[str],
        admission: object = None,
        max_tokens: int = 0,
        prompt_class: str = "",
    ) -> router_pb2.RouteResponse:
        return router_pb2.RouteResponse(target=self.target)

    def report(
        self, deployment_id: str, success: bool, status_code: int = 0, retry_after_s: float = 0, **measured: float | str
    ) -> None:
        pass


class _Usage:
    def __init__(self) -> None:
        self.events: asyncio.Queue[events_pb2.UsageEvent] = asyncio.Queue()

    def publish(self, event: events_pb2.UsageEvent, parent: str | None = None) -> None:
        self.events.put_nowait(event)


@pytest.fixture
async def worker(nats_url: str) -> AsyncIterator[InProcessWorker]:
    async with in_process_worker(nats_url) as running:
        assert running.accept_delay_s > CLIENT_PATIENCE_S * 2
        yield running


@pytest.fixture
async def gateway_nc(nats_url: str) -> AsyncIterator[NATS]:
    nc = await connect_nats(nats_url, "test-gateway-cancel")
    yield nc
    await nc.drain()


def dispatcher_for(
    nc: NATS, hub: ReplyHub, usage: _Usage, worker: InProcessWorker, openai_wire: UpstreamServer, stall_s: float = 5.0
) -> Dispatcher:
    target = router_pb2.Target(
        deployment_id="dep-openai", provider="openai", upstream_model="gpt", base_url=openai_wire.base_url, timeout_s=10
    )
    return Dispatcher(
        _Router(target),  # type: ignore[arg-type]
        nc,
        hub,
        usage,  # type: ignore[arg-type]
        JobBodies(nc, "unused"),  # these bodies fit in a job
        accept_timeout_s=ACCEPT_TIMEOUT_S,
        stall_timeout_s=stall_s,
        max_attempts=1,
        jobs_subject=worker.jobs_subject,
    )


@pytest.fixture
async def hub(gateway_nc: NATS) -> AsyncIterator[ReplyHub]:
    replies = ReplyHub(gateway_nc, f"gw{uuid.uuid4().hex[:8]}")
    await replies.start()
    yield replies
    await replies.stop()


def call(*, stream: bool, prompt: str = story.QUESTION) -> Call:
    body = {"model": "m", "messages": [{"role": "user", "content": prompt}], "stream": stream}
    return Call(
        request_id=uuid.uuid4().hex,
        key_id="k",
        endpoint="/v1/chat/completions",
        operation=events_pb2.OPERATION_CHAT_COMPLETIONS,
        model="m",
        body=orjson.dumps(body),
        stream=stream,
    )


async def test_a_client_gone_before_the_delayed_accepted_still_stops_the_upstream_call(
    gateway_nc: NATS, hub: ReplyHub, worker: InProcessWorker, openai_wire: UpstreamServer
) -> None:
    openai_wire.reset(HoldStream(after_chunks=0))  # headers, then nothing: the job stays silent
    usage = _Usage()
    dispatcher = dispatcher_for(gateway_nc, hub, usage, worker, openai_wire)
    request = asyncio.ensure_future(dispatcher.open_stream(call(stream=True)))
    await openai_wire.wait_until(lambda u: u.holding)
    await asyncio.sleep(CLIENT_PATIENCE_S)
    request.cancel()  # the client leaves: nothing, not even accepted, came from the worker yet
    with pytest.raises(asyncio.CancelledError):
        await request

    await openai_wire.wait_until(lambda u: u.hangups == 1)  # the worker hung up on the upstream
    event = await asyncio.wait_for(usage.events.get(), 5)
    assert event.status == events_pb2.REQUEST_STATUS_CANCELLED and event.http_status == 499
    # The worker's partial usage arrived: the prompt went upstream, no answer came back.
    assert event.usage.prompt_tokens == estimate_tokens(len(story.QUESTION))
    assert event.usage.completion_tokens == 0
    await dispatcher.drain(1)


async def test_a_whole_answer_cancelled_before_the_delayed_accepted_reports_partial_usage(
    gateway_nc: NATS, hub: ReplyHub, worker: InProcessWorker, openai_wire: UpstreamServer
) -> None:
    openai_wire.reset(Stall(seconds=5))  # longer than the gateway waits for usage after a cancel
    usage = _Usage()
    dispatcher = dispatcher_for(gateway_nc, hub, usage, worker, openai_wire)
    request = asyncio.ensure_future(dispatcher.complete(call(stream=False)))
    await openai_wire.wait_until(lambda u: len(u.received) == 1)
    await asyncio.sleep(CLIENT_PATIENCE_S)
    request.cancel()
    with pytest.raises(asyncio.CancelledError):
        await request

    event = await asyncio.wait_for(usage.events.get(), 5)
    assert event.status == events_pb2.REQUEST_STATUS_CANCELLED
    # Only a cancelled worker answers this soon: the upstream would stall for 5 s.
    assert event.usage.prompt_tokens == estimate_tokens(len(story.QUESTION))
    assert event.latency_ms < 2000
    await dispatcher.drain(1)


async def test_a_client_gone_mid_stream_stops_a_worker_that_never_sent_accepted(
    gateway_nc: NATS, hub: ReplyHub, worker: InProcessWorker, openai_wire: UpstreamServer
) -> None:
    openai_wire.reset(HoldStream(after_chunks=3))  # the role chunk, "The", " capital" at once
    usage = _Usage()
    dispatcher = dispatcher_for(gateway_nc, hub, usage, worker, openai_wire)
    frames = await dispatcher.open_stream(call(stream=True))
    assert (await anext(frames)).startswith(b"data: ")
    await openai_wire.wait_until(lambda u: u.holding)
    await frames.aclose()  # type: ignore[attr-defined]

    await openai_wire.wait_until(lambda u: u.hangups == 1)
    event = await asyncio.wait_for(usage.events.get(), 5)
    assert event.status == events_pb2.REQUEST_STATUS_CANCELLED
    assert event.usage.completion_tokens == estimate_tokens(len("The capital"))
    await dispatcher.drain(1)


async def test_a_stalled_stream_stops_a_worker_that_never_sent_accepted(
    gateway_nc: NATS, hub: ReplyHub, worker: InProcessWorker, openai_wire: UpstreamServer
) -> None:
    openai_wire.reset(HoldStream(after_chunks=3))
    usage = _Usage()
    dispatcher = dispatcher_for(gateway_nc, hub, usage, worker, openai_wire, stall_s=0.5)
    frames = await dispatcher.open_stream(call(stream=True))
    body = b"".join([frame async for frame in frames])

    assert b'"code":"stream_stalled"' in body.replace(b" ", b"")
    await openai_wire.wait_until(lambda u: u.hangups == 1)
    event = await asyncio.wait_for(usage.events.get(), 5)
    assert event.status == events_pb2.REQUEST_STATUS_ERROR and event.error_type == "timeout"
    # Billed for what the client received before the stall, not 0.
    assert event.usage.prompt_tokens == estimate_tokens(len(story.QUESTION))
    assert event.usage.completion_tokens == estimate_tokens(len("The capital"))
    await dispatcher.drain(1)


async def test_a_whole_answer_is_returned_before_its_usage_event_is_built(
    gateway_nc: NATS, hub: ReplyHub, worker: InProcessWorker, openai_wire: UpstreamServer
) -> None:
    """Accounting stays off the client's critical path: the event follows on the loop's next turn."""
    usage = _Usage()
    dispatcher = dispatcher_for(gateway_nc, hub, usage, worker, openai_wire)
    body = await dispatcher.complete(call(stream=False))
    assert orjson.loads(body)["choices"][0]["message"]["content"]
    assert usage.events.empty()
    await asyncio.sleep(0)
    event = usage.events.get_nowait()
    assert event.status == events_pb2.REQUEST_STATUS_SUCCESS and event.http_status == 200
    assert event.usage.total_tokens > 0
    await dispatcher.drain(1)
