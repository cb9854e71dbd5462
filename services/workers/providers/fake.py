"""A provider without a network: deterministic OpenAI-format answers (chat, legacy completions,
embeddings, images), with options to make it slow, broken or call tools, for demos, load tests and
failover tests.

The text reply is a fixed phrase plus the last user message (or, after a tool result, the tool's
content), one word per chunk. Usage is deterministic: prompt tokens estimated from the request's
text, completion tokens = words produced. Embeddings are unit vectors derived from each input's text
(``dimensions`` honoured, ``float`` or ``base64``); images are tiny PNGs derived from the prompt
(``_fake_media.py``).

Options (strings, from the config's provider/deployment ``options``):

- ``latency_ms``: wait before the first token.
- ``tokens_per_second``: pace of the words after the first (0: as fast as possible).
- ``fail_status``: answer with this HTTP-like status, as the UpstreamError class a real provider's
  status maps to; with 429, ``retry_after_s`` is its Retry-After.
- ``fail_after_chunks``: die after this many stream chunks (the role chunk counts), like a dropped
  connection.
- ``hang``: ``"true"`` never answers, so the call's timeout fires.
- ``tool_call``: ``"true"``: a chat request with ``tools`` whose last message is not a tool result
  is answered with one call to the tool ``tool_choice`` names (else the first tool; ``tool_choice:
  "none"`` gets text), its arguments ``{<first property of its parameters, or "input">: <last user
  text>}``.
- ``embedding_dimensions``: the length of embeddings when the request sets no ``dimensions``.

Waits longer than the call's ``timeout_s`` end in UpstreamTimeoutError, as an HTTP read would.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from common.errors import (
    InvalidRequestError,
    ModelRouterError,
    UpstreamError,
    UpstreamTimeoutError,
    error_for_upstream_status,
)
from common.providers.base import (
    Operation,
    ProviderAdapter,
    ProviderCall,
    ProviderResponse,
    StreamChunk,
)
from workers.providers import _fake_media
from workers.providers._fake_shapes import SHAPES, Reply, TextReply, ToolCallReply
from workers.usage import estimate_prompt_tokens

REPLY_PHRASE = "This is a fake reply from ModelRouter. You said:"
TOOL_REPLY_PHRASE = "This is a fake reply from ModelRouter. The tool said:"
MAX_ECHOED_WORDS = 64
DEFAULT_EMBEDDING_DIMENSIONS = 64
_TRUE = frozenset({"1", "true", "yes", "on"})


@dataclass(frozen=True, slots=True)
class FakeOptions:
    latency_s: float = 0.0
    tokens_per_second: float = 0.0
    fail_status: int = 0
    fail_after_chunks: int | None = None
    hang: bool = False
    retry_after_s: float | None = None
    tool_call: bool = False
    embedding_dimensions: int = DEFAULT_EMBEDDING_DIMENSIONS

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
                hang=options.get("hang", "").strip().lower() in _TRUE,
                retry_after_s=float(retry_after) if retry_after else None,
                tool_call=options.get("tool_call", "").strip().lower() in _TRUE,
                embedding_dimensions=int(options.get("embedding_dimensions") or DEFAULT_EMBEDDING_DIMENSIONS),
            )
        except ValueError as exc:
            raise ModelRouterError(
                f"The fake provider has an invalid option: {exc}", code="invalid_provider_option"
            ) from None

    @property
    def gap_s(self) -> float:
        return 1 / self.tokens_per_second if self.tokens_per_second > 0 else 0.0


# Whole answers that are not generated piece by piece (nothing to stream, pace or cut).
_WHOLE_ANSWERS: Mapping[str, Callable[[ProviderCall, FakeOptions], ProviderResponse]] = {
    Operation.EMBEDDINGS: lambda call, options: _fake_media.embeddings(call, options.embedding_dimensions),
    Operation.IMAGES: lambda call, options: _fake_media.images(call),
}


class FakeAdapter(ProviderAdapter):
    name = "fake"
    operations = frozenset({*SHAPES, *_WHOLE_ANSWERS})

    async def send(self, call: ProviderCall) -> ProviderResponse:
        self.check_supported(call)
        options = FakeOptions.parse(call.options)
        whole = _WHOLE_ANSWERS.get(call.operation)
        if whole is None:
            return await _send_generated(call, options, generate(call, options))
        response = whole(call, options)  # first: a request it cannot answer fails at once, like a real 400
        await _upstream_wait(options.latency_s, call.timeout_s, hang=options.hang)
        _maybe_fail(options)
        return response

    def stream(self, call: ProviderCall) -> AsyncIterator[StreamChunk]:
        self.check_supported(call)
        if call.operation not in SHAPES:  # refused before any (pretend) upstream call
            raise InvalidRequestError(f"{call.operation} cannot be streamed.", param="stream")
        options = FakeOptions.parse(call.options)
        return _stream(call, options, generate(call, options))


async def _send_generated(call: ProviderCall, options: FakeOptions, reply: Reply) -> ProviderResponse:
    await _upstream_wait(options.latency_s, call.timeout_s, hang=options.hang)
    _maybe_fail(options)
    produced = reply.pieces
    if options.fail_after_chunks is not None and options.fail_after_chunks < reply.pieces:
        produced = options.fail_after_chunks
    # A non-streaming answer arrives once it is all generated.
    await _upstream_wait(options.gap_s * max(produced - 1, 0), call.timeout_s)
    if produced < reply.pieces:
        raise _died(produced)
    return reply.whole()


async def _stream(call: ProviderCall, options: FakeOptions, reply: Reply) -> AsyncIterator[StreamChunk]:
    await _upstream_wait(options.latency_s, call.timeout_s, hang=options.hang)
    _maybe_fail(options)
    sent = generated = 0
    for chunk in reply.chunks():
        if chunk.usage_only:  # the final usage chunk is never cut off: the stream already ended
            yield chunk
            continue
        if chunk.text_chars:
            if generated:
                await _upstream_wait(options.gap_s, call.timeout_s)
            generated += 1
        if options.fail_after_chunks is not None and sent >= options.fail_after_chunks:
            raise _died(sent)
        sent += 1
        yield chunk


def generate(call: ProviderCall, options: FakeOptions) -> Reply:
    """The answer to a chat or completions request: a tool call when asked for one, else text."""
    prompt_tokens = estimate_prompt_tokens(call.body)
    if options.tool_call and call.operation == Operation.CHAT and (called := tool_call_of(call.body)) is not None:
        return ToolCallReply(call, *called, prompt_tokens=prompt_tokens)
    words, finish_reason = reply_words(call)
    return TextReply(call, words, finish_reason, prompt_tokens)


def tool_call_of(body: Mapping[str, Any]) -> tuple[str, str] | None:
    """(tool name, arguments JSON) of the call to make, or None to answer with text: no function
    tools, ``tool_choice: "none"``, or a conversation whose last message is a tool's result."""
    tools = [
        t["function"]
        for t in body.get("tools") or ()
        if isinstance(t, dict) and isinstance(t.get("function"), dict) and isinstance(t["function"].get("name"), str)
    ]
    messages = body.get("messages") or ()
    last = messages[-1] if messages else None
    choice = body.get("tool_choice")
    if not tools or choice == "none" or (isinstance(last, dict) and last.get("role") == "tool"):
        return None
    tool = tools[0]
    named = choice.get("function") if isinstance(choice, dict) else None
    if isinstance(named, dict) and named.get("name") is not None:
        matches = [t for t in tools if t["name"] == named["name"]]
        if not matches:
            raise InvalidRequestError(f"tool_choice names no tool of 'tools': {named['name']!r}.", param="tool_choice")
        tool = matches[0]
    parameters = tool.get("parameters")
    properties = parameters.get("properties") if isinstance(parameters, dict) else None
    key = next(iter(properties), "input") if isinstance(properties, dict) else "input"
    # json.dumps (not orjson): its ", " / ": " separators give the arguments spaces to stream at.
    return tool["name"], json.dumps({key: last_user_text(body)}, ensure_ascii=False)


def reply_words(call: ProviderCall) -> tuple[list[str], str]:
    """The reply as stream pieces (a word each, with its leading space), cut at ``max_tokens``."""
    tool_output = last_tool_output(call.body)
    phrase, echoed = (
        (TOOL_REPLY_PHRASE, tool_output) if tool_output is not None else (REPLY_PHRASE, last_user_text(call.body))
    )
    said = " ".join(echoed.split()[:MAX_ECHOED_WORDS]) or "(nothing)"
    parts = f"{phrase} {said}".split()
    words = [parts[0], *(" " + part for part in parts[1:])]
    limit = call.body.get("max_completion_tokens") or call.body.get("max_tokens")
    if isinstance(limit, int) and 0 < limit < len(words):
        return words[:limit], "length"
    return words, "stop"


def last_tool_output(body: Mapping[str, Any]) -> str | None:
    """The content of the last message when it is a tool's result."""
    messages = body.get("messages") or ()
    last = messages[-1] if messages else None
    if isinstance(last, dict) and last.get("role") == "tool":
        return _text(last.get("content"))
    return None


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
