"""Google's Gemini API (generativelanguage.googleapis.com): chat, legacy completions (through chat),
embeddings and image generation (``_gemini_images.py``), translated to and from OpenAI's format.

Wire format, from the Gemini API reference (ai.google.dev/api) and the official google-genai SDK
(``models.py``: paths ``{model}:generateContent``, ``{model}:streamGenerateContent?alt=sse``,
``{model}:batchEmbedContents``; key in the ``x-goog-api-key`` header, or in ``Authorization`` for a
target with an ``auth_scheme`` option, as a remote catalogue's):

- ``POST /v1beta/models/{model}:generateContent`` answers a ``GenerateContentResponse``; the
  ``?alt=sse`` stream sends one per SSE ``data:`` event and simply ends (no terminator), the last
  events carrying each candidate's ``finishReason`` and the final ``usageMetadata``.
- ``POST /v1beta/models/{model}:batchEmbedContents`` takes ``requests[]`` of
  ``{model, content: {parts: [{text}]}, outputDimensionality}`` and answers ``embeddings[].values``.
- Errors are ``{"error": {"code", "message", "status", "details"}}``. Two quirks handled here: an
  invalid API key is HTTP 400 with ``ErrorInfo.reason`` ``API_KEY_INVALID`` (our credentials, so 502,
  not the client's 400), and a 429 says when to retry in a ``RetryInfo.retryDelay`` detail rather
  than a ``Retry-After`` header.

Translation of requests: ``_gemini_request.py`` (and ``_gemini_schema.py`` for JSON Schemas);
of answers: ``_gemini_response.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import httpx
import orjson
from httpx_sse import EventSource

from common.errors import InvalidRequestError, UpstreamError
from common.providers.base import Operation, ProviderAdapter, ProviderCall, ProviderResponse, StreamChunk, Usage
from workers.openai_format import (
    chat_body_from_completion,
    chat_completion_json,
    completion_from_chat,
    embedding_inputs,
    embeddings_response,
)
from workers.providers._endpoints import Endpoints
from workers.providers._gemini_images import generate_images
from workers.providers._gemini_request import generate_content_request
from workers.providers._gemini_response import StreamReader, choices_of, response_id_of, usage_of
from workers.providers._http import (
    json_or_none,
    key_header,
    pooled_client,
    timeout_for,
    upstream_error,
    upstream_failures,
)
from workers.usage import estimate_prompt_tokens

DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com"
API_VERSION = "/v1beta"
API_KEY_HEADER = "x-goog-api-key"
# batchEmbedContents takes at most 100 requests; OpenAI's endpoint takes up to 2048 inputs.
EMBEDDING_BATCH = 100
# Embeddings fields besides the ones translated: none of these changes the vectors.
_EMBEDDING_FIELDS = frozenset({"model", "input", "encoding_format", "dimensions", "user"})
# ErrorInfo reasons that mean the gateway's key was refused (Gemini answers them with HTTP 400).
_CREDENTIAL_REASONS = frozenset({"API_KEY_INVALID", "API_KEY_EXPIRED"})


class GeminiAdapter(ProviderAdapter):
    name = "gemini"
    operations = frozenset({Operation.CHAT, Operation.COMPLETIONS, Operation.EMBEDDINGS, Operation.IMAGES})
    # A catalogue handle names a model's method (``.../models/<model>:generateContent``), which serves
    # chat, completions and images alike; its stream is the same model's streamGenerateContent.
    endpoints = Endpoints(
        tails=(":generateContent", ":batchEmbedContents"),
        chat=":generateContent",
        streams={":generateContent": ":streamGenerateContent"},
    )

    def __init__(self, base_url: str, options: Mapping[str, str] | None = None) -> None:
        super().__init__(base_url or DEFAULT_BASE_URL, options)
        self._client = pooled_client(self.base_url)
        self._senders: dict[str, Callable[[ProviderCall], Awaitable[ProviderResponse]]] = {
            Operation.CHAT: self._chat,
            Operation.COMPLETIONS: self._completion,
            Operation.EMBEDDINGS: self._embeddings,
            Operation.IMAGES: self._images,
        }

    async def aclose(self) -> None:
        await self._client.aclose()

    # --- whole answers ----------------------------------------------------------------------

    async def send(self, call: ProviderCall) -> ProviderResponse:
        self.check_supported(call)
        return await self._senders[call.operation](call)

    async def _chat(self, call: ProviderCall) -> ProviderResponse:
        chat, usage = await self._generate(call, call.body)
        return ProviderResponse(orjson.dumps(chat), usage)

    async def _completion(self, call: ProviderCall) -> ProviderResponse:
        chat, usage = await self._generate(call, _chat_body(call))
        return ProviderResponse(orjson.dumps(completion_from_chat(chat)), usage)

    async def _generate(self, call: ProviderCall, body: Mapping[str, Any]) -> tuple[dict[str, Any], Usage]:
        """The ``chat.completion`` (as a dict) for an OpenAI chat body, and its usage."""
        request = generate_content_request(body)
        answer = await self._post(call, f"{_model_path(call.upstream_model)}:generateContent", request)
        usage = usage_of(answer.get("usageMetadata")) or Usage()
        choices = choices_of(answer, call, int(body.get("n") or 1))
        chat = chat_completion_json(call, response_id=response_id_of(answer, call), choices=choices, usage=usage)
        return chat, usage

    async def _embeddings(self, call: ProviderCall) -> ProviderResponse:
        for name, value in call.body.items():
            if name not in _EMBEDDING_FIELDS and value is not None:
                raise InvalidRequestError(f"'{name}' is not supported by provider 'gemini'.", param=name)
        model = _model_path(call.upstream_model)
        template: dict[str, Any] = {"model": model}
        if call.body.get("dimensions") is not None:
            template["outputDimensionality"] = call.body["dimensions"]
        texts = embedding_inputs(call)
        requests = [{**template, "content": {"parts": [{"text": text}]}} for text in texts]
        batches = [requests[i : i + EMBEDDING_BATCH] for i in range(0, len(requests), EMBEDDING_BATCH)]
        tasks = [
            asyncio.ensure_future(self._post(call, f"{model}:batchEmbedContents", {"requests": b})) for b in batches
        ]
        try:
            answers = await asyncio.gather(*tasks)
        except BaseException:  # one batch failed (or the call was cancelled): the others are not needed
            for task in tasks:
                task.cancel()
            raise
        vectors: list[Any] = []
        reported = 0
        for answer in answers:
            embeddings = answer.get("embeddings")
            vectors += (
                [e.get("values") for e in embeddings if isinstance(e, dict)] if isinstance(embeddings, list) else []
            )
            usage = usage_of(answer.get("usageMetadata"))
            reported += usage.prompt_tokens if usage else 0
        if len(vectors) != len(texts) or not all(isinstance(v, list) for v in vectors):
            raise UpstreamError(
                f"The upstream provider (gemini) answered {len(vectors)} embeddings for {len(texts)} inputs."
            )
        # Gemini may not report usage for embeddings: then it is estimated from the input.
        return embeddings_response(call, vectors, Usage(prompt_tokens=reported or estimate_prompt_tokens(call.body)))

    async def _images(self, call: ProviderCall) -> ProviderResponse:
        path = f"{_model_path(call.upstream_model)}:generateContent"
        return await generate_images(call, lambda p, request: self._post(call, p, request), path)

    async def _post(self, call: ProviderCall, path: str, request: dict[str, Any]) -> dict[str, Any]:
        with upstream_failures(self.name, call.timeout_s):
            response = await self._client.post(
                self.endpoints.path(call, f"{API_VERSION}/{path}"),
                content=orjson.dumps(request),
                headers=key_header(call, API_KEY_HEADER),
                timeout=timeout_for(call.timeout_s),
            )
        if response.is_error:
            raise self._error(response.status_code, response.headers, json_or_none(response.content), response.text)
        answer = json_or_none(response.content)
        if not isinstance(answer, dict):
            raise UpstreamError(f"The upstream provider ({self.name}) answered with something that is not JSON.")
        return answer

    # --- streams ----------------------------------------------------------------------------

    def stream(self, call: ProviderCall) -> AsyncIterator[StreamChunk]:
        self.check_supported(call)
        if call.operation in (Operation.EMBEDDINGS, Operation.IMAGES):
            raise InvalidRequestError(f"{call.operation} cannot be streamed.", param="stream")
        return self._stream(call)

    async def _stream(self, call: ProviderCall) -> AsyncIterator[StreamChunk]:
        as_completion = call.operation == Operation.COMPLETIONS
        body = _chat_body(call) if as_completion else call.body
        request = orjson.dumps(generate_content_request(body))
        reader = StreamReader(call, n=int(body.get("n") or 1), as_completion=as_completion)
        with upstream_failures(self.name, call.timeout_s):
            async with self._client.stream(
                "POST",
                self.endpoints.path(call, f"{API_VERSION}/{_model_path(call.upstream_model)}:streamGenerateContent"),
                params={"alt": "sse"},
                content=request,
                headers={**key_header(call, API_KEY_HEADER), "Accept": "text/event-stream"},
                timeout=timeout_for(call.timeout_s),
            ) as response:
                if response.is_error:
                    await response.aread()
                    parsed = json_or_none(response.content)
                    raise self._error(response.status_code, response.headers, parsed, response.text)
                async for event in EventSource(response).aiter_sse():
                    parsed = json_or_none(event.data)
                    if not isinstance(parsed, dict):
                        raise UpstreamError(f"The upstream provider ({self.name}) sent an event that is not JSON.")
                    if isinstance(parsed.get("error"), dict):  # a failure reported in-band, mid-stream
                        code = parsed["error"].get("code")
                        raise self._error(code if isinstance(code, int) else 500, httpx.Headers(), parsed, event.data)
                    for chunk in reader.event(parsed):
                        yield chunk
        for chunk in reader.end():
            yield chunk

    # --- errors -----------------------------------------------------------------------------

    def _error(self, status: int, headers: httpx.Headers, parsed: Any, text: str) -> UpstreamError:
        error = parsed.get("error") if isinstance(parsed, dict) else None
        if not isinstance(error, dict):
            return upstream_error(self.name, status, headers, text[:500].strip())
        details = [d for d in error.get("details") or () if isinstance(d, dict)]
        refused_key = any(d.get("reason") in _CREDENTIAL_REASONS for d in details)
        google_status = error.get("status")
        exc = upstream_error(
            self.name,
            401 if refused_key else status,
            headers,
            str(error.get("message") or ""),
            code=google_status.lower() if isinstance(google_status, str) else None,
        )
        exc.upstream_status = status
        if exc.retry_after_s is None:
            exc.retry_after_s = _retry_delay(details)
        return exc


def _chat_body(call: ProviderCall) -> dict[str, Any]:
    body = chat_body_from_completion(call.body)
    if body.get("tools") is not None:  # a completion has no tool-call turn to answer with
        raise InvalidRequestError("'tools' is not supported with completions.", param="tools")
    return body


def _model_path(model: str) -> str:
    """``models/<name>`` (tuned models and full resource names are used as they are)."""
    return model if "/" in model else f"models/{model}"


def _retry_delay(details: list[dict[str, Any]]) -> float | None:
    """``google.rpc.RetryInfo.retryDelay`` (a Duration in JSON: ``"37s"``, ``"0.5s"``) in seconds."""
    for detail in details:
        delay = detail.get("retryDelay")
        if str(detail.get("@type", "")).endswith("google.rpc.RetryInfo") and isinstance(delay, str):
            try:
                return max(0.0, float(delay.removesuffix("s")))
            except ValueError:
                return None
    return None
