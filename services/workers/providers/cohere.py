"""Cohere's v2 API: chat (``POST {base_url}/v2/chat``), legacy completions through chat, and
embeddings (``POST {base_url}/v2/embed``).

Requests are translated by ``_cohere_request`` (see its docstring for every OpenAI parameter's
fate); answers and streams are rebuilt in OpenAI's shapes with ``workers.openai_format``.

Wire shapes come from Cohere's API reference (docs.cohere.com/v2/reference/chat, /chat-stream,
/embed; docs.cohere.com/v2/docs/streaming) and the official Python SDK (``cohere-ai/cohere-python``:
``src/cohere/v2/types/v2chat_response.py``, ``v2chat_stream_response.py`` and the event delta
types it imports from ``src/cohere/types/``, ``chat_finish_reason.py``, ``usage.py``,
``usage_tokens.py``, ``usage_billed_units.py``, ``embed_by_type_response.py``).

- Legacy completions are a one-message chat with OpenAI's default ``max_tokens`` of 16.
- Finish reasons: COMPLETE / STOP_SEQUENCE -> stop, MAX_TOKENS -> length, TOOL_CALL -> tool_calls;
  ERROR and TIMEOUT are failures (a retryable UpstreamError / UpstreamTimeoutError), not answers.
- Usage: ``usage.tokens`` (what the model read and wrote), ``usage.billed_units`` when it is absent;
  cached tokens from ``usage.cached_tokens``.
- The assistant's ``tool_plan`` (what it says before calling tools) is the message's content, as an
  OpenAI model's text next to its tool calls; thinking content and citations have no OpenAI field
  and are left out.
- Stream events: message-start (id), content-start / content-delta / content-end, tool-plan-delta,
  tool-call-start / -delta / -end, citation-start / -end, message-end (finish reason, usage, error).
  Each event that carries text or a call becomes one chunk as it arrives (content-start's, usually
  empty, text included), so the stream is relayed at the provider's pace.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
from httpx_sse import EventSource

from common.errors import InvalidRequestError, UpstreamError, UpstreamTimeoutError
from common.providers.base import (
    Operation,
    ProviderAdapter,
    ProviderCall,
    ProviderResponse,
    StreamChunk,
    Usage,
)
from workers.openai_format import (
    ChatChunks,
    CompletionChunks,
    ToolCall,
    chat_body_from_completion,
    chat_completion,
    embeddings_response,
    text_completion,
)
from workers.providers._cohere_request import PROVIDER, chat_request, embed_request
from workers.providers._endpoints import Endpoints
from workers.providers._http import (
    authorization,
    error_from_response,
    json_object,
    pooled_client,
    timeout_for,
    upstream_failures,
)

DEFAULT_BASE_URL = "https://api.cohere.com"
CHAT_PATH = "/v2/chat"
EMBED_PATH = "/v2/embed"
_SSE_HEADERS = {"Accept": "text/event-stream"}

FINISH_REASONS = {"COMPLETE": "stop", "STOP_SEQUENCE": "stop", "MAX_TOKENS": "length", "TOOL_CALL": "tool_calls"}
# Finish reasons that mean the generation broke off: another target may do better.
FAILED_FINISHES: Mapping[str, type[UpstreamError]] = {"ERROR": UpstreamError, "TIMEOUT": UpstreamTimeoutError}

# OpenAI's documented default for legacy completions (CreateCompletionRequest.max_tokens).
COMPLETIONS_DEFAULT_MAX_TOKENS = 16


def _completion_as_chat(body: dict[str, Any]) -> dict[str, Any]:
    chat = chat_body_from_completion(body)
    if chat.get("max_tokens") is None:
        chat["max_tokens"] = COMPLETIONS_DEFAULT_MAX_TOKENS
    return chat


# The chat body to translate for each operation that goes through Cohere's chat.
_CHAT_BODIES: Mapping[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    Operation.CHAT: lambda body: body,
    Operation.COMPLETIONS: _completion_as_chat,
}


def usage_of(raw: Any) -> Usage:
    if not isinstance(raw, dict):
        return Usage()
    tokens, billed = _obj(raw.get("tokens")), _obj(raw.get("billed_units"))

    def count(name: str) -> int:
        value = tokens.get(name, billed.get(name))
        return int(value or 0)  # Cohere's schema types counts as numbers (floats)

    return Usage(
        prompt_tokens=count("input_tokens"),
        completion_tokens=count("output_tokens"),
        cached_tokens=int(raw.get("cached_tokens") or 0),
    )


def finish_reason(value: Any, error: Any = None) -> str:
    """OpenAI's finish reason for Cohere's; raises for the ones that mean the generation failed."""
    failure = FAILED_FINISHES.get(value) if isinstance(value, str) else None
    if failure is not None:
        detail = f": {error}" if isinstance(error, str) and error else "."
        raise failure(f"The upstream provider ({PROVIDER}) stopped generating ({value}){detail}")
    return FINISH_REASONS.get(value, "stop") if isinstance(value, str) else "stop"


@dataclass(slots=True)
class Reply:
    """A whole Cohere chat answer, read."""

    id: str
    text: str
    tool_plan: str
    tool_calls: list[ToolCall]
    finish_reason: str
    usage: Usage


def read_reply(answer: dict[str, Any]) -> Reply:
    message = _obj(answer.get("message"))
    text = "".join(
        item["text"]
        for item in message.get("content") or ()
        if isinstance(item, dict) and item.get("type") == "text" and isinstance(item.get("text"), str)
    )
    calls = []
    for call in message.get("tool_calls") or ():
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict):
            arguments = function.get("arguments")
            calls.append(ToolCall(str(call.get("id") or ""), str(function.get("name") or ""), arguments or "{}"))
    plan = message.get("tool_plan")
    return Reply(
        id=str(answer.get("id") or ""),
        text=text,
        tool_plan=plan if isinstance(plan, str) else "",
        tool_calls=calls,
        finish_reason=finish_reason(answer.get("finish_reason")),
        usage=usage_of(answer.get("usage")),
    )


class StreamReader:
    """Cohere's chat stream events in, OpenAI chunks out: chat chunks, or legacy completion chunks
    for a completions request (which has no tools, so tool events never come)."""

    def __init__(self, chunks: ChatChunks | CompletionChunks, id_prefix: str) -> None:
        self.chunks = chunks
        self.id_prefix = id_prefix
        self.finished = False  # message-end seen
        self._tool_index: dict[Any, int] = {}  # Cohere's event index -> OpenAI's tool call index
        self._handlers: Mapping[str, Callable[[dict[str, Any]], list[StreamChunk]]] = {
            "message-start": self._message_start,
            "content-start": self._content,
            "content-delta": self._content,
            "tool-plan-delta": self._tool_plan,
            "tool-call-start": self._tool_call_start,
            "tool-call-delta": self._tool_call_delta,
            "message-end": self._message_end,
        }

    def feed(self, event: dict[str, Any]) -> list[StreamChunk]:
        handler = self._handlers.get(str(event.get("type")))
        # content-end, tool-call-end, citations, debug: nothing an OpenAI chunk carries
        return handler(event) if handler is not None else []

    @staticmethod
    def _message(event: dict[str, Any]) -> dict[str, Any]:
        return _obj(_obj(event.get("delta")).get("message"))

    def _message_start(self, event: dict[str, Any]) -> list[StreamChunk]:
        if event.get("id"):
            self.chunks.response_id = f"{self.id_prefix}-{event['id']}"
        return self.chunks.start() if isinstance(self.chunks, ChatChunks) else []

    def _content(self, event: dict[str, Any]) -> list[StreamChunk]:
        content = self._message(event).get("content")
        if not isinstance(content, dict) or content.get("type", "text") != "text":
            return []  # thinking: the model's reasoning, not its answer
        text = content.get("text")
        if not isinstance(text, str) or (not text and event.get("type") == "content-delta"):
            return []
        return self.chunks.text(text)

    def _tool_plan(self, event: dict[str, Any]) -> list[StreamChunk]:
        plan = self._message(event).get("tool_plan")
        return self.chunks.text(plan) if isinstance(plan, str) and plan else []

    def _tool_call(self, event: dict[str, Any]) -> tuple[int, dict[str, Any], dict[str, Any]] | None:
        call = self._message(event).get("tool_calls")
        if isinstance(call, list):  # the SDK types it as one call; tolerate a list of one
            call = call[0] if call else None
        if not isinstance(call, dict):
            return None
        index = self._tool_index.setdefault(event.get("index"), len(self._tool_index))
        return index, call, _obj(call.get("function"))

    def _tool_call_start(self, event: dict[str, Any]) -> list[StreamChunk]:
        found = self._tool_call(event)
        if found is None or not isinstance(self.chunks, ChatChunks):
            return []
        index, call, function = found
        out = self.chunks.tool_call_start(index, str(call.get("id") or ""), str(function.get("name") or ""))
        if function.get("arguments"):
            out += self.chunks.tool_call_arguments(index, function["arguments"])
        return out

    def _tool_call_delta(self, event: dict[str, Any]) -> list[StreamChunk]:
        found = self._tool_call(event)
        if found is None or not isinstance(self.chunks, ChatChunks):
            return []
        index, _, function = found
        arguments = function.get("arguments")
        return self.chunks.tool_call_arguments(index, arguments) if isinstance(arguments, str) and arguments else []

    def _message_end(self, event: dict[str, Any]) -> list[StreamChunk]:
        delta = _obj(event.get("delta"))
        reason = finish_reason(delta.get("finish_reason"), delta.get("error"))
        self.finished = True
        return [*self.chunks.finish(reason), self.chunks.usage(usage_of(delta.get("usage")))]


class CohereAdapter(ProviderAdapter):
    name = PROVIDER
    operations = frozenset({Operation.CHAT, Operation.COMPLETIONS, Operation.EMBEDDINGS})
    endpoints = Endpoints(tails=("/chat", "/embed"), chat="/chat")

    def __init__(self, base_url: str, options: Mapping[str, str] | None = None) -> None:
        super().__init__(base_url or DEFAULT_BASE_URL, options)
        self._client = pooled_client(self.base_url)
        self._senders: Mapping[str, Callable[[ProviderCall], Awaitable[ProviderResponse]]] = {
            Operation.CHAT: self._send_chat,
            Operation.COMPLETIONS: self._send_completion,
            Operation.EMBEDDINGS: self._send_embeddings,
        }
        self._stream_outputs: Mapping[str, Callable[[ProviderCall], StreamReader]] = {
            Operation.CHAT: lambda call: StreamReader(ChatChunks(call, f"chatcmpl-{call.request_id}"), "chatcmpl"),
            Operation.COMPLETIONS: lambda call: StreamReader(CompletionChunks(call, f"cmpl-{call.request_id}"), "cmpl"),
        }

    async def aclose(self) -> None:
        await self._client.aclose()

    # --- whole answers

    async def send(self, call: ProviderCall) -> ProviderResponse:
        self.check_supported(call)
        return await self._senders[call.operation](call)

    async def _send_chat(self, call: ProviderCall) -> ProviderResponse:
        reply = read_reply(await self._post(CHAT_PATH, self._chat_body(call, stream=False), call))
        return chat_completion(
            call,
            response_id=f"chatcmpl-{reply.id}",
            content=reply.text or reply.tool_plan or (None if reply.tool_calls else ""),
            tool_calls=reply.tool_calls,
            finish_reason=reply.finish_reason,
            usage=reply.usage,
        )

    async def _send_completion(self, call: ProviderCall) -> ProviderResponse:
        reply = read_reply(await self._post(CHAT_PATH, self._chat_body(call, stream=False), call))
        return text_completion(
            call, response_id=f"cmpl-{reply.id}", text=reply.text, finish_reason=reply.finish_reason, usage=reply.usage
        )

    async def _send_embeddings(self, call: ProviderCall) -> ProviderResponse:
        answer = await self._post(EMBED_PATH, embed_request(call), call)
        embeddings = answer.get("embeddings")
        vectors = embeddings.get("float") if isinstance(embeddings, dict) else None
        if not isinstance(vectors, list) or not all(isinstance(v, list) for v in vectors):
            raise UpstreamError(f"The upstream provider ({PROVIDER}) answered without float embeddings.")
        return embeddings_response(call, vectors, usage_of(answer.get("meta")))

    # --- streams

    async def stream(self, call: ProviderCall) -> AsyncIterator[StreamChunk]:
        self.check_supported(call)
        make_reader = self._stream_outputs.get(call.operation)
        if make_reader is None:
            raise InvalidRequestError(f"{call.operation} cannot be streamed.", code="unsupported_operation")
        reader = make_reader(call)
        body = orjson.dumps(self._chat_body(call, stream=True))
        with upstream_failures(self.name, call.timeout_s):
            async with self._client.stream(
                "POST",
                self.endpoints.path(call, CHAT_PATH),
                content=body,
                headers={**authorization(call), **_SSE_HEADERS},
                timeout=timeout_for(call.timeout_s),
            ) as response:
                if response.is_error:
                    await response.aread()
                    raise self._error(response)
                # Read to the end of the body even after message-end: a response left unread closes
                # its connection instead of returning it to the pool.
                async for event in EventSource(response).aiter_sse():
                    if reader.finished or not event.data or event.data == "[DONE]":
                        continue
                    for chunk in reader.feed(json_object(event.data, PROVIDER)):
                        yield chunk
        if not reader.finished:  # a stream that never said why it stopped died
            raise UpstreamError(f"The upstream provider ({self.name}) ended the stream before it finished.")

    # --- plumbing

    def _chat_body(self, call: ProviderCall, *, stream: bool) -> dict[str, Any]:
        body = _CHAT_BODIES[call.operation](call.body)
        return chat_request(body, upstream_model=call.upstream_model, stream=stream)

    async def _post(self, path: str, body: dict[str, Any], call: ProviderCall) -> dict[str, Any]:
        with upstream_failures(self.name, call.timeout_s):
            response = await self._client.post(
                self.endpoints.path(call, path),
                content=orjson.dumps(body),
                headers=authorization(call),
                timeout=timeout_for(call.timeout_s),
            )
        if response.is_error:
            raise self._error(response)
        return json_object(response.content, PROVIDER)

    def _error(self, response: httpx.Response) -> UpstreamError:
        return error_from_response(self.name, response)


def _obj(value: Any) -> dict[str, Any]:
    """``value`` if it is a JSON object, else an empty one: for reading optional nested fields."""
    return value if isinstance(value, dict) else {}
