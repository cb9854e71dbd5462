"""The fake provider: deterministic OpenAI-shaped answers and the options that make it slow or broken."""

from __future__ import annotations

import json
import time
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
from workers.providers.fake import REPLY_PHRASE, FakeAdapter

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
    call.operation = Operation.EMBEDDINGS
    with pytest.raises(InvalidRequestError):
        await fake.send(call)


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
