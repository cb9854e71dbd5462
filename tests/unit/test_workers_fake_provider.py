"""The fake provider: deterministic OpenAI-shaped answers and the options that make it slow or broken."""

from __future__ import annotations

import base64
import json
import struct
import time
import zlib
from typing import Any

import pytest

from common.errors import (
    InvalidRequestError,
    ModelRouterError,
    UpstreamBadRequestError,
    UpstreamError,
    UpstreamRateLimitError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
)
from common.providers.base import Operation, ProviderCall, StreamChunk
from workers.providers.fake import DEFAULT_EMBEDDING_DIMENSIONS, REPLY_PHRASE, TOOL_REPLY_PHRASE, FakeAdapter

SAID = "hello there, fake world"  # 23 characters -> 6 prompt tokens at 4 characters a token
EXPECTED_TEXT = f"{REPLY_PHRASE} {SAID}"
EXPECTED_WORDS = len(EXPECTED_TEXT.split())


def chat_call(
    options: dict[str, str] | None = None, *, stream: bool = False, timeout_s: float = 5.0, **body: Any
) -> ProviderCall:
    return ProviderCall(
        request_id="req-1",
        operation=Operation.CHAT,
        body={
            "model": "demo",
            "messages": [{"role": "system", "content": "ignored"}, {"role": "user", "content": SAID}],
            **body,
        },
        upstream_model="fake-demo-1",
        api_key=None,
        timeout_s=timeout_s,
        stream=stream,
        options=options or {},
    )


def other_call(operation: str, body: dict[str, Any], options: dict[str, str] | None = None) -> ProviderCall:
    return ProviderCall(
        request_id="req-3",
        operation=operation,
        body=body,
        upstream_model="fake-other-1",
        api_key=None,
        timeout_s=5,
        options=options or {},
    )


async def collect(adapter: FakeAdapter, call: ProviderCall) -> list[StreamChunk]:
    return [chunk async for chunk in adapter.stream(call)]


@pytest.fixture
def fake() -> FakeAdapter:
    return FakeAdapter("")


async def test_chat_reply_echoes_the_last_user_message_with_deterministic_usage(fake: FakeAdapter) -> None:
    response = await fake.send(chat_call())

    body = json.loads(response.body)
    assert body["object"] == "chat.completion"
    assert body["model"] == "fake-demo-1"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": EXPECTED_TEXT, "refusal": None}
    assert body["choices"][0]["finish_reason"] == "stop"
    prompt_tokens = -(-(len("ignored") + len(SAID)) // 4)
    assert body["usage"] == {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": EXPECTED_WORDS,
        "total_tokens": prompt_tokens + EXPECTED_WORDS,
    }
    assert (response.usage.prompt_tokens, response.usage.completion_tokens) == (prompt_tokens, EXPECTED_WORDS)
    again = json.loads((await fake.send(chat_call())).body)
    assert (again["choices"], again["usage"]) == (body["choices"], body["usage"])


async def test_chat_stream_has_openai_chunk_shapes(fake: FakeAdapter) -> None:
    chunks = await collect(fake, chat_call(stream=True))

    bodies = [json.loads(c.data) for c in chunks]
    assert {b["object"] for b in bodies} == {"chat.completion.chunk"}
    assert len({(b["id"], b["created"], b["model"]) for b in bodies}) == 1
    assert bodies[0]["choices"] == [
        {"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": None, "finish_reason": None}
    ]
    words = [b["choices"][0]["delta"]["content"] for b in bodies[1:-2]]
    assert "".join(words) == EXPECTED_TEXT and len(words) == EXPECTED_WORDS
    assert bodies[-2]["choices"][0]["delta"] == {} and bodies[-2]["choices"][0]["finish_reason"] == "stop"
    assert bodies[-1]["choices"] == [] and bodies[-1]["usage"]["completion_tokens"] == EXPECTED_WORDS
    assert [c.usage_only for c in chunks] == [False] * (len(chunks) - 1) + [True]
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == EXPECTED_WORDS
    assert sum(c.text_chars for c in chunks) == len(EXPECTED_TEXT)


async def test_legacy_completions_stream_and_whole(fake: FakeAdapter) -> None:
    call = ProviderCall(
        request_id="req-2",
        operation=Operation.COMPLETIONS,
        body={"model": "demo", "prompt": SAID},
        upstream_model="fake-demo-1",
        api_key=None,
        timeout_s=5,
    )
    whole = json.loads((await fake.send(call)).body)
    assert whole["object"] == "text_completion" and whole["choices"][0]["text"] == EXPECTED_TEXT

    call.stream = True
    bodies = [json.loads(c.data) for c in await collect(fake, call)]
    assert {b["object"] for b in bodies} == {"text_completion"}
    assert "".join(b["choices"][0]["text"] for b in bodies if b["choices"]) == EXPECTED_TEXT
    assert bodies[-2]["choices"][0]["finish_reason"] == "stop" and bodies[-1]["choices"] == []


async def test_max_tokens_cuts_the_reply(fake: FakeAdapter) -> None:
    body = json.loads((await fake.send(chat_call(max_tokens=3))).body)

    assert body["choices"][0]["message"]["content"] == " ".join(EXPECTED_TEXT.split()[:3])
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] == 3


async def test_unsupported_operation_is_a_client_error(fake: FakeAdapter) -> None:
    call = chat_call()
    call.operation = "audio.speech"
    with pytest.raises(InvalidRequestError) as caught:
        await fake.send(call)
    assert caught.value.code == "unsupported_operation"


@pytest.mark.parametrize("operation", [Operation.EMBEDDINGS, Operation.IMAGES])
def test_embeddings_and_images_cannot_stream(fake: FakeAdapter, operation: str) -> None:
    call = other_call(operation, {"model": "m", "input": "x", "prompt": "x"})
    call.stream = True
    with pytest.raises(InvalidRequestError) as caught:
        fake.stream(call)
    assert caught.value.param == "stream"


# --- options ------------------------------------------------------------------------------------


async def test_latency_comes_before_the_first_chunk(fake: FakeAdapter) -> None:
    started = time.monotonic()
    stream = fake.stream(chat_call({"latency_ms": "200"}, stream=True))
    await anext(stream)
    assert time.monotonic() - started >= 0.2
    await stream.aclose()  # type: ignore[attr-defined]


async def test_tokens_per_second_paces_the_words(fake: FakeAdapter) -> None:
    started = time.monotonic()
    chunks = await collect(fake, chat_call({"tokens_per_second": "100"}, stream=True))
    # The first word comes at once, each further one 10 ms later.
    assert time.monotonic() - started >= (EXPECTED_WORDS - 1) / 100
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == EXPECTED_WORDS


@pytest.mark.parametrize(
    ("status", "error_class", "retryable"),
    [
        (400, UpstreamBadRequestError, False),
        (429, UpstreamRateLimitError, True),
        (500, UpstreamError, True),
        (503, UpstreamUnavailableError, True),
    ],
)
@pytest.mark.parametrize("stream", [False, True])
async def test_fail_status_raises_the_matching_error(
    fake: FakeAdapter, status: int, error_class: type[UpstreamError], retryable: bool, stream: bool
) -> None:
    options = {"fail_status": str(status), "retry_after_s": "3"}
    with pytest.raises(UpstreamError) as caught:
        if stream:
            await collect(fake, chat_call(options, stream=True))
        else:
            await fake.send(chat_call(options))
    assert type(caught.value) is error_class
    assert caught.value.retryable is retryable
    assert caught.value.upstream_status == status
    assert caught.value.retry_after_s == (3.0 if status == 429 else None)


async def test_fail_after_chunks_dies_mid_stream(fake: FakeAdapter) -> None:
    received: list[StreamChunk] = []
    with pytest.raises(UpstreamError) as caught:
        async for chunk in fake.stream(chat_call({"fail_after_chunks": "4"}, stream=True)):
            received.append(chunk)
    assert len(received) == 4
    assert type(caught.value) is UpstreamError and caught.value.retryable

    with pytest.raises(UpstreamError):
        await fake.send(chat_call({"fail_after_chunks": "4"}))


@pytest.mark.parametrize("options", [{"hang": "true"}, {"latency_ms": "5000"}], ids=["hang", "latency-over-timeout"])
@pytest.mark.parametrize("stream", [False, True])
async def test_no_answer_within_the_timeout_is_an_upstream_timeout(
    fake: FakeAdapter, options: dict[str, str], stream: bool
) -> None:
    started = time.monotonic()
    with pytest.raises(UpstreamTimeoutError):
        if stream:
            await collect(fake, chat_call(options, stream=True, timeout_s=0.2))
        else:
            await fake.send(chat_call(options, timeout_s=0.2))
    assert 0.2 <= time.monotonic() - started < 2.0


async def test_a_malformed_option_is_a_configuration_error(fake: FakeAdapter) -> None:
    with pytest.raises(ModelRouterError) as caught:
        await fake.send(chat_call({"latency_ms": "soon"}))
    assert caught.value.code == "invalid_provider_option" and caught.value.status == 500


# --- embeddings ---------------------------------------------------------------------------------


async def embed(fake: FakeAdapter, **body: Any) -> dict[str, Any]:
    response = await fake.send(other_call(Operation.EMBEDDINGS, {"model": "embed", **body}))
    parsed: dict[str, Any] = json.loads(response.body)
    assert parsed["usage"]["prompt_tokens"] == response.usage.prompt_tokens == parsed["usage"]["total_tokens"]
    return parsed


async def test_embeddings_are_deterministic_unit_vectors_one_per_input(fake: FakeAdapter) -> None:
    body = await embed(fake, input=["hello", "goodbye", "hello"])

    assert body["object"] == "list" and body["model"] == "fake-other-1"
    vectors = [d["embedding"] for d in body["data"]]
    assert [d["index"] for d in body["data"]] == [0, 1, 2]
    assert all(len(v) == DEFAULT_EMBEDDING_DIMENSIONS for v in vectors)
    assert all(abs(sum(x * x for x in v) - 1) < 1e-5 for v in vectors)
    assert vectors[0] == vectors[2] != vectors[1]  # the same text, the same vector
    assert (await embed(fake, input="hello"))["data"][0]["embedding"] == vectors[0]
    assert body["usage"]["prompt_tokens"] == -(-len("hellogoodbyehello") // 4)


async def test_embeddings_honour_dimensions_and_the_deployment_default(fake: FakeAdapter) -> None:
    assert len((await embed(fake, input="x", dimensions=3))["data"][0]["embedding"]) == 3
    response = await fake.send(
        other_call(Operation.EMBEDDINGS, {"model": "embed", "input": "x"}, {"embedding_dimensions": "12"})
    )
    assert len(json.loads(response.body)["data"][0]["embedding"]) == 12
    with pytest.raises(InvalidRequestError) as caught:
        await embed(fake, input="x", dimensions=100_000)
    assert caught.value.param == "dimensions"


async def test_base64_embeddings_decode_to_exactly_the_float_ones(fake: FakeAdapter) -> None:
    floats = [d["embedding"] for d in (await embed(fake, input=["a", "b"], encoding_format="float"))["data"]]
    encoded = [d["embedding"] for d in (await embed(fake, input=["a", "b"], encoding_format="base64"))["data"]]

    decoded = [list(struct.unpack(f"<{len(floats[0])}f", base64.b64decode(e))) for e in encoded]
    assert decoded == floats  # exact: the float answer already holds float32 values


async def test_token_id_inputs_embed_and_count_as_tokens(fake: FakeAdapter) -> None:
    body = await embed(fake, input=[[1, 2, 3], [4, 5]])
    assert len(body["data"]) == 2 and body["usage"]["prompt_tokens"] == 5
    with pytest.raises(InvalidRequestError) as caught:
        await embed(fake, input=[{"text": "x"}])
    assert caught.value.param == "input"


# --- images -------------------------------------------------------------------------------------


def png_size(image: bytes) -> tuple[int, int]:
    """Width and height of a PNG after checking its signature, chunk CRCs and that its pixels inflate."""
    assert image.startswith(b"\x89PNG\r\n\x1a\n")
    at, chunks = 8, {}
    while at < len(image):
        (length,) = struct.unpack(">I", image[at : at + 4])
        kind, data = image[at + 4 : at + 8], image[at + 8 : at + 8 + length]
        assert struct.unpack(">I", image[at + 8 + length : at + 12 + length])[0] == zlib.crc32(kind + data)
        chunks[kind] = data
        at += 12 + length
    width, height = struct.unpack(">II", chunks[b"IHDR"][:8])
    assert len(zlib.decompress(chunks[b"IDAT"])) == height * (1 + width * 3)
    assert b"IEND" in chunks
    return width, height


async def generate_images(fake: FakeAdapter, **body: Any) -> dict[str, Any]:
    response = await fake.send(other_call(Operation.IMAGES, {"model": "img", "prompt": "a red fox", **body}))
    parsed: dict[str, Any] = json.loads(response.body)
    assert (response.usage.prompt_tokens, response.usage.completion_tokens) == (
        parsed["usage"]["input_tokens"],
        parsed["usage"]["output_tokens"],
    )
    return parsed


async def test_images_are_deterministic_valid_pngs_as_b64_json(fake: FakeAdapter) -> None:
    body = await generate_images(fake, n=2, response_format="b64_json")

    images = [base64.b64decode(d["b64_json"]) for d in body["data"]]
    assert len(images) == 2 and images[0] != images[1]
    assert all(png_size(image) == (8, 8) for image in images)
    again = await generate_images(fake, n=2, response_format="b64_json")
    assert again["data"] == body["data"]
    other = await generate_images(fake, prompt="a blue whale", response_format="b64_json")
    assert other["data"][0] != body["data"][0]
    assert body["usage"]["output_tokens"] == 2 * other["usage"]["output_tokens"] > 0  # priced per image


async def test_images_as_urls_are_data_urls_of_the_same_png(fake: FakeAdapter) -> None:
    as_b64 = (await generate_images(fake, response_format="b64_json"))["data"][0]["b64_json"]
    for body in ({"response_format": "url"}, {}):  # url is OpenAI's default
        (image,) = (await generate_images(fake, **body))["data"]
        assert image == {"url": f"data:image/png;base64,{as_b64}"}


# --- tool calls ---------------------------------------------------------------------------------

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "unit": {"type": "string"}}},
    },
}
SEARCH = {"type": "function", "function": {"name": "search", "description": "no parameters"}}
TOOLS_ON = {"tool_call": "true"}


async def test_a_tool_call_answers_the_first_tool_with_the_last_user_text(fake: FakeAdapter) -> None:
    response = await fake.send(chat_call(TOOLS_ON, tools=[WEATHER, SEARCH]))

    body = json.loads(response.body)
    (choice,) = body["choices"]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None and choice["message"]["role"] == "assistant"
    (call,) = choice["message"]["tool_calls"]
    assert call["type"] == "function" and call["id"].startswith("call_")
    assert call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {"city": SAID}
    assert body["usage"]["completion_tokens"] == response.usage.completion_tokens > 0


async def test_tool_choice_picks_the_tool_and_a_tool_without_properties_gets_input(fake: FakeAdapter) -> None:
    choice = {"type": "function", "function": {"name": "search"}}
    body = json.loads((await fake.send(chat_call(TOOLS_ON, tools=[WEATHER, SEARCH], tool_choice=choice))).body)

    (call,) = body["choices"][0]["message"]["tool_calls"]
    assert call["function"]["name"] == "search"
    assert json.loads(call["function"]["arguments"]) == {"input": SAID}

    missing = {"type": "function", "function": {"name": "nope"}}
    with pytest.raises(InvalidRequestError) as caught:
        await fake.send(chat_call(TOOLS_ON, tools=[WEATHER], tool_choice=missing))
    assert caught.value.param == "tool_choice"


@pytest.mark.parametrize(
    ("options", "extra"),
    [
        ({}, {"tools": [WEATHER]}),  # the option is off
        (TOOLS_ON, {}),  # no tools
        (TOOLS_ON, {"tools": [WEATHER], "tool_choice": "none"}),
    ],
    ids=["option-off", "no-tools", "tool-choice-none"],
)
async def test_text_instead_of_a_tool_call(fake: FakeAdapter, options: dict[str, str], extra: dict[str, Any]) -> None:
    message = json.loads((await fake.send(chat_call(options, **extra))).body)["choices"][0]["message"]
    assert message["content"] == EXPECTED_TEXT and "tool_calls" not in message


async def test_after_the_tool_result_the_reply_echoes_the_tools_content(fake: FakeAdapter) -> None:
    first = json.loads((await fake.send(chat_call(TOOLS_ON, tools=[WEATHER]))).body)["choices"][0]["message"]
    call = chat_call(TOOLS_ON, tools=[WEATHER])
    call.body["messages"] += [first, {"role": "tool", "tool_call_id": first["tool_calls"][0]["id"], "content": "18C"}]

    body = json.loads((await fake.send(call)).body)
    assert body["choices"][0]["message"]["content"] == f"{TOOL_REPLY_PHRASE} 18C"
    assert body["choices"][0]["finish_reason"] == "stop"

    call.stream = True
    chunks = [json.loads(c.data) for c in await collect(fake, call)]
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]) == (
        f"{TOOL_REPLY_PHRASE} 18C"
    )


async def test_a_streamed_tool_call_has_openais_delta_order(fake: FakeAdapter) -> None:
    chunks = await collect(fake, chat_call(TOOLS_ON, stream=True, tools=[WEATHER]))

    bodies = [json.loads(c.data) for c in chunks]
    assert {b["object"] for b in bodies} == {"chat.completion.chunk"} and len({b["id"] for b in bodies}) == 1
    first = bodies[0]["choices"][0]["delta"]
    assert first["role"] == "assistant"
    (start,) = first["tool_calls"]
    assert start["index"] == 0 and start["id"].startswith("call_") and start["type"] == "function"
    assert start["function"] == {"name": "get_weather", "arguments": ""}
    pieces = [b["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"] for b in bodies[1:-2]]
    assert len(pieces) >= 2
    assert all(set(b["choices"][0]["delta"]["tool_calls"][0]) == {"index", "function"} for b in bodies[1:-2])
    assert json.loads("".join(pieces)) == {"city": SAID}
    assert bodies[-2]["choices"][0] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "tool_calls"}
    assert bodies[-1]["choices"] == [] and chunks[-1].usage_only
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == len(pieces)
    assert sum(c.text_chars for c in chunks) == len("".join(pieces))
    whole = json.loads((await fake.send(chat_call(TOOLS_ON, tools=[WEATHER]))).body)
    assert whole["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"] == "".join(pieces)


async def test_a_streamed_tool_call_obeys_fail_after_chunks(fake: FakeAdapter) -> None:
    received: list[StreamChunk] = []
    with pytest.raises(UpstreamError):
        async for chunk in fake.stream(chat_call({**TOOLS_ON, "fail_after_chunks": "2"}, stream=True, tools=[WEATHER])):
            received.append(chunk)
    assert len(received) == 2


@pytest.mark.parametrize(
    ("operation", "body"),
    [(Operation.EMBEDDINGS, {"model": "e", "input": "x"}), (Operation.IMAGES, {"model": "i", "prompt": "x"})],
)
async def test_latency_and_fail_status_apply_to_embeddings_and_images(
    fake: FakeAdapter, operation: str, body: dict[str, Any]
) -> None:
    started = time.monotonic()
    await fake.send(other_call(operation, body, {"latency_ms": "150"}))
    assert time.monotonic() - started >= 0.15
    with pytest.raises(UpstreamRateLimitError) as caught:
        await fake.send(other_call(operation, body, {"fail_status": "429", "retry_after_s": "2"}))
    assert caught.value.retry_after_s == 2.0
