"""Waiting on a worker's replies: heartbeats are skipped, silence means a lost worker, and a client
that leaves always cancels the wait, even when a reply lands in the same instant."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from common.errors import WorkerLostError
from gateway.attempt import Attempt
from modelrouter.events.v1 import events_pb2
from modelrouter.router.v1 import router_pb2


class _Hub:
    def close(self, key: str) -> None:
        pass


def _attempt(heartbeat_s: float = 0.05) -> Attempt:
    attempt = Attempt(_Hub(), "r1", asyncio.Queue(), router_pb2.Target())  # type: ignore[arg-type]
    attempt.named_by(events_pb2.Reply(worker_id="w1", heartbeat_s=heartbeat_s))
    return attempt


def _heartbeat() -> events_pb2.Reply:
    return events_pb2.Reply(heartbeat=events_pb2.Heartbeat())


def _result() -> events_pb2.Reply:
    return events_pb2.Reply(result=events_pb2.Result(ok=True, body=b"{}"))


async def test_heartbeats_are_skipped_until_a_real_reply() -> None:
    attempt = _attempt()
    for _ in range(3):
        attempt.queue.put_nowait(_heartbeat())
    attempt.queue.put_nowait(_result())
    assert (await attempt.next(1.0)).HasField("result")


async def test_a_silent_worker_is_lost_after_its_heartbeats() -> None:
    attempt = _attempt(heartbeat_s=0.02)
    with pytest.raises(WorkerLostError):
        await attempt.next(5.0)


async def test_a_quiet_but_beating_worker_times_out_only_at_the_deadline() -> None:
    attempt = _attempt(heartbeat_s=0.02)

    async def beat() -> None:
        while True:
            await asyncio.sleep(0.01)
            attempt.queue.put_nowait(_heartbeat())

    beating = asyncio.create_task(beat())
    try:
        with pytest.raises(TimeoutError):
            await attempt.next(0.2)
    finally:
        beating.cancel()


@pytest.mark.parametrize("known_worker", [True, False], ids=["heartbeats", "worker-from-before"])
async def test_a_cancel_that_lands_with_a_reply_is_not_lost(known_worker: bool) -> None:
    """The client hangs up in the very loop iteration a heartbeat (or the answer) arrives. Python
    3.11's ``asyncio.wait_for`` then returns the reply and drops the cancel, so the request went on
    to be answered to nobody and billed as a success."""
    for reply in (_heartbeat(), _result()):
        attempt = _attempt() if known_worker else Attempt(_Hub(), "r", asyncio.Queue(), router_pb2.Target())  # type: ignore[arg-type]
        waiting: asyncio.Task[Any] = asyncio.create_task(attempt.next(10.0))
        for _ in range(3):
            await asyncio.sleep(0)  # the wait is parked on the empty queue
        attempt.queue.put_nowait(reply)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
