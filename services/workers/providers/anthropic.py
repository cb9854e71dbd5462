"""Anthropic's Messages API (``POST {base_url}/v1/messages``, headers ``x-api-key`` and
``anthropic-version``), for chat and, through chat, legacy completions. Anthropic has no embeddings
endpoint, so none is declared. A target with an ``auth_scheme`` option (a remote catalogue's) sends
the key as ``Authorization: <scheme> <key>`` instead of ``x-api-key``.

``_anthropic_request`` translates the OpenAI body (its docstring lists every OpenAI parameter's
fate: translated, refused with a 400, or not sent); ``_anthropic_response`` rebuilds answers and
streams in OpenAI's shapes. Both cite the wire format's sources.

Deployment option: ``default_max_tokens`` (Anthropic requires ``max_tokens``; used when the client
sends neither max_tokens nor max_completion_tokens; 4096 for chat, OpenAI's 16 for completions).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
from httpx_sse import EventSource

from common.errors import ModelRouterError, UpstreamError
from common.providers.base import Operation, ProviderAdapter, ProviderCall, ProviderResponse, StreamChunk
from workers.openai_format import chat_body_from_completion, completion_chunk_from_chat, completion_from_chat
from workers.providers._anthropic_request import (
    DEFAULT_MAX_TOKENS,
    MAX_TOKENS_OPTION,
    MessagesRequest,
    messages_request,
)
from workers.providers._anthropic_response import PROVIDER, ChatStream, chat_answer
from workers.providers._endpoints import Endpoints
from workers.providers._http import (
    error_fields,
    json_object,
    json_or_none,
    key_header,
    pooled_client,
    timeout_for,
    upstream_error,
    upstream_failures,
)

DEFAULT_BASE_URL = "https://api.anthropic.com"
MESSAGES_PATH = "/v1/messages"
API_VERSION = "2023-06-01"
API_KEY_HEADER = "x-api-key"
# OpenAI's documented default for legacy completions (CreateCompletionRequest.max_tokens).
COMPLETIONS_DEFAULT_MAX_TOKENS = 16


@dataclass(frozen=True, slots=True)
class _Endpoint:
    """How one OpenAI operation goes through the Messages API and comes back."""

    chat_body: Callable[[dict[str, Any]], dict[str, Any]]
    default_max_tokens: int
    answer: Callable[[ProviderResponse], ProviderResponse]
    chunk: Callable[[StreamChunk], StreamChunk | None]


def _completion_answer(chat: ProviderResponse) -> ProviderResponse:
    return ProviderResponse(orjson.dumps(completion_from_chat(orjson.loads(chat.body))), chat.usage)


def _completion_chunk(chunk: StreamChunk) -> StreamChunk | None:
    body = completion_chunk_from_chat(orjson.loads(chunk.data))
    if body is None:
        return None
    return chunk.with_body(body)


ENDPOINTS: Mapping[str, _Endpoint] = {
    Operation.CHAT: _Endpoint(lambda body: body, DEFAULT_MAX_TOKENS, lambda r: r, lambda c: c),
    Operation.COMPLETIONS: _Endpoint(
        chat_body_from_completion, COMPLETIONS_DEFAULT_MAX_TOKENS, _completion_answer, _completion_chunk
    ),
}


class AnthropicAdapter(ProviderAdapter):
    name = PROVIDER
    operations = frozenset(ENDPOINTS)
    # Chat and completions both go to the Messages API, so a catalogue handle for it serves both.
    endpoints = Endpoints(tails=("/messages",), chat="/messages")

    def __init__(self, base_url: str, options: Mapping[str, str] | None = None) -> None:
        super().__init__(base_url or DEFAULT_BASE_URL, options)
        self._client = pooled_client(self.base_url)
        self._client.headers["anthropic-version"] = API_VERSION

    async def aclose(self) -> None:
        await self._client.aclose()

    async def send(self, call: ProviderCall) -> ProviderResponse:
        self.check_supported(call)
        endpoint = ENDPOINTS[call.operation]
        request = _request(call, endpoint)
        with upstream_failures(self.name, call.timeout_s):
            response = await self._client.post(
                self.endpoints.path(call, MESSAGES_PATH),
                content=orjson.dumps(request.body),
                headers=key_header(call, API_KEY_HEADER),
                timeout=timeout_for(call.timeout_s),
            )
        if response.is_error:
            raise _http_error(response)
        return endpoint.answer(chat_answer(call, json_object(response.content, PROVIDER), request.format_tool))

    async def stream(self, call: ProviderCall) -> AsyncIterator[StreamChunk]:
        self.check_supported(call)
        endpoint = ENDPOINTS[call.operation]
        request = _request(call, endpoint)
        translator = ChatStream(call, request.format_tool)
        with upstream_failures(self.name, call.timeout_s):
            async with self._client.stream(
                "POST",
                self.endpoints.path(call, MESSAGES_PATH),
                content=orjson.dumps(request.body),
                headers=key_header(call, API_KEY_HEADER),
                timeout=timeout_for(call.timeout_s),
            ) as response:
                if response.is_error:
                    await response.aread()
                    raise _http_error(response)
                # Read on after message_stop: a response left unread closes its connection instead of
                # returning it to the pool.
                async for event in EventSource(response).aiter_sse():
                    if translator.done:
                        continue
                    for chunk in translator.feed(json_object(event.data, PROVIDER)):
                        if (out := endpoint.chunk(chunk)) is not None:
                            yield out
        if not translator.done:
            raise UpstreamError(f"The upstream provider ({self.name}) ended the stream before it finished.")


def _request(call: ProviderCall, endpoint: _Endpoint) -> MessagesRequest:
    return messages_request(
        endpoint.chat_body(call.body),
        upstream_model=call.upstream_model,
        stream=call.stream,
        default_max_tokens=_default_max_tokens(call.options, endpoint.default_max_tokens),
    )


def _default_max_tokens(options: Mapping[str, str], fallback: int) -> int:
    raw = options.get(MAX_TOKENS_OPTION)
    if not raw:
        return fallback
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ModelRouterError(
            f"The anthropic provider's option {MAX_TOKENS_OPTION} must be a positive integer, not {raw!r}.",
            code="invalid_provider_option",
        )
    return value


# --- failures -------------------------------------------------------------------------------------


def _http_error(response: httpx.Response) -> UpstreamError:
    # Anthropic's {"type": "error", "error": {"type", "message"}} reads like OpenAI's error body.
    message, _, _ = error_fields(json_or_none(response.content))
    return upstream_error(PROVIDER, response.status_code, response.headers, message or response.text[:500].strip())
