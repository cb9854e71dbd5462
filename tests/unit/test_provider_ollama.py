"""The Ollama native adapter: request translation (parameters, images, tools, JSON mode, refusals),
answer translation (finish reasons, tool-call ids, usage), NDJSON streams, embeddings and completions.
The HTTP cases run against the contract suite's real local server speaking Ollama's wire format."""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from common.errors import InvalidRequestError, ModelRouterError, UpstreamError
from common.providers.base import Operation, ProviderCall, StreamChunk, Usage
from tests.contract import story
from tests.contract.server import Received, UpstreamServer
from tests.contract.upstreams.ollama import WIRE
from workers.providers._ollama_request import chat_request, embed_request, generate_request
from workers.providers.ollama import NdjsonReader, OllamaAdapter, chat_answer, embed_answer, generate_answer

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\nfake image bytes").decode()


def make_call(
    body: dict[str, Any],
    *,
    operation: str = Operation.CHAT,
    stream: bool = False,
    options: dict[str, str] | None = None,
) -> ProviderCall:
    return ProviderCall(
        request_id="req42",
        operation=operation,
        body=body,
        upstream_model="llama3.2:3b",
        api_key=None,
        timeout_s=5,
        stream=stream,
        options=options or {},
    )


def chat(**extra: Any) -> dict[str, Any]:
    return {"model": "public", "messages": [{"role": "user", "content": "hi"}], **extra}


def chunks_json(chunks: list[StreamChunk]) -> list[dict[str, Any]]:
    return [json.loads(c.data) for c in chunks]


# --- request: parameters --------------------------------------------------------------------------


def test_sampling_parameters_go_under_options_and_the_model_is_replaced() -> None:
    body = chat(
        temperature=0.3, top_p=0.9, max_tokens=64, stop="END", seed=7, presence_penalty=0.5, frequency_penalty=0.25
    )
    sent = chat_request(make_call(body), stream=False)

    assert sent["model"] == "llama3.2:3b"
    assert sent["stream"] is False
    assert sent["messages"] == [{"role": "user", "content": "hi"}]
    assert sent["options"] == {
        "temperature": 0.3,
        "top_p": 0.9,
        "num_predict": 64,
        "stop": ["END"],
        "seed": 7,
        "presence_penalty": 0.5,
        "frequency_penalty": 0.25,
    }
    assert "format" not in sent and "tools" not in sent


def test_stream_is_always_explicit_because_ollama_streams_by_default() -> None:
    assert chat_request(make_call(chat()), stream=True)["stream"] is True
    assert chat_request(make_call(chat(stream=True)), stream=False)["stream"] is False


def test_max_completion_tokens_wins_over_max_tokens_and_stop_lists_pass() -> None:
    sent = chat_request(make_call(chat(max_tokens=10, max_completion_tokens=20, stop=["a", "b"])), stream=False)
    assert sent["options"] == {"num_predict": 20, "stop": ["a", "b"]}


def test_deployment_options_set_the_context_window_and_keep_alive() -> None:
    sent = chat_request(make_call(chat(), options={"num_ctx": "8192", "keep_alive": "10m"}), stream=False)
    assert sent["options"] == {"num_ctx": 8192}
    assert sent["keep_alive"] == "10m"
    with pytest.raises(ModelRouterError) as caught:
        chat_request(make_call(chat(), options={"num_ctx": "big"}), stream=False)
    assert caught.value.code == "invalid_provider_option"


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"n": 2}, "n"),
        ({"logit_bias": {"1": 5}}, "logit_bias"),
        ({"logprobs": True}, "logprobs"),
        ({"top_logprobs": 3}, "top_logprobs"),
        ({"x_vendor_extension": 1}, "x_vendor_extension"),
        ({"stop": 5}, "stop"),
        ({"reasoning_effort": "minimal"}, "reasoning_effort"),
        ({"response_format": {"type": "xml"}}, "response_format"),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}},
            "response_format.json_schema.schema",
        ),
    ],
)
def test_parameters_ollama_cannot_honour_are_refused_by_name(extra: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        chat_request(make_call(chat(**extra)), stream=False)
    assert caught.value.param == param
    assert caught.value.status == 400


def test_parameters_without_effect_on_the_answer_are_accepted() -> None:
    body = chat(
        user="u-1", metadata={"a": "b"}, store=False, n=1, logprobs=False, stream_options={"include_usage": True}
    )
    sent = chat_request(make_call(body, stream=True), stream=True)
    assert set(sent) == {"model", "messages", "stream"}


def test_json_mode_and_structured_outputs_become_format() -> None:
    schema = {"type": "object", "properties": {"age": {"type": "integer"}}, "required": ["age"]}
    json_mode = chat_request(make_call(chat(response_format={"type": "json_object"})), stream=False)
    structured = chat_request(
        make_call(chat(response_format={"type": "json_schema", "json_schema": {"name": "p", "schema": schema}})),
        stream=False,
    )
    text = chat_request(make_call(chat(response_format={"type": "text"})), stream=False)

    assert json_mode["format"] == "json"
    assert structured["format"] == schema
    assert "format" not in text


def test_reasoning_effort_becomes_think() -> None:
    assert chat_request(make_call(chat(reasoning_effort="none")), stream=False)["think"] is False
    assert chat_request(make_call(chat(reasoning_effort="high")), stream=False)["think"] == "high"


# --- request: messages ----------------------------------------------------------------------------


def test_data_url_images_become_base64_images_and_text_parts_join() -> None:
    message = {
        "role": "user",
        "content": [
            {"type": "text", "text": "What is this?"},
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}", "detail": "high"}},
            {"type": "text", "text": "Be brief."},
        ],
    }
    sent = chat_request(
        make_call({"model": "m", "messages": [{"role": "developer", "content": "sys"}, message]}), stream=False
    )

    assert sent["messages"] == [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "What is this?\nBe brief.", "images": [PNG]},
    ]


def test_an_http_image_url_is_refused_naming_the_part() -> None:
    message = {
        "role": "user",
        "content": [
            {"type": "text", "text": "x"},
            {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
        ],
    }
    with pytest.raises(InvalidRequestError) as caught:
        chat_request(make_call({"model": "m", "messages": [message]}), stream=False)
    assert caught.value.param == "messages[0].content[1]"
    assert "data URL" in caught.value.message


@pytest.mark.parametrize(
    ("message", "param"),
    [
        (
            {
                "role": "system",
                "content": [{"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}],
            },
            "messages[0].content[0]",
        ),
        (
            {"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "x", "format": "wav"}}]},
            "messages[0].content[0]",
        ),
        (
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png,raw"}}]},
            "messages[0].content[0]",
        ),
        ({"role": "function", "name": "f", "content": "x"}, "messages[0].role"),
        ({"role": "assistant", "content": "x", "audio": {"id": "a"}}, "messages[0].audio"),
    ],
)
def test_message_content_ollama_cannot_take_is_refused(message: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        chat_request(make_call({"model": "m", "messages": [message]}), stream=False)
    assert caught.value.param == param


def test_assistant_tool_calls_carry_argument_objects_and_tool_results_name_their_tool() -> None:
    messages = [
        {"role": "user", "content": story.WEATHER_QUESTION},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_a",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                },
                {"id": "call_b", "type": "function", "function": {"name": "get_time", "arguments": ""}},
            ],
        },
        {"role": "tool", "tool_call_id": "call_b", "content": "noon"},
        {"role": "tool", "tool_call_id": "call_a", "content": [{"type": "text", "text": "sunny"}]},
    ]
    sent = chat_request(make_call({"model": "m", "messages": messages, "tools": [story.WEATHER_TOOL]}), stream=False)

    assistant, time_result, weather_result = sent["messages"][1:]
    assert assistant == {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {
                "type": "function",
                "id": "call_a",
                "function": {"index": 0, "name": "get_weather", "arguments": {"city": "Paris"}},
            },
            {"type": "function", "id": "call_b", "function": {"index": 1, "name": "get_time", "arguments": {}}},
        ],
    }
    assert time_result == {"role": "tool", "content": "noon", "tool_call_id": "call_b", "tool_name": "get_time"}
    assert weather_result == {"role": "tool", "content": "sunny", "tool_call_id": "call_a", "tool_name": "get_weather"}


def test_tool_call_arguments_that_are_not_a_json_object_are_refused() -> None:
    messages = [
        {
            "role": "assistant",
            "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "[1]"}}],
        }
    ]
    with pytest.raises(InvalidRequestError) as caught:
        chat_request(make_call({"model": "m", "messages": messages}), stream=False)
    assert caught.value.param == "messages[0].tool_calls[0].function.arguments"


def test_function_tools_pass_without_strict() -> None:
    tool = {"type": "function", "function": {**story.WEATHER_TOOL["function"], "strict": True}}
    sent = chat_request(make_call(chat(tools=[tool], tool_choice="auto", parallel_tool_calls=True)), stream=False)
    assert sent["tools"] == [story.WEATHER_TOOL]


def test_tool_choice_none_offers_no_tools() -> None:
    sent = chat_request(make_call(chat(tools=[story.WEATHER_TOOL], tool_choice="none")), stream=False)
    assert "tools" not in sent


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"tool_choice": "required"}, "tool_choice"),
        ({"tool_choice": {"type": "function", "function": {"name": "get_weather"}}}, "tool_choice"),
        ({"parallel_tool_calls": False}, "parallel_tool_calls"),
        ({"tools": [{"type": "custom", "custom": {"name": "x"}}]}, "tools[0]"),
    ],
)
def test_tool_requests_ollama_cannot_honour_are_refused(extra: dict[str, Any], param: str) -> None:
    body = chat(tools=[story.WEATHER_TOOL]) | extra
    with pytest.raises(InvalidRequestError) as caught:
        chat_request(make_call(body), stream=False)
    assert caught.value.param == param


# --- answers --------------------------------------------------------------------------------------


def ollama_answer(**fields: Any) -> dict[str, Any]:
    return {"model": "llama3.2", "done": True, "prompt_eval_count": 11, "eval_count": 5, **fields}


@pytest.mark.parametrize(("done_reason", "finish"), [("stop", "stop"), ("length", "length"), (None, "stop")])
def test_done_reasons_map_onto_finish_reasons(done_reason: str | None, finish: str) -> None:
    answer = ollama_answer(message={"role": "assistant", "content": "Hi."}, done_reason=done_reason)
    response = chat_answer(make_call(chat()), answer)

    body = json.loads(response.body)
    assert body["object"] == "chat.completion"
    assert body["model"] == "llama3.2:3b"
    assert body["choices"][0]["finish_reason"] == finish
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "Hi.", "refusal": None}
    assert response.usage == Usage(prompt_tokens=11, completion_tokens=5)
    assert body["usage"] == {"prompt_tokens": 11, "completion_tokens": 5, "total_tokens": 16}


def test_tool_calls_get_stable_ids_unless_ollama_sent_one() -> None:
    calls = [
        {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}},
        {"id": "call_from_ollama", "function": {"index": 1, "name": "get_time", "arguments": {}}},
    ]
    answer = ollama_answer(message={"role": "assistant", "content": "", "tool_calls": calls}, done_reason="stop")
    first = json.loads(chat_answer(make_call(chat()), answer).body)
    again = json.loads(chat_answer(make_call(chat()), answer).body)

    choice = first["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    weather, time_call = choice["message"]["tool_calls"]
    assert weather == {
        "id": "call_req42_0",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
    }
    assert time_call["id"] == "call_from_ollama"
    assert again == first


def test_a_missing_prompt_count_reads_as_zero() -> None:
    answer = {"message": {"role": "assistant", "content": "ok"}, "done": True, "eval_count": 2}
    assert chat_answer(make_call(chat()), answer).usage == Usage(prompt_tokens=0, completion_tokens=2)


# --- streams --------------------------------------------------------------------------------------


def line(content: str = "", tool_calls: list[Any] | None = None, **fields: Any) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return {"model": "llama3.2", "message": message, "done": False, **fields}


def test_each_line_makes_one_chunk_the_first_naming_the_role() -> None:
    reader = NdjsonReader(make_call(chat(), stream=True))
    out = [
        reader.feed(line("The")),
        reader.feed(line(" end")),
        reader.feed(line(done=True, done_reason="length", prompt_eval_count=3, eval_count=2)),
    ]

    first, second, last = (chunks_json(c) for c in out)
    assert [c["choices"][0]["delta"] for c in first] == [{"role": "assistant", "content": "The"}]
    assert [c["choices"][0]["delta"] for c in second] == [{"content": " end"}]
    assert last[0]["choices"][0]["finish_reason"] == "length"
    assert last[1]["choices"] == [] and last[1]["usage"]["total_tokens"] == 5
    assert out[2][1].usage_only and out[2][1].usage == Usage(3, 2)
    assert sum(c.text_chars for cs in out for c in cs) == len("The end")
    assert reader.done


def test_a_streamed_tool_call_arrives_whole_and_finishes_with_tool_calls() -> None:
    reader = NdjsonReader(make_call(chat(), stream=True))
    call = {"function": {"index": 0, "name": "get_weather", "arguments": {"city": "Paris"}}}
    chunks = reader.feed(line(tool_calls=[call])) + reader.feed(line(done=True, done_reason="stop"))

    bodies = chunks_json(chunks)
    start, arguments = (b["choices"][0]["delta"] for b in bodies[:2])
    assert start == {
        "role": "assistant",
        "tool_calls": [
            {"index": 0, "id": "call_req42_0", "type": "function", "function": {"name": "get_weather", "arguments": ""}}
        ],
    }
    assert arguments == {"tool_calls": [{"index": 0, "function": {"arguments": '{"city":"Paris"}'}}]}
    assert bodies[2]["choices"][0]["finish_reason"] == "tool_calls"


def test_an_error_line_mid_stream_is_an_upstream_error() -> None:
    reader = NdjsonReader(make_call(chat(), stream=True))
    reader.feed(line("Yes"))
    with pytest.raises(UpstreamError) as caught:
        reader.feed({"error": "an error was encountered while running the model"})
    assert "an error was encountered" in caught.value.message
    assert caught.value.retryable


# --- completions (/api/generate) ------------------------------------------------------------------


def completion(**extra: Any) -> dict[str, Any]:
    return {"model": "public", "prompt": "def add(a, b):", **extra}


def test_completions_go_to_generate_with_suffix_and_options() -> None:
    call = make_call(completion(suffix="    return c", max_tokens=32, temperature=0), operation=Operation.COMPLETIONS)
    sent = generate_request(call, stream=False)
    assert sent == {
        "model": "llama3.2:3b",
        "prompt": "def add(a, b):",
        "stream": False,
        "suffix": "    return c",
        "options": {"temperature": 0, "num_predict": 32},
    }


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"prompt": ["a", "b"]}, "prompt"),
        ({"prompt": [1, 2]}, "prompt"),
        ({"best_of": 3}, "best_of"),
        ({"logprobs": 2}, "logprobs"),
    ],
)
def test_completion_parameters_ollama_cannot_honour_are_refused(extra: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        generate_request(make_call(completion(**extra), operation=Operation.COMPLETIONS), stream=False)
    assert caught.value.param == param


def test_a_generate_answer_is_a_text_completion_with_the_prompt_echoed_when_asked() -> None:
    answer = {
        "response": " return a + b",
        "done": True,
        "done_reason": "length",
        "prompt_eval_count": 6,
        "eval_count": 4,
    }
    call = make_call(completion(echo=True), operation=Operation.COMPLETIONS)
    body = json.loads(generate_answer(call, answer).body)

    assert body["object"] == "text_completion"
    assert body["id"] == "cmpl-req42"
    assert body["choices"] == [
        {"text": "def add(a, b): return a + b", "index": 0, "logprobs": None, "finish_reason": "length"}
    ]
    assert body["usage"] == {"prompt_tokens": 6, "completion_tokens": 4, "total_tokens": 10}


def test_a_generate_stream_makes_text_completion_chunks() -> None:
    reader = NdjsonReader(make_call(completion(), operation=Operation.COMPLETIONS, stream=True))
    chunks = reader.feed({"response": " return", "done": False}) + reader.feed(
        {"response": " a+b", "done": True, "done_reason": "stop", "prompt_eval_count": 6, "eval_count": 3}
    )

    bodies = chunks_json(chunks)
    assert all(b["object"] == "text_completion" for b in bodies)
    assert [b["choices"][0]["text"] for b in bodies[:3]] == [" return", " a+b", ""]
    assert bodies[2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1].usage_only and chunks[-1].usage == Usage(6, 3)


# --- embeddings (/api/embed) ----------------------------------------------------------------------


def test_embeddings_send_all_inputs_without_silent_truncation() -> None:
    call = make_call({"model": "e", "input": ["a", "b"], "dimensions": 2}, operation=Operation.EMBEDDINGS)
    assert embed_request(call) == {"model": "llama3.2:3b", "input": ["a", "b"], "truncate": False, "dimensions": 2}
    with pytest.raises(InvalidRequestError) as caught:
        embed_request(make_call({"model": "e", "input": [[1, 2]]}, operation=Operation.EMBEDDINGS))
    assert caught.value.param == "input"


@pytest.mark.parametrize("encoding", ["float", "base64"])
def test_embeddings_answer_as_an_openai_list(encoding: str) -> None:
    call = make_call({"model": "e", "input": ["a", "b"], "encoding_format": encoding}, operation=Operation.EMBEDDINGS)
    answer = {"model": "e", "embeddings": [[0.5, -0.25], [1.0, 2.0]], "prompt_eval_count": 4}
    response = embed_answer(call, answer)

    body = json.loads(response.body)
    vectors = [d["embedding"] for d in body["data"]]
    if encoding == "base64":
        vectors = [list(struct.unpack("<2f", base64.b64decode(v))) for v in vectors]
    assert vectors == [[0.5, -0.25], [1.0, 2.0]]
    assert [d["index"] for d in body["data"]] == [0, 1]
    assert body["usage"] == {"prompt_tokens": 4, "total_tokens": 4}
    assert response.usage == Usage(prompt_tokens=4)


# --- over HTTP, against a real local server -------------------------------------------------------


class GenerateAndEmbedWire:
    """Ollama's wire for /api/generate and /api/embed (the contract fixtures cover /api/chat)."""

    base_path = ""
    stream_media_type = "application/x-ndjson"

    def read(self, received: Received) -> None:
        received.model = received.body.get("model")
        # /api/embed never streams; /api/generate does unless told not to.
        received.stream = received.path == "/api/generate" and received.body.get("stream", True) is not False

    def answer(self, fixture: str, received: Received) -> bytes:
        if received.path == "/api/embed":
            return orjson.dumps({"model": "e", "embeddings": [[0.1, 0.2]], "prompt_eval_count": 3})
        return orjson.dumps(
            {"response": "42", "done": True, "done_reason": "stop", "prompt_eval_count": 5, "eval_count": 1}
        )

    def stream(self, fixture: str, received: Received) -> list[bytes]:
        lines = [
            {"response": "4", "done": False},
            {"response": "2", "done": True, "done_reason": "stop", "prompt_eval_count": 5, "eval_count": 2},
        ]
        return [orjson.dumps(x) + b"\n" for x in lines]

    def error(self, status: int, message: str) -> bytes:
        return orjson.dumps({"error": message})


@pytest.fixture
async def generate_server() -> AsyncIterator[UpstreamServer]:
    with UpstreamServer(GenerateAndEmbedWire()) as server:
        yield server


@pytest.fixture
async def chat_server() -> AsyncIterator[UpstreamServer]:
    with UpstreamServer(WIRE) as server:
        yield server


async def test_a_chat_reply_over_http(chat_server: UpstreamServer) -> None:
    adapter = OllamaAdapter(chat_server.base_url)
    try:
        response = await adapter.send(
            make_call({"model": "m", "messages": [{"role": "user", "content": story.QUESTION}]})
        )
        chunks = [
            c
            async for c in adapter.stream(
                make_call({"model": "m", "messages": [{"role": "user", "content": story.QUESTION}]}, stream=True)
            )
        ]
    finally:
        await adapter.aclose()

    body = json.loads(response.body)
    assert body["choices"][0]["message"]["content"] == story.REPLY
    # Ollama reports no cached tokens; the story's other numbers hold.
    expected = Usage(story.REPLY_USAGE.prompt_tokens, story.REPLY_USAGE.completion_tokens)
    assert response.usage == expected
    assert chunks[-1].usage_only and chunks[-1].usage == expected
    texts = [b["choices"][0]["delta"].get("content") for b in chunks_json(chunks) if b["choices"]]
    assert [t for t in texts if t] == story.REPLY_PIECES
    first, second = chat_server.received
    assert (first.path, first.stream, second.path, second.stream) == ("/api/chat", False, "/api/chat", True)
    assert first.model == "llama3.2:3b"


async def test_completions_and_embeddings_over_http(generate_server: UpstreamServer) -> None:
    adapter = OllamaAdapter(generate_server.base_url)
    try:
        whole = await adapter.send(make_call(completion(), operation=Operation.COMPLETIONS))
        streamed = [
            c async for c in adapter.stream(make_call(completion(), operation=Operation.COMPLETIONS, stream=True))
        ]
        embedded = await adapter.send(make_call({"model": "e", "input": "x"}, operation=Operation.EMBEDDINGS))
        with pytest.raises(InvalidRequestError):
            [
                c
                async for c in adapter.stream(
                    make_call({"model": "e", "input": "x"}, operation=Operation.EMBEDDINGS, stream=True)
                )
            ]
    finally:
        await adapter.aclose()

    assert json.loads(whole.body)["choices"][0]["text"] == "42"
    assert [b["choices"][0]["text"] for b in chunks_json(streamed) if b["choices"]] == ["4", "2", ""]
    assert json.loads(embedded.body)["data"][0]["embedding"] == pytest.approx([0.1, 0.2])
    assert [r.path for r in generate_server.received] == ["/api/generate", "/api/generate", "/api/embed"]


async def test_the_default_base_url_is_the_local_ollama() -> None:
    adapter = OllamaAdapter("")
    await adapter.aclose()
    assert adapter.base_url == "http://127.0.0.1:11434"
