"""The Anthropic stream encoder over recorded OpenAI chunk sequences: the exact event sequence, each
event valid for the official SDK, and the SDK's own stream reader rebuilding the message."""

from __future__ import annotations

from typing import Any

import anthropic
import httpx2
import orjson
import pytest
from anthropic.types import RawMessageStreamEvent
from pydantic import TypeAdapter

from common.errors import UpstreamError
from gateway.anthropic.stream import AnthropicStreamEncoder
from modelrouter.events.v1 import events_pb2

EVENT = TypeAdapter(RawMessageStreamEvent)


def chunk(delta: dict[str, Any] | None = None, finish_reason: str | None = None, **extra: Any) -> dict[str, Any]:
    choices = [] if delta is None else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "gpt-x",
        "choices": choices,
    } | extra


def usage_chunk(prompt: int, completion: int, **details: Any) -> dict[str, Any]:
    return chunk(
        None,
        usage={
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            **details,
        },
    )


def tool_delta(index: int, *, arguments: str, id: str | None = None, name: str | None = None) -> dict[str, Any]:
    call: dict[str, Any] = {"index": index, "function": {"arguments": arguments}}
    if id is not None:
        call |= {"id": id, "type": "function"}
        call["function"]["name"] = name
    return {"tool_calls": [call]}


TEXT = [
    chunk({"role": "assistant", "content": "", "refusal": None}),
    chunk({"content": "Hel"}),
    chunk({"content": "lo!"}),
    chunk({}, "stop"),
    usage_chunk(9, 2),
]

TOOL_CALL = [
    chunk({"role": "assistant", "content": None}),
    chunk(tool_delta(0, id="call_w", name="weather", arguments="")),
    chunk(tool_delta(0, arguments='{"ci')),
    chunk(tool_delta(0, arguments='ty": "Par')),
    chunk(tool_delta(0, arguments='is"}')),
    chunk({}, "tool_calls"),
    usage_chunk(30, 12),
]

TEXT_THEN_TOOLS = [
    chunk({"role": "assistant", "content": ""}),
    chunk({"content": "Checking both."}),
    chunk(tool_delta(0, id="call_p", name="weather", arguments='{"city":')),
    chunk(tool_delta(0, arguments='"Paris"}')),
    chunk(tool_delta(1, id="call_r", name="weather", arguments='{"city":"Rome"}')),
    chunk({}, "tool_calls"),
    usage_chunk(40, 20, prompt_tokens_details={"cached_tokens": 32}),
]


def encode(
    chunks: list[dict[str, Any]], usage: events_pb2.Usage | None = None, error: Exception | None = None
) -> bytes:
    encoder = AnthropicStreamEncoder(message_id="msg-1", model="claude-x")
    out = b"".join(encoder.chunk(orjson.dumps(c)) for c in chunks)
    if isinstance(error, UpstreamError):
        return out + encoder.error(error)
    return out + encoder.done(usage or events_pb2.Usage())


def events(raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    """(event name, data) per SSE event, checking the framing on the way."""
    assert raw.endswith(b"\n\n")
    out = []
    for frame in raw[:-2].split(b"\n\n"):
        name, data = frame.split(b"\n")
        assert name.startswith(b"event: ") and data.startswith(b"data: ")
        payload = orjson.loads(data.removeprefix(b"data: "))
        assert payload["type"] == name.removeprefix(b"event: ").decode()
        out.append((payload["type"], payload))
    return out


def start_event() -> dict[str, Any]:
    message = {
        "id": "msg-1",
        "type": "message",
        "role": "assistant",
        "model": "claude-x",
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": 0, "output_tokens": 0},
    }
    return {"type": "message_start", "message": message}


def block_start(index: int, block: dict[str, Any]) -> dict[str, Any]:
    return {"type": "content_block_start", "index": index, "content_block": block}


def text_delta(index: int, text: str) -> dict[str, Any]:
    return {"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": text}}


def json_delta(index: int, partial: str) -> dict[str, Any]:
    return {
        "type": "content_block_delta",
        "index": index,
        "delta": {"type": "input_json_delta", "partial_json": partial},
    }


def block_stop(index: int) -> dict[str, Any]:
    return {"type": "content_block_stop", "index": index}


def message_delta(stop_reason: str, usage: dict[str, int]) -> dict[str, Any]:
    return {"type": "message_delta", "delta": {"stop_reason": stop_reason, "stop_sequence": None}, "usage": usage}


STOP = {"type": "message_stop"}


def payloads(raw: bytes) -> list[dict[str, Any]]:
    parsed = events(raw)
    for name, payload in parsed:
        if name != "error":
            EVENT.validate_python(payload)  # each event is one the SDK knows, in its shape
    return [payload for _, payload in parsed]


def test_text_stream() -> None:
    assert payloads(encode(TEXT)) == [
        start_event(),
        block_start(0, {"type": "text", "text": ""}),
        text_delta(0, "Hel"),
        text_delta(0, "lo!"),
        block_stop(0),
        message_delta("end_turn", {"input_tokens": 9, "output_tokens": 2}),
        STOP,
    ]


def test_tool_call_with_arguments_split_across_deltas() -> None:
    assert payloads(encode(TOOL_CALL)) == [
        start_event(),
        block_start(0, {"type": "tool_use", "id": "call_w", "name": "weather", "input": {}}),
        json_delta(0, '{"ci'),
        json_delta(0, 'ty": "Par'),
        json_delta(0, 'is"}'),
        block_stop(0),
        message_delta("tool_use", {"input_tokens": 30, "output_tokens": 12}),
        STOP,
    ]


def test_text_then_two_tool_calls() -> None:
    assert payloads(encode(TEXT_THEN_TOOLS)) == [
        start_event(),
        block_start(0, {"type": "text", "text": ""}),
        text_delta(0, "Checking both."),
        block_stop(0),
        block_start(1, {"type": "tool_use", "id": "call_p", "name": "weather", "input": {}}),
        json_delta(1, '{"city":'),
        json_delta(1, '"Paris"}'),
        block_stop(1),
        block_start(2, {"type": "tool_use", "id": "call_r", "name": "weather", "input": {}}),
        json_delta(2, '{"city":"Rome"}'),
        block_stop(2),
        message_delta("tool_use", {"input_tokens": 8, "output_tokens": 20, "cache_read_input_tokens": 32}),
        STOP,
    ]


def test_length_stop_without_a_usage_chunk_reports_the_workers_count() -> None:
    chunks = [chunk({"content": "One two"}), chunk({}, "length")]
    out = payloads(encode(chunks, usage=events_pb2.Usage(prompt_tokens=5, completion_tokens=2, total_tokens=7)))
    assert out[-2:] == [message_delta("max_tokens", {"input_tokens": 5, "output_tokens": 2}), STOP]


def test_stream_without_finish_reason_still_closes_its_block() -> None:
    out = payloads(encode([chunk({"content": "cut"})]))
    assert [p["type"] for p in out] == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert out[-2]["delta"]["stop_reason"] == "end_turn"


def test_unreadable_chunk_is_skipped() -> None:
    encoder = AnthropicStreamEncoder(message_id="msg-1", model="claude-x")
    raw = encoder.chunk(b"not json") + encoder.chunk(b"[]") + encoder.chunk(orjson.dumps(TEXT[1]))
    raw += encoder.done(events_pb2.Usage(prompt_tokens=1, completion_tokens=1))
    assert payloads(raw) == [
        start_event(),
        block_start(0, {"type": "text", "text": ""}),
        text_delta(0, "Hel"),
        block_stop(0),
        message_delta("end_turn", {"input_tokens": 1, "output_tokens": 1}),
        STOP,
    ]


def test_empty_stream_is_a_message_without_content() -> None:
    assert payloads(encode([])) == [
        start_event(),
        message_delta("end_turn", {"input_tokens": 0, "output_tokens": 0}),
        STOP,
    ]


def test_error_mid_stream_is_an_error_event() -> None:
    raw = encode(TEXT[:2], error=UpstreamError("The upstream provider dropped the connection."))
    assert payloads(raw) == [
        start_event(),
        block_start(0, {"type": "text", "text": ""}),
        text_delta(0, "Hel"),
        {"type": "error", "error": {"type": "api_error", "message": "The upstream provider dropped the connection."}},
    ]


# --- the official SDK reading the encoded stream ----------------------------------------------


def sdk_client(raw: bytes) -> anthropic.Anthropic:
    def serve(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=raw)

    transport = httpx2.MockTransport(serve)
    return anthropic.Anthropic(
        api_key="k", base_url="http://gw", max_retries=0, http_client=httpx2.Client(transport=transport)
    )


HELLO: list[anthropic.types.MessageParam] = [{"role": "user", "content": "hi"}]


def test_sdk_rebuilds_text_and_tool_calls_from_the_stream() -> None:
    client = sdk_client(encode(TEXT_THEN_TOOLS))
    with client.messages.stream(model="claude-x", max_tokens=64, messages=HELLO) as stream:
        text = "".join(stream.text_stream)
        message = stream.get_final_message()
    assert text == "Checking both."
    assert message.id == "msg-1" and message.model == "claude-x"
    assert [block.type for block in message.content] == ["text", "tool_use", "tool_use"]
    tools = [block for block in message.content if block.type == "tool_use"]
    assert [(t.id, t.name, t.input) for t in tools] == [
        ("call_p", "weather", {"city": "Paris"}),
        ("call_r", "weather", {"city": "Rome"}),
    ]
    assert message.stop_reason == "tool_use"
    assert (message.usage.input_tokens, message.usage.output_tokens, message.usage.cache_read_input_tokens) == (
        8,
        20,
        32,
    )


@pytest.mark.parametrize("cost", [0.000045, None], ids=["priced", "unknown"])
def test_the_streams_cost_is_in_message_delta_usage(cost: float | None) -> None:
    """The worker's usage chunk carries total_cost_usd; a streamed message has no header left to put
    it in, so message_delta's usage says it (null: the price is unknown), and the SDK still reads it."""
    priced = [*TEXT[:-1], usage_chunk(9, 2, total_cost_usd=cost, input_cost_usd=cost, output_cost_usd=0)]
    raw = encode(priced)
    [delta] = [p for name, p in events(raw) if name == "message_delta"]
    assert delta["usage"] == {"input_tokens": 9, "output_tokens": 2, "cost_usd": cost}
    assert EVENT.validate_python(delta).usage.output_tokens == 2  # type: ignore[union-attr]
    # Without the worker's cost (an older worker), nothing is made up.
    [plain] = [p for name, p in events(encode(TEXT)) if name == "message_delta"]
    assert "cost_usd" not in plain["usage"]


def test_sdk_raises_the_error_event() -> None:
    client = sdk_client(encode(TEXT[:2], error=UpstreamError("dropped")))
    with (
        pytest.raises(anthropic.APIStatusError) as err,
        client.messages.stream(model="claude-x", max_tokens=64, messages=HELLO) as stream,
    ):
        for _ in stream:
            pass
    assert "dropped" in str(err.value)
    assert err.value.body == {"type": "error", "error": {"type": "api_error", "message": "dropped"}}
