"""The Cohere v2 adapter below the contract suite: how each OpenAI parameter is translated or refused,
messages, tools, JSON mode, images, stop reasons, usage, stream events, legacy completions through
chat, and embeddings (the last three against the contract suite's fake Cohere upstream)."""

from __future__ import annotations

import base64
import copy
import json
import struct
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from common.errors import InvalidRequestError, UpstreamError, UpstreamTimeoutError
from common.providers.base import Operation, ProviderCall, StreamChunk, Usage
from tests.contract import story
from tests.contract.server import Answer, Received, UpstreamServer
from tests.contract.upstreams.cohere import CohereWire
from workers.openai_format import ChatChunks, CompletionChunks
from workers.providers._cohere_request import chat_request, embed_request
from workers.providers.cohere import DEFAULT_BASE_URL, CohereAdapter, StreamReader, finish_reason, usage_of

QUESTION = [{"role": "user", "content": "Hi"}]


def chat(**extra: Any) -> dict[str, Any]:
    return chat_request({"model": "public", "messages": QUESTION, **extra}, upstream_model="command-a", stream=False)


def make_call(body: dict[str, Any], operation: str = Operation.CHAT, *, stream: bool = False) -> ProviderCall:
    return ProviderCall(
        request_id="req-1",
        operation=operation,
        body=body,
        upstream_model="command-a-03-2025",
        api_key="co-key",
        timeout_s=5,
        stream=stream,
    )


# --- parameters ---------------------------------------------------------------------------------


def test_sampling_and_length_parameters_take_coheres_names() -> None:
    body = {
        "model": "public",
        "messages": QUESTION,
        "temperature": 0.3,
        "top_p": 0.5,
        "max_tokens": 10,
        "max_completion_tokens": 20,
        "stop": "END",
        "seed": 7,
        "frequency_penalty": 0.1,
        "presence_penalty": 0.2,
        "n": 1,
        "stream": True,
        "stream_options": {"include_usage": True},
        "user": "u-1",
        "store": True,
        "metadata": {"k": "v"},
        "documents": ["Paris is in France."],  # Cohere's own: passes through
        "safety_mode": "STRICT",
    }
    before = copy.deepcopy(body)
    sent = chat_request(body, upstream_model="command-a", stream=True)

    assert sent == {
        "model": "command-a",
        "messages": [{"role": "user", "content": "Hi"}],
        "stream": True,
        "temperature": 0.3,
        "p": 0.5,
        "max_tokens": 20,  # the newer OpenAI name wins
        "stop_sequences": ["END"],
        "seed": 7,
        "frequency_penalty": 0.1,
        "presence_penalty": 0.2,
        "documents": ["Paris is in France."],
        "safety_mode": "STRICT",
    }
    assert body == before


@pytest.mark.parametrize(("top_p", "p"), [(1, 0.99), (1.0, 0.99), (0.0, 0.01), (0.42, 0.42)])
def test_top_p_is_clamped_to_coheres_range(top_p: float, p: float) -> None:
    assert chat(top_p=top_p)["p"] == p


def test_a_list_of_stop_sequences_stays_a_list() -> None:
    assert chat(stop=["a", "b"])["stop_sequences"] == ["a", "b"]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("n", 2),
        ("logit_bias", {"1734": -100}),
        ("logprobs", True),
        ("top_logprobs", 3),
        ("parallel_tool_calls", False),
        ("reasoning_effort", "high"),
        ("modalities", ["text", "audio"]),
        ("audio", {"voice": "alloy"}),
        ("web_search_options", {}),
        ("functions", [{"name": "f"}]),
        ("function_call", "auto"),
        ("top_p", "high"),
    ],
)
def test_parameters_cohere_cannot_honour_are_refused_naming_them(name: str, value: Any) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        chat(**{name: value})
    assert caught.value.param == name and caught.value.status == 400


@pytest.mark.parametrize(
    ("name", "value"),
    [("logit_bias", {}), ("logprobs", False), ("parallel_tool_calls", True), ("modalities", ["text"]), ("n", 1)],
)
def test_the_no_op_value_of_a_refused_parameter_is_accepted_and_not_sent(name: str, value: Any) -> None:
    assert name not in chat(**{name: value})


# --- messages -----------------------------------------------------------------------------------


def test_messages_of_every_role() -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}
    messages = [
        {"role": "developer", "content": "Be brief."},
        {"role": "system", "content": [{"type": "text", "text": "Use metric units."}]},
        {"role": "user", "content": "Weather?", "name": "ann"},
        {"role": "assistant", "content": "Let me check.", "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": '{"t": 18}'},
        {"role": "assistant", "content": "It is 18°C."},
    ]
    sent = chat_request({"messages": messages}, upstream_model="m", stream=False)["messages"]

    assert sent == [
        {"role": "system", "content": "Be brief."},
        {"role": "system", "content": [{"type": "text", "text": "Use metric units."}]},
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "tool_calls": [call], "tool_plan": "Let me check."},
        {"role": "tool", "tool_call_id": "call_1", "content": '{"t": 18}'},
        {"role": "assistant", "content": "It is 18°C."},
    ]


def test_image_parts_become_coheres_image_url_parts() -> None:
    content = [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "https://example.com/a.png", "detail": "high"}},
        {"type": "image_url", "image_url": "data:image/png;base64,iVBORw0KGgo="},
    ]
    (sent,) = chat_request({"messages": [{"role": "user", "content": content}]}, upstream_model="m", stream=False)[
        "messages"
    ]
    assert sent["content"] == [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "https://example.com/a.png", "detail": "high"}},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
    ]


@pytest.mark.parametrize(
    "message",
    [
        {"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "", "format": "wav"}}]},
        {"role": "system", "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}]},
        {"role": "function", "name": "f", "content": "{}"},
        {"content": "no role"},
    ],
)
def test_messages_cohere_cannot_take_are_refused(message: dict[str, Any]) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        chat_request({"messages": [message]}, upstream_model="m", stream=False)
    assert caught.value.param == "messages"


# --- tools and JSON mode ------------------------------------------------------------------------


def test_tools_keep_openais_shape_and_strict_becomes_strict_tools() -> None:
    strict_tool = {"type": "function", "function": {**story.WEATHER_TOOL["function"], "strict": True}}
    bare_tool = {"type": "function", "function": {"name": "now"}}
    sent = chat(tools=[strict_tool, bare_tool])

    assert sent["tools"] == [
        {
            "type": "function",
            "function": {
                "name": story.TOOL_NAME,
                "parameters": story.WEATHER_TOOL["function"]["parameters"],
                "description": story.WEATHER_TOOL["function"]["description"],
            },
        },
        {"type": "function", "function": {"name": "now", "parameters": {"type": "object", "properties": {}}}},
    ]
    assert sent["strict_tools"] is True
    assert "strict_tools" not in chat(tools=[bare_tool])


def test_only_function_tools_are_accepted() -> None:
    with pytest.raises(InvalidRequestError) as caught:
        chat(tools=[{"type": "code_interpreter"}])
    assert caught.value.param == "tools"


@pytest.mark.parametrize(
    ("choice", "sent"),
    [
        ("required", "REQUIRED"),
        ("none", "NONE"),
        ("auto", None),
        ({"type": "function", "function": {"name": story.TOOL_NAME}}, "REQUIRED"),  # the only tool
    ],
)
def test_tool_choice(choice: Any, sent: str | None) -> None:
    assert chat(tools=[story.WEATHER_TOOL], tool_choice=choice).get("tool_choice") == sent


def test_a_named_tool_among_several_cannot_be_forced() -> None:
    other = {"type": "function", "function": {"name": "now"}}
    with pytest.raises(InvalidRequestError) as caught:
        chat(tools=[story.WEATHER_TOOL, other], tool_choice={"type": "function", "function": {"name": "now"}})
    assert caught.value.param == "tool_choice"


@pytest.mark.parametrize(
    ("response_format", "sent"),
    [
        ({"type": "json_object"}, {"type": "json_object"}),
        ({"type": "text"}, {"type": "text"}),
        (
            {"type": "json_schema", "json_schema": {"name": "city", "schema": {"type": "object"}, "strict": True}},
            {"type": "json_object", "json_schema": {"type": "object"}},
        ),
    ],
)
def test_json_mode(response_format: dict[str, Any], sent: dict[str, Any]) -> None:
    assert chat(response_format=response_format)["response_format"] == sent


def test_an_unknown_response_format_is_refused() -> None:
    with pytest.raises(InvalidRequestError) as caught:
        chat(response_format={"type": "grammar"})
    assert caught.value.param == "response_format"


# --- answers ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cohere", "openai"),
    [("COMPLETE", "stop"), ("STOP_SEQUENCE", "stop"), ("MAX_TOKENS", "length"), ("TOOL_CALL", "tool_calls")],
)
def test_finish_reasons(cohere: str, openai: str) -> None:
    assert finish_reason(cohere) == openai


@pytest.mark.parametrize(("cohere", "error"), [("ERROR", UpstreamError), ("TIMEOUT", UpstreamTimeoutError)])
def test_finish_reasons_that_mean_the_generation_failed_raise_retryable_errors(
    cohere: str, error: type[UpstreamError]
) -> None:
    with pytest.raises(error) as caught:
        finish_reason(cohere, "model overloaded")
    assert type(caught.value) is error and caught.value.retryable
    assert "model overloaded" in caught.value.message


def test_usage_reads_tokens_then_billed_units_and_cached_tokens() -> None:
    raw = {
        "billed_units": {"input_tokens": 5, "output_tokens": 9},
        "tokens": {"input_tokens": 71.0, "output_tokens": 9.0},
        "cached_tokens": 64,
    }
    assert usage_of(raw) == Usage(prompt_tokens=71, completion_tokens=9, cached_tokens=64)
    assert usage_of({"billed_units": {"input_tokens": 5, "output_tokens": 9}}) == Usage(5, 9)
    assert usage_of(None) == Usage()


# --- stream events ------------------------------------------------------------------------------


def delta_event(kind: str, message: dict[str, Any], index: int | None = None) -> dict[str, Any]:
    event: dict[str, Any] = {"type": kind, "delta": {"message": message}}
    if index is not None:
        event["index"] = index
    return event


def end_event(reason: str, **delta: Any) -> dict[str, Any]:
    return {"type": "message-end", "delta": {"finish_reason": reason, **delta}}


def feed(reader: StreamReader, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [json.loads(chunk.data) for event in events for chunk in reader.feed(event)]


def test_thinking_and_citations_are_left_out_of_the_stream() -> None:
    call = make_call({})
    reader = StreamReader(ChatChunks(call, "chatcmpl-x"), "chatcmpl")
    bodies = feed(
        reader,
        [
            {"type": "message-start", "id": "abc"},
            delta_event("content-start", {"content": {"type": "thinking", "thinking": ""}}, 0),
            delta_event("content-delta", {"content": {"thinking": "Let me think."}}, 0),
            {"type": "citation-start", "index": 0, "delta": {"message": {"citations": {}}}},
            delta_event("content-delta", {"content": {"text": "Paris."}}, 1),
            end_event("COMPLETE", usage={"tokens": {"input_tokens": 3, "output_tokens": 2}}),
        ],
    )
    assert [b["id"] for b in bodies] == ["chatcmpl-abc"] * 4
    deltas = [b["choices"][0]["delta"] for b in bodies if b["choices"]]
    assert deltas == [{"role": "assistant", "content": ""}, {"content": "Paris."}, {}]
    assert bodies[-1]["usage"]["completion_tokens"] == 2
    assert reader.finished


def test_parallel_tool_calls_stream_with_their_own_indices() -> None:
    reader = StreamReader(ChatChunks(make_call({}), "chatcmpl-x"), "chatcmpl")
    call_a = {"id": "a1", "type": "function", "function": {"name": "f", "arguments": '{"x":'}}
    call_b = {"id": "b2", "type": "function", "function": {"name": "g", "arguments": ""}}
    bodies = feed(
        reader,
        [
            {"type": "message-start", "id": "m"},
            delta_event("tool-plan-delta", {"tool_plan": "Calling both."}),
            delta_event("tool-call-start", {"tool_calls": call_a}, 1),
            delta_event("tool-call-delta", {"tool_calls": {"function": {"arguments": "1}"}}}, 1),
            delta_event("tool-call-start", {"tool_calls": call_b}, 2),
            delta_event("tool-call-delta", {"tool_calls": {"function": {"arguments": "{}"}}}, 2),
            end_event("TOOL_CALL"),
        ],
    )
    calls: dict[int, dict[str, str]] = {}
    for body in bodies:
        for delta in (body["choices"][0]["delta"].get("tool_calls") or ()) if body["choices"] else ():
            entry = calls.setdefault(delta["index"], {"id": "", "name": "", "arguments": ""})
            entry["id"] += delta.get("id") or ""
            entry["name"] += delta.get("function", {}).get("name") or ""
            entry["arguments"] += delta.get("function", {}).get("arguments") or ""
    assert calls == {
        0: {"id": "a1", "name": "f", "arguments": '{"x":1}'},
        1: {"id": "b2", "name": "g", "arguments": "{}"},
    }
    assert bodies[1]["choices"][0]["delta"] == {"content": "Calling both."}  # the plan, as text
    assert [b["choices"][0]["finish_reason"] for b in bodies if b["choices"]][-1] == "tool_calls"


def test_an_error_at_message_end_fails_the_stream() -> None:
    reader = StreamReader(ChatChunks(make_call({}), "chatcmpl-x"), "chatcmpl")
    feed(reader, [{"type": "message-start", "id": "m"}, delta_event("content-delta", {"content": {"text": "Hal"}}, 0)])
    with pytest.raises(UpstreamError) as caught:
        reader.feed(end_event("ERROR", error="internal failure"))
    assert caught.value.retryable and "internal failure" in caught.value.message


def test_a_completions_stream_has_text_completion_chunks_and_no_role_chunk() -> None:
    call = make_call({"prompt": "Hi"}, Operation.COMPLETIONS, stream=True)
    reader = StreamReader(CompletionChunks(call, "cmpl-x"), "cmpl")
    bodies = feed(
        reader,
        [
            {"type": "message-start", "id": "m"},
            delta_event("content-delta", {"content": {"text": "Hello"}}, 0),
            end_event("MAX_TOKENS", usage={"tokens": {"input_tokens": 1, "output_tokens": 1}}),
        ],
    )
    assert all(b["object"] == "text_completion" and b["id"] == "cmpl-m" for b in bodies)
    assert [c["text"] for b in bodies for c in b["choices"]] == ["Hello", ""]
    assert bodies[1]["choices"][0]["finish_reason"] == "length"
    assert bodies[2]["choices"] == [] and bodies[2]["usage"]["total_tokens"] == 2


# --- against the fake Cohere upstream -----------------------------------------------------------


class CohereWireWithDone(CohereWire):
    """Cohere's stream followed by an OpenAI-style ``[DONE]``, which the SDK also tolerates."""

    def stream(self, fixture: str, received: Received) -> list[bytes]:
        return [*super().stream(fixture, received), b"data: [DONE]\n\n"]


@pytest.fixture(scope="module")
def server() -> Iterator[UpstreamServer]:
    with UpstreamServer(CohereWireWithDone()) as upstream:
        yield upstream


@pytest.fixture
async def adapter(server: UpstreamServer) -> AsyncIterator[CohereAdapter]:
    server.reset()
    instance = CohereAdapter(server.base_url)
    yield instance
    await instance.aclose()


async def collect(chunks: AsyncIterator[StreamChunk]) -> list[StreamChunk]:
    return [chunk async for chunk in chunks]


def test_the_default_base_url_is_coheres() -> None:
    assert CohereAdapter("").base_url == DEFAULT_BASE_URL == "https://api.cohere.com"


async def test_a_tool_call_answer_carries_the_plan_as_content(adapter: CohereAdapter, server: UpstreamServer) -> None:
    server.reset(Answer("tool_call"))
    body = json.loads((await adapter.send(make_call({"messages": QUESTION, "tools": [story.WEATHER_TOOL]}))).body)

    message = body["choices"][0]["message"]
    assert message["content"] == "I will look up the current weather in Paris."
    assert message["tool_calls"][0]["id"] == "get_weather_1t4cq3zsb7vr"
    assert body["id"].startswith("chatcmpl-") and body["choices"][0]["finish_reason"] == "tool_calls"
    assert server.received[0].path == "/v2/chat" and server.received[0].body["stream"] is False


async def test_legacy_completions_go_through_chat(adapter: CohereAdapter, server: UpstreamServer) -> None:
    response = await adapter.send(
        make_call({"model": "p", "prompt": story.QUESTION, "max_tokens": 5}, Operation.COMPLETIONS)
    )

    body = json.loads(response.body)
    assert body["object"] == "text_completion"
    assert body["choices"][0]["text"] == story.REPLY and body["choices"][0]["finish_reason"] == "stop"
    assert response.usage == story.REPLY_USAGE
    (seen,) = server.received
    assert seen.body["messages"] == [{"role": "user", "content": story.QUESTION}]
    assert seen.body["max_tokens"] == 5 and "prompt" not in seen.body


async def test_legacy_completions_default_to_openais_16_tokens(adapter: CohereAdapter, server: UpstreamServer) -> None:
    await adapter.send(make_call({"model": "p", "prompt": story.QUESTION}, Operation.COMPLETIONS))
    assert server.received[0].body["max_tokens"] == 16


async def test_a_streamed_completion_ignores_a_trailing_done(adapter: CohereAdapter, server: UpstreamServer) -> None:
    call = make_call({"model": "p", "prompt": story.QUESTION, "stream": True}, Operation.COMPLETIONS, stream=True)
    chunks = await collect(adapter.stream(call))

    bodies = [json.loads(c.data) for c in chunks]
    assert all(b["object"] == "text_completion" for b in bodies)
    assert "".join(c["text"] for b in bodies for c in b["choices"]) == story.REPLY
    assert chunks[-1].usage_only and chunks[-1].usage == story.REPLY_USAGE


@pytest.mark.parametrize("encoding", ["float", "base64"])
async def test_embeddings(adapter: CohereAdapter, server: UpstreamServer, encoding: str) -> None:
    server.reset(Answer("embed"))
    body = {"model": "p", "input": ["hello", "goodbye"], "encoding_format": encoding, "dimensions": 256, "user": "u"}
    response = await adapter.send(make_call(body, Operation.EMBEDDINGS))

    expected = story.load_fixture("cohere", "embed")["embeddings"]["float"]
    answer = json.loads(response.body)
    vectors = [d["embedding"] for d in answer["data"]]
    if encoding == "base64":
        vectors = [
            list(struct.unpack(f"<{len(e)}f", base64.b64decode(v))) for v, e in zip(vectors, expected, strict=True)
        ]
    assert [d["index"] for d in answer["data"]] == [0, 1]
    assert [pytest.approx(v, rel=1e-6) for v in expected] == vectors
    assert response.usage == Usage(prompt_tokens=2) and answer["usage"] == {"prompt_tokens": 2, "total_tokens": 2}
    (seen,) = server.received
    assert seen.path == "/v2/embed"
    assert seen.body == {
        "model": "command-a-03-2025",
        "texts": ["hello", "goodbye"],
        "input_type": "search_document",
        "embedding_types": ["float"],
        "output_dimension": 256,
    }


def test_embeddings_take_coheres_input_type_from_the_request() -> None:
    sent = embed_request(
        make_call({"input": "q", "input_type": "search_query", "truncate": "END"}, Operation.EMBEDDINGS)
    )
    assert sent["input_type"] == "search_query" and sent["texts"] == ["q"] and sent["truncate"] == "END"


def test_token_array_inputs_cannot_be_embedded() -> None:
    with pytest.raises(InvalidRequestError) as caught:
        embed_request(make_call({"input": [[1, 2, 3]]}, Operation.EMBEDDINGS))
    assert caught.value.param == "input"


async def test_embeddings_cannot_be_streamed(adapter: CohereAdapter) -> None:
    with pytest.raises(InvalidRequestError):
        await collect(adapter.stream(make_call({"input": "x"}, Operation.EMBEDDINGS, stream=True)))
