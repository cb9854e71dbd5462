from __future__ import annotations

import base64
import struct
from typing import Any

import orjson
import pytest

from common.errors import InvalidRequestError
from common.providers.base import Operation, ProviderCall, Usage
from workers import openai_format as fmt


def _call(body: dict[str, Any] | None = None, operation: str = Operation.CHAT) -> ProviderCall:
    return ProviderCall(
        request_id="r1", operation=operation, body=body or {}, upstream_model="up-1", api_key=None, timeout_s=5
    )


def test_chat_completion_shape_with_tool_calls() -> None:
    response = fmt.chat_completion(
        _call(),
        response_id="chatcmpl-1",
        content=None,
        tool_calls=[fmt.ToolCall("call_1", "get_weather", '{"city":"Paris"}')],
        finish_reason="tool_calls",
        usage=Usage(10, 5, cached_tokens=4),
    )
    body = orjson.loads(response.body)
    assert body["object"] == "chat.completion" and body["model"] == "up-1"
    message = body["choices"][0]["message"]
    assert message["tool_calls"] == [
        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}
    ]
    assert body["choices"][0]["finish_reason"] == "tool_calls"
    assert body["usage"] == {
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "total_tokens": 15,
        "prompt_tokens_details": {"cached_tokens": 4},
    }
    assert response.usage.total_tokens == 15


def test_chat_chunks_come_in_openais_order() -> None:
    chunks = fmt.ChatChunks(_call(), "chatcmpl-2")
    out = [*chunks.text("Hel"), *chunks.text("lo"), *chunks.tool_call_start(0, "call_9", "f")]
    out += [*chunks.tool_call_arguments(0, '{"a":'), *chunks.finish("tool_calls"), chunks.usage(Usage(3, 4))]
    bodies = [orjson.loads(c.data) for c in out]
    assert bodies[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert [b["choices"][0]["delta"].get("content") for b in bodies[1:3]] == ["Hel", "lo"]
    assert bodies[3]["choices"][0]["delta"]["tool_calls"][0] == {
        "index": 0,
        "id": "call_9",
        "type": "function",
        "function": {"name": "f", "arguments": ""},
    }
    assert bodies[4]["choices"][0]["delta"]["tool_calls"][0]["function"] == {"arguments": '{"a":'}
    assert bodies[5]["choices"][0]["finish_reason"] == "tool_calls"
    assert bodies[6]["choices"] == [] and bodies[6]["usage"]["total_tokens"] == 7
    assert out[-1].usage_only and out[-1].usage == Usage(3, 4)
    assert {b["id"] for b in bodies} == {"chatcmpl-2"}
    assert [c.text_chars for c in out[:3]] == [0, 3, 2]


@pytest.mark.parametrize("encoding", ["float", "base64"])
def test_embeddings_response_float_and_base64(encoding: str) -> None:
    vectors = [[0.5, -1.25, 3.0], [1.0, 2.0, 0.0]]
    body = orjson.loads(fmt.embeddings_response(_call({"encoding_format": encoding}), vectors, Usage(7)).body)
    assert body["object"] == "list" and body["usage"] == {"prompt_tokens": 7, "total_tokens": 7}
    decoded = [
        list(struct.unpack("<3f", base64.b64decode(d["embedding"]))) if encoding == "base64" else d["embedding"]
        for d in body["data"]
    ]
    assert decoded == vectors
    assert [d["index"] for d in body["data"]] == [0, 1]


def test_embedding_inputs_accepts_text_and_rejects_tokens() -> None:
    assert fmt.embedding_inputs(_call({"input": "a"})) == ["a"]
    assert fmt.embedding_inputs(_call({"input": ["a", "b"]})) == ["a", "b"]
    with pytest.raises(InvalidRequestError) as err:
        fmt.embedding_inputs(_call({"input": [1, 2, 3]}))
    assert err.value.param == "input"


def test_completion_through_chat_round_trip() -> None:
    chat = fmt.chat_body_from_completion({"model": "m", "prompt": "Say hi", "max_tokens": 5, "best_of": 1})
    assert chat == {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "Say hi"}]}
    with pytest.raises(InvalidRequestError) as err:
        fmt.chat_body_from_completion({"model": "m", "prompt": "x", "echo": True})
    assert err.value.param == "echo"
    with pytest.raises(InvalidRequestError):
        fmt.chat_body_from_completion({"model": "m", "prompt": ["a", "b"]})

    completion = fmt.completion_from_chat(
        {
            "id": "chatcmpl-x",
            "created": 1,
            "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }
    )
    assert completion["object"] == "text_completion" and completion["id"] == "cmpl-x"
    assert completion["choices"][0]["text"] == "hi"


def test_completion_chunks_through_chat() -> None:
    opening = {"id": "chatcmpl-y", "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}
    assert fmt.completion_chunk_from_chat(opening) is None
    text = fmt.completion_chunk_from_chat({"id": "chatcmpl-y", "choices": [{"index": 0, "delta": {"content": "Hi"}}]})
    assert text is not None and text["choices"][0]["text"] == "Hi" and text["object"] == "text_completion"
    usage = fmt.completion_chunk_from_chat({"id": "chatcmpl-y", "choices": [], "usage": {"total_tokens": 3}})
    assert usage is not None and usage["choices"] == [] and usage["usage"] == {"total_tokens": 3}
