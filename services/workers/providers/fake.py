"""A provider without a network: deterministic OpenAI-format answers (chat and legacy completions),
with options to make it slow or broken, for demos, load tests and failover tests.

The reply is a fixed phrase plus the last user message, one word per chunk. Usage is deterministic:
prompt tokens estimated from the request's text, completion tokens = words produced.

Options (strings, from the config's provider/deployment ``options``):

- ``latency_ms``: wait before the first token.
- ``tokens_per_second``: pace of the words after the first (0: as fast as possible).
- ``fail_status``: answer with this HTTP-like status, as the UpstreamError class a real provider's
  status maps to; with 429, ``retry_after_s`` is its Retry-After.
- ``fail_after_chunks``: die after this many stream chunks (the role chunk counts), like a dropped
  connection.
- ``hang``: ``"true"`` never answers, so the call's timeout fires.

Waits longer than the call's ``timeout_s`` end in UpstreamTimeoutError, as an HTTP read would.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from common.errors import ModelRouterError, UpstreamError, UpstreamTimeoutError, error_for_upstream_status
from common.providers.base import (
    ProviderAdapter,
    ProviderCall,
    ProviderResponse,
    StreamChunk,
    Usage,
)
from workers.providers._fake_shapes import SHAPES, Shape
from workers.usage import estimate_prompt_tokens

REPLY_PHRASE = "This is a fake reply from ModelRouter. You said:"
MAX_ECHOED_WORDS = 64


@dataclass(frozen=True, slots=True)
class FakeOptions:
    latency_s: float = 0.0
    tokens_per_second: float = 0.0
    fail_status: int = 0
    fail_after_chunks: int | None = None
    hang: bool = False
    retry_after_s: float | None = None

    @classmethod
    def parse(cls, options: Mapping[str, str]) -> FakeOptions:
        try:
            fail_after = options.get("fail_after_chunks")
            retry_after = options.get("retry_after_s")
            return cls(
                latency_s=float(options.get("latency_ms") or 0) / 1000,
                tokens_per_second=float(options.get("tokens_per_second") or 0),
                fail_status=int(options.get("fail_status") or 0),
                fail_after_chunks=int(fail_after) if fail_after else None,
                hang=options.get("hang", "").strip().lower() in {"1", "true", "yes", "on"},
                retry_after_s=float(retry_after) if retry_after else None,
            )
        except ValueError as exc:
            raise ModelRouterError(
                f"The fake provider has an invalid option: {exc}", code="invalid_provider_option"
            ) from None

    @property
    def gap_s(self) -> float:
        return 1 / self.tokens_per_second if self.tokens_per_second > 0 else 0.0


class FakeAdapter(ProviderAdapter):
    name = "fake"
    operations = frozenset(SHAPES)

    async def send(self, call: ProviderCall) -> ProviderResponse:
        self.check_supported(call)
        options = FakeOptions.parse(call.options)
        words, finish_reason = reply_words(call)
        await _upstream_wait(options.latency_s, call.timeout_s, hang=options.hang)
        _maybe_fail(options)
        produced = len(words)
        if options.fail_after_chunks is not None and options.fail_after_chunks < len(words):
            produced = options.fail_after_chunks
        # A non-streaming answer arrives once it is all generated.
        await _upstream_wait(options.gap_s * max(produced - 1, 0), call.timeout_s)
        if produced < len(words):
            raise _died(produced)
        usage = Usage(prompt_tokens=estimate_prompt_tokens(call.body), completion_tokens=len(words))
        shape = SHAPES[call.operation](call)
        return ProviderResponse(body=orjson.dumps(shape.response(words, finish_reason, usage)), usage=usage)

    async def stream(self, call: ProviderCall) -> AsyncIterator[StreamChunk]:
        self.check_supported(call)
        options = FakeOptions.parse(call.options)
        words, finish_reason = reply_words(call)
        shape: Shape = SHAPES[call.operation](call)
        await _upstream_wait(options.latency_s, call.timeout_s, hang=options.hang)
        _maybe_fail(options)
        sent = 0

        def chunk(payload: dict[str, Any], text: str = "") -> StreamChunk:
            nonlocal sent
            if options.fail_after_chunks is not None and sent >= options.fail_after_chunks:
                raise _died(sent)
            sent += 1
            return StreamChunk(data=orjson.dumps(payload), text_chars=len(text))

        if (opening := shape.opening_chunk()) is not None:
            yield chunk(opening)
        for i, word in enumerate(words):
            if i:
                await _upstream_wait(options.gap_s, call.timeout_s)
            yield chunk(shape.word_chunk(word), word)
        yield chunk(shape.finish_chunk(finish_reason))
        usage = Usage(prompt_tokens=estimate_prompt_tokens(call.body), completion_tokens=len(words))
        yield StreamChunk(data=orjson.dumps(shape.usage_chunk(usage)), usage=usage, usage_only=True)


def reply_words(call: ProviderCall) -> tuple[list[str], str]:
    """The reply as stream pieces (a word each, with its leading space), cut at ``max_tokens``."""
    said = " ".join(last_user_text(call.body).split()[:MAX_ECHOED_WORDS]) or "(nothing)"
    parts = f"{REPLY_PHRASE} {said}".split()
    words = [parts[0], *(" " + part for part in parts[1:])]
    limit = call.body.get("max_completion_tokens") or call.body.get("max_tokens")
    if isinstance(limit, int) and 0 < limit < len(words):
        return words[:limit], "length"
    return words, "stop"


def last_user_text(body: Mapping[str, Any]) -> str:
    for message in reversed(body.get("messages") or ()):
        if isinstance(message, dict) and message.get("role") == "user":
            return _text(message.get("content"))
    prompt = body.get("prompt")
    return _text(prompt[0] if isinstance(prompt, list) and prompt else prompt)


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


async def _upstream_wait(seconds: float, timeout_s: float, *, hang: bool = False) -> None:
    """Sleep like a slow upstream; past ``timeout_s`` the call times out, as a real read would."""
    wait = math.inf if hang else seconds
    if wait > timeout_s:
        await asyncio.sleep(timeout_s)
        raise UpstreamTimeoutError(f"The upstream provider (fake) did not answer within {timeout_s:g}s.")
    if wait > 0:
        await asyncio.sleep(wait)


def _maybe_fail(options: FakeOptions) -> None:
    status = options.fail_status
    if status:
        raise error_for_upstream_status(status)(
            f"The fake provider was configured to fail with HTTP {status}.",
            upstream_status=status,
            retry_after_s=options.retry_after_s if status == 429 else None,
        )


def _died(chunks: int) -> UpstreamError:
    return UpstreamError(f"The upstream provider (fake) dropped the connection after {chunks} chunks.")
