"""Provider-neutral cases for the endpoints besides chat — legacy completions, embeddings, image
generation — run against every network adapter that declares the operation in ``operations``, over the
same fake upstreams as ``test_provider_conformance.py`` (see conftest.py).

What each provider's fixtures must tell:

- completions: the story's plain reply (fixture ``chat``; an upstream with a completions endpoint of
  its own answers it there in that endpoint's format), as a whole and streamed in ``REPLY_PIECES``;
- embeddings: fixture ``embeddings``, one vector per input of ``EMBEDDING_INPUTS``, whatever numbers;
- images: fixture ``image``, the single image ``IMAGE_B64`` (a PNG) with ``IMAGE_USAGE``.
"""

from __future__ import annotations

import base64
import copy
import json
import struct
from collections.abc import AsyncIterator
from typing import Any

import pytest

from common.errors import InvalidRequestError, UpstreamBadRequestError, UpstreamUnavailableError
from common.providers.base import Operation, ProviderAdapter, ProviderCall, StreamChunk, Usage
from tests.contract import story
from tests.contract.server import Answer, Fail, UpstreamServer
from tests.contract.upstreams import NETWORK_PROVIDERS
from workers.providers import REGISTRY

API_KEY = "sk-contract-test-0123456789"
UPSTREAM_MODEL = "contract-upstream-model"
EMBEDDING_INPUTS = ["hello", "goodbye"]
IMAGE_PROMPT = "A small red square on a white background"
# The story's image: an 8x8 PNG, base64 as the fixtures carry it.
IMAGE_B64 = (
    "iVBORw0KGgoAAAANSUhEUgAAAAgAAAAICAIAAABLbSncAAAA00lEQVR4nAHIADf/ALf5Cmu4rIc7YqXHVlLzNGWIcAZmTCUErgBHAJ/47c0P"
    "3a6YJYFI8e4GxHOEaVL2NOMALjHRUIfcv6OEL/WR4L3WrASmNJv8TiS8ALJXMeMn40o6OIOz7RmKYnCxRnLbYM6E7QC+UZCxNtUMvTSmPv80"
    "cwZ4IglXK5A/iRsAwlTaSYCsbSNR7S81Ac55M9zh36b6TSs5AHwO8YrkjftfOXgYHXW7pGbNBE2PFJsyDwA8/+uRCUdQ5Et4gY72/PaUrD90"
    "xUoiyxBVvV6Txx7rBgAAAABJRU5ErkJggg=="
)
IMAGE_USAGE = Usage(prompt_tokens=14, completion_tokens=1290)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

NON_CHAT = (Operation.COMPLETIONS, Operation.EMBEDDINGS, Operation.IMAGES)


def declaring(operation: str) -> list[str]:
    return [p for p in NETWORK_PROVIDERS if operation in REGISTRY[p].operations]


def over(operation: str) -> pytest.MarkDecorator:
    """Run the case once per network provider whose adapter declares ``operation``."""
    return pytest.mark.parametrize("provider_server", declaring(operation), indirect=True)


def make_call(operation: str, body: dict[str, Any], *, stream: bool = False) -> ProviderCall:
    return ProviderCall(
        request_id="req-contract-ops",
        operation=operation,
        body=body,
        upstream_model=UPSTREAM_MODEL,
        api_key=API_KEY,
        timeout_s=5.0,
        stream=stream,
    )


def expected(usage: Usage, lacks: frozenset[str]) -> Usage:
    return Usage(usage.prompt_tokens, usage.completion_tokens) if "cached_tokens" in lacks else usage


def expected_model(lacks: frozenset[str]) -> str | None:
    return None if "model_name" in lacks else UPSTREAM_MODEL


async def collect(chunks: AsyncIterator[StreamChunk]) -> list[StreamChunk]:
    return [chunk async for chunk in chunks]


def completion_body(**extra: Any) -> dict[str, Any]:
    return {"model": "public-model", "prompt": story.QUESTION, **extra}


def embeddings_body(**extra: Any) -> dict[str, Any]:
    return {"model": "public-model", "input": list(EMBEDDING_INPUTS), **extra}


def image_body(**extra: Any) -> dict[str, Any]:
    return {"model": "public-model", "prompt": IMAGE_PROMPT, "n": 1, "size": "1024x1024", **extra}


BODIES = {
    Operation.COMPLETIONS: completion_body,
    Operation.EMBEDDINGS: embeddings_body,
    Operation.IMAGES: lambda: image_body(response_format="b64_json"),
}


# --- legacy completions -------------------------------------------------------------------------


@over(Operation.COMPLETIONS)
async def test_completion_reply(adapter: ProviderAdapter, upstream: UpstreamServer, lacks: frozenset[str]) -> None:
    body = completion_body()
    before = copy.deepcopy(body)
    response = await adapter.send(make_call(Operation.COMPLETIONS, body))

    answer = json.loads(response.body)
    assert answer["object"] == "text_completion"
    (choice,) = answer["choices"]
    assert choice["text"] == story.REPLY and choice["index"] == 0 and choice["finish_reason"] == "stop"
    assert response.usage == expected(story.REPLY_USAGE, lacks)
    assert answer["usage"]["prompt_tokens"] == story.REPLY_USAGE.prompt_tokens
    assert answer["usage"]["completion_tokens"] == story.REPLY_USAGE.completion_tokens
    (seen,) = upstream.received
    assert seen.model == expected_model(lacks) and seen.api_key == API_KEY and seen.stream is False
    assert body == before, "the adapter must not change the client's body"


@over(Operation.COMPLETIONS)
async def test_streamed_completion_arrives_in_pieces_with_a_marked_usage_chunk(
    adapter: ProviderAdapter, upstream: UpstreamServer, lacks: frozenset[str]
) -> None:
    chunks = await collect(adapter.stream(make_call(Operation.COMPLETIONS, completion_body(stream=True), stream=True)))

    bodies = [json.loads(c.data) for c in chunks]
    assert {b["object"] for b in bodies} == {"text_completion"}
    texts = [b["choices"][0]["text"] for b in bodies if b["choices"] and b["choices"][0]["text"]]
    assert texts == story.REPLY_PIECES
    finishes = [b["choices"][0]["finish_reason"] for b in bodies if b["choices"] and b["choices"][0]["finish_reason"]]
    assert finishes == ["stop"]
    *content_chunks, last = chunks
    assert last.usage_only and last.usage == expected(story.REPLY_USAGE, lacks)
    assert bodies[-1]["choices"] == []
    assert not any(c.usage_only for c in content_chunks)
    assert sum(c.text_chars for c in chunks) == len(story.REPLY)
    (seen,) = upstream.received
    assert seen.stream is True and seen.model == expected_model(lacks)


# --- embeddings ---------------------------------------------------------------------------------


def vectors_of(answer: dict[str, Any]) -> list[Any]:
    assert answer["object"] == "list"
    assert [d["object"] for d in answer["data"]] == ["embedding"] * len(EMBEDDING_INPUTS)
    assert [d["index"] for d in answer["data"]] == list(range(len(EMBEDDING_INPUTS)))
    return [d["embedding"] for d in answer["data"]]


@over(Operation.EMBEDDINGS)
async def test_embeddings_float_and_base64_carry_the_same_vectors(
    adapter: ProviderAdapter, upstream: UpstreamServer, lacks: frozenset[str]
) -> None:
    upstream.reset(Answer("embeddings"))
    body = embeddings_body(encoding_format="float")
    before = copy.deepcopy(body)
    as_floats = await adapter.send(make_call(Operation.EMBEDDINGS, body))
    as_base64 = await adapter.send(make_call(Operation.EMBEDDINGS, embeddings_body(encoding_format="base64")))

    floats = vectors_of(json.loads(as_floats.body))
    assert all(v and all(isinstance(x, float) for x in v) for v in floats)
    encoded = vectors_of(json.loads(as_base64.body))
    # What the official SDK does with a base64 answer: little-endian float32s.
    decoded = [list(struct.unpack(f"<{len(base64.b64decode(e)) // 4}f", base64.b64decode(e))) for e in encoded]
    as_float32 = [list(struct.unpack(f"<{len(v)}f", struct.pack(f"<{len(v)}f", *v))) for v in floats]
    assert decoded == as_float32
    usage = json.loads(as_floats.body)["usage"]
    assert as_floats.usage.prompt_tokens == usage["prompt_tokens"] == usage["total_tokens"]
    assert as_floats.usage.completion_tokens == 0 and as_base64.usage == as_floats.usage
    assert upstream.received and all(
        r.model == expected_model(lacks) and r.api_key == API_KEY for r in upstream.received
    )
    assert body == before, "the adapter must not change the client's body"


# --- images -------------------------------------------------------------------------------------


@over(Operation.IMAGES)
async def test_image_generation_answers_the_png_as_b64_json(
    adapter: ProviderAdapter, upstream: UpstreamServer, lacks: frozenset[str]
) -> None:
    upstream.reset(Answer("image"))
    body = image_body(response_format="b64_json")
    before = copy.deepcopy(body)
    response = await adapter.send(make_call(Operation.IMAGES, body))

    answer = json.loads(response.body)
    assert isinstance(answer["created"], int) and answer["created"] > 0
    (image,) = answer["data"]
    assert image["b64_json"] == IMAGE_B64 and "url" not in image
    assert base64.b64decode(image["b64_json"]).startswith(PNG_SIGNATURE)
    assert response.usage == IMAGE_USAGE
    assert answer["usage"]["input_tokens"] == IMAGE_USAGE.prompt_tokens
    assert answer["usage"]["output_tokens"] == IMAGE_USAGE.completion_tokens
    (seen,) = upstream.received
    assert seen.model == expected_model(lacks) and seen.api_key == API_KEY and seen.stream is False
    assert body == before, "the adapter must not change the client's body"


@over(Operation.IMAGES)
async def test_image_generation_answers_urls_when_asked(adapter: ProviderAdapter, upstream: UpstreamServer) -> None:
    upstream.reset(Answer("image"))
    response = await adapter.send(make_call(Operation.IMAGES, image_body(response_format="url")))

    (image,) = json.loads(response.body)["data"]
    assert "b64_json" not in image
    # A provider hosting its images links to them; one that only returns bytes carries them in a data: URL.
    scheme, _, rest = image["url"].partition(":")
    assert scheme in {"https", "data"}, image["url"]
    if scheme == "data":
        assert rest == f"image/png;base64,{IMAGE_B64}"


@over(Operation.IMAGES)
async def test_image_generation_answers_n_images(adapter: ProviderAdapter, upstream: UpstreamServer) -> None:
    upstream.reset(Answer("image"))
    response = await adapter.send(make_call(Operation.IMAGES, image_body(n=2, response_format="b64_json")))

    assert [image["b64_json"] for image in json.loads(response.body)["data"]] == [IMAGE_B64, IMAGE_B64]


# --- what every non-chat operation shares -------------------------------------------------------

WHOLE_ONLY = [(p, op) for op in (Operation.EMBEDDINGS, Operation.IMAGES) for p in declaring(op)]
DECLARED = [(p, op) for op in NON_CHAT for p in declaring(op)]
UNDECLARED = [(p, op) for op in NON_CHAT for p in NETWORK_PROVIDERS if p not in declaring(op)]


@pytest.mark.parametrize(("provider_server", "operation"), WHOLE_ONLY, indirect=["provider_server"])
async def test_operations_without_streams_refuse_to_stream(
    adapter: ProviderAdapter, upstream: UpstreamServer, operation: str
) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        await collect(adapter.stream(make_call(operation, {**BODIES[operation](), "stream": True}, stream=True)))
    assert caught.value.status == 400 and not caught.value.retryable
    assert upstream.received == []


@pytest.mark.parametrize(("provider_server", "operation"), UNDECLARED, indirect=["provider_server"])
async def test_undeclared_operations_are_refused_without_calling_the_upstream(
    adapter: ProviderAdapter, upstream: UpstreamServer, operation: str
) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        await adapter.send(make_call(operation, BODIES[operation]()))
    assert caught.value.status == 400 and operation in caught.value.message
    assert upstream.received == []


@pytest.mark.parametrize(
    ("status", "error_class", "retryable"),
    [(400, UpstreamBadRequestError, False), (503, UpstreamUnavailableError, True)],
)
@pytest.mark.parametrize(("provider_server", "operation"), DECLARED, indirect=["provider_server"])
async def test_operation_errors_map_onto_the_error_tree(
    adapter: ProviderAdapter,
    upstream: UpstreamServer,
    operation: str,
    status: int,
    error_class: type[Exception],
    retryable: bool,
) -> None:
    message = f"contract failure {status} on {operation}"
    upstream.reset(Fail(status, message))

    with pytest.raises(error_class) as caught:
        await adapter.send(make_call(operation, BODIES[operation]()))

    error = caught.value
    assert isinstance(error, UpstreamBadRequestError | UpstreamUnavailableError)
    assert error.retryable is retryable and error.upstream_status == status
    assert message in error.message
