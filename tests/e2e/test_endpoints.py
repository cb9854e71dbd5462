"""The endpoints besides plain chat, with the official openai SDK against the four services running as
processes: legacy completions (whole and streamed), embeddings (float, and base64 — the SDK's default,
which it decodes itself), ``dimensions``, image generation, and a chat tool call round trip (whole and
streamed). Each goes through the ``fake`` provider and, where it can, through the real ``openai``
adapter to a local OpenAI-format upstream (the contract suite's fake, on real sockets), whose received
requests are checked too. Every request leaves exactly one usage row."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from tests.contract import story
from tests.contract.server import Answer, UpstreamServer
from tests.contract.test_operations_conformance import IMAGE_B64, IMAGE_USAGE
from tests.e2e.conftest import UPSTREAM_KEY, RunningStack
from tests.e2e.test_spine import one_row

pytestmark = pytest.mark.e2e

PROMPT = "Tell the gateway a story"
TEXTS = ["the quick brown fox", "jumps over the lazy dog"]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
WEATHER_TOOL: Any = story.WEATHER_TOOL
WEATHER_QUESTION: Any = [{"role": "user", "content": story.WEATHER_QUESTION}]


async def assert_usage_row(
    stack: RunningStack, request_id: str, *, endpoint: str, model: str, prompt: int, completion: int, stream: bool
) -> Any:
    row = await one_row(stack, request_id)
    assert row["status"] == "success" and row["http_status"] == 200
    assert row["endpoint"] == endpoint and row["requested_model"] == model and row["stream"] is stream
    assert (row["prompt_tokens"], row["completion_tokens"]) == (prompt, completion)
    assert row["total_tokens"] == prompt + completion
    return row


@pytest.fixture
def upstream(openai_upstream: UpstreamServer) -> UpstreamServer:
    openai_upstream.reset()
    return openai_upstream


def seen_by(upstream: UpstreamServer, path: str) -> dict[str, Any]:
    """The one request the OpenAI-format upstream received, checked for path, model and our key."""
    (received,) = upstream.received
    assert received.path == path
    assert received.model == "gpt-4o-mini" and received.api_key == UPSTREAM_KEY
    return received.body


# --- legacy completions -------------------------------------------------------------------------


async def test_completions(running_stack: RunningStack) -> None:
    raw = running_stack.client().completions.with_raw_response.create(model="demo", prompt=PROMPT)
    completion = raw.parse()

    assert completion.object == "text_completion"
    (choice,) = completion.choices
    assert PROMPT in choice.text and choice.finish_reason == "stop"
    assert completion.usage is not None and completion.usage.completion_tokens > 0
    await assert_usage_row(
        running_stack,
        raw.headers["x-request-id"],
        endpoint="/v1/completions",
        model="demo",
        prompt=completion.usage.prompt_tokens,
        completion=completion.usage.completion_tokens,
        stream=False,
    )


async def test_streamed_completions(running_stack: RunningStack) -> None:
    raw = running_stack.client().completions.with_raw_response.create(
        model="demo", prompt=PROMPT, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(raw.parse())

    assert {c.object for c in chunks} == {"text_completion"}
    texts = [c.choices[0].text for c in chunks if c.choices and c.choices[0].text]
    assert len(texts) > 2 and PROMPT in "".join(texts)
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    await assert_usage_row(
        running_stack,
        raw.headers["x-request-id"],
        endpoint="/v1/completions",
        model="demo",
        prompt=last.usage.prompt_tokens,
        completion=last.usage.completion_tokens,
        stream=True,
    )


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
async def test_completions_through_the_openai_adapter(
    running_stack: RunningStack, upstream: UpstreamServer, stream: bool
) -> None:
    client = running_stack.client()
    if stream:
        streamed = client.completions.with_raw_response.create(
            model="oai", prompt=story.QUESTION, stream=True, stream_options={"include_usage": True}
        )
        request_id = streamed.headers["x-request-id"]
        chunks = list(streamed.parse())
        texts = [c.choices[0].text for c in chunks if c.choices and c.choices[0].text]
        assert texts == story.REPLY_PIECES
        usage = chunks[-1].usage
    else:
        whole = client.completions.with_raw_response.create(model="oai", prompt=story.QUESTION)
        request_id = whole.headers["x-request-id"]
        completion = whole.parse()
        assert completion.choices[0].text == story.REPLY
        usage = completion.usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens) == (24, 8)

    sent = seen_by(upstream, "/v1/completions")
    assert sent["prompt"] == story.QUESTION and bool(sent.get("stream")) is stream
    row = await assert_usage_row(
        running_stack,
        request_id,
        endpoint="/v1/completions",
        model="oai",
        prompt=24,
        completion=8,
        stream=stream,
    )
    assert row["cached_tokens"] == story.REPLY_USAGE.cached_tokens


# --- embeddings ---------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["embed", "oai"])
async def test_embeddings_as_floats_and_as_the_sdks_default_base64(
    running_stack: RunningStack, openai_upstream: UpstreamServer, model: str
) -> None:
    client = running_stack.client()
    openai_upstream.reset()
    as_floats = client.embeddings.with_raw_response.create(model=model, input=TEXTS, encoding_format="float")
    # No encoding_format: the SDK asks for base64 and decodes the float32s itself.
    as_default = client.embeddings.with_raw_response.create(model=model, input=TEXTS)

    floats, decoded = as_floats.parse(), as_default.parse()
    assert json.loads(as_default.http_request.content)["encoding_format"] == "base64"
    assert isinstance(json.loads(as_default.content)["data"][0]["embedding"], str)  # base64 on the wire
    assert [d.index for d in floats.data] == [0, 1]
    assert all(len(d.embedding) > 1 for d in floats.data)
    assert [d.embedding for d in decoded.data] == [d.embedding for d in floats.data]
    assert floats.usage.prompt_tokens > 0
    if model == "oai":  # the upstream encoded: the adapter passed encoding_format through
        assert [r.body.get("encoding_format") for r in openai_upstream.received] == ["float", "base64"]
    for raw, parsed in ((as_floats, floats), (as_default, decoded)):
        await assert_usage_row(
            running_stack,
            raw.headers["x-request-id"],
            endpoint="/v1/embeddings",
            model=model,
            prompt=parsed.usage.prompt_tokens,
            completion=0,
            stream=False,
        )


@pytest.mark.parametrize("model", ["embed", "oai"])
async def test_embeddings_dimensions(running_stack: RunningStack, openai_upstream: UpstreamServer, model: str) -> None:
    openai_upstream.reset()
    raw = running_stack.client().embeddings.with_raw_response.create(model=model, input=TEXTS, dimensions=7)
    embeddings = raw.parse()

    assert [len(d.embedding) for d in embeddings.data] == [7, 7]
    if model == "oai":
        assert seen_by(openai_upstream, "/v1/embeddings")["dimensions"] == 7
    await assert_usage_row(
        running_stack,
        raw.headers["x-request-id"],
        endpoint="/v1/embeddings",
        model=model,
        prompt=embeddings.usage.prompt_tokens,
        completion=0,
        stream=False,
    )


# --- images -------------------------------------------------------------------------------------


async def test_image_generation_b64_json(running_stack: RunningStack) -> None:
    raw = running_stack.client().images.with_raw_response.generate(
        model="image", prompt="a lighthouse at dusk", n=2, response_format="b64_json"
    )
    images = raw.parse()

    assert images.data is not None and len(images.data) == 2
    pngs = [base64.b64decode(image.b64_json or "") for image in images.data]
    assert all(png.startswith(PNG_SIGNATURE) for png in pngs) and pngs[0] != pngs[1]
    assert images.usage is not None and images.usage.output_tokens > 0
    await assert_usage_row(
        running_stack,
        raw.headers["x-request-id"],
        endpoint="/v1/images/generations",
        model="image",
        prompt=images.usage.input_tokens,
        completion=images.usage.output_tokens,
        stream=False,
    )


async def test_image_generation_through_the_openai_adapter(
    running_stack: RunningStack, upstream: UpstreamServer
) -> None:
    raw = running_stack.client().images.with_raw_response.generate(
        model="oai", prompt="a small red square", size="1024x1024", quality="medium"
    )
    images = raw.parse()

    assert images.data is not None and [image.b64_json for image in images.data] == [IMAGE_B64]
    sent = seen_by(upstream, "/v1/images/generations")
    assert (sent["prompt"], sent["size"], sent["quality"]) == ("a small red square", "1024x1024", "medium")
    await assert_usage_row(
        running_stack,
        raw.headers["x-request-id"],
        endpoint="/v1/images/generations",
        model="oai",
        prompt=IMAGE_USAGE.prompt_tokens,
        completion=IMAGE_USAGE.completion_tokens,
        stream=False,
    )


# --- chat tool calls ----------------------------------------------------------------------------


async def test_a_tool_call_round_trip(running_stack: RunningStack) -> None:
    client = running_stack.client()
    raw = client.chat.completions.with_raw_response.create(
        model="tools", messages=WEATHER_QUESTION, tools=[WEATHER_TOOL]
    )
    first = raw.parse()

    (choice,) = first.choices
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    assert choice.message.tool_calls is not None
    (call,) = choice.message.tool_calls
    assert call.type == "function" and call.function.name == story.TOOL_NAME
    assert json.loads(call.function.arguments) == {"city": story.WEATHER_QUESTION}
    assert first.usage is not None
    await assert_usage_row(
        running_stack,
        raw.headers["x-request-id"],
        endpoint="/v1/chat/completions",
        model="tools",
        prompt=first.usage.prompt_tokens,
        completion=first.usage.completion_tokens,
        stream=False,
    )

    follow_up = [
        *WEATHER_QUESTION,
        choice.message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": story.TOOL_OUTPUT},
    ]
    raw = client.chat.completions.with_raw_response.create(model="tools", messages=follow_up, tools=[WEATHER_TOOL])
    answer = raw.parse()
    assert answer.choices[0].finish_reason == "stop"
    assert story.TOOL_OUTPUT in (answer.choices[0].message.content or "")
    assert not answer.choices[0].message.tool_calls
    assert answer.usage is not None
    await assert_usage_row(
        running_stack,
        raw.headers["x-request-id"],
        endpoint="/v1/chat/completions",
        model="tools",
        prompt=answer.usage.prompt_tokens,
        completion=answer.usage.completion_tokens,
        stream=False,
    )


async def test_a_streamed_tool_call(running_stack: RunningStack) -> None:
    raw = running_stack.client().chat.completions.with_raw_response.create(
        model="tools",
        messages=WEATHER_QUESTION,
        tools=[WEATHER_TOOL],
        tool_choice={"type": "function", "function": {"name": story.TOOL_NAME}},
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(raw.parse())

    deltas = [d for c in chunks if c.choices for d in c.choices[0].delta.tool_calls or ()]
    opening, *arguments = deltas
    assert opening.index == 0 and opening.id and opening.function is not None
    assert opening.function.name == story.TOOL_NAME and opening.function.arguments == ""
    assert len(arguments) >= 2 and all(d.index == 0 and d.id is None for d in arguments)
    assembled = "".join(d.function.arguments or "" for d in arguments if d.function is not None)
    assert json.loads(assembled) == {"city": story.WEATHER_QUESTION}
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["tool_calls"]
    usage = chunks[-1].usage
    assert chunks[-1].choices == [] and usage is not None
    await assert_usage_row(
        running_stack,
        raw.headers["x-request-id"],
        endpoint="/v1/chat/completions",
        model="tools",
        prompt=usage.prompt_tokens,
        completion=usage.completion_tokens,
        stream=True,
    )


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
async def test_a_tool_call_through_the_openai_adapter(
    running_stack: RunningStack, upstream: UpstreamServer, stream: bool
) -> None:
    upstream.reset(Answer("tool_call"))
    client = running_stack.client()
    if stream:
        streamed = client.chat.completions.with_raw_response.create(
            model="oai", messages=WEATHER_QUESTION, tools=[WEATHER_TOOL], stream=True
        )
        request_id = streamed.headers["x-request-id"]
        chunks = list(streamed.parse())
        deltas = [d for c in chunks if c.choices for d in c.choices[0].delta.tool_calls or ()]
        name = "".join(d.function.name or "" for d in deltas if d.function is not None)
        arguments = "".join(d.function.arguments or "" for d in deltas if d.function is not None)
        assert all(c.usage is None for c in chunks)  # not asked for: the usage row still has it
    else:
        whole = client.chat.completions.with_raw_response.create(
            model="oai", messages=WEATHER_QUESTION, tools=[WEATHER_TOOL]
        )
        request_id = whole.headers["x-request-id"]
        message = whole.parse().choices[0].message
        assert message.tool_calls is not None
        (call,) = message.tool_calls
        assert call.type == "function"
        name, arguments = call.function.name, call.function.arguments
    assert name == story.TOOL_NAME and json.loads(arguments) == story.TOOL_ARGUMENTS

    sent = seen_by(upstream, "/v1/chat/completions")
    assert [t["function"]["name"] for t in sent["tools"]] == [story.TOOL_NAME]
    assert sent.get("stream_options") == ({"include_usage": True} if stream else None)
    await assert_usage_row(
        running_stack,
        request_id,
        endpoint="/v1/chat/completions",
        model="oai",
        prompt=story.TOOL_CALL_USAGE.prompt_tokens,
        completion=story.TOOL_CALL_USAGE.completion_tokens,
        stream=stream,
    )


async def test_an_answer_larger_than_one_nats_message_arrives_whole(running_stack: RunningStack) -> None:
    # 300 vectors of 4096 floats: several MB of JSON, beyond NATS's 1 MiB message limit, so the
    # worker sends the body in pieces and the gateway joins them.
    inputs = [f"text number {i}" for i in range(300)]
    raw = running_stack.client().embeddings.with_raw_response.create(
        model="embed", input=inputs, dimensions=4096, encoding_format="float"
    )
    assert int(raw.headers["content-length"]) > 2 * 1024 * 1024
    response = raw.parse()
    assert [d.index for d in response.data] == list(range(300))
    assert all(len(d.embedding) == 4096 for d in response.data)
    small = running_stack.client().embeddings.create(
        model="embed", input=inputs[:2], dimensions=4096, encoding_format="float"
    )
    assert response.data[1].embedding == small.data[1].embedding
    row = await one_row(running_stack, raw.headers["x-request-id"])
    assert row["status"] == "success"
