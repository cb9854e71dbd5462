"""One request through gateway → router → worker → (fake) upstream and back, usage into Postgres,
driven with the official openai SDK against the four services running as processes."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import httpx
import openai
import pytest

from tests.e2e.conftest import KEY, RunningStack

pytestmark = pytest.mark.e2e

T = TypeVar("T")
HELLO = [{"role": "user", "content": "Hello there"}]


async def eventually(probe: Callable[[], Awaitable[T]], ok: Callable[[T], bool], timeout: float = 15.0) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if ok(value) or time.monotonic() > deadline:
            return value
        await asyncio.sleep(0.1)


async def one_row(stack: RunningStack, request_id: str) -> Any:
    rows = await eventually(lambda: stack.usage_rows(request_id), lambda r: len(r) >= 1)
    assert len(rows) == 1, rows
    return rows[0]


async def test_chat_completion(running_stack: RunningStack) -> None:
    raw = running_stack.client().chat.completions.with_raw_response.create(model="demo", messages=HELLO)
    completion = raw.parse()
    assert completion.object == "chat.completion"
    assert completion.choices[0].message.role == "assistant"
    assert "Hello there" in (completion.choices[0].message.content or "")
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None and completion.usage.completion_tokens > 0

    row = await one_row(running_stack, raw.headers["x-request-id"])
    assert row["status"] == "success"
    assert row["key_id"] == "e2e-team"
    assert row["requested_model"] == "demo"
    assert row["deployment_id"] == running_stack.deployment("demo")
    assert row["upstream_model"] == "fake-1"
    assert row["prompt_tokens"] == completion.usage.prompt_tokens
    assert row["completion_tokens"] == completion.usage.completion_tokens
    assert row["total_tokens"] == completion.usage.total_tokens
    expected_cost = completion.usage.prompt_tokens * 0.5 / 1000 + completion.usage.completion_tokens * 1.5 / 1000
    assert float(row["cost_usd"]) == pytest.approx(expected_cost)
    assert row["latency_ms"] > 0


async def test_streaming_with_usage(running_stack: RunningStack) -> None:
    raw = running_stack.client().chat.completions.with_raw_response.create(
        model="demo", messages=HELLO, stream=True, stream_options={"include_usage": True}
    )
    assert raw.headers["content-type"].startswith("text/event-stream")
    chunks = list(raw.parse())
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "Hello there" in text
    assert len([c for c in chunks if c.choices]) > 2, "the answer should arrive in several chunks"
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    assert all(c.usage is None for c in chunks[:-1])

    row = await one_row(running_stack, raw.headers["x-request-id"])
    assert row["status"] == "success" and row["stream"] is True
    assert row["completion_tokens"] == last.usage.completion_tokens
    assert row["prompt_tokens"] == last.usage.prompt_tokens
    assert row["ttft_ms"] is not None and 0 < row["ttft_ms"] <= row["latency_ms"]


async def test_streaming_without_include_usage_has_no_usage_chunk(running_stack: RunningStack) -> None:
    chunks = list(running_stack.client().chat.completions.create(model="demo", messages=HELLO, stream=True))
    assert chunks and all(c.choices for c in chunks)
    assert all(c.usage is None for c in chunks)


async def test_sse_wire_format_ends_with_done(running_stack: RunningStack) -> None:
    async with (
        httpx.AsyncClient() as http,
        http.stream(
            "POST",
            f"{running_stack.base_url}/v1/chat/completions",
            json={"model": "demo", "messages": HELLO, "stream": True},
            headers={"Authorization": f"Bearer {KEY}"},
        ) as response,
    ):
        body = b"".join([part async for part in response.aiter_bytes()])
    events = body.split(b"\n\n")
    assert events[-1] == b""
    assert events[-2] == b"data: [DONE]"
    assert all(e.startswith(b"data: {") for e in events[:-2])


def test_models_list_and_retrieve(running_stack: RunningStack) -> None:
    client = running_stack.client()
    models = {m.id: m for m in client.models.list()}
    assert {"demo", "failover", "limited"} <= set(models)
    assert models["demo"].owned_by == "fake"
    assert client.models.retrieve("demo").id == "demo"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-model")


def test_bad_key_is_authentication_error(running_stack: RunningStack) -> None:
    with pytest.raises(openai.AuthenticationError) as err:
        running_stack.client(key="sk-not-a-real-key-000").chat.completions.create(model="demo", messages=HELLO)
    assert err.value.status_code == 401
    assert "sk-not-a-real-key-000" not in str(err.value)


async def test_unknown_model_is_not_found_and_still_accounted(running_stack: RunningStack) -> None:
    with pytest.raises(openai.NotFoundError) as err:
        running_stack.client().chat.completions.with_raw_response.create(model="no-such-model", messages=HELLO)
    assert err.value.code == "model_not_found"
    row = await one_row(running_stack, err.value.response.headers["x-request-id"])
    assert row["status"] == "error" and row["http_status"] == 404


def test_malformed_json_is_400_in_openai_shape(running_stack: RunningStack) -> None:
    response = httpx.post(
        f"{running_stack.base_url}/v1/chat/completions",
        content=b'{"model": "demo", "messages": [',
        headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"},
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"


async def test_failover_to_the_second_deployment(running_stack: RunningStack) -> None:
    raw = running_stack.client().chat.completions.with_raw_response.create(model="failover", messages=HELLO)
    assert "Hello there" in (raw.parse().choices[0].message.content or "")
    row = await one_row(running_stack, raw.headers["x-request-id"])
    assert row["status"] == "success"
    assert row["deployment_id"] == running_stack.deployment("good")
    assert row["attempts"] == 2


async def test_streaming_failover_before_first_byte(running_stack: RunningStack) -> None:
    raw = running_stack.client().chat.completions.with_raw_response.create(
        model="failover", messages=HELLO, stream=True
    )
    text = "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices)
    assert "Hello there" in text
    row = await one_row(running_stack, raw.headers["x-request-id"])
    assert row["deployment_id"] == running_stack.deployment("good") and row["attempts"] == 2


async def test_every_target_rate_limited_is_429_with_retry_after(running_stack: RunningStack) -> None:
    client = running_stack.client()
    client.chat.completions.create(model="limited", messages=HELLO)  # takes the only slot this minute
    with pytest.raises(openai.RateLimitError) as err:
        client.chat.completions.create(model="limited", messages=HELLO)
    retry_after = int(err.value.response.headers["retry-after"])
    # The router's two-window sliding estimate frees a slot at most two windows after it was taken.
    assert 1 <= retry_after <= 120
    row = await one_row(running_stack, err.value.response.headers["x-request-id"])
    assert row["status"] == "error" and row["http_status"] == 429


async def test_upstream_timeout_is_504(running_stack: RunningStack) -> None:
    with pytest.raises(openai.APIStatusError) as err:
        running_stack.client().chat.completions.create(model="slow", messages=HELLO)
    assert err.value.status_code == 504
    row = await one_row(running_stack, err.value.response.headers["x-request-id"])
    assert row["status"] == "error" and row["http_status"] == 504


async def test_upstream_dying_mid_stream_ends_with_in_band_error(running_stack: RunningStack) -> None:
    async with (
        httpx.AsyncClient(timeout=10) as http,
        http.stream(
            "POST",
            f"{running_stack.base_url}/v1/chat/completions",
            json={"model": "dying", "messages": HELLO, "stream": True},
            headers={"Authorization": f"Bearer {KEY}"},
        ) as response,
    ):
        assert response.status_code == 200
        request_id = response.headers["x-request-id"]
        events = [e async for e in response.aiter_lines() if e]
    assert events[0].startswith("data: {")
    assert events[-1].startswith('data: {"error"')
    assert "data: [DONE]" not in events
    row = await one_row(running_stack, request_id)
    assert row["status"] == "error"


async def test_client_disconnect_mid_stream_is_accounted_as_cancelled(running_stack: RunningStack) -> None:
    async with (
        httpx.AsyncClient(timeout=10) as http,
        http.stream(
            "POST",
            f"{running_stack.base_url}/v1/chat/completions",
            json={"model": "dripping", "messages": HELLO, "stream": True},
            headers={"Authorization": f"Bearer {KEY}"},
        ) as response,
    ):
        request_id = response.headers["x-request-id"]
        lines = response.aiter_lines()
        first = await anext(lines)
        assert first.startswith("data: {")
    # The connection is closed here, long before the 5-tokens-per-second stream could finish.
    row = await one_row(running_stack, request_id)
    assert row["status"] == "cancelled"
    assert row["completion_tokens"] >= 1
    assert row["latency_ms"] < 5000


async def test_client_disconnect_before_a_plain_answer_is_accounted_as_cancelled(running_stack: RunningStack) -> None:
    """A non-streamed request whose client gives up: the dispatch is cancelled (so is the worker's
    upstream call) and the request still gets exactly one usage row, marked cancelled."""
    started = datetime.now(UTC)
    async with httpx.AsyncClient(timeout=0.5) as http:
        with pytest.raises(httpx.ReadTimeout):
            await http.post(
                f"{running_stack.base_url}/v1/chat/completions",
                json={"model": "dripping", "messages": HELLO},  # 5 tokens/s: seconds to answer
                headers={"Authorization": f"Bearer {KEY}"},
            )

    async def cancelled_rows() -> list[Any]:
        return await running_stack.fetch(
            "SELECT * FROM usage_records WHERE requested_model = 'dripping' AND NOT stream AND started_at >= $1",
            started,
        )

    rows = await eventually(cancelled_rows, lambda r: len(r) >= 1)
    assert len(rows) == 1, rows
    assert rows[0]["status"] == "cancelled"
    assert rows[0]["http_status"] == 499
    assert rows[0]["latency_ms"] < 3000  # ended when the client left, not when the answer would have


def test_raw_socket_garbage_does_not_500(running_stack: RunningStack) -> None:
    host, port = running_stack.base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
            + KEY.encode()
            + b"\r\nContent-Length: 5\r\n\r\n\xff\xfe\x00\x01\x02"
        )
        sock.settimeout(5)
        reply = b""
        while b'"error"' not in reply and (part := sock.recv(65536)):
            reply += part
    assert reply.startswith(b"HTTP/1.1 400")
    assert b'"error"' in reply


async def test_one_trace_spans_all_four_services(running_stack: RunningStack) -> None:
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    http = httpx.Client(headers={"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"})
    client = running_stack.client(http_client=http)
    client.chat.completions.create(model="demo", messages=HELLO)
    services = {"modelrouter-gateway", "modelrouter-router", "modelrouter-workers", "modelrouter-accounting"}

    async def spans() -> list[Any]:
        return running_stack.otlp.trace(trace_id)

    def complete(found: list[Any]) -> bool:
        """Every service reported, and the spans accounting points at are in: each process exports
        its spans in its own batches, so a parent can arrive after its child."""
        ids = {x.span_id for x in found}
        consumers = [x for x in found if x.service == "modelrouter-accounting" and x.kind == 5]
        return services <= {x.service for x in found} and all(x.parent_span_id in ids for x in consumers)

    found = await eventually(spans, complete, timeout=20)
    assert services <= {s.service for s in found}, {s.service for s in found}
    by_id = {s.span_id: s for s in found}

    def parent_service(span: Any) -> str | None:
        parent = by_id.get(span.parent_span_id)
        return parent.service if parent else None

    router_server = [s for s in found if s.service == "modelrouter-router" and s.kind == 2]  # SERVER
    worker_consumer = [s for s in found if s.service == "modelrouter-workers" and s.kind == 5]  # CONSUMER
    accounting_consumer = [s for s in found if s.service == "modelrouter-accounting" and s.kind == 5]
    assert router_server and all(parent_service(s) == "modelrouter-gateway" for s in router_server)
    assert worker_consumer and all(parent_service(s) == "modelrouter-gateway" for s in worker_consumer)
    # accounting consumes the usage event the gateway published on behalf of the worker's result:
    # CONSUMER (accounting) -> PRODUCER "send usage" (gateway) -> the worker's span.
    assert accounting_consumer
    for span in accounting_consumer:
        producer = by_id[span.parent_span_id]
        assert producer.kind == 4 and producer.service == "modelrouter-gateway"  # PRODUCER
        assert parent_service(producer) == "modelrouter-workers"
    upstream_or_adapter = [s for s in found if s.service == "modelrouter-workers" and s.kind != 5]
    assert all(parent_service(s) == "modelrouter-workers" for s in upstream_or_adapter)
