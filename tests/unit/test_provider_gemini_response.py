"""Gemini answers -> OpenAI chat completions: stop reasons, usage, ``n`` choices, tool calls, and the
stream reader (one chunk per candidate update, ``n`` > 1, unfinished streams, blocked prompts)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from google.genai import types

from common.errors import UpstreamError
from common.providers.base import Operation, ProviderCall, StreamChunk, Usage
from tests.contract.story import FIXTURES
from workers.providers._gemini_request import tool_call_id
from workers.providers._gemini_response import StreamReader, choices_of, finish_reason, usage_of


def make_call(operation: str = Operation.CHAT) -> ProviderCall:
    return ProviderCall(
        request_id="req-g1", operation=operation, body={}, upstream_model="gemini-2.5-flash", api_key=None, timeout_s=5
    )


def candidate(parts: list[dict[str, Any]], finish: str | None = None, index: int = 0) -> dict[str, Any]:
    out: dict[str, Any] = {"content": {"role": "model", "parts": parts}}
    if finish:
        out["finishReason"] = finish
    if index:  # proto3 JSON leaves a zero index out
        out["index"] = index
    return out


# google.rpc.Code names (google/rpc/code.proto), which Google's error bodies carry in error.status.
RPC_CODES = {
    "INVALID_ARGUMENT",
    "UNAUTHENTICATED",
    "PERMISSION_DENIED",
    "NOT_FOUND",
    "RESOURCE_EXHAUSTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DEADLINE_EXCEEDED",
}


@pytest.mark.parametrize("path", sorted((FIXTURES / "gemini").glob("*.json")), ids=lambda p: p.stem)
def test_contract_fixtures_are_valid_gemini_responses(path: Path) -> None:
    loaded = json.loads(path.read_text())
    if path.stem == "errors":
        assert set(loaded.values()) <= RPC_CODES
        return
    for answer in loaded if isinstance(loaded, list) else [loaded]:
        types.GenerateContentResponse.model_validate(answer)  # the SDK's type forbids unknown fields


@pytest.mark.parametrize(
    ("gemini", "has_calls", "openai"),
    [
        ("STOP", False, "stop"),
        ("STOP", True, "tool_calls"),
        ("MAX_TOKENS", False, "length"),
        ("SAFETY", False, "content_filter"),
        ("RECITATION", False, "content_filter"),
        ("PROHIBITED_CONTENT", False, "content_filter"),
        ("BLOCKLIST", False, "content_filter"),
        ("SPII", False, "content_filter"),
        ("OTHER", False, "stop"),
        ("MALFORMED_FUNCTION_CALL", False, "stop"),
    ],
)
def test_finish_reasons(gemini: str, has_calls: bool, openai: str) -> None:
    assert finish_reason(gemini, has_calls) == openai


def test_usage_counts_thinking_as_output_and_tool_prompts_as_input() -> None:
    usage = usage_of(
        {
            "promptTokenCount": 100,
            "toolUsePromptTokenCount": 20,
            "candidatesTokenCount": 30,
            "thoughtsTokenCount": 50,
            "cachedContentTokenCount": 64,
            "totalTokenCount": 200,
        }
    )
    assert usage == Usage(prompt_tokens=120, completion_tokens=80, cached_tokens=64)
    assert usage is not None and usage.total_tokens == 200
    assert usage_of(None) is None


def test_n_candidates_become_choices_in_index_order_without_thoughts() -> None:
    answer = {
        "candidates": [
            candidate([{"text": "Rome."}], "MAX_TOKENS", index=1),
            candidate([{"text": "Let me think", "thought": True}, {"text": "Paris"}, {"text": "."}], "STOP"),
        ]
    }
    first, second = choices_of(answer, make_call(), 2)
    assert (first.content, first.finish_reason, list(first.tool_calls)) == ("Paris.", "stop", [])
    assert (second.content, second.finish_reason) == ("Rome.", "length")


def test_function_calls_become_tool_calls_with_ids_and_signatures() -> None:
    answer = {
        "candidates": [
            candidate(
                [
                    {
                        "functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
                        "thoughtSignature": "CiQB+/+/ECA=",
                    },
                    {"functionCall": {"id": "gemini-own-id", "name": "get_time", "args": {}}},
                ],
                "STOP",
            )
        ]
    }
    (choice,) = choices_of(answer, make_call(), 1)
    assert choice.content is None and choice.finish_reason == "tool_calls"
    weather, clock = choice.tool_calls
    assert weather.id == f"{tool_call_id('req-g1', 0, 0)}_ts_CiQB-_-_ECA"  # the signature rides along, id-safe
    assert (weather.name, json.loads(weather.arguments)) == ("get_weather", {"city": "Paris"})
    assert (clock.id, clock.arguments) == ("gemini-own-id", "{}")


def test_a_blocked_prompt_is_a_content_filter_answer_for_every_choice() -> None:
    answer = {"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {"promptTokenCount": 9}}
    choices = choices_of(answer, make_call(), 2)
    assert [(c.content, c.finish_reason) for c in choices] == [(None, "content_filter")] * 2


def test_an_answer_without_candidates_or_reason_is_an_upstream_error() -> None:
    with pytest.raises(UpstreamError):
        choices_of({"usageMetadata": {"promptTokenCount": 9}}, make_call(), 1)


# --- streams ------------------------------------------------------------------------------------


def bodies(chunks: list[StreamChunk]) -> list[dict[str, Any]]:
    return [json.loads(c.data) for c in chunks]


def test_stream_of_two_candidates_keeps_each_choice_apart() -> None:
    reader = StreamReader(make_call(), n=2)
    out = reader.event(
        {"responseId": "r1", "candidates": [candidate([{"text": "Pa"}]), candidate([{"text": "Ro"}], index=1)]}
    )
    out += reader.event(
        {"candidates": [candidate([{"text": "ris"}], "STOP"), candidate([{"text": "me"}], "STOP", index=1)]}
    )
    out += reader.event({"usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 4}})
    out += reader.end()

    parsed = bodies(out)
    assert {b["id"] for b in parsed} == {"chatcmpl-r1"}
    deltas = [
        (b["choices"][0]["index"], b["choices"][0]["delta"], b["choices"][0]["finish_reason"]) for b in parsed[:-1]
    ]
    assert deltas == [
        (0, {"role": "assistant", "content": "Pa"}, None),  # one chunk per update: the role rides along
        (1, {"role": "assistant", "content": "Ro"}, None),
        (0, {"content": "ris"}, None),
        (0, {}, "stop"),
        (1, {"content": "me"}, None),
        (1, {}, "stop"),
    ]
    assert out[-1].usage_only and out[-1].usage == Usage(5, 4)
    assert sum(c.text_chars for c in out) == len("ParisRome")


def test_streamed_function_calls_arrive_whole_as_start_and_arguments() -> None:
    reader = StreamReader(make_call(), n=1)
    call = {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}
    out = reader.event(
        {"candidates": [candidate([call, {**call, "functionCall": {**call["functionCall"], "name": "x"}}], "STOP")]}
    )
    deltas = [b["choices"][0]["delta"] for b in bodies(out)]
    calls = [d["tool_calls"][0] for d in deltas if "tool_calls" in d]
    assert [(c["index"], c.get("id"), c["function"]) for c in calls] == [
        (0, tool_call_id("req-g1", 0, 0), {"name": "get_weather", "arguments": ""}),
        (0, None, {"arguments": '{"city":"Paris"}'}),
        (1, tool_call_id("req-g1", 0, 1), {"name": "x", "arguments": ""}),
        (1, None, {"arguments": '{"city":"Paris"}'}),
    ]
    assert deltas[0]["role"] == "assistant"
    assert json.loads(out[-1].data)["choices"][0]["finish_reason"] == "tool_calls"


def test_a_stream_that_stops_before_every_candidate_finished_is_an_error() -> None:
    reader = StreamReader(make_call(), n=2)
    reader.event({"candidates": [candidate([{"text": "a"}], "STOP"), candidate([{"text": "b"}], index=1)]})
    with pytest.raises(UpstreamError) as caught:
        reader.end()
    assert caught.value.retryable
    with pytest.raises(UpstreamError):
        StreamReader(make_call(), n=1).end()  # nothing at all


def test_a_blocked_prompt_in_a_stream_finishes_every_choice_with_content_filter() -> None:
    reader = StreamReader(make_call(), n=2)
    out = reader.event(
        {"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"}, "usageMetadata": {"promptTokenCount": 7}}
    )
    out += reader.end()
    finishes = [(b["choices"][0]["index"], b["choices"][0]["finish_reason"]) for b in bodies(out) if b["choices"]]
    assert finishes == [(0, "content_filter"), (1, "content_filter")]
    assert out[-1].usage == Usage(7, 0)


def test_completions_stream_as_text_completion_chunks() -> None:
    reader = StreamReader(make_call(Operation.COMPLETIONS), n=1, as_completion=True)
    out = reader.event({"responseId": "r2", "candidates": [candidate([{"text": "Hello"}])]})
    out += reader.event(
        {
            "candidates": [candidate([{"text": " world"}], "MAX_TOKENS")],
            "usageMetadata": {"promptTokenCount": 2, "candidatesTokenCount": 2},
        }
    )
    out += reader.end()
    parsed = bodies(out)
    assert {b["object"] for b in parsed} == {"text_completion"} and {b["id"] for b in parsed} == {"cmpl-r2"}
    assert "".join(c["text"] for b in parsed for c in b["choices"]) == "Hello world"
    assert [c["finish_reason"] for b in parsed for c in b["choices"] if c["finish_reason"]] == ["length"]
    assert out[-1].usage_only and parsed[-1]["usage"]["total_tokens"] == 4
