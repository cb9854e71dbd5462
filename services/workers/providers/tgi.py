"""Hugging Face Text Generation Inference, native API: ``POST {base}/generate`` and ``/generate_stream``.

Shapes from TGI's ``docs/openapi.json``: ``/generate`` answers ``{"generated_text", "details":
{"finish_reason", "generated_tokens", "prefill", "tokens", "seed"}}``; ``/generate_stream`` sends SSE
``data: {"index", "token": {"id", "text", "logprob", "special"}, "generated_text": null | str,
"details": null | {"finish_reason", "generated_tokens", "input_length", "seed"}}``, the last event
carrying ``generated_text`` and ``details``; errors are ``{"error", "error_type"}`` (also as an SSE
event mid-stream). Finish reasons: ``length`` -> length, ``eos_token`` / ``stop_sequence`` -> stop.
Usage: completion tokens are ``generated_tokens``; prompt tokens are the length of ``prefill`` (asked
for with ``decoder_input_details``) or, streaming, ``input_length``. Special tokens (the end-of-sequence
token) count but their text is not part of the answer. TGI reports no cached prompt tokens, and a
native request names no model (a TGI server serves one); ``model`` in the answer is the deployment's.

How chat becomes a prompt, and what is refused: ``_tgi_request``. OpenAI-compatible routes need no
adapter of their own: TGI's ``/v1/chat/completions`` and Hugging Face Inference Providers
(``https://router.huggingface.co/v1``) are served by the ``openai`` adapter with that base URL.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
from httpx_sse import EventSource

from common.errors import UpstreamError
from common.providers.base import Operation, ProviderAdapter, ProviderCall, ProviderResponse, StreamChunk, Usage
from workers.openai_format import ChatChunks, CompletionChunks, chat_completion, text_completion
from workers.providers._endpoints import Endpoints
from workers.providers._http import (
    authorization,
    error_from_response,
    json_object,
    pooled_client,
    timeout_for,
    upstream_failures,
)
from workers.providers._tgi_request import StopTrimmer, TgiRequest, tgi_request

_FINISH = {"length": "length", "eos_token": "stop", "stop_sequence": "stop"}
_SSE_HEADERS = {"Accept": "text/event-stream"}


def finish_reason(details: Mapping[str, Any]) -> str:
    return _FINISH.get(str(details.get("finish_reason")), "stop")


def answer(call: ProviderCall, request: TgiRequest, body: dict[str, Any]) -> ProviderResponse:
    details = body.get("details")
    details = details if isinstance(details, dict) else {}
    text = body.get("generated_text")
    text = text if isinstance(text, str) else ""
    if details.get("finish_reason") == "stop_sequence":
        text = StopTrimmer(request.stops).trim(text)
    prefill = details.get("prefill")
    usage = Usage(
        prompt_tokens=len(prefill) if isinstance(prefill, list) else 0,
        completion_tokens=int(details.get("generated_tokens") or 0),
    )
    if call.operation == Operation.CHAT:
        return chat_completion(
            call,
            response_id=f"chatcmpl-{call.request_id}",
            content=text,
            finish_reason=finish_reason(details),
            usage=usage,
        )
    return text_completion(
        call,
        response_id=f"cmpl-{call.request_id}",
        text=request.echo + text,
        finish_reason=finish_reason(details),
        usage=usage,
    )


@dataclass
class TokenReader:
    """``/generate_stream`` events as OpenAI chunks: one chunk per token with text, then, from the event
    with ``details``, the finish and usage chunks."""

    call: ProviderCall
    request: TgiRequest
    done: bool = False
    _sink: ChatChunks | CompletionChunks = field(init=False)
    _stops: StopTrimmer = field(init=False)

    def __post_init__(self) -> None:
        if self.call.operation == Operation.CHAT:
            self._sink = ChatChunks(self.call, f"chatcmpl-{self.call.request_id}", role_in_first_delta=True)
        else:
            self._sink = CompletionChunks(self.call, f"cmpl-{self.call.request_id}")
        self._stops = StopTrimmer(self.request.stops)

    def start(self) -> list[StreamChunk]:
        return self._sink.text(self.request.echo) if self.request.echo else []

    def feed(self, event: dict[str, Any]) -> list[StreamChunk]:
        if isinstance(event.get("error"), str):
            raise UpstreamError(f"The upstream provider (tgi) failed mid-stream: {event['error']}")
        out: list[StreamChunk] = []
        token = event.get("token")
        # Special tokens (end of sequence) count as generated but are not text of the answer.
        piece = token.get("text") if isinstance(token, dict) and not token.get("special") else None
        if isinstance(piece, str) and (text := self._stops.push(piece)):
            out += self._sink.text(text)
        details = event.get("details")
        if isinstance(details, dict):
            self.done = True
            if rest := self._stops.end(details.get("finish_reason") == "stop_sequence"):
                out += self._sink.text(rest)
            out += self._sink.finish(finish_reason(details))
            usage = Usage(
                prompt_tokens=int(details.get("input_length") or 0),
                completion_tokens=int(details.get("generated_tokens") or 0),
            )
            out.append(self._sink.usage(usage))
        return out


class TGIAdapter(ProviderAdapter):
    name = "tgi"
    operations = frozenset({Operation.CHAT, Operation.COMPLETIONS})
    # Both operations are a generate; a catalogue handle names /generate, and streams go to its twin.
    endpoints = Endpoints(tails=("/generate",), chat="/generate", streams={"/generate": "/generate_stream"})

    def __init__(self, base_url: str, options: Mapping[str, str] | None = None) -> None:
        super().__init__(base_url, options)
        self._client = pooled_client(self.base_url)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def send(self, call: ProviderCall) -> ProviderResponse:
        self.check_supported(call)
        request = tgi_request(call, stream=False)
        with upstream_failures(self.name, call.timeout_s):
            response = await self._client.post(
                self.endpoints.path(call, "/generate"),
                content=orjson.dumps(request.body),
                headers=authorization(call),
                timeout=timeout_for(call.timeout_s),
            )
        if response.is_error:
            raise self._error(response)
        return answer(call, request, json_object(response.content, "tgi"))

    async def stream(self, call: ProviderCall) -> AsyncIterator[StreamChunk]:
        self.check_supported(call)
        request = tgi_request(call, stream=True)
        reader = TokenReader(call, request)
        with upstream_failures(self.name, call.timeout_s):
            async with self._client.stream(
                "POST",
                self.endpoints.path(call, "/generate_stream"),
                content=orjson.dumps(request.body),
                headers={**authorization(call), **_SSE_HEADERS},
                timeout=timeout_for(call.timeout_s),
            ) as response:
                if response.is_error:
                    await response.aread()
                    raise self._error(response)
                for chunk in reader.start():
                    yield chunk
                # Read to the end even after the last token: an unread response closes its connection.
                async for event in EventSource(response).aiter_sse():
                    if event.data and not reader.done:
                        for chunk in reader.feed(json_object(event.data, "tgi")):
                            yield chunk
        if not reader.done:
            raise UpstreamError(f"The upstream provider ({self.name}) ended the stream before it finished.")

    def _error(self, response: httpx.Response) -> UpstreamError:
        return error_from_response(self.name, response)
