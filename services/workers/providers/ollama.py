"""Ollama's native API: ``POST /api/chat``, ``/api/generate`` and ``/api/embed`` (base URL without ``/api``,
by default ``http://127.0.0.1:11434``). Ollama's OpenAI-compatible ``/v1`` is the ``openai`` adapter's.

Requests are translated in ``_ollama_request``. Answers: a JSON object, or when streaming NDJSON (one
object per line; the last has ``"done": true``, ``done_reason`` and the token counts
``prompt_eval_count`` / ``eval_count``; an ``{"error": ...}`` line reports a failure mid-stream, per
``docs/api/errors.mdx``). ``done_reason`` ``stop``/``length`` map onto OpenAI's finish reasons; a reply
with tool calls finishes with ``tool_calls``. Ollama's tool calls carry no ids (newer servers may add
one, which is kept): each gets ``call_<request id>_<n>``, the same for a retry of the request. Ollama
reports no cached prompt tokens.

Legacy completions use ``/api/generate`` rather than chat: it is what Ollama's own ``/v1/completions``
uses (so both paths give the same answer), it keeps ``suffix`` (fill-in-the-middle), and its NDJSON
``response`` pieces map one to one onto ``text_completion`` chunks.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import httpx
import orjson

from common.errors import InvalidRequestError, UpstreamError
from common.providers.base import Operation, ProviderAdapter, ProviderCall, ProviderResponse, StreamChunk, Usage
from workers.openai_format import (
    ChatChunks,
    CompletionChunks,
    ToolCall,
    chat_completion,
    embeddings_response,
    text_completion,
)
from workers.providers import _ollama_request as translate
from workers.providers._endpoints import Endpoints
from workers.providers._http import (
    authorization,
    error_from_response,
    json_object,
    pooled_client,
    timeout_for,
    upstream_failures,
)

DEFAULT_BASE_URL = "http://127.0.0.1:11434"
_FINISH = {"stop": "stop", "length": "length"}
_NDJSON_HEADERS = {"Accept": "application/x-ndjson"}


# --- answers ------------------------------------------------------------------------------------


def chat_answer(call: ProviderCall, answer: dict[str, Any]) -> ProviderResponse:
    message = answer.get("message")
    message = message if isinstance(message, dict) else {}
    calls = [tool_call(call, n, raw) for n, raw in enumerate(message.get("tool_calls") or ())]
    content = message.get("content") or ""
    return chat_completion(
        call,
        response_id=f"chatcmpl-{call.request_id}",
        content=content or (None if calls else ""),
        tool_calls=calls,
        finish_reason="tool_calls" if calls else finish_reason(answer),
        usage=usage_of(answer),
    )


def generate_answer(call: ProviderCall, answer: dict[str, Any]) -> ProviderResponse:
    text = answer.get("response")
    return text_completion(
        call,
        response_id=f"cmpl-{call.request_id}",
        text=_echoed(call) + (text if isinstance(text, str) else ""),
        finish_reason=finish_reason(answer),
        usage=usage_of(answer),
    )


def embed_answer(call: ProviderCall, answer: dict[str, Any]) -> ProviderResponse:
    vectors = answer.get("embeddings")
    if not isinstance(vectors, list) or not all(isinstance(v, list) for v in vectors):
        raise UpstreamError("The upstream provider (ollama) answered without embeddings.")
    return embeddings_response(call, vectors, Usage(prompt_tokens=int(answer.get("prompt_eval_count") or 0)))


def tool_call(call: ProviderCall, index: int, raw: Any) -> ToolCall:
    function = raw.get("function") if isinstance(raw, dict) else None
    if not isinstance(function, dict) or not isinstance(function.get("name"), str):
        raise UpstreamError("The upstream provider (ollama) sent a tool call without a function name.")
    arguments = function.get("arguments")
    raw_id = raw.get("id") if isinstance(raw, dict) else None
    return ToolCall(
        id=raw_id if isinstance(raw_id, str) and raw_id else f"call_{call.request_id}_{index}",
        name=function["name"],
        arguments=orjson.dumps(arguments if arguments is not None else {}).decode(),
    )


def finish_reason(answer: Mapping[str, Any]) -> str:
    return _FINISH.get(str(answer.get("done_reason")), "stop")


def usage_of(answer: Mapping[str, Any]) -> Usage:
    # Ollama leaves prompt_eval_count out when it is 0 (the whole prompt came from its cache).
    return Usage(
        prompt_tokens=int(answer.get("prompt_eval_count") or 0),
        completion_tokens=int(answer.get("eval_count") or 0),
    )


def _echoed(call: ProviderCall) -> str:
    """``echo``: the prompt comes back in front of the completion."""
    return translate.completion_prompt(call.body) if call.body.get("echo") else ""


# --- streams ------------------------------------------------------------------------------------


@dataclass
class NdjsonReader:
    """Ollama's NDJSON lines (``/api/chat``'s ``message`` or ``/api/generate``'s ``response``) as OpenAI
    chunks, one chunk per line with something to say; the ``done`` line gives the finish and usage chunks."""

    call: ProviderCall
    done: bool = False
    _started: bool = False
    _tool_calls: int = 0
    _sink: ChatChunks | CompletionChunks = field(init=False)

    def __post_init__(self) -> None:
        if self.call.operation == Operation.CHAT:
            self._sink = ChatChunks(self.call, f"chatcmpl-{self.call.request_id}", role_in_first_delta=True)
        else:
            self._sink = CompletionChunks(self.call, f"cmpl-{self.call.request_id}")

    def feed(self, line: dict[str, Any]) -> list[StreamChunk]:
        if isinstance(line.get("error"), str):
            raise UpstreamError(f"The upstream provider (ollama) failed mid-stream: {line['error']}")
        out: list[StreamChunk] = []
        if not self._started:
            self._started = True
            if echo := _echoed(self.call):
                out += self._sink.text(echo)
        message = line.get("message")
        text = message.get("content") if isinstance(message, dict) else line.get("response")
        if isinstance(text, str) and text:
            out += self._sink.text(text)
        if isinstance(message, dict) and isinstance(self._sink, ChatChunks):
            for raw in message.get("tool_calls") or ():
                call = tool_call(self.call, self._tool_calls, raw)
                out += self._sink.tool_call_start(self._tool_calls, call.id, call.name)
                out += self._sink.tool_call_arguments(self._tool_calls, call.arguments)
                self._tool_calls += 1
        if line.get("done"):
            self.done = True
            out += self._sink.finish("tool_calls" if self._tool_calls else finish_reason(line))
            out.append(self._sink.usage(usage_of(line)))
        return out


# --- the adapter ---------------------------------------------------------------------------------


class _RequestBuilder(Protocol):
    def __call__(self, call: ProviderCall, *, stream: bool) -> dict[str, Any]: ...


@dataclass(frozen=True, slots=True)
class _Route:
    path: str
    request: _RequestBuilder
    answer: Callable[[ProviderCall, dict[str, Any]], ProviderResponse]
    streams: bool = True


class OllamaAdapter(ProviderAdapter):
    name = "ollama"
    routes: ClassVar[Mapping[str, _Route]] = {
        Operation.CHAT: _Route("/api/chat", translate.chat_request, chat_answer),
        Operation.COMPLETIONS: _Route("/api/generate", translate.generate_request, generate_answer),
        Operation.EMBEDDINGS: _Route("/api/embed", translate.embed_request, embed_answer, streams=False),
    }
    operations = frozenset(routes)
    endpoints = Endpoints(tails=("/chat", "/generate", "/embed"), chat="/chat")

    def __init__(self, base_url: str, options: Mapping[str, str] | None = None) -> None:
        super().__init__(base_url or DEFAULT_BASE_URL, options)
        self._client = pooled_client(self.base_url)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def send(self, call: ProviderCall) -> ProviderResponse:
        self.check_supported(call)
        route = self.routes[call.operation]
        content = orjson.dumps(route.request(call, stream=False))
        with upstream_failures(self.name, call.timeout_s):
            response = await self._client.post(
                self.endpoints.path(call, route.path),
                content=content,
                headers=authorization(call),
                timeout=timeout_for(call.timeout_s),
            )
        if response.is_error:
            raise self._error(response)
        return route.answer(call, json_object(response.content, "ollama"))

    async def stream(self, call: ProviderCall) -> AsyncIterator[StreamChunk]:
        self.check_supported(call)
        route = self.routes[call.operation]
        if not route.streams:
            raise InvalidRequestError(f"{call.operation} cannot be streamed.", param="stream")
        content = orjson.dumps(route.request(call, stream=True))
        reader = NdjsonReader(call)
        with upstream_failures(self.name, call.timeout_s):
            async with self._client.stream(
                "POST",
                self.endpoints.path(call, route.path),
                content=content,
                headers={**authorization(call), **_NDJSON_HEADERS},
                timeout=timeout_for(call.timeout_s),
            ) as response:
                if response.is_error:
                    await response.aread()
                    raise self._error(response)
                # Read to the end even after "done": an unread response closes its pooled connection.
                async for line in response.aiter_lines():
                    if line.strip() and not reader.done:
                        for chunk in reader.feed(json_object(line, "ollama")):
                            yield chunk
        if not reader.done:
            raise UpstreamError(f"The upstream provider ({self.name}) ended the stream before it finished.")

    def _error(self, response: httpx.Response) -> UpstreamError:
        return error_from_response(self.name, response)
