"""A job's replies: the first one names the worker, and ``accepted`` goes out only for a job that has
sent nothing within the accept delay (a fast job answers with one NATS message)."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest
from nats.aio.client import Client as NATS
from nats.errors import MaxPayloadError

from modelrouter.events.v1 import events_pb2
from workers.job import Replies

SUBJECT = "mr.v1.reply.gw.req"
DELAY_S = 0.05


class _RecordingNats:
    """What nats-py's publish does that matters here: queue synchronously, in call order."""

    def __init__(self, max_payload: int = 1 << 20) -> None:
        self.sent: list[events_pb2.Reply] = []
        self.max_payload = max_payload

    async def publish(self, subject: str, payload: bytes = b"", **_: Any) -> None:
        assert subject == SUBJECT
        if len(payload) > self.max_payload:
            raise MaxPayloadError
        self.sent.append(events_pb2.Reply.FromString(payload))


def kinds(nc: _RecordingNats) -> list[tuple[str | None, str]]:
    return [(r.WhichOneof("kind"), r.worker_id) for r in nc.sent]


def replies_on(nc: _RecordingNats, delay_s: float = DELAY_S) -> Replies:
    return Replies(cast(NATS, nc), SUBJECT, "w1", delay_s)


def result() -> events_pb2.Reply:
    return events_pb2.Reply(result=events_pb2.Result(ok=True))


def chunk(data: bytes = b"{}") -> events_pb2.Reply:
    return events_pb2.Reply(chunk=events_pb2.Chunk(data=data))


async def test_a_job_done_within_the_delay_sends_only_its_result_naming_the_worker() -> None:
    nc = _RecordingNats()
    replies = replies_on(nc)
    await replies.send(result())
    replies.close()
    await asyncio.sleep(3 * DELAY_S)
    assert kinds(nc) == [("result", "w1")]


async def test_a_job_silent_past_the_delay_sends_accepted_then_unnamed_replies() -> None:
    nc = _RecordingNats()
    replies = replies_on(nc)
    await asyncio.sleep(3 * DELAY_S)
    await replies.send(chunk())
    await replies.send(result())
    replies.close()
    assert kinds(nc) == [("accepted", "w1"), ("chunk", ""), ("result", "")]
    assert nc.sent[0].accepted.worker_id == "w1"


async def test_a_chunk_sent_after_the_timer_fired_but_before_accepted_went_out_wins() -> None:
    nc = _RecordingNats()
    replies = replies_on(nc)
    replies._accept_late()  # the timer fires; its send is only scheduled
    await replies.send(chunk())  # the job's first chunk gets there first
    await asyncio.sleep(0)  # the scheduled accepted runs now, and must stay quiet
    await replies.send(result())
    replies.close()
    assert kinds(nc) == [("chunk", "w1"), ("result", "")]


async def test_a_first_reply_refused_as_too_large_leaves_the_naming_to_the_next() -> None:
    nc = _RecordingNats(max_payload=100)
    replies = replies_on(nc)
    with pytest.raises(MaxPayloadError):
        await replies.send(chunk(b"x" * 200))
    await replies.send(result())
    replies.close()
    assert kinds(nc) == [("result", "w1")]


async def test_no_accepted_after_the_job_closed_its_replies() -> None:
    nc = _RecordingNats()
    replies = replies_on(nc)
    replies.close()
    await asyncio.sleep(3 * DELAY_S)
    assert nc.sent == []
