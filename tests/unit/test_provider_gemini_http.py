"""The Gemini adapter over real HTTP against the contract suite's fake Gemini upstream: paths and key
header, embeddings (float/base64, dimensions, batches of 100), completions through chat (whole and
streamed), and Gemini's error quirks (an invalid key as HTTP 400, RetryInfo, an error mid-stream)."""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import AsyncIterator, Iterator
from typing import Any

import orjson
import pytest

from common.errors import InvalidRequestError, UpstreamError, UpstreamRateLimitError, UpstreamUnavailableError
from common.providers.base import Operation, ProviderCall, StreamChunk, Usage
from tests.contract import story
from tests.contract.server import Answer, Fail, Received, UpstreamServer
from tests.contract.upstreams.gemini import GeminiWire
from workers.providers.gemini import DEFAULT_BASE_URL, GeminiAdapter
from workers.usage import estimate_prompt_tokens

API_KEY = "gemini-test-key-0123456789"
INVALID_KEY = "API key not valid. Please pass a valid API key."


class QuirkyGeminiWire(GeminiWire):
    """Gemini's errors as it really sends them: details with ErrorInfo / RetryInfo, and errors in-band."""

    def error(self, status: int, message: str) -> bytes:
        body = orjson.loads(super().error(status, message))
        if message == INVALID_KEY:
            body["error"]["details"] = [
                {
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "API_KEY_INVALID",
                    "domain": "googleapis.com",
                }
            ]
        elif status == 429:
            body["error"]["details"] = [
                {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [{"quotaMetric": "requests"}]},
                {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "12.5s"},
            ]
        return orjson.dumps(body)

    def stream(self, fixture: str, received: Received) -> list[bytes]:
        if fixture != "broken":
            return super().stream(fixture, received)
        overloaded = {"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}}
        return [super().stream("chat", received)[0], b"data: " + orjson.dumps(overloaded) + b"\r\n\r\n"]


@pytest.fixture(scope="module")
def server() -> Iterator[UpstreamServer]:
    with UpstreamServer(QuirkyGeminiWire()) as upstream:
        yield upstream


@pytest.fixture
def upstream(server: UpstreamServer) -> UpstreamServer:
    server.reset()
    return server


@pytest.fixture
async def adapter(upstream: UpstreamServer) -> AsyncIterator[GeminiAdapter]:
    instance = GeminiAdapter(upstream.base_url)
    yield instance
    await instance.aclose()


def make_call(
    body: dict[str, Any], operation: str = Operation.CHAT, *, model: str = "gemini-test", stream: bool = False
) -> ProviderCall:
    return ProviderCall(
        request_id="req-http",
        operation=operation,
        body=body,
        upstream_model=model,
        api_key=API_KEY,
        timeout_s=5,
        stream=stream,
    )


async def collect(chunks: AsyncIterator[StreamChunk]) -> list[StreamChunk]:
    return [chunk async for chunk in chunks]


def question() -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": story.QUESTION}]}


async def test_calls_go_to_the_model_with_the_key_in_googles_header(
    adapter: GeminiAdapter, upstream: UpstreamServer
) -> None:
    await adapter.send(make_call(question()))
    await adapter.send(make_call(question(), model="tunedModels/my-tune"))

    plain, tuned = upstream.received
    assert plain.path == "/v1beta/models/gemini-test:generateContent"
    assert tuned.path == "/v1beta/tunedModels/my-tune:generateContent"
    assert plain.headers["x-goog-api-key"] == API_KEY and "authorization" not in plain.headers
    assert plain.body["contents"] == [{"role": "user", "parts": [{"text": story.QUESTION}]}]


def test_the_default_base_url_is_googles() -> None:
    assert GeminiAdapter("").base_url == DEFAULT_BASE_URL


# --- embeddings ---------------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["float", "base64"])
async def test_embeddings_float_and_base64_with_dimensions(
    adapter: GeminiAdapter, upstream: UpstreamServer, encoding: str
) -> None:
    body = {"model": "m", "input": ["hello", "bonjour"], "encoding_format": encoding, "dimensions": 3, "user": "u1"}
    response = await adapter.send(make_call(body, Operation.EMBEDDINGS, model="gemini-embedding-001"))

    (seen,) = upstream.received
    assert seen.path == "/v1beta/models/gemini-embedding-001:batchEmbedContents"
    assert seen.body == {
        "requests": [
            {
                "model": "models/gemini-embedding-001",
                "outputDimensionality": 3,
                "content": {"parts": [{"text": "hello"}]},
            },
            {
                "model": "models/gemini-embedding-001",
                "outputDimensionality": 3,
                "content": {"parts": [{"text": "bonjour"}]},
            },
        ]
    }
    answer = json.loads(response.body)
    assert answer["object"] == "list" and answer["model"] == "gemini-embedding-001"
    vectors = [
        list(struct.unpack("<3f", base64.b64decode(d["embedding"]))) if encoding == "base64" else d["embedding"]
        for d in answer["data"]
    ]
    assert vectors == [[5.0, 0.0, 0.5], [7.0, 1.0, 0.5]]
    # This upstream reports no usage for embeddings (as Gemini may not): estimated from the input.
    assert response.usage == Usage(prompt_tokens=estimate_prompt_tokens(body))


async def test_more_than_100_inputs_go_in_batches_and_keep_their_order(
    adapter: GeminiAdapter, upstream: UpstreamServer
) -> None:
    texts = ["x" * i for i in range(1, 251)]
    response = await adapter.send(make_call({"model": "m", "input": texts}, Operation.EMBEDDINGS))

    assert sorted(len(r.body["requests"]) for r in upstream.received) == [50, 100, 100]
    assert [d["embedding"][0] for d in json.loads(response.body)["data"]] == [float(len(t)) for t in texts]


async def test_embeddings_reject_what_gemini_cannot_do(adapter: GeminiAdapter, upstream: UpstreamServer) -> None:
    for body, param in [
        ({"model": "m", "input": "a", "x_custom": 1}, "x_custom"),
        ({"model": "m", "input": [1, 2, 3]}, "input"),
    ]:
        with pytest.raises(InvalidRequestError) as caught:
            await adapter.send(make_call(body, Operation.EMBEDDINGS))
        assert caught.value.param == param
    with pytest.raises(InvalidRequestError):
        adapter.stream(make_call({"model": "m", "input": "a"}, Operation.EMBEDDINGS, stream=True))
    assert upstream.received == []


# --- completions through chat -------------------------------------------------------------------


async def test_completions_go_through_chat(adapter: GeminiAdapter, upstream: UpstreamServer) -> None:
    body = {"model": "m", "prompt": story.QUESTION, "max_tokens": 5, "stop": "\n"}
    response = await adapter.send(make_call(body, Operation.COMPLETIONS))

    answer = json.loads(response.body)
    assert answer["object"] == "text_completion" and answer["id"].startswith("cmpl-")
    assert [(c["text"], c["finish_reason"]) for c in answer["choices"]] == [(story.REPLY, "stop")]
    assert response.usage == story.REPLY_USAGE and answer["usage"]["total_tokens"] == story.REPLY_USAGE.total_tokens
    (seen,) = upstream.received
    assert seen.body["contents"] == [{"role": "user", "parts": [{"text": story.QUESTION}]}]
    assert seen.body["generationConfig"] == {"maxOutputTokens": 5, "stopSequences": ["\n"]}


async def test_streamed_completions_go_through_chat(adapter: GeminiAdapter, upstream: UpstreamServer) -> None:
    call = make_call({"model": "m", "prompt": story.QUESTION, "stream": True}, Operation.COMPLETIONS, stream=True)
    chunks = await collect(adapter.stream(call))

    bodies = [json.loads(c.data) for c in chunks]
    assert {b["object"] for b in bodies} == {"text_completion"}
    assert [c["text"] for b in bodies for c in b["choices"] if c["text"]] == story.REPLY_PIECES
    assert [c["finish_reason"] for b in bodies for c in b["choices"] if c["finish_reason"]] == ["stop"]
    assert chunks[-1].usage_only and chunks[-1].usage == story.REPLY_USAGE
    assert upstream.received[0].path == "/v1beta/models/gemini-test:streamGenerateContent"


# --- Gemini's errors ----------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["send", "stream"])
async def test_an_invalid_key_is_our_credentials_not_the_clients_bad_request(
    adapter: GeminiAdapter, upstream: UpstreamServer, stream: bool
) -> None:
    upstream.reset(Fail(400, INVALID_KEY))
    call = make_call(question(), stream=stream)
    with pytest.raises(UpstreamError) as caught:
        await (collect(adapter.stream(call)) if stream else adapter.send(call))
    error = caught.value
    assert error.status == 502 and not error.retryable and error.upstream_status == 400
    assert INVALID_KEY not in error.message


async def test_a_quota_error_retries_after_googles_retry_info(adapter: GeminiAdapter, upstream: UpstreamServer) -> None:
    upstream.reset(Fail(429, "Quota exceeded for metric requests."))  # no Retry-After header
    with pytest.raises(UpstreamRateLimitError) as caught:
        await adapter.send(make_call(question()))
    assert caught.value.retry_after_s == 12.5 and caught.value.retryable
    assert "Quota exceeded" in caught.value.message and caught.value.code == "rate_limit_exceeded"


async def test_a_client_fault_keeps_googles_status_as_code(adapter: GeminiAdapter, upstream: UpstreamServer) -> None:
    upstream.reset(Fail(400, "Request contains an invalid argument."))
    with pytest.raises(UpstreamError) as caught:
        await adapter.send(make_call(question()))
    assert caught.value.status == 400 and caught.value.code == "invalid_argument"


async def test_an_error_sent_mid_stream_ends_it_with_its_status(
    adapter: GeminiAdapter, upstream: UpstreamServer
) -> None:
    upstream.reset(Answer("broken"))
    received: list[StreamChunk] = []
    with pytest.raises(UpstreamUnavailableError) as caught:
        async for chunk in adapter.stream(make_call(question(), stream=True)):
            received.append(chunk)
    assert len(received) == 1 and json.loads(received[0].data)["choices"][0]["delta"]["content"] == "The"
    assert caught.value.retryable and "overloaded" in caught.value.message
