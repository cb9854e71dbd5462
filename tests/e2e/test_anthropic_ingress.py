"""POST /v1/messages through the four running services, driven by the official Anthropic SDK: the
fake (OpenAI-format) provider answers an Anthropic-shaped request, as any provider would."""

from __future__ import annotations

import anthropic
import httpx
import pytest
from anthropic.types import MessageParam, ToolParam

from tests.e2e.conftest import KEY, RunningStack
from tests.e2e.test_spine import one_row

pytestmark = pytest.mark.e2e

HELLO: list[MessageParam] = [{"role": "user", "content": "Hello there"}]
WEATHER: ToolParam = {
    "name": "weather",
    "description": "Current weather in a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


def client(stack: RunningStack, key: str = KEY) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=stack.base_url, api_key=key, max_retries=0)


async def test_create_message(running_stack: RunningStack) -> None:
    raw = client(running_stack).messages.with_raw_response.create(model="demo", max_tokens=256, messages=HELLO)
    message = raw.parse()
    assert message.type == "message" and message.role == "assistant" and message.model == "demo"
    assert message.id == raw.headers["request-id"] == message._request_id
    assert [block.type for block in message.content] == ["text"]
    assert message.content[0].type == "text" and "Hello there" in message.content[0].text
    assert message.stop_reason == "end_turn" and message.stop_sequence is None
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0

    row = await one_row(running_stack, message.id)
    assert row["status"] == "success" and row["stream"] is False
    assert row["endpoint"] == "/v1/messages"
    assert row["key_id"] == "e2e-team"
    assert row["requested_model"] == "demo"
    assert row["deployment_id"] == running_stack.deployment("demo")
    assert row["prompt_tokens"] == message.usage.input_tokens
    assert row["completion_tokens"] == message.usage.output_tokens


async def test_stream_message(running_stack: RunningStack) -> None:
    with client(running_stack).messages.stream(model="demo", max_tokens=256, messages=HELLO) as stream:
        kinds = [event.type for event in stream]
        message = stream.get_final_message()
    # The SDK's helper events (text, content_block_stop …) ride along with the raw ones; the raw
    # ones must come in Anthropic's order.
    raw = [
        k
        for k in kinds
        if k
        in {
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop",
        }
    ]
    deltas = raw.count("content_block_delta")
    assert raw == [
        "message_start",
        "content_block_start",
        *["content_block_delta"] * deltas,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert deltas > 2, "the answer should arrive in several deltas"
    assert message.content[0].type == "text" and "Hello there" in message.content[0].text
    assert message.stop_reason == "end_turn"
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0

    row = await one_row(running_stack, message.id)
    assert row["status"] == "success" and row["stream"] is True
    assert row["endpoint"] == "/v1/messages"
    assert row["prompt_tokens"] == message.usage.input_tokens
    assert row["completion_tokens"] == message.usage.output_tokens
    assert row["ttft_ms"] is not None and 0 < row["ttft_ms"] <= row["latency_ms"]


def test_max_tokens_stops_with_max_tokens(running_stack: RunningStack) -> None:
    message = client(running_stack).messages.create(model="demo", max_tokens=3, messages=HELLO)
    assert message.stop_reason == "max_tokens" and message.usage.output_tokens == 3
    with client(running_stack).messages.stream(model="demo", max_tokens=3, messages=HELLO) as stream:
        streamed = stream.get_final_message()
    assert streamed.stop_reason == "max_tokens" and streamed.usage.output_tokens == 3


def test_tool_conversation_reaches_the_provider(running_stack: RunningStack) -> None:
    # A full tool round trip's second leg: tools, the assistant's tool_use and the client's
    # tool_result go upstream as OpenAI tools / tool_calls / tool messages, and the answer comes back.
    # (The fake provider answers with text; it cannot originate a tool call.)
    messages: list[MessageParam] = [
        {"role": "user", "content": "What is the weather in Paris?"},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Let me check."},
                {"type": "tool_use", "id": "toolu_e2e_1", "name": "weather", "input": {"city": "Paris"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_e2e_1", "content": "18C and sunny"},
                {"type": "text", "text": "Summarise that please"},
            ],
        },
    ]
    message = client(running_stack).messages.create(
        model="demo",
        max_tokens=256,
        system="Be brief.",
        messages=messages,
        tools=[WEATHER],
        tool_choice={"type": "auto"},
    )
    assert message.content[0].type == "text"
    assert "Summarise that please" in message.content[0].text  # the fake echoes the last user text
    assert message.stop_reason == "end_turn"


async def test_unknown_model_is_not_found_in_anthropic_shape(running_stack: RunningStack) -> None:
    with pytest.raises(anthropic.NotFoundError) as err:
        client(running_stack).messages.create(model="no-such-model", max_tokens=16, messages=HELLO)
    body = err.value.body
    assert isinstance(body, dict) and body["type"] == "error"
    assert body["error"]["type"] == "not_found_error"
    row = await one_row(running_stack, err.value.response.headers["request-id"])
    assert row["status"] == "error" and row["http_status"] == 404 and row["endpoint"] == "/v1/messages"


def test_bad_key_is_authentication_error(running_stack: RunningStack) -> None:
    with pytest.raises(anthropic.AuthenticationError) as err:
        client(running_stack, key="sk-not-a-real-key-000").messages.create(model="demo", max_tokens=16, messages=HELLO)
    assert isinstance(err.value.body, dict) and err.value.body["error"]["type"] == "authentication_error"


def test_bearer_token_is_accepted(running_stack: RunningStack) -> None:
    bearer = anthropic.Anthropic(base_url=running_stack.base_url, auth_token=KEY, max_retries=0)
    assert bearer.messages.create(model="demo", max_tokens=256, messages=HELLO).stop_reason == "end_turn"


async def test_upstream_timeout_is_504_timeout_error(running_stack: RunningStack) -> None:
    with pytest.raises(anthropic.APIStatusError) as err:
        client(running_stack).messages.create(model="slow", max_tokens=16, messages=HELLO)
    assert err.value.status_code == 504
    assert isinstance(err.value.body, dict) and err.value.body["error"]["type"] == "timeout_error"


async def test_upstream_dying_mid_stream_ends_with_an_error_event(running_stack: RunningStack) -> None:
    async with (
        httpx.AsyncClient(timeout=10) as http,
        http.stream(
            "POST",
            f"{running_stack.base_url}/v1/messages",
            json={"model": "dying", "max_tokens": 256, "messages": HELLO, "stream": True},
            headers={"x-api-key": KEY, "anthropic-version": "2023-06-01"},
        ) as response,
    ):
        assert response.status_code == 200
        request_id = response.headers["request-id"]
        names = [line.removeprefix("event: ") async for line in response.aiter_lines() if line.startswith("event: ")]
    assert names[0] == "message_start" and names[1] == "content_block_start"
    assert names[-1] == "error" and "message_stop" not in names
    row = await one_row(running_stack, request_id)
    assert row["status"] == "error"

    # The SDK surfaces the error event as an exception.
    with (
        pytest.raises(anthropic.APIStatusError, match="dropped the connection"),
        client(running_stack).messages.stream(model="dying", max_tokens=256, messages=HELLO) as stream,
    ):
        for _ in stream:
            pass
