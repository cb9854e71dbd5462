"""A minimal keep-alive HTTP/1.1 client that timestamps a streamed answer's first ``data:`` event.

Used for the streaming measurements (time to first token, whole-stream time) and for checking that
each target answers correctly before it is measured. Raw asyncio + httptools keep its own cost in
microseconds; it is the same for every target, so the *added over direct* figures cancel it out.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import httptools


class HttpError(RuntimeError):
    pass


@dataclass
class Answer:
    status: int
    body: bytes
    # Seconds from sending the request to the first body byte holding "data:", and to the last byte.
    first_event_s: float | None
    total_s: float


@dataclass
class _Reading:
    sent_at: float
    status: int = 0
    body: bytearray = field(default_factory=bytearray)
    first_event_at: float | None = None
    done: asyncio.Future[float] | None = None

    # httptools callbacks
    def on_status(self, status: bytes) -> None:
        pass

    def on_body(self, chunk: bytes) -> None:
        now = time.perf_counter()
        self.body += chunk
        # The marker may straddle two reads, so look at the tail of everything received so far.
        if self.first_event_at is None and b"data:" in self.body[-(len(chunk) + 5) :]:
            self.first_event_at = now

    def on_message_complete(self) -> None:
        if self.done is not None and not self.done.done():
            self.done.set_result(time.perf_counter())


class HttpConnection:
    """One connection to ``host:port``, requests sent one after another."""

    def __init__(self, host: str, port: int, host_header: str | None = None) -> None:
        self._host, self._port = host, port
        self._host_header = host_header or f"{host}:{port}"
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def __aenter__(self) -> HttpConnection:
        self._reader, self._writer = await asyncio.open_connection(self._host, self._port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._writer is not None:
            self._writer.close()
            await self._writer.wait_closed()

    def encode(self, path: str, body: bytes, key: str | None) -> bytes:
        auth = f"Authorization: Bearer {key}\r\n" if key else ""
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self._host_header}\r\nContent-Type: application/json\r\n"
            f"Accept: */*\r\n{auth}Content-Length: {len(body)}\r\n\r\n"
        )
        return head.encode() + body

    async def send(self, request: bytes, timeout_s: float = 30.0) -> Answer:
        """Send one pre-encoded request and read its whole answer."""
        if self._reader is None or self._writer is None:
            raise HttpError("not connected")
        loop = asyncio.get_running_loop()
        reading = _Reading(sent_at=time.perf_counter(), done=loop.create_future())
        parser = httptools.HttpResponseParser(reading)
        self._writer.write(request)
        assert reading.done is not None
        async with asyncio.timeout(timeout_s):
            while not reading.done.done():
                data = await self._reader.read(65536)
                if not data:
                    raise HttpError("connection closed before the answer ended")
                parser.feed_data(data)
        ended_at = reading.done.result()
        first = reading.first_event_at
        return Answer(
            status=parser.get_status_code(),
            body=bytes(reading.body),
            first_event_s=None if first is None else first - reading.sent_at,
            total_s=ended_at - reading.sent_at,
        )
