"""Request bodies larger than one NATS message (1 MiB by default) reach the upstream intact, through the
four services as processes: a job leaves such a body out and its worker fetches it from the gateway
in pieces. A 20 MB image in a vision request (OpenAI takes images of up to 20 MB), whole and
streamed, and a long prompt on every generating endpoint, each with its one usage row; above
``MAX_BODY_BYTES`` (32 MiB by default), 413 as before."""

from __future__ import annotations

import base64
import hashlib
import os
from typing import Any

import anthropic
import httpx
import pytest

from tests.contract.server import UpstreamServer
from tests.e2e.conftest import KEY, RunningStack
from tests.e2e.test_spine import one_row

pytestmark = pytest.mark.e2e

ONE_MIB = 1024 * 1024
# Past NATS's default max_payload, so the job cannot carry it.
LONG_TEXT = "All work and no play makes Jack a dull boy. " * (int(1.1 * ONE_MIB) // 44 + 1)


@pytest.fixture(scope="module")
def image_url() -> str:
    """A data URL of 20 MB of image bytes (random: nothing compresses or dedupes it on the way)."""
    return "data:image/png;base64," + base64.b64encode(os.urandom(20 * 1000 * 1000)).decode()


@pytest.fixture
def upstream(openai_upstream: UpstreamServer) -> UpstreamServer:
    openai_upstream.reset()
    return openai_upstream


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def one_received(upstream: UpstreamServer, path: str) -> dict[str, Any]:
    (received,) = upstream.received
    assert received.path == path
    return received.body


async def assert_billed_success(stack: RunningStack, request_id: str, endpoint: str) -> None:
    row = await one_row(stack, request_id)
    assert (row["status"], row["http_status"], row["endpoint"]) == ("success", 200, endpoint)
    assert row["deployment_id"] == stack.deployment("oai")
    assert row["prompt_tokens"] > 0


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
async def test_a_20_mb_image_reaches_the_upstream_intact(
    running_stack: RunningStack, upstream: UpstreamServer, image_url: str, stream: bool
) -> None:
    messages: Any = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is in this picture?"},
                {"type": "image_url", "image_url": {"url": image_url, "detail": "high"}},
            ],
        }
    ]
    client = running_stack.client(timeout=60)
    if stream:
        with client.chat.completions.with_streaming_response.create(
            model="oai", messages=messages, stream=True
        ) as response:
            request_id = response.headers["x-request-id"]
            chunks = list(response.parse())
        assert chunks and chunks[-1].choices[0].finish_reason == "stop"
    else:
        raw = client.chat.completions.with_raw_response.create(model="oai", messages=messages)
        request_id = raw.headers["x-request-id"]
        assert raw.parse().choices[0].message.content

    body = one_received(upstream, "/v1/chat/completions")
    sent = body["messages"][0]["content"][1]["image_url"]
    assert sent["detail"] == "high"
    assert len(sent["url"]) == len(image_url) and digest(sent["url"]) == digest(image_url)
    await assert_billed_success(running_stack, request_id, "/v1/chat/completions")


async def test_a_long_completions_prompt(running_stack: RunningStack, upstream: UpstreamServer) -> None:
    raw = running_stack.client().completions.with_raw_response.create(model="oai", prompt=LONG_TEXT)
    assert raw.parse().choices[0].text
    assert digest(one_received(upstream, "/v1/completions")["prompt"]) == digest(LONG_TEXT)
    await assert_billed_success(running_stack, raw.headers["x-request-id"], "/v1/completions")


async def test_a_long_embeddings_input(running_stack: RunningStack, upstream: UpstreamServer) -> None:
    raw = running_stack.client().embeddings.with_raw_response.create(
        model="oai", input=[LONG_TEXT, "short"], encoding_format="float"
    )
    assert raw.parse().data
    assert one_received(upstream, "/v1/embeddings")["input"] == [LONG_TEXT, "short"]
    await assert_billed_success(running_stack, raw.headers["x-request-id"], "/v1/embeddings")


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
async def test_a_long_anthropic_message(running_stack: RunningStack, upstream: UpstreamServer, stream: bool) -> None:
    client = anthropic.Anthropic(base_url=running_stack.base_url, api_key=KEY, max_retries=0, timeout=60)
    messages: Any = [{"role": "user", "content": LONG_TEXT}]
    if stream:
        with client.messages.stream(model="oai", max_tokens=64, messages=messages) as events:
            message = events.get_final_message()
    else:
        message = client.messages.create(model="oai", max_tokens=64, messages=messages)
    assert message.content
    sent = one_received(upstream, "/v1/chat/completions")["messages"]
    assert digest(sent[-1]["content"]) == digest(LONG_TEXT)
    await assert_billed_success(running_stack, message.id, "/v1/messages")


def test_a_body_over_32_mib_is_still_413(running_stack: RunningStack) -> None:
    body = b'{"model": "oai", "messages": [{"role": "user", "content": "' + b"x" * (32 * ONE_MIB) + b'"}]}'
    response = httpx.post(
        f"{running_stack.base_url}/v1/chat/completions",
        content=body,
        headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"},
        timeout=60,
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"
