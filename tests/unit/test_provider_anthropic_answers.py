"""Anthropic answers and stream events as OpenAI chat completions and chunks
(``workers.providers._anthropic_response``)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from common.errors import UpstreamBadRequestError, UpstreamError, UpstreamRateLimitError, UpstreamUnavailableError
from common.providers.base import Operation, ProviderCall, StreamChunk, Usage
from tests.contract.story import load_fixture
from workers.providers._anthropic_response import ChatStream, chat_answer, usage_of


def call() -> ProviderCall:
    return ProviderCall(
        request_id="r", operation=Operation.CHAT, body={}, upstream_model="claude-up", api_key=None, timeout_s=5
    )


def message(*content: dict[str, Any], stop_reason: str = "end_turn", **usage: int) -> dict[str, Any]:
    return {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "content": list(content),
        "stop_reason": stop_reason,
        "usage": {"input_tokens": 10, "output_tokens": 5, **usage},
    }


def text(value: str) -> dict[str, Any]:
    return {"type": "text", "text": value}


def tool_use(name: str, tool_input: dict[str, Any], tool_id: str = "toolu_1") -> dict[str, Any]:
    return {"type": "tool_use", "id": tool_id, "name": name, "input": tool_input}


def answer(msg: dict[str, Any], format_tool: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(chat_answer(call(), msg, format_tool).body)
    return body


# --- whole answers ---------------------------------------------------------------------------------


def test_text_and_tool_use_blocks_become_content_and_tool_calls() -> None:
    body = answer(
        message(
            text("Let me check."),
            tool_use("get_weather", {"city": "Paris", "unit": "celsius"}),
            tool_use("get_time", {}, "toolu_2"),
            stop_reason="tool_use",
        )
    )
    assert body["object"] == "chat.completion" and body["id"] == "chatcmpl-msg_1" and body["model"] == "claude-up"
    (choice,) = body["choices"]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] == "Let me check."
    calls = choice["message"]["tool_calls"]
    assert [(c["id"], c["type"], c["function"]["name"]) for c in calls] == [
        ("toolu_1", "function", "get_weather"),
        ("toolu_2", "function", "get_time"),
    ]
    assert json.loads(calls[0]["function"]["arguments"]) == {"city": "Paris", "unit": "celsius"}
    assert calls[1]["function"]["arguments"] == "{}"


def test_tool_calls_alone_leave_content_null() -> None:
    body = answer(message(tool_use("get_weather", {"city": "Paris"}), stop_reason="tool_use"))
    assert body["choices"][0]["message"]["content"] is None


@pytest.mark.parametrize(
    ("stop_reason", "finish_reason"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("model_context_window_exceeded", "length"),
        ("refusal", "content_filter"),
        ("pause_turn", "stop"),
    ],
)
def test_stop_reasons(stop_reason: str, finish_reason: str) -> None:
    assert answer(message(text("x"), stop_reason=stop_reason))["choices"][0]["finish_reason"] == finish_reason


def test_usage_counts_cache_reads_and_writes_as_prompt_tokens() -> None:
    response = chat_answer(
        call(), message(text("x"), cache_read_input_tokens=100, cache_creation_input_tokens=20), format_tool=None
    )
    assert response.usage == Usage(prompt_tokens=130, completion_tokens=5, cached_tokens=100)
    assert json.loads(response.body)["usage"] == {
        "prompt_tokens": 130,
        "completion_tokens": 5,
        "total_tokens": 135,
        "prompt_tokens_details": {"cached_tokens": 100},
    }
    assert usage_of(None) == Usage()


def test_the_json_mode_tool_is_the_answers_content() -> None:
    report = {"city": "Paris", "temperature": 18}
    body = answer(message(tool_use("weather_report", report), stop_reason="tool_use"), format_tool="weather_report")
    (choice,) = body["choices"]
    assert json.loads(choice["message"]["content"]) == report
    assert "tool_calls" not in choice["message"]
    assert choice["finish_reason"] == "stop"


def test_blocks_openai_has_no_field_for_are_left_out() -> None:
    thinking = {"type": "thinking", "thinking": "Hmm.", "signature": "sig"}
    assert answer(message(thinking, text("Paris.")))["choices"][0]["message"]["content"] == "Paris."


# --- streams ---------------------------------------------------------------------------------------


def feed(events: list[dict[str, Any]], format_tool: str | None = None) -> tuple[list[StreamChunk], ChatStream]:
    stream = ChatStream(call(), format_tool)
    chunks = [chunk for event in events for chunk in stream.feed(event)]
    return chunks, stream


def deltas(chunks: list[StreamChunk]) -> list[dict[str, Any]]:
    return [json.loads(c.data)["choices"][0]["delta"] for c in chunks if json.loads(c.data)["choices"]]


def test_a_text_stream_in_openai_order() -> None:
    chunks, stream = feed(load_fixture("anthropic", "chat.stream"))
    bodies = [json.loads(c.data) for c in chunks]
    assert stream.done
    assert {b["id"] for b in bodies} == {"chatcmpl-msg_01XFDUDYJgAACzvnptvVoYEL"}
    assert bodies[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert "".join(d.get("content") or "" for d in deltas(chunks)) == "The capital of France is Paris."
    assert bodies[-2]["choices"][0]["finish_reason"] == "stop"
    # usage from message_start (input, cache) and message_delta (output), in the final usage-only chunk
    assert chunks[-1].usage_only and chunks[-1].usage == Usage(prompt_tokens=24, completion_tokens=8, cached_tokens=16)


def test_a_streamed_tool_call() -> None:
    chunks, _ = feed(load_fixture("anthropic", "tool_call.stream"))
    calls = [d["tool_calls"][0] for d in deltas(chunks) if d.get("tool_calls")]
    assert calls[0] == {
        "index": 0,
        "id": "toolu_01A09q90qw90lq917835lq9",
        "type": "function",
        "function": {"name": "get_weather", "arguments": ""},
    }
    assert json.loads("".join(c["function"]["arguments"] for c in calls)) == {"city": "Paris", "unit": "celsius"}
    assert all(c["function"]["arguments"] for c in calls[1:]), "empty partial_json deltas are not relayed"
    assert json.loads(chunks[-2].data)["choices"][0]["finish_reason"] == "tool_calls"


def test_a_tool_input_that_streamed_nothing_is_the_empty_object() -> None:
    start = {"type": "message_start", "message": {"id": "msg_2", "usage": {"input_tokens": 3, "output_tokens": 1}}}
    block = {"type": "tool_use", "id": "toolu_9", "name": "get_time", "input": {}}
    events: list[dict[str, Any]] = [
        start,
        {"type": "content_block_start", "index": 0, "content_block": block},
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 4}},
        {"type": "message_stop"},
    ]
    chunks, _ = feed(events)
    arguments = "".join(d["tool_calls"][0]["function"]["arguments"] for d in deltas(chunks) if d.get("tool_calls"))
    assert arguments == "{}"


def test_the_json_mode_tool_streams_as_content() -> None:
    chunks, _ = feed(load_fixture("anthropic", "json_mode.stream"), format_tool="weather_report")
    content = "".join(d.get("content") or "" for d in deltas(chunks))
    assert json.loads(content) == {"city": "Paris", "temperature": 18, "condition": "sunny"}
    assert not any(d.get("tool_calls") for d in deltas(chunks))
    assert json.loads(chunks[-2].data)["choices"][0]["finish_reason"] == "stop"
    assert sum(c.text_chars for c in chunks) == len(content)


def test_cumulative_usage_in_message_delta_wins() -> None:
    events: list[dict[str, Any]] = [
        {"type": "message_start", "message": {"id": "m", "usage": {"input_tokens": 5, "output_tokens": 1}}},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn"},
            "usage": {"input_tokens": 50, "output_tokens": 9},
        },
        {"type": "message_stop"},
    ]
    chunks, _ = feed(events)
    assert chunks[-1].usage == Usage(prompt_tokens=50, completion_tokens=9)


def test_thinking_blocks_and_unknown_events_are_skipped() -> None:
    events: list[dict[str, Any]] = [
        {"type": "message_start", "message": {"id": "m", "usage": {"input_tokens": 5, "output_tokens": 1}}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "Let me see"}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "sig"}},
        {"type": "content_block_stop", "index": 0},
        {"type": "some_future_event", "data": 1},
        {"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "Paris."}},
        {"type": "content_block_stop", "index": 1},
        {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 9}},
        {"type": "message_stop"},
    ]
    chunks, _ = feed(events)
    assert [d.get("content") for d in deltas(chunks)] == ["", "Paris.", None]


@pytest.mark.parametrize(
    ("error_type", "error_class", "status", "retryable"),
    [
        ("overloaded_error", UpstreamUnavailableError, 503, True),
        ("api_error", UpstreamError, 502, True),
        ("rate_limit_error", UpstreamRateLimitError, 429, True),
        ("invalid_request_error", UpstreamBadRequestError, 400, False),
    ],
)
def test_an_error_event_mid_stream_raises_the_mapped_error(
    error_type: str, error_class: type[UpstreamError], status: int, retryable: bool
) -> None:
    stream = ChatStream(call(), None)
    stream.feed({"type": "message_start", "message": {"id": "m", "usage": {"input_tokens": 5, "output_tokens": 1}}})
    with pytest.raises(UpstreamError) as caught:
        stream.feed({"type": "error", "error": {"type": error_type, "message": f"{error_type} happened"}})
    assert type(caught.value) is error_class
    assert caught.value.status == status and caught.value.retryable is retryable
    assert f"{error_type} happened" in caught.value.message
    assert not stream.done
