"""The Anthropic adapter against a local HTTP server speaking Anthropic's wire format (the contract
suite's fake upstream): what goes on the wire, JSON mode, legacy completions, Anthropic-only failures.
The provider-neutral cases are in ``tests/contract``."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from common.errors import InvalidRequestError, ModelRouterError, UpstreamError, UpstreamUnavailableError
from common.providers.base import Operation, ProviderCall, StreamChunk
from tests.contract import story
from tests.contract.server import Answer, Fail, UpstreamServer
from tests.contract.upstreams.anthropic import WIRE
from workers.providers import REGISTRY
from workers.providers.anthropic import AnthropicAdapter

API_KEY = "sk-ant-test-0123456789"
REPORT_FORMAT = {
    "type": "json_schema",
    "json_schema": {
        "name": "weather_report",
        "schema": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "temperature": {"type": "number"}},
            "required": ["city"],
        },
    },
}


@pytest.fixture(scope="module")
def server() -> Iterator[UpstreamServer]:
    with UpstreamServer(WIRE) as upstream:
        yield upstream


@pytest.fixture
def upstream(server: UpstreamServer) -> UpstreamServer:
    server.reset()
    return server


@pytest.fixture
async def adapter(upstream: UpstreamServer) -> AsyncIterator[AnthropicAdapter]:
    instance = AnthropicAdapter(upstream.base_url)
    yield instance
    await instance.aclose()


def make_call(
    body: dict[str, Any],
    *,
    operation: str = Operation.CHAT,
    stream: bool = False,
    options: dict[str, str] | None = None,
) -> ProviderCall:
    return ProviderCall(
        request_id="req-anthropic",
        operation=operation,
        body=body,
        upstream_model="claude-up",
        api_key=API_KEY,
        timeout_s=5,
        stream=stream,
        options=options or {},
    )


def question(**extra: Any) -> dict[str, Any]:
    return {"model": "public", "messages": [{"role": "user", "content": story.QUESTION}], **extra}


async def collect(chunks: AsyncIterator[StreamChunk]) -> list[StreamChunk]:
    return [chunk async for chunk in chunks]


def test_registered_under_its_name_with_chat_and_completions_only() -> None:
    assert REGISTRY["anthropic"] is AnthropicAdapter
    assert AnthropicAdapter.operations == {Operation.CHAT, Operation.COMPLETIONS}
    assert AnthropicAdapter("").base_url == "https://api.anthropic.com"


async def test_the_request_on_the_wire(adapter: AnthropicAdapter, upstream: UpstreamServer) -> None:
    await adapter.send(make_call(question(max_tokens=64, stop="\n\n", user="u-1", top_k=5)))

    (seen,) = upstream.received
    assert seen.path == "/v1/messages"
    assert seen.headers["x-api-key"] == API_KEY
    assert seen.headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in seen.headers
    assert seen.body == {
        "model": "claude-up",
        "messages": [{"role": "user", "content": story.QUESTION}],
        "max_tokens": 64,
        "stop_sequences": ["\n\n"],
        "metadata": {"user_id": "u-1"},
        "top_k": 5,
    }


async def test_a_refused_parameter_never_reaches_the_upstream(
    adapter: AnthropicAdapter, upstream: UpstreamServer
) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        await adapter.send(make_call(question(logit_bias={"50256": -100})))
    assert caught.value.param == "logit_bias" and caught.value.status == 400
    assert upstream.received == []


async def test_embeddings_are_not_offered(adapter: AnthropicAdapter) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        await adapter.send(make_call({"model": "e", "input": "x"}, operation=Operation.EMBEDDINGS))
    assert caught.value.code == "unsupported_operation"


async def test_the_default_max_tokens_is_a_deployment_option(
    adapter: AnthropicAdapter, upstream: UpstreamServer
) -> None:
    await adapter.send(make_call(question(), options={"default_max_tokens": "1024"}))
    assert upstream.received[0].body["max_tokens"] == 1024

    with pytest.raises(ModelRouterError) as caught:
        await adapter.send(make_call(question(), options={"default_max_tokens": "lots"}))
    assert caught.value.code == "invalid_provider_option"


# --- JSON mode -------------------------------------------------------------------------------------


async def test_json_mode_answer(adapter: AnthropicAdapter, upstream: UpstreamServer) -> None:
    upstream.reset(Answer("json_mode"))
    response = await adapter.send(make_call(question(response_format=REPORT_FORMAT)))

    (choice,) = json.loads(response.body)["choices"]
    assert json.loads(choice["message"]["content"]) == {"city": "Paris", "temperature": 18, "condition": "sunny"}
    assert choice["finish_reason"] == "stop" and "tool_calls" not in choice["message"]
    (seen,) = upstream.received
    assert seen.body["tool_choice"] == {"type": "tool", "name": "weather_report"}
    assert seen.tool_names == ["weather_report"]


async def test_json_mode_stream(adapter: AnthropicAdapter, upstream: UpstreamServer) -> None:
    upstream.reset(Answer("json_mode"))
    chunks = await collect(adapter.stream(make_call(question(response_format=REPORT_FORMAT), stream=True)))

    bodies = [json.loads(c.data) for c in chunks]
    content = "".join(b["choices"][0]["delta"].get("content") or "" for b in bodies if b["choices"])
    assert json.loads(content) == {"city": "Paris", "temperature": 18, "condition": "sunny"}
    assert [b["choices"][0]["finish_reason"] for b in bodies if b["choices"] and b["choices"][0]["finish_reason"]] == [
        "stop"
    ]
    assert chunks[-1].usage_only and chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 31


# --- legacy completions through chat ---------------------------------------------------------------


async def test_completions_go_through_chat(adapter: AnthropicAdapter, upstream: UpstreamServer) -> None:
    body = {"model": "public", "prompt": story.QUESTION, "temperature": 0}
    response = await adapter.send(make_call(body, operation=Operation.COMPLETIONS))

    answer = json.loads(response.body)
    assert answer["object"] == "text_completion" and answer["id"].startswith("cmpl-")
    assert answer["choices"][0]["text"] == story.REPLY and answer["choices"][0]["finish_reason"] == "stop"
    assert response.usage == story.REPLY_USAGE
    (seen,) = upstream.received
    assert seen.body["messages"] == [{"role": "user", "content": story.QUESTION}]
    assert seen.body["max_tokens"] == 16  # OpenAI's default for legacy completions
    assert "prompt" not in seen.body


async def test_streamed_completions(adapter: AnthropicAdapter, upstream: UpstreamServer) -> None:
    body = {"model": "public", "prompt": story.QUESTION, "max_tokens": 100, "stream": True}
    chunks = await collect(adapter.stream(make_call(body, operation=Operation.COMPLETIONS, stream=True)))

    bodies = [json.loads(c.data) for c in chunks]
    assert all(b["object"] == "text_completion" for b in bodies)
    assert [b["choices"][0]["text"] for b in bodies if b["choices"] and b["choices"][0]["text"]] == story.REPLY_PIECES
    assert chunks[-1].usage_only and chunks[-1].usage == story.REPLY_USAGE
    assert upstream.received[0].body["max_tokens"] == 100


async def test_completion_only_parameters_are_refused(adapter: AnthropicAdapter) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        await adapter.send(make_call({"model": "p", "prompt": "x", "echo": True}, operation=Operation.COMPLETIONS))
    assert caught.value.param == "echo"


# --- Anthropic's own failures ----------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["send", "stream"])
async def test_529_overloaded_is_a_retryable_503(
    adapter: AnthropicAdapter, upstream: UpstreamServer, stream: bool
) -> None:
    upstream.reset(Fail(529, "Overloaded"))
    call = make_call(question(stream=stream), stream=stream)
    with pytest.raises(UpstreamError) as caught:
        if stream:
            await collect(adapter.stream(call))
        else:
            await adapter.send(call)
    assert type(caught.value) is UpstreamUnavailableError
    assert caught.value.status == 503 and caught.value.retryable and caught.value.upstream_status == 529
    assert "Overloaded" in caught.value.message


async def test_an_overloaded_error_event_mid_stream(adapter: AnthropicAdapter, upstream: UpstreamServer) -> None:
    upstream.reset(Answer("overloaded"))
    received: list[StreamChunk] = []
    with pytest.raises(UpstreamError) as caught:
        async for chunk in adapter.stream(make_call(question(stream=True), stream=True)):
            received.append(chunk)

    assert type(caught.value) is UpstreamUnavailableError and caught.value.retryable
    assert caught.value.status == 503 and caught.value.message == "Overloaded"
    assert [json.loads(c.data)["choices"][0]["delta"].get("content") for c in received] == ["", "The"]
