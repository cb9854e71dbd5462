"""What the OpenAI-compatible adapter sends and how it reads failures, below the contract suite."""

from __future__ import annotations

import base64
import json
import struct
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest

from common.errors import InvalidRequestError
from common.providers.base import Operation, ProviderCall, Usage
from tests.contract.server import UpstreamServer, closed_port
from workers.providers._http import error_fields, retry_after_s
from workers.providers.mistral import MistralAdapter
from workers.providers.openai import OpenAIAdapter, request_body, usage_of


def call(body: dict[str, object], *, stream: bool) -> ProviderCall:
    return ProviderCall(
        request_id="r",
        operation=Operation.CHAT,
        body=body,
        upstream_model="up",
        api_key=None,
        timeout_s=1,
        stream=stream,
    )


def test_streaming_always_asks_for_usage_and_keeps_the_clients_stream_options() -> None:
    body = {"model": "public", "stream": True, "stream_options": {"include_usage": False, "x_other": 1}}
    sent = json.loads(request_body(call(body, stream=True)))

    assert sent["model"] == "up"
    assert sent["stream"] is True
    assert sent["stream_options"] == {"include_usage": True, "x_other": 1}
    assert body["stream_options"] == {"include_usage": False, "x_other": 1}  # the client's body is untouched


def test_every_other_field_goes_upstream_as_the_client_sent_it() -> None:
    body = {"model": "p", "messages": [], "seed": 7, "temperature": 0.2, "user": "u-1", "logit_bias": {"1734": -100}}
    sent = json.loads(request_body(call(body, stream=False)))
    assert sent == {**body, "model": "up"}


def test_a_non_streaming_call_sends_no_stream_options() -> None:
    sent = json.loads(request_body(call({"model": "p", "stream": True, "stream_options": {}}, stream=False)))
    assert sent["stream"] is False and "stream_options" not in sent

    plain = json.loads(request_body(call({"model": "p", "messages": []}, stream=False)))
    assert plain == {"model": "up", "messages": []}


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "7"}, 7.0),
        ({"retry-after": "1.5"}, 1.5),
        ({"retry-after-ms": "250", "retry-after": "9"}, 0.25),
        ({"retry-after": "soon"}, None),
        ({}, None),
    ],
)
def test_retry_after_forms(headers: dict[str, str], expected: float | None) -> None:
    assert retry_after_s(httpx.Headers(headers)) == expected


def test_retry_after_as_an_http_date() -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    seconds = retry_after_s(httpx.Headers({"retry-after": when}))
    assert seconds is not None and 25 <= seconds <= 30


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"error": {"message": "bad", "code": "c", "param": "p"}}, ("bad", "c", "p")),
        ({"error": {"message": "bad", "code": 400, "param": None}}, ("bad", "400", None)),  # vLLM's int code
        ({"error": "plain text"}, ("plain text", None, None)),
        ({"detail": "FastAPI style"}, ("FastAPI style", None, None)),
        ({"message": "bare"}, ("bare", None, None)),
        ([1, 2], ("", None, None)),
    ],
)
def test_error_bodies_of_compatible_servers(body: object, expected: tuple[str, str | None, str | None]) -> None:
    assert error_fields(body) == expected


# --- usage --------------------------------------------------------------------------------------


def test_usage_reads_chat_and_image_generation_shapes() -> None:
    chat = {"prompt_tokens": 24, "completion_tokens": 8, "prompt_tokens_details": {"cached_tokens": 16}}
    assert usage_of(chat) == Usage(24, 8, 16)
    images = {"input_tokens": 14, "output_tokens": 1290, "total_tokens": 1304, "input_tokens_details": {}}
    assert usage_of(images) == Usage(14, 1290)
    assert usage_of({"prompt_tokens": 5, "total_tokens": 5}) == Usage(5, 0)  # embeddings
    assert usage_of(None) is None


# --- one adapter, four endpoints ----------------------------------------------------------------


def op_call(operation: str, body: dict[str, Any], *, stream: bool = False) -> ProviderCall:
    return ProviderCall(
        request_id="r", operation=operation, body=body, upstream_model="up", api_key="k", timeout_s=5, stream=stream
    )


@pytest.mark.parametrize(
    ("operation", "path", "body"),
    [
        (Operation.CHAT, "/v1/chat/completions", {"model": "p", "messages": [{"role": "user", "content": "hi"}]}),
        (Operation.COMPLETIONS, "/v1/completions", {"model": "p", "prompt": "hi", "suffix": "!", "echo": False}),
        (
            Operation.EMBEDDINGS,
            "/v1/embeddings",
            {"model": "p", "input": ["a", "b"], "encoding_format": "base64", "dimensions": 3, "user": "u"},
        ),
        (
            Operation.IMAGES,
            "/v1/images/generations",
            {"model": "p", "prompt": "a fox", "size": "1024x1024", "quality": "low", "background": "transparent"},
        ),
    ],
)
async def test_each_operation_posts_the_clients_body_to_its_path(
    openai_wire_server: UpstreamServer, operation: str, path: str, body: dict[str, Any]
) -> None:
    openai_wire_server.reset()
    adapter = OpenAIAdapter(openai_wire_server.base_url)
    try:
        response = await adapter.send(op_call(operation, body))
    finally:
        await adapter.aclose()

    (seen,) = openai_wire_server.received
    assert seen.path == path
    assert seen.body == {**body, "model": "up"}  # base64 and dimensions go upstream: the upstream encodes
    assert seen.headers["authorization"] == "Bearer k"
    assert json.loads(response.body)  # relayed as received


async def test_base64_embeddings_come_back_as_the_upstream_encoded_them(openai_wire_server: UpstreamServer) -> None:
    openai_wire_server.reset()
    adapter = OpenAIAdapter(openai_wire_server.base_url)
    body = {"model": "p", "input": "hello", "encoding_format": "base64", "dimensions": 4}
    try:
        response = await adapter.send(op_call(Operation.EMBEDDINGS, body))
    finally:
        await adapter.aclose()
    expected = base64.b64encode(struct.pack("<4f", 5.0, 0.0, 0.5, -0.25)).decode()
    assert json.loads(response.body)["data"][0]["embedding"] == expected
    assert response.usage == Usage(prompt_tokens=1)


@pytest.mark.parametrize(
    ("adapter_class", "operation"),
    [(OpenAIAdapter, Operation.EMBEDDINGS), (OpenAIAdapter, Operation.IMAGES), (MistralAdapter, Operation.EMBEDDINGS)],
)
async def test_operations_answering_one_body_refuse_to_stream(
    adapter_class: type[OpenAIAdapter], operation: str
) -> None:
    adapter = adapter_class(f"http://127.0.0.1:{closed_port()}")  # refused before any connection
    try:
        with pytest.raises(InvalidRequestError) as caught:
            adapter.stream(op_call(operation, {"model": "p"}, stream=True))
    finally:
        await adapter.aclose()
    assert caught.value.param == "stream" and caught.value.status == 400
