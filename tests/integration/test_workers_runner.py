"""The job loop over real NATS: a pretend gateway publishes Jobs and reads the worker's replies."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator, Callable

import orjson
import pytest
from nats.aio.client import Client as NATS
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from common import subjects
from common.messaging import connect_nats, producer_span
from common.providers.base import ProviderAdapter, ProviderCall, ProviderResponse, StreamChunk, Usage
from modelrouter.events.v1 import events_pb2
from tests.contract import story
from tests.contract.server import HoldStream, UpstreamServer
from tests.contract.worker_jobs import InProcessWorker, in_process_worker, inbox, make_job
from workers.providers import REGISTRY
from workers.providers.fake import REPLY_PHRASE
from workers.usage import estimate_tokens

pytestmark = pytest.mark.integration

FAKE_TEXT = f"{REPLY_PHRASE} ping"


@pytest.fixture
async def client(nats_url: str) -> AsyncIterator[NATS]:
    nc = await connect_nats(nats_url, "test-workers-client")
    yield nc
    await nc.drain()


@pytest.fixture
async def worker(nats_url: str) -> AsyncIterator[InProcessWorker]:
    async with in_process_worker(nats_url) as running:
        yield running


def openai_job(openai_wire: UpstreamServer, **kwargs: object) -> events_pb2.Job:
    body = {
        "model": "m",
        "messages": [{"role": "user", "content": story.QUESTION}],
        "stream": kwargs.get("stream", False),
    }
    return make_job(provider="openai", base_url=openai_wire.base_url, body=body, **kwargs)  # type: ignore[arg-type]


def chunk_texts(replies: list[events_pb2.Reply]) -> list[str]:
    texts = []
    for reply in replies:
        for choice in json.loads(reply.chunk.data)["choices"]:
            texts.append(choice["delta"].get("content") or "")
    return [t for t in texts if t]


async def eventually(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


# --- the reply sequence -------------------------------------------------------------------------


def names_worker_first(replies: list[events_pb2.Reply], worker_id: str) -> bool:
    """The first reply, and only it, names the worker (where the gateway sends a Cancel)."""
    return replies[0].worker_id == worker_id and not any(r.worker_id for r in replies[1:])


@pytest.mark.parametrize("include_usage", [False, True])
async def test_a_fast_streamed_job_replies_chunks_then_one_result_without_accepted(
    client: NATS, worker: InProcessWorker, include_usage: bool
) -> None:
    async with inbox(client, worker.jobs_subject) as box:
        await box.send(make_job(stream=True, include_usage=include_usage))
        replies = await box.until_result()

    *chunks, result = replies
    assert names_worker_first(replies, worker.worker_id)
    assert chunks and all(r.HasField("chunk") for r in chunks)
    assert "".join(chunk_texts(chunks)) == FAKE_TEXT
    last = json.loads(chunks[-1].chunk.data)
    assert (last["choices"] == [] and "usage" in last) is include_usage
    assert result.result.ok and not result.result.body
    assert result.result.usage.completion_tokens == len(FAKE_TEXT.split())
    assert result.result.usage.total_tokens == result.result.usage.prompt_tokens + result.result.usage.completion_tokens
    assert box.replies.empty()


async def test_a_fast_whole_job_replies_with_one_message_naming_the_worker(
    client: NATS, worker: InProcessWorker
) -> None:
    async with inbox(client, worker.jobs_subject) as box:
        await box.send(make_job(stream=False))
        [result] = await box.until_result()
        with pytest.raises(TimeoutError):  # no late accepted either
            await box.next(timeout=3 * worker.accept_delay_s)

    assert result.worker_id == worker.worker_id
    body = json.loads(result.result.body)
    assert body["object"] == "chat.completion" and body["choices"][0]["message"]["content"] == FAKE_TEXT
    assert result.result.usage.completion_tokens == body["usage"]["completion_tokens"]


@pytest.mark.parametrize("stream", [False, True])
async def test_a_job_silent_past_the_accept_delay_replies_accepted_first(
    client: NATS, worker: InProcessWorker, stream: bool
) -> None:
    async with inbox(client, worker.jobs_subject) as box:
        await box.send(make_job(options={"latency_ms": "400"}, stream=stream))
        accepted = await box.next()
        assert box.replies.empty()  # accepted came while the upstream still waited
        replies = [accepted, *await box.until_result()]

    assert accepted.accepted.worker_id == worker.worker_id
    assert names_worker_first(replies, worker.worker_id)
    assert all(r.HasField("chunk") for r in replies[1:-1]) and replies[-1].result.ok
    assert (len(replies) > 2) is stream


async def test_with_no_accept_delay_every_job_replies_accepted_at_once(client: NATS, nats_url: str) -> None:
    async with in_process_worker(nats_url, accept_delay_s=0) as worker, inbox(client, worker.jobs_subject) as box:
        await box.send(make_job(stream=False))
        replies = await box.until_result()

    assert [r.WhichOneof("kind") for r in replies] == ["accepted", "result"]
    assert names_worker_first(replies, worker.worker_id)


async def test_chunks_are_relayed_as_the_upstream_sends_them(
    client: NATS, worker: InProcessWorker, openai_wire: UpstreamServer
) -> None:
    openai_wire.reset(HoldStream(after_chunks=3))
    async with inbox(client, worker.jobs_subject) as box:
        await box.send(openai_job(openai_wire, stream=True))
        early = [await box.next() for _ in range(3)]  # 3 chunks while the upstream holds
        # (it flags holding from its own thread, possibly after these arrived: wait for the flag)
        await openai_wire.wait_until(lambda u: u.holding)
        openai_wire.release()
        rest = await box.until_result()

    assert all(r.HasField("chunk") for r in early)
    assert names_worker_first(early + rest, worker.worker_id)
    assert chunk_texts(early + rest[:-1]) == story.REPLY_PIECES
    assert rest[-1].result.ok
    assert rest[-1].result.usage.prompt_tokens == story.REPLY_USAGE.prompt_tokens  # the upstream's own numbers
    assert rest[-1].result.usage.cached_tokens == story.REPLY_USAGE.cached_tokens


# --- failures -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "status", "retryable", "retry_after"),
    [
        ({"fail_status": "503"}, 503, True, 0.0),
        ({"fail_status": "429", "retry_after_s": "4"}, 429, True, 4.0),
        ({"fail_status": "400"}, 400, False, 0.0),
        ({"hang": "true"}, 504, True, 0.0),
    ],
    ids=["503", "429", "400", "timeout"],
)
@pytest.mark.parametrize("stream", [False, True])
async def test_a_failing_target_ends_with_an_error_result(
    client: NATS,
    worker: InProcessWorker,
    options: dict[str, str],
    status: int,
    retryable: bool,
    retry_after: float,
    stream: bool,
) -> None:
    async with inbox(client, worker.jobs_subject) as box:
        await box.send(make_job(options=options, stream=stream, timeout_s=0.4))
        replies = await box.until_result()

    # A failure answers at once; only the timeout outlasts the accept delay.
    assert [r.WhichOneof("kind") for r in replies] == (["accepted", "result"] if status == 504 else ["result"])
    assert names_worker_first(replies, worker.worker_id)
    result = replies[-1]
    error = result.result.error
    assert not result.result.ok
    assert (error.status, error.retryable, error.retry_after_s) == (status, retryable, retry_after)
    assert error.upstream_status == (0 if status == 504 else status)


async def test_an_unknown_provider_is_a_non_retryable_error(client: NATS, worker: InProcessWorker) -> None:
    async with inbox(client, worker.jobs_subject) as box:
        await box.send(make_job(provider="no-such-provider"))
        [result] = await box.until_result()

    assert result.worker_id == worker.worker_id
    assert not result.result.ok
    assert result.result.error.code == "unknown_provider" and not result.result.error.retryable


async def test_the_api_key_comes_from_the_named_environment_variable(
    client: NATS, worker: InProcessWorker, openai_wire: UpstreamServer, monkeypatch: pytest.MonkeyPatch, unique: str
) -> None:
    name = f"MR_TEST_KEY_{unique.upper()}"
    async with inbox(client, worker.jobs_subject) as box:
        await box.send(openai_job(openai_wire, api_key_env=name))
        missing = (await box.until_result())[-1].result
        monkeypatch.setenv(name, f"sk-{unique}")
        await box.send(openai_job(openai_wire, api_key_env=name))
        present = (await box.until_result())[-1].result

    assert not missing.ok and missing.error.code == "missing_api_key"
    assert present.ok
    assert [r.api_key for r in openai_wire.received] == [f"sk-{unique}"]


class _ExplodingAdapter(ProviderAdapter):
    name = "exploding"

    async def send(self, call: ProviderCall) -> ProviderResponse:
        raise RuntimeError("a bug in an adapter")

    async def stream(self, call: ProviderCall) -> AsyncIterator[StreamChunk]:
        raise RuntimeError("a bug in an adapter")
        yield  # pragma: no cover


async def test_a_bug_or_garbage_never_stops_the_loop(
    client: NATS, nats_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(REGISTRY, "exploding", _ExplodingAdapter)
    async with in_process_worker(nats_url) as worker, inbox(client, worker.jobs_subject) as box:
        await client.publish(worker.jobs_subject, b"\xff not a job")
        await box.send(make_job(provider="exploding"))
        bug = (await box.until_result())[-1].result
        await box.send(make_job())
        after = (await box.until_result())[-1].result

    assert not bug.ok and bug.error.status == 502 and bug.error.retryable
    assert after.ok


class _HugeAnswerAdapter(ProviderAdapter):
    name = "huge"

    async def send(self, call: ProviderCall) -> ProviderResponse:
        return ProviderResponse(body=b'{"data": "' + b"x" * 2_000_000 + b'"}', usage=Usage(prompt_tokens=3))

    async def stream(self, call: ProviderCall) -> AsyncIterator[StreamChunk]:
        raise NotImplementedError
        yield  # pragma: no cover


async def test_an_answer_too_big_for_one_nats_message_arrives_in_pieces(
    client: NATS, nats_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert client.max_payload < 2_000_000
    monkeypatch.setitem(REGISTRY, "huge", _HugeAnswerAdapter)
    async with in_process_worker(nats_url) as worker, inbox(client, worker.jobs_subject) as box:
        await box.send(make_job(provider="huge"))
        replies = await box.until_result()

    *pieces, result = replies
    assert names_worker_first(replies, worker.worker_id)
    assert len(pieces) >= 2 and all(p.HasField("chunk") for p in pieces)
    joined = orjson.loads(b"".join(p.chunk.data for p in pieces))
    # The adapter's answer whole, with the worker's router_metadata (answer_extras) added.
    assert joined.pop("router_metadata")["attempts"] == 1
    assert joined == {"data": "x" * 2_000_000}
    assert result.result.ok and result.result.body == b""
    assert result.result.usage.prompt_tokens == 3


# --- cancel ---------------------------------------------------------------------------------------


async def test_cancel_mid_stream_hangs_up_on_the_upstream_and_reports_partial_usage(
    client: NATS, worker: InProcessWorker, openai_wire: UpstreamServer
) -> None:
    openai_wire.reset(HoldStream(after_chunks=3))  # the role chunk, "The", " capital"
    job = openai_job(openai_wire, stream=True)
    async with inbox(client, worker.jobs_subject) as box:
        await box.send(job)
        chunks = [await box.next() for _ in range(3)]  # the first one names the worker
        await client.publish(
            subjects.cancel(chunks[0].worker_id),
            events_pb2.Cancel(request_id=job.request_id).SerializeToString(),
        )
        await openai_wire.wait_until(lambda u: u.hangups == 1)
        result = (await box.next()).result

    assert chunk_texts(chunks) == ["The", " capital"]
    assert not result.ok and result.error.type == "cancelled" and not result.error.retryable
    # No usage came from the upstream, so it is estimated from the text (4 characters a token).
    assert result.usage.prompt_tokens == estimate_tokens(len(story.QUESTION))
    assert result.usage.completion_tokens == estimate_tokens(len("The capital"))


# --- concurrency and drain ------------------------------------------------------------------------


async def test_a_slow_job_does_not_hold_up_the_next(
    client: NATS, worker: InProcessWorker, openai_wire: UpstreamServer
) -> None:
    openai_wire.reset(HoldStream(after_chunks=1))
    async with inbox(client, worker.jobs_subject) as slow, inbox(client, worker.jobs_subject) as fast:
        await slow.send(openai_job(openai_wire, stream=True))
        await openai_wire.wait_until(lambda u: u.holding)
        await fast.send(make_job())
        assert (await fast.until_result())[-1].result.ok
        assert openai_wire.holding
        openai_wire.release()
        assert (await slow.until_result())[-1].result.ok


async def test_worker_concurrency_bounds_the_jobs_in_flight(
    client: NATS, nats_url: str, openai_wire_server: UpstreamServer
) -> None:
    openai_wire_server.reset(HoldStream(after_chunks=1))
    async with (
        in_process_worker(nats_url, concurrency=1) as worker,
        inbox(client, worker.jobs_subject) as first,
        inbox(client, worker.jobs_subject) as second,
    ):
        await first.send(openai_job(openai_wire_server, stream=True))
        await openai_wire_server.wait_until(lambda u: u.holding)
        await second.send(make_job())
        with pytest.raises(TimeoutError):
            await second.next(timeout=0.5)  # not even accepted while the only slot is busy
        openai_wire_server.release()
        assert (await first.until_result())[-1].result.ok
        assert [r.WhichOneof("kind") for r in await second.until_result()] == ["result"]


async def test_drain_finishes_short_jobs_stops_long_ones_and_takes_no_more(client: NATS, nats_url: str) -> None:
    async with (
        in_process_worker(nats_url) as worker,
        inbox(client, worker.jobs_subject) as short,
        inbox(client, worker.jobs_subject) as long,
        inbox(client, worker.jobs_subject) as late,
    ):
        await short.send(make_job(options={"latency_ms": "300"}, stream=True))
        await long.send(make_job(options={"hang": "true"}, stream=True, timeout_s=60))
        assert (await short.next()).HasField("accepted") and (await long.next()).HasField("accepted")

        await worker.runner.drain(1.0)

        assert not worker.runner.ready()
        assert (await short.until_result())[-1].result.ok
        stopped = (await long.until_result())[-1].result
        assert stopped.error.code == "worker_shutdown" and stopped.error.retryable
        await late.send(make_job())
        with pytest.raises(TimeoutError):
            await late.next(timeout=0.5)


# --- tracing --------------------------------------------------------------------------------------


async def test_the_workers_span_is_a_child_of_the_traceparent_it_received(
    client: NATS, worker: InProcessWorker, openai_wire: UpstreamServer, spans: InMemorySpanExporter
) -> None:
    async with inbox(client, worker.jobs_subject) as box:
        with producer_span(worker.jobs_subject) as (gateway_span, headers):
            await box.send(openai_job(openai_wire), headers=headers)
        result = (await box.until_result())[-1].result
    gateway = gateway_span.get_span_context()

    def job_spans() -> list[object]:
        return [s for s in spans.get_finished_spans() if s.context.trace_id == gateway.trace_id]

    await eventually(lambda: len(job_spans()) >= 3)  # gateway, worker, upstream call
    by_kind = {s.kind: s for s in spans.get_finished_spans() if s.context.trace_id == gateway.trace_id}
    consumer, http_call = by_kind[SpanKind.CONSUMER], by_kind[SpanKind.CLIENT]
    assert consumer.parent is not None and consumer.parent.span_id == gateway.span_id
    assert http_call.parent is not None and http_call.parent.span_id == consumer.context.span_id
    assert result.traceparent.split("-")[1:3] == [f"{gateway.trace_id:032x}", f"{consumer.context.span_id:016x}"]
    assert consumer.attributes is not None and consumer.attributes["modelrouter.request_id"]
    # httpx's instrumentation carried the trace to the provider.
    assert openai_wire.received[0].headers["traceparent"].split("-")[2] == f"{http_call.context.span_id:016x}"
    assert os.environ.get("OTEL_SDK_DISABLED") != "true"
