"""Any OpenAI-compatible API: OpenAI, Cerebras, DeepInfra, Fireworks, Groq, Mistral, vLLM, Ollama's /v1.

Chat completions, legacy completions, embeddings and image generation (``paths``). The client's body
goes upstream as it came, with ``model`` replaced by the upstream model, so every field the gateway
does not know reaches the provider unchanged (embeddings' ``encoding_format: base64`` included: the
upstream encodes, and its answer comes back byte for byte). Streams (chat and completions) always ask
for usage (``stream_options.include_usage``); the worker forwards that final usage chunk only if the
client asked for it too. Image generation reports the GPT image models' ``input_tokens`` /
``output_tokens`` usage when the upstream sends it (DALL-E sends none).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any, ClassVar

import httpx
import orjson
from httpx_sse import EventSource

from common.errors import InvalidRequestError, UpstreamError
from common.providers.base import (
    Operation,
    ProviderAdapter,
    ProviderCall,
    ProviderResponse,
    StreamChunk,
    Usage,
)
from workers.providers._endpoints import Endpoints
from workers.providers._http import (
    authorization,
    error_fields,
    error_from_response,
    json_object,
    pooled_client,
    timeout_for,
    upstream_failures,
)

_SSE_HEADERS = {"Accept": "text/event-stream"}


class OpenAIAdapter(ProviderAdapter):
    name = "openai"
    # Operation -> path under the base URL. Bodies and answers need no translation on an
    # OpenAI-compatible API, so serving another endpoint is one entry here plus its contract fixtures.
    paths: ClassVar[Mapping[str, str]] = {
        Operation.CHAT: "/chat/completions",
        Operation.COMPLETIONS: "/completions",
        Operation.EMBEDDINGS: "/embeddings",
        Operation.IMAGES: "/images/generations",
    }
    operations = frozenset(paths)
    # A catalogue handle ending with one of these names that endpoint (see ``_endpoints``).
    endpoints: ClassVar[Endpoints] = Endpoints(tails=tuple(paths.values()), chat=paths[Operation.CHAT])
    # The operations whose answers come as SSE; the others answer one JSON body.
    streaming: ClassVar[frozenset[str]] = frozenset({Operation.CHAT, Operation.COMPLETIONS})

    def __init__(self, base_url: str, options: Mapping[str, str] | None = None) -> None:
        super().__init__(base_url, options)
        self._client = pooled_client(self.base_url)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def send(self, call: ProviderCall) -> ProviderResponse:
        self.check_supported(call)
        with upstream_failures(self.name, call.timeout_s):
            response = await self._client.post(
                self.endpoints.path(call, self.paths[call.operation]),
                content=self.prepare_body(call),
                headers=authorization(call),
                timeout=timeout_for(call.timeout_s),
            )
        if response.is_error:
            raise self._error(response)
        answer = json_object(response.content, self.name)
        body = self.answer_body(call, answer, response.content)
        # The upstream's answer unchanged: the parsed dict is the body, so the worker need not parse it.
        as_dict = answer if body is response.content else None
        return ProviderResponse(body=body, usage=usage_of(answer.get("usage")) or Usage(), answer=as_dict)

    def stream(self, call: ProviderCall) -> AsyncIterator[StreamChunk]:
        self.check_supported(call)
        if call.operation not in self.streaming:  # refused here, before any upstream call
            raise InvalidRequestError(f"{call.operation} cannot be streamed.", param="stream")
        return self._stream(call, self.endpoints.path(call, self.paths[call.operation]))

    async def _stream(self, call: ProviderCall, path: str) -> AsyncIterator[StreamChunk]:
        done = finished = False  # [DONE] seen; a finish_reason seen
        with upstream_failures(self.name, call.timeout_s):
            async with self._client.stream(
                "POST",
                path,
                content=self.prepare_body(call),
                headers={**authorization(call), **_SSE_HEADERS},
                timeout=timeout_for(call.timeout_s),
            ) as response:
                if response.is_error:
                    await response.aread()
                    raise self._error(response)
                # Read to the end of the body even after [DONE]: a response left unread closes its
                # connection instead of returning it to the pool.
                async for event in EventSource(response).aiter_sse():
                    if done or event.data == "[DONE]":
                        done = True
                        continue
                    chunks, finish_seen = self.stream_chunks(call, event.data)
                    finished = finished or finish_seen
                    for chunk in chunks:
                        yield chunk
        # Some compatible servers end without [DONE]; a stream that never said why it stopped died.
        if not (done or finished):
            raise UpstreamError(f"The upstream provider ({self.name}) ended the stream before it finished.")

    # Hooks for a near-compatible API (see ``mistral.py``): each default keeps OpenAI's behaviour.

    def prepare_body(self, call: ProviderCall) -> bytes:
        """The upstream request body: here the client's, as ``request_body`` makes it."""
        return request_body(call)

    def answer_body(self, call: ProviderCall, answer: dict[str, Any], raw: bytes) -> bytes:
        """The client's response body from the upstream's (``answer`` parsed, ``raw`` as received)."""
        return raw

    def stream_chunks(self, call: ProviderCall, data: str) -> tuple[list[StreamChunk], bool]:
        """The chunks to relay for one upstream SSE event, and whether it carried a finish_reason."""
        chunk, finish_seen = self._chunk(data)
        return [chunk], finish_seen

    def _chunk(self, data: str) -> tuple[StreamChunk, bool]:
        parsed = json_object(data, self.name)
        choices = parsed.get("choices")
        if not choices and isinstance(parsed.get("error"), dict):  # an error sent in-band, mid-stream
            message, _, _ = error_fields(parsed)
            raise UpstreamError(message or f"The upstream provider ({self.name}) failed mid-stream.")
        choices = choices if isinstance(choices, list) else []
        usage = usage_of(parsed.get("usage"))
        chunk = StreamChunk(
            data=data.encode(),
            usage=usage,
            usage_only=not choices and usage is not None,
            text_chars=generated_chars(choices),
            json=parsed,
        )
        chunk.finish = any(isinstance(c, dict) and c.get("finish_reason") for c in choices)
        return chunk, chunk.finish

    def _error(self, response: httpx.Response) -> UpstreamError:
        return error_from_response(self.name, response)


def request_body(call: ProviderCall) -> bytes:
    """The client's body for the upstream: ``model`` replaced, streaming always asking for usage."""
    body = dict(call.body)  # shallow: the call's body is shared and must stay as the client sent it
    body["model"] = call.upstream_model
    if call.stream:
        options = body.get("stream_options")
        body["stream"] = True
        body["stream_options"] = {**(options if isinstance(options, dict) else {}), "include_usage": True}
    elif "stream" in body or "stream_options" in body:
        body["stream"] = False
        body.pop("stream_options", None)  # OpenAI rejects stream_options without stream
    return orjson.dumps(body)


def usage_of(raw: Any) -> Usage | None:
    """Usage as chat, completions and embeddings report it (``prompt_tokens``, ``completion_tokens``,
    ``prompt_tokens_details.cached_tokens``) or as image generation does (``input_tokens``,
    ``output_tokens``, ``input_tokens_details``)."""
    if not isinstance(raw, dict):
        return None
    details = raw.get("prompt_tokens_details") or raw.get("input_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, dict) else None
    return Usage(
        prompt_tokens=int(raw.get("prompt_tokens") or raw.get("input_tokens") or 0),
        completion_tokens=int(raw.get("completion_tokens") or raw.get("output_tokens") or 0),
        cached_tokens=int(cached or 0),
    )


def generated_chars(choices: list[Any]) -> int:
    """Characters of generated text in a chunk's choices (chat deltas or legacy ``text``)."""
    total = 0
    for choice in choices:
        if not isinstance(choice, dict):
            continue
        delta = choice.get("delta")
        if isinstance(delta, dict):
            content = delta.get("content")
            total += len(content) if isinstance(content, str) else 0
            for call in delta.get("tool_calls") or ():
                function = call.get("function") if isinstance(call, dict) else None
                arguments = function.get("arguments") if isinstance(function, dict) else None
                total += len(arguments) if isinstance(arguments, str) else 0
        text = choice.get("text")
        total += len(text) if isinstance(text, str) else 0
    return total
