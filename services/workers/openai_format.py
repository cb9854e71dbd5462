"""Building OpenAI-format answers, for adapters whose provider speaks another wire format.

A translating adapter (Anthropic, Gemini, Cohere, Ollama, TGI, ...) parses its provider's answer and
hands the pieces to these builders, so every provider's output has exactly OpenAI's shapes:
``chat.completion``, ``chat.completion.chunk`` (role delta first, text and tool-call deltas,
finish chunk, the ``choices: []`` usage chunk), and the embeddings list (``float`` or ``base64``).
Legacy ``/v1/completions`` on a chat-only provider goes through chat: ``chat_body_from_completion``
on the way in, ``CompletionFromChat`` on the way out.
"""

from __future__ import annotations

import base64
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from common.providers.base import ProviderCall, ProviderResponse, StreamChunk, Usage


def usage_json(usage: Usage) -> dict[str, Any]:
    out: dict[str, Any] = {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
    }
    if usage.cached_tokens:
        out["prompt_tokens_details"] = {"cached_tokens": usage.cached_tokens}
    return out


@dataclass(slots=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # JSON text, as OpenAI carries it

    def json(self) -> dict[str, Any]:
        return {"id": self.id, "type": "function", "function": {"name": self.name, "arguments": self.arguments}}


def chat_completion(
    call: ProviderCall,
    *,
    response_id: str,
    content: str | None,
    tool_calls: Sequence[ToolCall] = (),
    finish_reason: str,
    usage: Usage,
    created: int | None = None,
) -> ProviderResponse:
    """A whole ``chat.completion`` with one choice."""
    message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None}
    if tool_calls:
        message["tool_calls"] = [t.json() for t in tool_calls]
    body = {
        "id": response_id,
        "object": "chat.completion",
        "created": created or int(time.time()),
        "model": call.upstream_model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}],
        "usage": usage_json(usage),
    }
    return ProviderResponse(orjson.dumps(body), usage)


@dataclass
class ChatChunks:
    """The chunks of one streamed chat answer, in OpenAI's order. Call ``role`` first (or let the first
    ``text``/``tool_call`` do it), then any deltas, then ``finish``, then ``usage``."""

    call: ProviderCall
    response_id: str
    created: int = field(default_factory=lambda: int(time.time()))
    _started: bool = False

    def _body(self, choices: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "id": self.response_id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.call.upstream_model,
            "choices": choices,
        }

    def _chunk(self, choices: list[dict[str, Any]], text_chars: int = 0) -> StreamChunk:
        return StreamChunk(orjson.dumps(self._body(choices)), text_chars=text_chars)

    def _delta(self, delta: dict[str, Any], finish_reason: str | None = None, text_chars: int = 0) -> StreamChunk:
        return self._chunk([{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}], text_chars)

    def start(self) -> list[StreamChunk]:
        """The opening role delta, once; an empty list if already sent."""
        if self._started:
            return []
        self._started = True
        return [self._delta({"role": "assistant", "content": ""})]

    def text(self, text: str) -> list[StreamChunk]:
        return [*self.start(), self._delta({"content": text}, text_chars=len(text))]

    def tool_call_start(self, index: int, tool_id: str, name: str) -> list[StreamChunk]:
        """The first delta of tool call ``index``: its id and name, empty arguments."""
        function = {"name": name, "arguments": ""}
        delta = {"tool_calls": [{"index": index, "id": tool_id, "type": "function", "function": function}]}
        return [*self.start(), self._delta(delta)]

    def tool_call_arguments(self, index: int, partial_json: str) -> list[StreamChunk]:
        delta = {"tool_calls": [{"index": index, "function": {"arguments": partial_json}}]}
        return [*self.start(), self._delta(delta, text_chars=len(partial_json))]

    def finish(self, finish_reason: str) -> list[StreamChunk]:
        return [*self.start(), self._delta({}, finish_reason)]

    def usage(self, usage: Usage) -> StreamChunk:
        body = self._body([])
        body["usage"] = usage_json(usage)
        return StreamChunk(orjson.dumps(body), usage=usage, usage_only=True)


def embeddings_response(call: ProviderCall, vectors: Sequence[Sequence[float]], usage: Usage) -> ProviderResponse:
    """OpenAI's embeddings list; ``encoding_format: base64`` gets little-endian float32, as OpenAI
    sends it (and as the official SDK, which asks for base64 by default, decodes it)."""
    as_base64 = call.body.get("encoding_format") == "base64"
    data = [
        {
            "object": "embedding",
            "index": i,
            "embedding": base64.b64encode(struct.pack(f"<{len(v)}f", *v)).decode() if as_base64 else list(v),
        }
        for i, v in enumerate(vectors)
    ]
    body = {
        "object": "list",
        "data": data,
        "model": call.upstream_model,
        "usage": {"prompt_tokens": usage.prompt_tokens, "total_tokens": usage.prompt_tokens},
    }
    return ProviderResponse(orjson.dumps(body), usage)


def embedding_inputs(call: ProviderCall) -> list[str]:
    """The texts to embed. Token-array inputs only make sense to OpenAI's own tokenizer."""
    from common.errors import InvalidRequestError

    value = call.body.get("input")
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise InvalidRequestError(
        "This provider embeds text only: 'input' must be a string or a list of strings.", param="input"
    )


# --- legacy completions through chat ----------------------------------------------------------

_COMPLETION_ONLY = ("best_of", "echo", "logprobs", "suffix")


def chat_body_from_completion(body: dict[str, Any]) -> dict[str, Any]:
    """A chat-completions body equivalent to a legacy completions body with one string prompt."""
    from common.errors import InvalidRequestError

    prompt = body.get("prompt")
    if not isinstance(prompt, str):
        raise InvalidRequestError(
            "This provider serves completions through chat: 'prompt' must be a single string.", param="prompt"
        )
    for name in _COMPLETION_ONLY:
        value = body.get(name)
        if value not in (None, False) and not (name == "best_of" and value == 1):
            raise InvalidRequestError(f"'{name}' is not supported by this provider.", param=name)
    chat = {k: v for k, v in body.items() if k not in ("prompt", *_COMPLETION_ONLY)}
    chat["messages"] = [{"role": "user", "content": prompt}]
    return chat


def completion_from_chat(chat_json: dict[str, Any]) -> dict[str, Any]:
    """A ``text_completion`` from a ``chat.completion``."""
    return {
        "id": chat_json.get("id", "").replace("chatcmpl", "cmpl", 1),
        "object": "text_completion",
        "created": chat_json.get("created", int(time.time())),
        "model": chat_json.get("model"),
        "choices": [
            {
                "text": (c.get("message") or {}).get("content") or "",
                "index": c.get("index", 0),
                "logprobs": None,
                "finish_reason": c.get("finish_reason"),
            }
            for c in chat_json.get("choices", [])
        ],
        "usage": chat_json.get("usage"),
    }


def completion_chunk_from_chat(chunk_json: dict[str, Any]) -> dict[str, Any] | None:
    """A streamed ``text_completion`` from a ``chat.completion.chunk``; None for chunks with nothing to say
    (the opening role delta)."""
    choices = [
        {
            "text": (c.get("delta") or {}).get("content") or "",
            "index": c.get("index", 0),
            "logprobs": None,
            "finish_reason": c.get("finish_reason"),
        }
        for c in chunk_json.get("choices", [])
        if (c.get("delta") or {}).get("content") or c.get("finish_reason")
    ]
    if chunk_json.get("choices") and not choices:
        return None
    out = {
        "id": chunk_json.get("id", "").replace("chatcmpl", "cmpl", 1),
        "object": "text_completion",
        "created": chunk_json.get("created"),
        "model": chunk_json.get("model"),
        "choices": choices,
    }
    if chunk_json.get("usage") is not None:
        out["usage"] = chunk_json["usage"]
    return out
