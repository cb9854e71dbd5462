"""Building OpenAI-format answers, for adapters whose provider speaks another wire format.

A translating adapter (Anthropic, Gemini, Cohere, Ollama, TGI, ...) parses its provider's answer and
hands the pieces to these builders, so every provider's output has exactly OpenAI's shapes:
``chat.completion``, ``chat.completion.chunk`` (role delta first, text and tool-call deltas,
finish chunk, the ``choices: []`` usage chunk), and the embeddings list (``float`` or ``base64``).
Legacy ``/v1/completions`` on a chat-only provider goes through chat: ``chat_body_from_completion``
on the way in, ``completion_from_chat`` / ``completion_chunk_from_chat`` on the way out.
"""

from __future__ import annotations

import base64
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from common.errors import InvalidRequestError
from common.providers.base import ProviderCall, ProviderResponse, StreamChunk, Usage

# OpenAI request fields that steer the gateway or describe the caller, never the generated text:
# a translating adapter may leave them out of its provider's request without changing the answer.
CALLER_FIELDS = frozenset(
    {
        "model",
        "stream",
        "stream_options",
        "user",
        "metadata",
        "store",
        "service_tier",
        "safety_identifier",
        "prompt_cache_key",
    }
)


def json_schema_of(response_format: dict[str, Any]) -> dict[str, Any]:
    """The schema of a ``json_schema`` response_format, for a provider that needs one to enforce it."""
    spec = response_format.get("json_schema")
    schema = spec.get("schema") if isinstance(spec, dict) else None
    if not isinstance(schema, dict):
        raise InvalidRequestError(
            "response_format.json_schema.schema must be a JSON schema object.",
            param="response_format.json_schema.schema",
        )
    return schema


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


@dataclass(slots=True)
class Choice:
    """One of the ``n`` answers of a whole chat completion."""

    content: str | None
    finish_reason: str
    tool_calls: Sequence[ToolCall] = ()

    def json(self, index: int) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": self.content, "refusal": None}
        if self.tool_calls:
            message["tool_calls"] = [t.json() for t in self.tool_calls]
        return {"index": index, "message": message, "logprobs": None, "finish_reason": self.finish_reason}


def chat_completion_json(
    call: ProviderCall, *, response_id: str, choices: Sequence[Choice], usage: Usage, created: int | None = None
) -> dict[str, Any]:
    """A whole ``chat.completion`` with one entry per choice, as a dict (``completion_from_chat`` takes it)."""
    return {
        "id": response_id,
        "object": "chat.completion",
        "created": created or int(time.time()),
        "model": call.upstream_model,
        "choices": [choice.json(i) for i, choice in enumerate(choices)],
        "usage": usage_json(usage),
    }


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
    choice = Choice(content, finish_reason, tool_calls)
    body = chat_completion_json(call, response_id=response_id, choices=[choice], usage=usage, created=created)
    return ProviderResponse(orjson.dumps(body), usage, body)


@dataclass
class ChatChunks:
    """The chunks of one streamed chat answer, in OpenAI's order. Call ``role`` first (or let the first
    ``text``/``tool_call`` do it), then any deltas, then ``finish``, then ``usage``. With ``n`` > 1, pass
    ``choice`` (the choice's index); each choice gets its own role delta."""

    call: ProviderCall
    response_id: str
    created: int = field(default_factory=lambda: int(time.time()))
    # Put the role into the first delta that has something to say instead of a delta of its own, so
    # one provider event makes one chunk (as OpenAI's own first tool-call delta carries the role).
    role_in_first_delta: bool = False
    _started: set[int] = field(default_factory=set)  # choices whose role was sent

    def _body(self, choices: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "id": self.response_id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.call.upstream_model,
            "choices": choices,
        }

    def _chunk(self, choices: list[dict[str, Any]], text_chars: int = 0, finish: bool = False) -> StreamChunk:
        body = self._body(choices)
        return StreamChunk(orjson.dumps(body), text_chars=text_chars, finish=finish, json=body)

    def _delta(
        self, delta: dict[str, Any], finish_reason: str | None = None, text_chars: int = 0, choice: int = 0
    ) -> StreamChunk:
        if choice not in self._started:  # only with role_in_first_delta: start() has not sent the role
            self._started.add(choice)
            delta = {"role": "assistant", **delta}
        choices = [{"index": choice, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]
        return self._chunk(choices, text_chars, finish_reason is not None)

    def start(self, choice: int = 0) -> list[StreamChunk]:
        """The opening role delta, once; an empty list if already sent (or left to the first delta)."""
        if choice in self._started or self.role_in_first_delta:
            return []
        self._started.add(choice)
        return [self._delta({"role": "assistant", "content": ""}, choice=choice)]

    def text(self, text: str, *, choice: int = 0) -> list[StreamChunk]:
        return [*self.start(choice), self._delta({"content": text}, text_chars=len(text), choice=choice)]

    def tool_call_start(self, index: int, tool_id: str, name: str, *, choice: int = 0) -> list[StreamChunk]:
        """The first delta of tool call ``index``: its id and name, empty arguments."""
        function = {"name": name, "arguments": ""}
        delta = {"tool_calls": [{"index": index, "id": tool_id, "type": "function", "function": function}]}
        return [*self.start(choice), self._delta(delta, choice=choice)]

    def tool_call_arguments(self, index: int, partial_json: str, *, choice: int = 0) -> list[StreamChunk]:
        delta = {"tool_calls": [{"index": index, "function": {"arguments": partial_json}}]}
        return [*self.start(choice), self._delta(delta, text_chars=len(partial_json), choice=choice)]

    def finish(self, finish_reason: str, *, choice: int = 0) -> list[StreamChunk]:
        return [*self.start(choice), self._delta({}, finish_reason, choice=choice)]

    def usage(self, usage: Usage) -> StreamChunk:
        body = self._body([])
        body["usage"] = usage_json(usage)
        return StreamChunk(orjson.dumps(body), usage=usage, usage_only=True, json=body)


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
    return ProviderResponse(orjson.dumps(body), usage, body)


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


# --- legacy completions from a provider that completes text natively ------------------------------


def text_completion(
    call: ProviderCall,
    *,
    response_id: str,
    text: str,
    finish_reason: str,
    usage: Usage,
    created: int | None = None,
) -> ProviderResponse:
    """A whole ``text_completion`` with one choice."""
    body = {
        "id": response_id,
        "object": "text_completion",
        "created": created or int(time.time()),
        "model": call.upstream_model,
        "choices": [{"text": text, "index": 0, "logprobs": None, "finish_reason": finish_reason}],
        "usage": usage_json(usage),
    }
    return ProviderResponse(orjson.dumps(body), usage, body)


@dataclass
class CompletionChunks:
    """The chunks of one streamed ``text_completion``: text pieces, the finish chunk, the usage chunk.
    Same methods as ``ChatChunks`` (minus tool calls), so a provider's stream reader can feed either."""

    call: ProviderCall
    response_id: str
    created: int = field(default_factory=lambda: int(time.time()))

    def _body(self, choices: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "id": self.response_id,
            "object": "text_completion",
            "created": self.created,
            "model": self.call.upstream_model,
            "choices": choices,
        }

    def _choice(self, text: str, finish_reason: str | None = None, index: int = 0) -> StreamChunk:
        choice = {"text": text, "index": index, "logprobs": None, "finish_reason": finish_reason}
        body = self._body([choice])
        return StreamChunk(orjson.dumps(body), text_chars=len(text), finish=finish_reason is not None, json=body)

    def text(self, text: str, *, choice: int = 0) -> list[StreamChunk]:
        return [self._choice(text, index=choice)]

    def finish(self, finish_reason: str, *, choice: int = 0) -> list[StreamChunk]:
        return [self._choice("", finish_reason, index=choice)]

    def usage(self, usage: Usage) -> StreamChunk:
        body = self._body([])
        body["usage"] = usage_json(usage)
        return StreamChunk(orjson.dumps(body), usage=usage, usage_only=True, json=body)
