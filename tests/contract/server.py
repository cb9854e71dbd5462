"""A real HTTP server on 127.0.0.1 (uvicorn in a thread, ephemeral port) that plays a provider's API.

What it does with the next request is a provider-neutral *scenario* set by the test; how that looks on
the wire (paths, JSON shapes, SSE framing, error bodies) comes from the provider's ``Wire``. Real
sockets, so connection pooling, timeouts, hang-ups and dropped connections are real too.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson
import uvicorn

# --- scenarios: what the upstream does with a request ---------------------------------------------


@dataclass(frozen=True)
class Answer:
    """Answer with the recorded fixture ``name`` (its streamed form when the request streams)."""

    fixture: str = "chat"


@dataclass(frozen=True)
class Fail:
    status: int
    message: str
    retry_after: str | None = None


@dataclass(frozen=True)
class Stall:
    """Say nothing for ``seconds``, then answer."""

    seconds: float
    fixture: str = "chat"


@dataclass(frozen=True)
class DieMidStream:
    """Stream ``after_chunks`` events, then drop the connection (``abrupt``) or end the response
    cleanly without the rest (a server that stopped early)."""

    after_chunks: int
    abrupt: bool = True
    fixture: str = "chat"


@dataclass(frozen=True)
class HoldStream:
    """Stream ``after_chunks`` events, then wait until ``release()`` or the client hangs up."""

    after_chunks: int
    fixture: str = "chat"


Scenario = Answer | Fail | Stall | DieMidStream | HoldStream


# --- what a provider's fake upstream module supplies ----------------------------------------------


@dataclass
class Received:
    """One request as the upstream saw it: raw facts plus what the wire module read out of it."""

    path: str
    headers: Mapping[str, str]
    body: dict[str, Any]
    client_port: int
    api_key: str | None = None
    model: str | None = None
    stream: bool = False
    tool_names: list[str] = field(default_factory=list)
    tool_results: list[tuple[str, str]] = field(default_factory=list)  # (tool call id, content)


# What a provider's API may not have; a Wire lists those it lacks in an optional ``lacks`` attribute.
#   "tools":         no tool calling; the adapter must refuse a request with tools (InvalidRequestError)
#                    without calling the upstream.
#   "cached_tokens": no cached-prompt-token count in its usage; the adapter reports 0.
#   "passthrough":   a translated API where fields the gateway does not know cannot be forwarded; the
#                    adapter must refuse them (InvalidRequestError) rather than drop them silently.
#   "model_name":    the server runs one model and requests name none (TGI's native API).
FEATURES = frozenset({"tools", "cached_tokens", "passthrough", "model_name"})


class Wire(Protocol):
    """A provider's wire format, as its fake upstream module defines it (``WIRE = ...``)."""

    base_path: str  # appended to http://127.0.0.1:<port> to make the adapter's base URL
    stream_media_type: str
    # optional: lacks: frozenset[str], a subset of FEATURES (see lacks_of)

    def read(self, received: Received) -> None:
        """Fill ``received``'s provider-neutral fields (api_key, model, stream, tools) from the request."""

    def answer(self, fixture: str, received: Received) -> bytes:
        """The whole (non-streaming) response body for ``fixture``."""

    def stream(self, fixture: str, received: Received) -> list[bytes]:
        """The streamed response for ``fixture``: each item one complete event as sent on the wire,
        terminator included, honouring what the request asked for (e.g. usage)."""

    def error(self, status: int, message: str) -> bytes:
        """The provider's error body for an HTTP ``status``."""


def lacks_of(wire: Wire) -> frozenset[str]:
    lacks: frozenset[str] = getattr(wire, "lacks", frozenset())
    unknown = lacks - FEATURES
    assert not unknown, f"{type(wire).__name__}.lacks names unknown features: {sorted(unknown)}"
    return lacks


# --- the server -----------------------------------------------------------------------------------


class UpstreamServer:
    def __init__(self, wire: Wire) -> None:
        self.wire = wire
        self.scenario: Scenario = Answer()
        self.received: list[Received] = []
        self.hangups = 0  # clients that disconnected before a stream ended
        self.holding = False
        self._changed = threading.Condition()
        self._release: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.wire.base_path}"

    # lifecycle

    def start(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self._app,
            interface="asgi3",
            lifespan="off",
            log_level="error",
            timeout_graceful_shutdown=1,
            access_log=False,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, daemon=True)
        self._thread.start()
        started = threading.Event()
        deadline = time.monotonic() + 10
        while not self._server.started:  # uvicorn flags it; nothing to wait on but the flag
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the fake upstream did not start within 10s")
            started.wait(0.01)

    def stop(self) -> None:
        assert self._server is not None and self._thread is not None
        self.release()
        self._server.should_exit = True
        self._thread.join(timeout=10)

    def __enter__(self) -> UpstreamServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def reset(self, scenario: Scenario | None = None) -> None:
        with self._changed:
            self.scenario = scenario or Answer()
            self.received.clear()
            self.hangups = 0
            self.holding = False

    # test-side controls

    def release(self) -> None:
        """Let a HoldStream go on."""
        if self._loop is not None and self._release is not None:
            self._loop.call_soon_threadsafe(self._release.set)

    async def wait_until(self, condition: Callable[[UpstreamServer], bool], timeout: float = 15.0) -> None:
        """Block until ``condition`` holds. The timeout is generous on purpose: a state reached in
        milliseconds normally, but a stalled CI VM has taken over 5 s."""

        def _wait() -> bool:
            with self._changed:
                return self._changed.wait_for(lambda: condition(self), timeout)

        if not await asyncio.to_thread(_wait):
            raise AssertionError(
                f"the fake upstream did not reach the expected state within {timeout}s: it received "
                f"{[r.path for r in self.received]}, {self.hangups} hang-ups, holding={self.holding}, "
                f"scenario {self.scenario}"
            )

    def _update(self, change: Callable[[], None]) -> None:
        with self._changed:
            change()
            self._changed.notify_all()

    # the ASGI app (runs on the server thread's loop)

    async def _app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self._loop = asyncio.get_running_loop()
        raw = b""
        while True:
            message = await receive()
            raw += message.get("body", b"")
            if not message.get("more_body"):
                break
        received = Received(
            path=scope["path"],
            headers={k.decode().lower(): v.decode() for k, v in scope["headers"]},
            body=orjson.loads(raw) if raw else {},
            client_port=scope["client"][1],
        )
        self.wire.read(received)
        scenario = self.scenario
        self._update(lambda: self.received.append(received))

        if isinstance(scenario, Fail):
            headers = [(b"content-type", b"application/json")]
            if scenario.retry_after is not None:
                headers.append((b"retry-after", scenario.retry_after.encode()))
            await _respond(send, scenario.status, headers, self.wire.error(scenario.status, scenario.message))
            return
        if isinstance(scenario, Stall):
            await asyncio.sleep(scenario.seconds)
        if not received.stream:
            body = self.wire.answer(scenario.fixture, received)
            await _respond(send, 200, [(b"content-type", b"application/json")], body)
            return
        await self._stream(scenario, self.wire.stream(scenario.fixture, received), receive, send)

    async def _stream(self, scenario: Scenario, events: list[bytes], receive: Any, send: Any) -> None:
        media = self.wire.stream_media_type.encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", media)]})
        stop_at = scenario.after_chunks if isinstance(scenario, DieMidStream | HoldStream) else len(events)
        for event in events[:stop_at]:
            await send({"type": "http.response.body", "body": event, "more_body": True})
        if isinstance(scenario, DieMidStream) and scenario.abrupt:
            # An exception after the response started makes uvicorn drop the connection mid-body.
            raise ConnectionAbortedError("the fake upstream dies mid-stream")
        if isinstance(scenario, HoldStream):
            if not await self._hold(receive):
                return
            for event in events[stop_at:]:
                await send({"type": "http.response.body", "body": event, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _hold(self, receive: Any) -> bool:
        """Wait for release (True) or the client hanging up (False)."""
        self._release = asyncio.Event()
        self._update(lambda: setattr(self, "holding", True))
        hangup = asyncio.ensure_future(receive())  # the body is read: the next message is a disconnect
        released = asyncio.ensure_future(self._release.wait())
        done, pending = await asyncio.wait({hangup, released}, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        self._update(lambda: setattr(self, "holding", False))
        if hangup in done:
            self._update(lambda: setattr(self, "hangups", self.hangups + 1))
            return False
        return True


async def _respond(send: Any, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


def closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main() -> None:
    """``python -m tests.contract.server <provider>``: serve that provider's fake upstream (plain
    answers) in a process of its own, print the port, and run until SIGTERM."""
    import signal
    import sys

    from tests.contract.upstreams import wire_of

    server = UpstreamServer(wire_of(sys.argv[1]))
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})  # for sigwait below
    server.start()
    print(server.port, flush=True)
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    server.stop()


if __name__ == "__main__":
    main()
