"""A fast OpenAI-compatible upstream for the benchmark: ``POST /v1/chat/completions`` only.

A raw asyncio protocol on uvloop with httptools' parser, so it costs far less per request than
anything it is measured against. Answers after a fixed latency; streams ``--chunks`` content
chunks ``--chunk-interval-ms`` apart (plus the usage chunk when ``stream_options.include_usage``).

    python -m bench.mock_upstream --port 9100 [--latency-ms 0] [--chunks 20] [--chunk-interval-ms 1]
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import time
from dataclasses import dataclass
from typing import Any, cast

import httptools
import orjson
import uvloop

PATH = b"/v1/chat/completions"
WORD = "tok "


@dataclass(frozen=True)
class Behaviour:
    latency_s: float = 0.0
    chunks: int = 20
    chunk_interval_s: float = 0.001


def completion(model: str, n_words: int) -> bytes:
    return orjson.dumps(
        {
            "id": "chatcmpl-bench",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": WORD * n_words},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 9, "completion_tokens": n_words, "total_tokens": 9 + n_words},
        }
    )


def stream_events(model: str, chunks: int, include_usage: bool) -> list[bytes]:
    """The SSE events of one streamed answer, each already framed as an HTTP/1.1 chunk."""
    created = int(time.time())
    base: dict[str, Any] = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": created}
    payloads: list[dict[str, Any]] = []
    for i in range(chunks):
        delta = {"role": "assistant", "content": WORD} if i == 0 else {"content": WORD}
        last = i == chunks - 1
        choice = {"index": 0, "delta": delta, "finish_reason": "stop" if last else None}
        payloads.append({**base, "model": model, "choices": [choice]})
    if include_usage:
        usage = {"prompt_tokens": 9, "completion_tokens": chunks, "total_tokens": 9 + chunks}
        payloads.append({**base, "model": model, "choices": [], "usage": usage})
    events = [b"data: " + orjson.dumps(p) + b"\n\n" for p in payloads] + [b"data: [DONE]\n\n"]
    return [b"%x\r\n%s\r\n" % (len(e), e) for e in events]


JSON_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
SSE_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n"
)
LAST_CHUNK = b"0\r\n\r\n"


def _error(status: bytes, message: bytes) -> bytes:
    body = b'{"error":"%s"}' % message
    return b"HTTP/1.1 %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (status, len(body), body)


NOT_FOUND = _error(b"404 Not Found", b"not found")
BAD_REQUEST = _error(b"400 Bad Request", b"bad body")


class UpstreamProtocol(asyncio.Protocol):
    """One keep-alive connection; requests are answered in order (no client here pipelines)."""

    def __init__(self, behaviour: Behaviour) -> None:
        self._behaviour = behaviour
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._url = b""
        self._body: list[bytes] = []
        self._streams: set[asyncio.Task[None]] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCP transport implements asyncio.Transport without subclassing it.
        self._transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        for task in self._streams:
            task.cancel()

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            if self._transport is not None:
                self._transport.close()

    # httptools callbacks
    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        url, body = self._url, b"".join(self._body)
        self._url, self._body = b"", []
        self._answer(url, body)

    def _answer(self, url: bytes, body: bytes) -> None:
        if url.split(b"?", 1)[0] != PATH:
            self._write(NOT_FOUND)
            return
        try:
            request = orjson.loads(body)
            model = str(request.get("model", "mock"))
        except (orjson.JSONDecodeError, AttributeError):
            self._write(BAD_REQUEST)
            return
        if request.get("stream"):
            options = request.get("stream_options")
            include_usage = isinstance(options, dict) and bool(options.get("include_usage"))
            events = stream_events(model, self._behaviour.chunks, include_usage)
            task = asyncio.get_running_loop().create_task(self._stream(events))
            self._streams.add(task)
            task.add_done_callback(self._streams.discard)
            return
        answer = completion(model, self._behaviour.chunks)
        response = JSON_HEAD % len(answer) + answer
        if self._behaviour.latency_s > 0:
            asyncio.get_running_loop().call_later(self._behaviour.latency_s, self._write, response)
        else:
            self._write(response)

    async def _stream(self, events: list[bytes]) -> None:
        if self._behaviour.latency_s > 0:
            await asyncio.sleep(self._behaviour.latency_s)
        self._write(SSE_HEAD)
        interval = self._behaviour.chunk_interval_s
        if interval <= 0:
            self._write(b"".join(events) + LAST_CHUNK)
            return
        for i, event in enumerate(events):
            if i:
                await asyncio.sleep(interval)
            self._write(event)
        self._write(LAST_CHUNK)

    def _write(self, data: bytes) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)


async def serve(host: str, port: int, behaviour: Behaviour) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: UpstreamProtocol(behaviour), host, port, backlog=1024)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--latency-ms", type=float, default=0.0, help="fixed delay before the answer")
    parser.add_argument("--chunks", type=int, default=20, help="content chunks per streamed answer")
    parser.add_argument("--chunk-interval-ms", type=float, default=1.0, help="delay between streamed chunks")
    args = parser.parse_args()
    behaviour = Behaviour(args.latency_ms / 1000, args.chunks, args.chunk_interval_ms / 1000)
    uvloop.run(serve(args.host, args.port, behaviour))


if __name__ == "__main__":
    main()
