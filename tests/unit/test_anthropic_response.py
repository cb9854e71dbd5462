"""OpenAI chat completion -> Anthropic message, and Anthropic's error shape; checked against the
official SDK's own types."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from anthropic.types import Message
from anthropic.types.shared import ErrorResponse

from common import errors
from gateway.anthropic.errors import error_response
from gateway.anthropic.response import to_anthropic_message


def completion(message: dict[str, Any], finish_reason: str | None = "stop", usage: Any = None) -> bytes:
    body: dict[str, Any] = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-x",
        "choices": [{"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish_reason}],
    }
    if usage is not None:
        body["usage"] = usage
    return orjson.dumps(body)


def translate(raw: bytes) -> dict[str, Any]:
    out: dict[str, Any] = orjson.loads(to_anthropic_message(raw, message_id="msg-1", model="claude-x"))
    Message.model_validate(out)  # the SDK accepts it
    return out


def test_text_message() -> None:
    usage = {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}
    assert translate(completion({"content": "Hello!", "refusal": None}, usage=usage)) == {
        "id": "msg-1",
        "type": "message",
        "role": "assistant",
        "model": "claude-x",
        "content": [{"type": "text", "text": "Hello!"}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 12, "output_tokens": 3},
    }


def test_tool_calls_become_tool_use_blocks_with_parsed_input() -> None:
    calls = [
        {"id": "call_a", "type": "function", "function": {"name": "weather", "arguments": '{"city": "Paris"}'}},
        {"id": "call_b", "type": "function", "function": {"name": "clock", "arguments": ""}},
    ]
    out = translate(completion({"content": "Let me look.", "tool_calls": calls}, "tool_calls"))
    assert out["content"] == [
        {"type": "text", "text": "Let me look."},
        {"type": "tool_use", "id": "call_a", "name": "weather", "input": {"city": "Paris"}},
        {"type": "tool_use", "id": "call_b", "name": "clock", "input": {}},
    ]
    assert out["stop_reason"] == "tool_use"


def test_tool_call_without_id_gets_one() -> None:
    calls = [{"type": "function", "function": {"name": "clock", "arguments": "{}"}}]
    block = translate(completion({"content": None, "tool_calls": calls}, "tool_calls"))["content"][0]
    assert block["id"].startswith("toolu_") and len(block["id"]) > len("toolu_")


@pytest.mark.parametrize(
    ("finish_reason", "stop_reason"),
    [
        ("stop", "end_turn"),
        ("length", "max_tokens"),
        ("tool_calls", "tool_use"),
        ("function_call", "tool_use"),
        ("content_filter", "refusal"),
        (None, "end_turn"),
    ],
)
def test_stop_reasons(finish_reason: str | None, stop_reason: str) -> None:
    out = translate(completion({"content": "x"}, finish_reason))
    assert out["stop_reason"] == stop_reason
    assert out["stop_sequence"] is None


def test_refusal_is_text_with_stop_reason_refusal() -> None:
    out = translate(completion({"content": None, "refusal": "I can't help with that."}))
    assert out["content"] == [{"type": "text", "text": "I can't help with that."}]
    assert out["stop_reason"] == "refusal"


def test_cached_prompt_tokens_are_counted_apart() -> None:
    usage = {"prompt_tokens": 100, "completion_tokens": 7, "prompt_tokens_details": {"cached_tokens": 64}}
    assert translate(completion({"content": "x"}, usage=usage))["usage"] == {
        "input_tokens": 36,
        "output_tokens": 7,
        "cache_read_input_tokens": 64,
    }


def test_missing_usage_is_zero() -> None:
    assert translate(completion({"content": "x"}))["usage"] == {"input_tokens": 0, "output_tokens": 0}


@pytest.mark.parametrize("raw", [b"not json", b"{}", b'{"choices": []}', b'{"choices": [{"index": 0}]}'])
def test_malformed_upstream_answer_is_an_upstream_error(raw: bytes) -> None:
    with pytest.raises(errors.UpstreamError):
        to_anthropic_message(raw, message_id="m", model="x")


@pytest.mark.parametrize("arguments", ['{"city": ', "[1, 2]"])
def test_tool_arguments_that_are_not_an_object_are_an_upstream_error(arguments: str) -> None:
    calls = [{"id": "c", "type": "function", "function": {"name": "f", "arguments": arguments}}]
    with pytest.raises(errors.UpstreamError):
        to_anthropic_message(completion({"tool_calls": calls}, "tool_calls"), message_id="m", model="x")


@pytest.mark.parametrize(
    ("exc", "status", "error_type"),
    [
        (errors.InvalidRequestError("bad"), 400, "invalid_request_error"),
        (errors.AuthenticationError("who?"), 401, "authentication_error"),
        (errors.PermissionDeniedError("no"), 403, "permission_error"),
        (errors.NotFoundError("no such model"), 404, "not_found_error"),
        (errors.PayloadTooLargeError("big"), 413, "request_too_large"),
        (errors.RateLimitError("slow down", retry_after_s=3), 429, "rate_limit_error"),
        (errors.ModelRouterError("oops"), 500, "api_error"),
        (errors.UpstreamError("bad gateway"), 502, "api_error"),
        (errors.NoHealthyTargetError("none"), 503, "overloaded_error"),
        (errors.UpstreamUnavailableError("busy", upstream_status=529), 503, "overloaded_error"),
        (errors.UpstreamTimeoutError("slow"), 504, "timeout_error"),
        (errors.UpstreamRateLimitError("slow down"), 429, "rate_limit_error"),
        (errors.UpstreamBadRequestError("upstream says no"), 400, "invalid_request_error"),
    ],
)
def test_error_shape_and_status(exc: errors.ModelRouterError, status: int, error_type: str) -> None:
    response = error_response(exc, "msg-9")
    assert response.status_code == status
    assert response.headers["request-id"] == "msg-9"
    body = orjson.loads(bytes(response.body))
    assert body == {"type": "error", "error": {"type": error_type, "message": exc.message}, "request_id": "msg-9"}
    if error_type != "request_too_large":  # documented by Anthropic, absent from the SDK's union
        ErrorResponse.model_validate(body)


def test_rate_limit_error_keeps_retry_after() -> None:
    response = error_response(errors.RateLimitError("slow down", retry_after_s=3), "msg-9")
    assert response.headers["retry-after"] == "3"
