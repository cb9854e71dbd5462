"""What a worker does so that a gateway can tell it from a dead one, and so that a request too big for
one NATS message still reaches it, over real NATS:

- the first reply promises heartbeats (``Reply.heartbeat_s``), and a job whose upstream is quiet sends
  one at least that often until its result;
- each streamed chunk says what it adds to the bill (its text, and the prompt's estimate on the first);
- a body left out of the Job is fetched from the gateway that holds it (``gateway.job_bodies``), and a
  body the gateway no longer holds ends the job with a clear, non-retryable error."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import orjson
import pytest
from nats.aio.client import Client as NATS

from common.messaging import connect_nats
from gateway.job_bodies import ENVELOPE_BYTES, JobBodies
from modelrouter.events.v1 import events_pb2
from tests.contract import story
from tests.contract.server import Answer, Stall, UpstreamServer
from tests.contract.worker_jobs import in_process_worker, inbox, make_job
from workers.usage import estimate_tokens

pytestmark = pytest.mark.integration

HEARTBEAT_S = 0.2


@pytest.fixture
async def client(nats_url: str) -> AsyncIterator[NATS]:
    nc = await connect_nats(nats_url, "test-workers-liveness")
    yield nc
    await nc.drain()


@pytest.fixture
async def bodies(client: NATS) -> AsyncIterator[JobBodies]:
    held = JobBodies(client, f"gw{uuid.uuid4().hex[:8]}")
    await held.start()
    yield held
    await held.stop()


async def timed_replies(box: object, timeout: float = 10.0) -> list[tuple[float, events_pb2.Reply]]:
    replies: list[tuple[float, events_pb2.Reply]] = []
    while not replies or not replies[-1][1].HasField("result"):
        reply = await box.next(timeout)  # type: ignore[attr-defined]
        replies.append((time.monotonic(), reply))
    return replies


async def test_a_quiet_job_sends_heartbeats_until_its_result(
    client: NATS, nats_url: str, openai_wire: UpstreamServer
) -> None:
    openai_wire.reset(Stall(seconds=1.5))
    body = {"model": "m", "messages": [{"role": "user", "content": story.QUESTION}]}
    async with (
        in_process_worker(nats_url, heartbeat_s=HEARTBEAT_S) as worker,
        inbox(client, worker.jobs_subject) as box,
    ):
        sent_at = time.monotonic()
        await box.send(make_job(provider="openai", base_url=openai_wire.base_url, body=body))
        replies = await timed_replies(box)

    first, result = replies[0][1], replies[-1][1]
    assert first.HasField("accepted") and first.worker_id == worker.worker_id
    assert first.heartbeat_s == pytest.approx(HEARTBEAT_S)
    beats = [r for _, r in replies if r.HasField("heartbeat")]
    assert len(beats) >= 5, replies  # 1.5 s of silence at a beat per 0.2 s at most
    assert not any(r.worker_id for _, r in replies[1:])
    gaps = [later - earlier for (earlier, _), (later, _) in zip([(sent_at, None), *replies], replies, strict=False)]
    assert max(gaps[1:]) < HEARTBEAT_S + 0.15, gaps  # never silent for a whole interval (plus slack)
    assert result.result.ok


async def test_a_fast_job_sends_no_heartbeat(client: NATS, nats_url: str) -> None:
    async with (
        in_process_worker(nats_url, heartbeat_s=HEARTBEAT_S) as worker,
        inbox(client, worker.jobs_subject) as box,
    ):
        await box.send(make_job(stream=True))
        replies = await box.until_result()
        await asyncio.sleep(2 * HEARTBEAT_S)  # nothing more after the result either
        assert box.replies.empty()
    assert not any(r.HasField("heartbeat") for r in replies)


async def test_streamed_chunks_carry_what_they_add_to_the_bill(
    client: NATS, nats_url: str, openai_wire: UpstreamServer
) -> None:
    openai_wire.reset(Answer())
    body = {"model": "m", "messages": [{"role": "user", "content": story.QUESTION}], "stream": True}
    async with in_process_worker(nats_url) as worker, inbox(client, worker.jobs_subject) as box:
        await box.send(make_job(provider="openai", base_url=openai_wire.base_url, body=body, stream=True))
        *chunks, _ = await box.until_result()

    texts = []
    for reply in chunks:
        for choice in orjson.loads(reply.chunk.data)["choices"]:
            texts.append(choice["delta"].get("content") or "")
    assert sum(r.chunk.text_chars for r in chunks) == len("".join(texts)) > 0
    assert chunks[0].chunk.prompt_tokens == estimate_tokens(len(story.QUESTION))
    assert all(r.chunk.prompt_tokens == 0 for r in chunks[1:])


async def test_a_body_left_out_of_the_job_is_fetched_from_the_gateway(
    client: NATS, nats_url: str, bodies: JobBodies, openai_wire: UpstreamServer
) -> None:
    openai_wire.reset(Answer())
    long_text = "x" * (3 * client.max_payload)  # three pieces and then some
    body = orjson.dumps({"model": "m", "messages": [{"role": "user", "content": long_text}]})
    assert not bodies.fits_in_job(body)
    job = make_job(provider="openai", base_url=openai_wire.base_url)
    job.body = b""
    job.body_subject = bodies.hold(job.request_id, body)
    job.body_size = len(body)
    async with in_process_worker(nats_url) as worker, inbox(client, worker.jobs_subject) as box:
        await box.send(job)
        replies = await box.until_result()

    assert replies[-1].result.ok, replies[-1]
    (received,) = openai_wire.received
    assert received.body["messages"][0]["content"] == long_text
    assert len(body) > 3 * (client.max_payload - ENVELOPE_BYTES)


async def test_a_body_the_gateway_no_longer_holds_fails_the_job_clearly(
    client: NATS, nats_url: str, bodies: JobBodies, openai_wire: UpstreamServer
) -> None:
    openai_wire.reset(Answer())
    job = make_job(provider="openai", base_url=openai_wire.base_url)
    job.body = b""
    job.body_subject = bodies.hold(job.request_id, b"{}" * client.max_payload)
    job.body_size = 2 * client.max_payload
    bodies.release(job.request_id)  # the request ended before the worker came for its body
    async with in_process_worker(nats_url) as worker, inbox(client, worker.jobs_subject) as box:
        await box.send(job)
        replies = await box.until_result()

    result = replies[-1].result
    assert not result.ok and not result.error.retryable
    assert result.error.code == "request_body_unavailable"
    assert openai_wire.received == []
