"""The gateway's SSE answer: frames sent as they come, and a client that hangs up mid-stream stops the
stream and closes its frames (whose ``finally`` is where the request gets accounted)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Any

from gateway.responses import EventStreamResponse

SCOPE: dict[str, Any] = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "method": "POST"}


class Client:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.leave = asyncio.Event()

    async def receive(self) -> dict[str, Any]:
        await self.leave.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)


async def test_frames_are_sent_in_order_then_the_end() -> None:
    async def frames() -> AsyncGenerator[bytes, None]:
        yield b"data: 1\n\n"
        yield b"data: 2\n\n"

    client = Client()
    await EventStreamResponse(frames(), {"x-request-id": "r1"})(SCOPE, client.receive, client.send)
    start, *bodies = client.sent
    assert start["status"] == 200
    headers = dict(start["headers"])
    assert headers[b"content-type"] == b"text/event-stream; charset=utf-8"
    assert headers[b"cache-control"] == b"no-cache"
    assert headers[b"x-request-id"] == b"r1"
    assert b"content-length" not in headers
    assert [(b["body"], b["more_body"]) for b in bodies] == [
        (b"data: 1\n\n", True),
        (b"data: 2\n\n", True),
        (b"", False),
    ]


async def test_a_client_that_leaves_stops_the_stream_and_closes_the_frames() -> None:
    closed = asyncio.Event()
    client = Client()

    async def frames() -> AsyncGenerator[bytes, None]:
        try:
            yield b"data: 1\n\n"
            client.leave.set()
            await asyncio.sleep(30)  # an upstream that would go on for a long time
            yield b"data: never\n\n"
        finally:
            closed.set()

    async with asyncio.timeout(5):  # in this task, as the server runs it
        await EventStreamResponse(frames())(SCOPE, client.receive, client.send)
    assert closed.is_set()
    assert [m.get("body") for m in client.sent[1:]] == [b"data: 1\n\n"]  # no end of stream: nobody is there
    current = asyncio.current_task()
    assert current is not None and current.cancelling() == 0  # the cancellation was taken back
    await asyncio.sleep(0)  # and no cancellation is left pending to hit the next await
