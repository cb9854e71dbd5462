"""The Mistral adapter below the contract suite: what differs from OpenAI on the way in (renamed,
dropped and refused parameters, messages, tool call ids) and on the way out (the last stream chunk
split into finish + usage, normalized answers, error bodies), plus legacy completions through chat
and embeddings against the contract suite's fake Mistral upstream."""

from __future__ import annotations

import base64
import copy
import json
import re
import struct
from collections.abc import AsyncIterator, Iterator
from typing import Any

import orjson
import pytest

from common.errors import InvalidRequestError, UpstreamBadRequestError, UpstreamError
from common.providers.base import Operation, ProviderCall, StreamChunk, Usage
from tests.contract import story
from tests.contract.server import Answer, Fail, UpstreamServer
from tests.contract.upstreams.mistral import MistralWire
from workers.providers.mistral import (
    DEFAULT_BASE_URL,
    MistralAdapter,
    chat_body,
    error_message,
    normalize_choices,
    tool_call_id,
)

QUESTION = [{"role": "user", "content": "Hi"}]


def body_for(**extra: Any) -> dict[str, Any]:
    return chat_body({"model": "public", "messages": QUESTION, **extra}, upstream_model="mistral-small", stream=False)


def make_call(body: dict[str, Any], operation: str = Operation.CHAT, *, stream: bool = False) -> ProviderCall:
    return ProviderCall(
        request_id="req-1",
        operation=operation,
        body=body,
        upstream_model="mistral-small-latest",
        api_key="mi-key",
        timeout_s=5,
        stream=stream,
    )


# --- requests -----------------------------------------------------------------------------------


def test_openai_parameters_mistral_names_differently_are_renamed() -> None:
    body = {
        "model": "public",
        "messages": QUESTION,
        "max_completion_tokens": 50,
        "seed": 7,
        "tool_choice": "required",
        "stream": True,
        "stream_options": {"include_usage": True},
        "n": 2,
        "stop": ["\n"],
        "response_format": {"type": "json_schema", "json_schema": {"name": "a", "schema": {"type": "object"}}},
        "parallel_tool_calls": False,
        "prompt_cache_key": "session-42",
        "safe_prompt": True,  # Mistral's own: passes through
        "user": "u-1",
        "safety_identifier": "s-1",
        "store": True,
        "metadata": {"k": "v"},
        "service_tier": "auto",
    }
    before = copy.deepcopy(body)
    sent = chat_body(body, upstream_model="mistral-small", stream=True)

    assert sent == {
        "model": "mistral-small",
        "messages": QUESTION,
        "max_tokens": 50,
        "random_seed": 7,
        "tool_choice": "any",
        "stream": True,
        "n": 2,
        "stop": ["\n"],
        "response_format": body["response_format"],
        "parallel_tool_calls": False,
        "prompt_cache_key": "session-42",
        "safe_prompt": True,
    }
    assert sent["messages"] is body["messages"]  # nothing to fix in them: not copied
    assert body == before


def test_a_call_that_does_not_stream_never_sends_stream_options() -> None:
    sent = chat_body(
        {"messages": QUESTION, "stream": True, "stream_options": {"include_usage": True}},
        upstream_model="m",
        stream=False,
    )
    assert sent["stream"] is False and "stream_options" not in sent


@pytest.mark.parametrize("choice", ["auto", "none", "any", {"type": "function", "function": {"name": story.TOOL_NAME}}])
def test_other_tool_choices_are_mistrals_too(choice: Any) -> None:
    assert body_for(tool_choice=choice)["tool_choice"] == choice


@pytest.mark.parametrize(("name", "value"), [("logit_bias", {"1": 5}), ("logprobs", True), ("top_logprobs", 2)])
def test_parameters_mistral_cannot_honour_are_refused_naming_them(name: str, value: Any) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        body_for(**{name: value})
    assert caught.value.param == name and caught.value.status == 400


def test_the_off_value_of_a_refused_parameter_is_accepted() -> None:
    sent = body_for(logit_bias={}, logprobs=False, top_logprobs=None)
    assert sent["logit_bias"] == {} and sent["logprobs"] is False


def test_messages_are_fixed_where_mistral_would_refuse_them() -> None:
    messages = [
        {"role": "developer", "content": "Be brief."},
        {"role": "user", "content": "Weather?", "name": "ann"},
        {
            "role": "assistant",
            "content": None,
            "refusal": None,
            "annotations": [],
            "audio": None,
            "function_call": None,
            "tool_calls": [{"id": "D681PevKs", "type": "function", "function": {"name": "f", "arguments": "{}"}}],
        },
        {"role": "tool", "tool_call_id": "D681PevKs", "name": "f", "content": "{}"},
        {"role": "assistant", "content": "", "refusal": "I can't."},
    ]
    before = copy.deepcopy(messages)
    sent = chat_body({"messages": messages}, upstream_model="m", stream=False)["messages"]

    assert sent == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": None, "tool_calls": messages[2]["tool_calls"]},
        messages[3],  # a tool message's name is Mistral's too
        messages[4],  # a refusal that says something is not silently dropped
    ]
    assert messages == before


def test_foreign_tool_call_ids_are_mapped_the_same_way_in_calls_and_results() -> None:
    messages = [
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_Dn2RJJSxzDm49vlVTehseJ0k",
                    "type": "function",
                    "function": {"name": "w", "arguments": "{}"},
                },
                {
                    "id": "toolu_01A09q90qw90lq917835lq9",
                    "type": "function",
                    "function": {"name": "w", "arguments": "{}"},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "call_Dn2RJJSxzDm49vlVTehseJ0k", "content": "18"},
        {"role": "tool", "tool_call_id": "toolu_01A09q90qw90lq917835lq9", "content": "24"},
    ]
    sent = chat_body({"messages": messages}, upstream_model="m", stream=False)["messages"]

    call_ids = [c["id"] for c in sent[1]["tool_calls"]]
    assert all(re.fullmatch(r"[A-Za-z0-9]{9}", i) for i in call_ids)
    assert call_ids[0] != call_ids[1]
    assert [sent[2]["tool_call_id"], sent[3]["tool_call_id"]] == call_ids
    assert tool_call_id("call_Dn2RJJSxzDm49vlVTehseJ0k") == call_ids[0]  # deterministic across requests
    assert tool_call_id("D681PevKs") == "D681PevKs"


# --- stream chunks ------------------------------------------------------------------------------


def chunk_json(choices: list[dict[str, Any]], **extra: Any) -> str:
    return orjson.dumps(
        {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": choices, **extra}
    ).decode()


USAGE = {"prompt_tokens": 10, "total_tokens": 13, "completion_tokens": 3, "prompt_tokens_details": {"cached_tokens": 4}}


def test_the_last_chunk_is_split_into_the_finish_chunk_and_a_usage_chunk() -> None:
    adapter = MistralAdapter("http://unused")
    data = chunk_json([{"index": 0, "delta": {"content": "!"}, "finish_reason": "stop"}], usage=USAGE)
    chunks, finished = adapter.stream_chunks(make_call({}, stream=True), data)

    finish, usage = (json.loads(c.data) for c in chunks)
    assert finished
    assert finish["choices"] == [{"index": 0, "delta": {"content": "!"}, "finish_reason": "stop"}]
    assert "usage" not in finish and not chunks[0].usage_only and chunks[0].text_chars == 1
    assert usage["choices"] == [] and usage["usage"] == USAGE and usage["id"] == "c1"
    assert chunks[1].usage_only and chunks[1].usage == Usage(10, 3, cached_tokens=4)


def test_an_ordinary_chunk_is_relayed_byte_for_byte() -> None:
    data = chunk_json([{"index": 0, "delta": {"content": "Par"}, "finish_reason": None}])
    (chunk,), finished = MistralAdapter("http://unused").stream_chunks(make_call({}, stream=True), data)
    assert chunk.data == data.encode() and chunk.text_chars == 3 and not finished and chunk.usage is None


def test_a_streamed_tool_call_gets_its_type_and_list_content_becomes_text() -> None:
    call = {"id": "Hx7k2QpZa", "function": {"name": "w", "arguments": "{}"}, "index": 0}
    content = [{"type": "thinking", "thinking": [{"type": "text", "text": "hmm"}]}, {"type": "text", "text": "Ok."}]
    data = chunk_json([{"index": 0, "delta": {"content": content, "tool_calls": [call]}, "finish_reason": None}])
    (chunk,), _ = MistralAdapter("http://unused").stream_chunks(make_call({}, stream=True), data)

    delta = json.loads(chunk.data)["choices"][0]["delta"]
    assert delta == {"content": "Ok.", "tool_calls": [{**call, "type": "function"}]}


def test_an_error_sent_inside_the_stream_fails_it() -> None:
    data = orjson.dumps({"error": {"message": "upstream overloaded"}}).decode()
    with pytest.raises(UpstreamError) as caught:
        MistralAdapter("http://unused").stream_chunks(make_call({}, stream=True), data)
    assert "upstream overloaded" in caught.value.message and caught.value.retryable


def test_answers_get_openais_shapes_and_untouched_ones_keep_their_bytes() -> None:
    adapter = MistralAdapter("http://unused")
    call = make_call({})
    plain = story.load_fixture("mistral", "chat")
    raw = orjson.dumps(plain)
    assert adapter.answer_body(call, copy.deepcopy(plain), raw) is raw

    reasoning = copy.deepcopy(plain)
    reasoning["choices"][0]["message"]["content"] = [
        {"type": "thinking", "thinking": [{"type": "text", "text": "France... Paris."}]},
        {"type": "text", "text": story.REPLY},
    ]
    reasoning["choices"][0]["message"]["tool_calls"] = [
        {"id": "D681PevKs", "function": {"name": "f", "arguments": "{}"}}
    ]
    message = json.loads(adapter.answer_body(call, reasoning, orjson.dumps(reasoning)))["choices"][0]["message"]
    assert message["content"] == story.REPLY and message["tool_calls"][0]["type"] == "function"


def test_normalize_choices_reports_whether_it_changed_anything() -> None:
    assert not normalize_choices([{"message": {"content": "x", "tool_calls": None}}], "message")
    assert normalize_choices([{"message": {"content": [{"type": "text", "text": "x"}]}}], "message")


@pytest.mark.parametrize(
    ("body", "message", "param"),
    [
        (
            {"object": "error", "message": "Invalid model: x", "type": "invalid_model", "code": "1500"},
            "Invalid model: x",
            None,
        ),
        (
            {
                "object": "error",
                "message": {
                    "detail": [
                        {"type": "extra_forbidden", "loc": ["body", "user"], "msg": "Extra inputs are not permitted"}
                    ]
                },
                "type": "invalid_request_error",
            },
            "user: Extra inputs are not permitted",
            "user",
        ),
        (
            {
                "object": "error",
                "message": '{"detail":[{"type":"missing","loc":["body","messages",0,"content"],"msg":"Field required"}]}',
            },
            "messages.0.content: Field required",
            "messages.0.content",
        ),
        (
            {"detail": [{"loc": ["body", "tools"], "msg": "bad"}, {"loc": [], "msg": "worse"}]},
            "tools: bad; worse",
            "tools",
        ),
        ({"message": "Unauthorized", "request_id": "r"}, "Unauthorized", None),
        ([1, 2], "", None),
    ],
)
def test_error_bodies(body: Any, message: str, param: str | None) -> None:
    assert error_message(body) == (message, param)


# --- against the fake Mistral upstream ----------------------------------------------------------


class MistralWireWithValidationErrors(MistralWire):
    """Mistral's 422 body: pydantic's detail list inside ``message``."""

    def error(self, status: int, message: str) -> bytes:
        if status != 422:
            return super().error(status, message)
        detail = [{"type": "extra_forbidden", "loc": ["body", "x_thing"], "msg": message, "input": 1}]
        return orjson.dumps({"object": "error", "message": {"detail": detail}, "type": "invalid_request_error"})


@pytest.fixture(scope="module")
def server() -> Iterator[UpstreamServer]:
    with UpstreamServer(MistralWireWithValidationErrors()) as upstream:
        yield upstream


@pytest.fixture
async def adapter(server: UpstreamServer) -> AsyncIterator[MistralAdapter]:
    server.reset()
    instance = MistralAdapter(server.base_url)
    yield instance
    await instance.aclose()


async def collect(chunks: AsyncIterator[StreamChunk]) -> list[StreamChunk]:
    return [chunk async for chunk in chunks]


def test_the_default_base_url_is_mistrals() -> None:
    assert MistralAdapter("").base_url == DEFAULT_BASE_URL == "https://api.mistral.ai"


async def test_a_validation_error_names_the_field(adapter: MistralAdapter, server: UpstreamServer) -> None:
    server.reset(Fail(422, "Extra inputs are not permitted"))
    with pytest.raises(UpstreamBadRequestError) as caught:
        await adapter.send(make_call({"messages": QUESTION, "x_thing": 1}))
    assert caught.value.message == "x_thing: Extra inputs are not permitted"
    assert caught.value.param == "x_thing" and caught.value.status == 400


async def test_legacy_completions_go_through_chat(adapter: MistralAdapter, server: UpstreamServer) -> None:
    response = await adapter.send(make_call({"model": "p", "prompt": story.QUESTION, "seed": 3}, Operation.COMPLETIONS))

    body = json.loads(response.body)
    assert body["object"] == "text_completion" and body["choices"][0]["text"] == story.REPLY
    assert body["id"] == "cf79f7daaee244b1a0ae5c7b1444424a"
    assert response.usage == story.REPLY_USAGE
    (seen,) = server.received
    assert seen.path == "/v1/chat/completions"
    assert seen.body == {
        "model": "mistral-small-latest",
        "messages": [{"role": "user", "content": story.QUESTION}],
        "random_seed": 3,
        "max_tokens": 16,  # OpenAI's default for legacy completions
    }


async def test_a_streamed_completion(adapter: MistralAdapter, server: UpstreamServer) -> None:
    call = make_call({"model": "p", "prompt": story.QUESTION, "stream": True}, Operation.COMPLETIONS, stream=True)
    chunks = await collect(adapter.stream(call))

    bodies = [json.loads(c.data) for c in chunks]
    assert all(b["object"] == "text_completion" for b in bodies)
    assert "".join(c["text"] for b in bodies for c in b["choices"]) == story.REPLY
    assert [c["finish_reason"] for b in bodies for c in b["choices"] if c["finish_reason"]] == ["stop"]
    assert chunks[-1].usage_only and chunks[-1].usage == story.REPLY_USAGE and bodies[-1]["choices"] == []
    assert "stream_options" not in server.received[0].body


@pytest.mark.parametrize("encoding", ["float", "base64"])
async def test_embeddings(adapter: MistralAdapter, server: UpstreamServer, encoding: str) -> None:
    server.reset(Answer("embeddings"))
    body = {"model": "p", "input": ["hello", "goodbye"], "encoding_format": encoding, "dimensions": 512, "user": "u"}
    response = await adapter.send(make_call(body, Operation.EMBEDDINGS))

    fixture = story.load_fixture("mistral", "embeddings")
    expected = [d["embedding"] for d in fixture["data"]]
    answer = json.loads(response.body)
    vectors = [d["embedding"] for d in answer["data"]]
    if encoding == "base64":
        vectors = [
            list(struct.unpack(f"<{len(e)}f", base64.b64decode(v))) for v, e in zip(vectors, expected, strict=True)
        ]
    else:
        assert answer == fixture  # floats: Mistral's answer goes as it came
    assert [pytest.approx(v, rel=1e-6) for v in expected] == vectors
    assert response.usage == Usage(prompt_tokens=6)
    (seen,) = server.received
    assert seen.path == "/v1/embeddings"
    assert seen.body == {"model": "mistral-small-latest", "input": ["hello", "goodbye"], "output_dimension": 512}
