"""Provider-neutral cases every network adapter must pass (see conftest.py for adding a provider)."""

from __future__ import annotations

import copy
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from common.errors import (
    InvalidRequestError,
    UpstreamBadRequestError,
    UpstreamError,
    UpstreamRateLimitError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
)
from common.providers.base import Operation, ProviderAdapter, ProviderCall, StreamChunk, Usage
from tests.contract import story
from tests.contract.server import Answer, DieMidStream, Fail, HoldStream, Stall, UpstreamServer, closed_port
from tests.contract.upstreams import wire_of
from workers.providers import REGISTRY

API_KEY = "sk-contract-test-0123456789"
UPSTREAM_MODEL = "contract-upstream-model"


def make_call(body: dict[str, Any], *, stream: bool = False, timeout_s: float = 5.0) -> ProviderCall:
    return ProviderCall(
        request_id="req-contract",
        operation=Operation.CHAT,
        body=body,
        upstream_model=UPSTREAM_MODEL,
        api_key=API_KEY,
        timeout_s=timeout_s,
        stream=stream,
    )


def expected(usage: Usage, lacks: frozenset[str]) -> Usage:
    """The story's usage as this provider can report it."""
    if "cached_tokens" in lacks:
        return Usage(usage.prompt_tokens, usage.completion_tokens)
    return usage


def expected_model(lacks: frozenset[str]) -> str | None:
    """The model name the upstream must see."""
    return None if "model_name" in lacks else UPSTREAM_MODEL


def question(**extra: Any) -> dict[str, Any]:
    return {"model": "public-model", "messages": [{"role": "user", "content": story.QUESTION}], **extra}


async def collect(chunks: AsyncIterator[StreamChunk]) -> list[StreamChunk]:
    return [chunk async for chunk in chunks]


def parsed(chunks: list[StreamChunk]) -> list[dict[str, Any]]:
    return [json.loads(c.data) for c in chunks]


def content_of(chunks: list[dict[str, Any]]) -> list[str]:
    return [
        c["choices"][0]["delta"]["content"] for c in chunks if c["choices"] and c["choices"][0]["delta"].get("content")
    ]


# --- answers ------------------------------------------------------------------------------------


async def test_plain_reply(adapter: ProviderAdapter, upstream: UpstreamServer, lacks: frozenset[str]) -> None:
    response = await adapter.send(make_call(question()))

    body = json.loads(response.body)
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"]["role"] == "assistant"
    assert body["choices"][0]["message"]["content"] == story.REPLY
    assert body["choices"][0]["finish_reason"] == "stop"
    assert response.usage == expected(story.REPLY_USAGE, lacks)
    assert body["usage"]["prompt_tokens"] == story.REPLY_USAGE.prompt_tokens
    (seen,) = upstream.received
    assert seen.model == expected_model(lacks)
    assert seen.api_key == API_KEY
    assert seen.stream is False


async def test_streamed_reply_arrives_in_order_with_a_marked_usage_chunk(
    adapter: ProviderAdapter, upstream: UpstreamServer, lacks: frozenset[str]
) -> None:
    # The client did not ask for usage; the adapter must ask the upstream anyway.
    chunks = await collect(adapter.stream(make_call(question(stream=True), stream=True)))

    bodies = parsed(chunks)
    assert all(b["object"] == "chat.completion.chunk" for b in bodies)
    assert bodies[0]["choices"][0]["delta"]["role"] == "assistant"
    assert content_of(bodies) == story.REPLY_PIECES
    finishes = [b["choices"][0]["finish_reason"] for b in bodies if b["choices"] and b["choices"][0]["finish_reason"]]
    assert finishes == ["stop"]
    *content_chunks, last = chunks
    assert last.usage_only and last.usage == expected(story.REPLY_USAGE, lacks)
    assert bodies[-1]["choices"] == []
    assert not any(c.usage_only for c in content_chunks)
    assert sum(c.text_chars for c in chunks) == len(story.REPLY)
    (seen,) = upstream.received
    assert seen.stream is True and seen.model == expected_model(lacks)


async def test_stream_is_relayed_as_it_arrives(adapter: ProviderAdapter, upstream: UpstreamServer) -> None:
    upstream.reset(HoldStream(after_chunks=3))
    stream = adapter.stream(make_call(question(stream=True), stream=True))
    try:
        first = [await anext(stream) for _ in range(3)]
        # The upstream holds the rest until released: these reached the caller while it was still
        # sending. (It flags that it holds from its own thread once its writes are out, which can
        # come after the caller read them: wait for the flag rather than read it at once.)
        await upstream.wait_until(lambda u: u.holding)
        upstream.release()
        rest = await collect(stream)
    finally:
        await stream.aclose()  # type: ignore[attr-defined]
    assert content_of(parsed(first + rest)) == story.REPLY_PIECES


# --- tools --------------------------------------------------------------------------------------


def weather_question(**extra: Any) -> dict[str, Any]:
    return {
        "model": "public-model",
        "messages": [{"role": "user", "content": story.WEATHER_QUESTION}],
        "tools": [story.WEATHER_TOOL],
        **extra,
    }


async def refuses_tools(adapter: ProviderAdapter, upstream: UpstreamServer, stream: bool) -> None:
    """A provider without tool calling must say so, not silently answer without the tools."""
    with pytest.raises(InvalidRequestError) as caught:
        call = make_call(weather_question(stream=stream), stream=stream)
        if stream:
            await collect(adapter.stream(call))
        else:
            await adapter.send(call)
    assert not caught.value.retryable and caught.value.status == 400
    assert upstream.received == []


async def test_tool_call_round_trip(adapter: ProviderAdapter, upstream: UpstreamServer, lacks: frozenset[str]) -> None:
    if "tools" in lacks:
        return await refuses_tools(adapter, upstream, stream=False)
    upstream.reset(Answer("tool_call"))
    first = await adapter.send(make_call(weather_question()))

    message = json.loads(first.body)["choices"][0]["message"]
    assert json.loads(first.body)["choices"][0]["finish_reason"] == "tool_calls"
    (tool_call,) = message["tool_calls"]
    assert tool_call["type"] == "function" and tool_call["id"]
    assert tool_call["function"]["name"] == story.TOOL_NAME
    assert json.loads(tool_call["function"]["arguments"]) == story.TOOL_ARGUMENTS
    assert first.usage == expected(story.TOOL_CALL_USAGE, lacks)
    assert upstream.received[0].tool_names == [story.TOOL_NAME]

    upstream.reset(Answer("tool_result"))
    follow_up = weather_question()
    follow_up["messages"] += [
        {"role": "assistant", "content": None, "tool_calls": [tool_call]},
        {"role": "tool", "tool_call_id": tool_call["id"], "content": story.TOOL_OUTPUT},
    ]
    second = await adapter.send(make_call(follow_up))

    assert upstream.received[0].tool_results == [(tool_call["id"], story.TOOL_OUTPUT)]
    assert json.loads(second.body)["choices"][0]["message"]["content"] == story.TOOL_ANSWER
    assert second.usage == expected(story.TOOL_ANSWER_USAGE, lacks)


async def test_streamed_tool_call_deltas_assemble(
    adapter: ProviderAdapter, upstream: UpstreamServer, lacks: frozenset[str]
) -> None:
    if "tools" in lacks:
        return await refuses_tools(adapter, upstream, stream=True)
    upstream.reset(Answer("tool_call"))
    chunks = await collect(adapter.stream(make_call(weather_question(stream=True), stream=True)))

    calls: dict[int, dict[str, str]] = {}
    finish = None
    for body in parsed(chunks):
        for choice in body["choices"]:
            finish = choice["finish_reason"] or finish
            for delta in choice["delta"].get("tool_calls") or ():
                call = calls.setdefault(delta["index"], {"id": "", "name": "", "arguments": ""})
                call["id"] += delta.get("id") or ""
                call["name"] += (delta.get("function") or {}).get("name") or ""
                call["arguments"] += (delta.get("function") or {}).get("arguments") or ""
    assert list(calls) == [0]
    assert calls[0]["id"] and calls[0]["name"] == story.TOOL_NAME
    assert json.loads(calls[0]["arguments"]) == story.TOOL_ARGUMENTS
    assert finish == "tool_calls"
    assert chunks[-1].usage_only and chunks[-1].usage == expected(story.TOOL_CALL_USAGE, lacks)


# --- the request as the upstream sees it --------------------------------------------------------


async def test_unknown_fields_pass_through_unchanged(
    adapter: ProviderAdapter, upstream: UpstreamServer, lacks: frozenset[str]
) -> None:
    # Fields the gateway has never heard of (a provider's newest parameter) reach the provider as
    # sent, or, where the API is translated and cannot take them, are refused: never dropped silently.
    extra = {
        "x_vendor_extension": {"nested": [1, 2, {"deep": True}], "text": "ünïcode"},
        "x_vendor_flag": True,
    }
    body = question(**extra)
    before = copy.deepcopy(body)
    if "passthrough" in lacks:
        with pytest.raises(InvalidRequestError) as caught:
            await adapter.send(make_call(body))
        assert "x_vendor_" in caught.value.message and not caught.value.retryable
        assert upstream.received == [] and body == before
        return
    await adapter.send(make_call(body))

    (seen,) = upstream.received
    for key, value in extra.items():
        assert seen.body[key] == value, key
    assert body == before, "the adapter must not change the client's body"


async def test_connections_are_pooled(adapter: ProviderAdapter, upstream: UpstreamServer) -> None:
    for _ in range(2):  # a finished stream must hand its connection back too
        await adapter.send(make_call(question()))
        await collect(adapter.stream(make_call(question(stream=True), stream=True)))
    await adapter.send(make_call(question()))

    assert len(upstream.received) == 5
    assert len({r.client_port for r in upstream.received}) == 1


# --- failures -----------------------------------------------------------------------------------

ERROR_CASES = [
    pytest.param(400, UpstreamBadRequestError, 400, False, None, id="400-bad-request"),
    pytest.param(401, UpstreamError, 502, False, None, id="401-our-credentials"),
    pytest.param(429, UpstreamRateLimitError, 429, True, 7.0, id="429-retry-after"),
    pytest.param(500, UpstreamError, 502, True, None, id="500"),
    pytest.param(503, UpstreamUnavailableError, 503, True, None, id="503"),
]


@pytest.mark.parametrize("stream", [False, True], ids=["send", "stream"])
@pytest.mark.parametrize(("status", "error_class", "gateway_status", "retryable", "retry_after"), ERROR_CASES)
async def test_http_errors_map_onto_the_error_tree(
    adapter: ProviderAdapter,
    upstream: UpstreamServer,
    stream: bool,
    status: int,
    error_class: type[UpstreamError],
    gateway_status: int,
    retryable: bool,
    retry_after: float | None,
) -> None:
    message = f"contract failure {status}"
    upstream.reset(Fail(status, message, retry_after="7" if retry_after else None))
    call = make_call(question(stream=stream), stream=stream)

    with pytest.raises(UpstreamError) as caught:
        if stream:
            await collect(adapter.stream(call))
        else:
            await adapter.send(call)

    error = caught.value
    assert type(error) is error_class or (error_class is UpstreamError and isinstance(error, UpstreamError))
    assert error.status == gateway_status
    assert error.retryable is retryable
    assert error.upstream_status == status
    assert error.retry_after_s == retry_after
    if status == 401:  # the provider's text about our key stays in the log
        assert message not in error.message and API_KEY not in error.message
    else:
        assert message in error.message


@pytest.mark.parametrize("stream", [False, True], ids=["send", "stream"])
async def test_a_silent_upstream_times_out(adapter: ProviderAdapter, upstream: UpstreamServer, stream: bool) -> None:
    upstream.reset(Stall(seconds=3.0))
    call = make_call(question(stream=stream), stream=stream, timeout_s=0.3)
    started = time.monotonic()

    with pytest.raises(UpstreamTimeoutError) as caught:
        if stream:
            await collect(adapter.stream(call))
        else:
            await adapter.send(call)

    assert time.monotonic() - started < 2.0
    assert caught.value.retryable and caught.value.upstream_status == 0 and caught.value.status == 504


@pytest.mark.parametrize("abrupt", [True, False], ids=["connection-dropped", "ended-early"])
async def test_an_upstream_dying_mid_stream_is_a_retryable_error(
    adapter: ProviderAdapter, upstream: UpstreamServer, abrupt: bool
) -> None:
    upstream.reset(DieMidStream(after_chunks=3, abrupt=abrupt))
    received: list[StreamChunk] = []

    with pytest.raises(UpstreamError) as caught:
        async for chunk in adapter.stream(make_call(question(stream=True), stream=True)):
            received.append(chunk)

    assert len(received) == 3
    assert type(caught.value) is UpstreamError and caught.value.retryable


async def test_an_unreachable_upstream_is_a_retryable_connect_error(provider: str) -> None:
    adapter = REGISTRY[provider](f"http://127.0.0.1:{closed_port()}{wire_of(provider).base_path}")
    try:
        with pytest.raises(UpstreamError) as caught:
            await adapter.send(make_call(question()))
    finally:
        await adapter.aclose()
    assert type(caught.value) is UpstreamError
    assert caught.value.retryable and caught.value.upstream_status == 0


async def test_closing_a_stream_hangs_up_on_the_upstream(adapter: ProviderAdapter, upstream: UpstreamServer) -> None:
    upstream.reset(HoldStream(after_chunks=2))
    stream = adapter.stream(make_call(question(stream=True), stream=True))
    await anext(stream)
    await upstream.wait_until(lambda u: u.holding)

    await stream.aclose()  # type: ignore[attr-defined]

    await upstream.wait_until(lambda u: u.hangups == 1)
