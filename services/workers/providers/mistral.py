"""Mistral's API (``POST {base_url}/v1/chat/completions`` and ``/v1/embeddings``, base
``https://api.mistral.ai``): OpenAI's wire format with a few differences, so this is the ``openai``
adapter with its hooks (``prepare_body``, ``answer_body``, ``stream_chunks``) and error reading
overridden. Legacy completions go through chat (with OpenAI's default ``max_tokens`` of 16).

Differences, from Mistral's API reference (docs.mistral.ai/api) and its official Python SDK
(``mistralai/client-python``, ``src/mistralai/models/``: ``chatcompletionrequest.py``,
``toolcall.py``, ``usageinfo.py``, ``embeddingrequest.py``, ``responseformats.py``) and guides
(function calling, prompt caching):

- Mistral refuses fields it does not know (HTTP 422 "Extra inputs are not permitted"), so
  ``stream_options`` is never sent (Mistral puts usage in its last chunk by itself), and user,
  safety_identifier, store, metadata and service_tier (no effect on the answer) are left out;
  logit_bias, logprobs and top_logprobs change the answer and Mistral has none: refused with a 400.
- Renamed: max_completion_tokens -> max_tokens, seed -> random_seed, tool_choice "required" ->
  "any" (Mistral's original name for it), a ``developer`` message -> ``system``. n, stop,
  response_format (json_object, json_schema), tools, parallel_tool_calls, prediction and
  prompt_cache_key are Mistral's too and go as they are.
- A message's ``name`` (only tool messages have one at Mistral) and the empty fields an OpenAI client
  echoes back on an assistant message (refusal, annotations, audio, function_call) are left out.
- Tool call ids must be 9 letters or digits: other ids (another provider's, after a failover) are
  mapped to 9-character ids the same way wherever they appear, so calls still match results.
- The last stream chunk carries finish_reason and usage together: it becomes OpenAI's finish chunk
  and its ``choices: []`` usage chunk. Tool call deltas without ``type`` get ``"function"``.
  Content sent as a list of chunks (reasoning models) becomes its text; thinking is left out.
- Embeddings: dimensions -> output_dimension; vectors are always fetched as floats and encoded as
  base64 here when the client asked for that.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import string
from collections.abc import Callable, Mapping
from typing import Any

import httpx
import orjson

from common.errors import InvalidRequestError, UpstreamError
from common.providers.base import Operation, ProviderCall, StreamChunk, Usage
from workers.openai_format import (
    chat_body_from_completion,
    completion_chunk_from_chat,
    completion_from_chat,
    embedding_inputs,
    embeddings_response,
)
from workers.providers._endpoints import Endpoints
from workers.providers._http import error_fields, json_or_none, upstream_error
from workers.providers.openai import OpenAIAdapter, generated_chars, usage_of

PROVIDER = "mistral"
DEFAULT_BASE_URL = "https://api.mistral.ai"
CHAT_PATH = "/v1/chat/completions"
EMBEDDINGS_PATH = "/v1/embeddings"
# OpenAI's documented default for legacy completions (CreateCompletionRequest.max_tokens).
COMPLETIONS_DEFAULT_MAX_TOKENS = 16

_REFUSED: Mapping[str, Callable[[Any], bool]] = {
    "logit_bias": bool,
    "logprobs": bool,
    "top_logprobs": lambda v: v is not None,
}
_NOT_SENT = frozenset({"user", "safety_identifier", "store", "metadata", "service_tier", "stream_options"})
_RENAMED = {"max_completion_tokens": "max_tokens", "seed": "random_seed"}
_TOOL_CHOICES = {"required": "any"}
_ROLES = {"developer": "system"}
# Left out of a message when empty: fields of OpenAI's assistant message that Mistral's lacks.
_EMPTY_EXTRAS = ("refusal", "annotations", "audio", "function_call")
_EMBEDDINGS_NOT_SENT = frozenset({"user", "encoding_format", "dimensions"})

_TOOL_CALL_ID = re.compile(r"[A-Za-z0-9]{9}")
_ID_ALPHABET = string.ascii_letters + string.digits


def tool_call_id(value: Any) -> Any:
    """A tool call id Mistral accepts: valid ones as they are, others hashed to 9 letters/digits."""
    if not isinstance(value, str) or _TOOL_CALL_ID.fullmatch(value):
        return value
    number = int.from_bytes(hashlib.blake2b(value.encode(), digest_size=8).digest(), "big")
    chars = []
    for _ in range(9):
        number, digit = divmod(number, len(_ID_ALPHABET))
        chars.append(_ID_ALPHABET[digit])
    return "".join(chars)


# --- requests -----------------------------------------------------------------------------------


def _message(message: Any) -> Any:
    """The message as Mistral takes it (the same object when nothing changes)."""
    if not isinstance(message, dict):
        return message
    role = message.get("role")
    drop = [k for k in _EMPTY_EXTRAS if k in message and not message[k]]
    if "name" in message and role != "tool":
        drop.append("name")
    updates: dict[str, Any] = {}
    if role in _ROLES:
        updates["role"] = _ROLES[role]
    if "tool_call_id" in message and tool_call_id(message["tool_call_id"]) != message["tool_call_id"]:
        updates["tool_call_id"] = tool_call_id(message["tool_call_id"])
    calls = message.get("tool_calls")
    if isinstance(calls, list) and any(isinstance(c, dict) and tool_call_id(c.get("id")) != c.get("id") for c in calls):
        updates["tool_calls"] = [{**c, "id": tool_call_id(c.get("id"))} if isinstance(c, dict) else c for c in calls]
    if not drop and not updates:
        return message
    fixed = {k: v for k, v in message.items() if k not in drop}
    fixed.update(updates)
    return fixed


def chat_body(body: Mapping[str, Any], *, upstream_model: str, stream: bool) -> dict[str, Any]:
    """The Mistral chat body for an OpenAI chat body (which is left as it is)."""
    for name, is_set in _REFUSED.items():
        if is_set(body.get(name)):
            raise InvalidRequestError(f"'{name}' is not supported by provider '{PROVIDER}'.", param=name)
    out = {k: v for k, v in body.items() if k not in _NOT_SENT}
    out["model"] = upstream_model
    for openai_name, mistral_name in _RENAMED.items():
        if openai_name in out:
            value = out.pop(openai_name)
            if value is not None:
                out[mistral_name] = value
    if stream:
        out["stream"] = True
    elif "stream" in out:
        out["stream"] = False
    choice = out.get("tool_choice")
    if isinstance(choice, str) and choice in _TOOL_CHOICES:
        out["tool_choice"] = _TOOL_CHOICES[choice]
    messages = out.get("messages")
    if isinstance(messages, list):
        fixed = [_message(m) for m in messages]
        if any(f is not m for f, m in zip(fixed, messages, strict=True)):
            out["messages"] = fixed
    return out


def embeddings_body(call: ProviderCall) -> dict[str, Any]:
    embedding_inputs(call)  # text only: a clear 400 for token arrays
    out = {k: v for k, v in call.body.items() if k not in _EMBEDDINGS_NOT_SENT}
    out["model"] = call.upstream_model
    if call.body.get("dimensions") is not None:
        out["output_dimension"] = call.body["dimensions"]
    return out


def completion_body(call: ProviderCall) -> dict[str, Any]:
    """A legacy completions body as a Mistral chat body, with OpenAI's default length for it."""
    chat = chat_body_from_completion(call.body)
    if chat.get("max_tokens") is None:
        chat["max_tokens"] = COMPLETIONS_DEFAULT_MAX_TOKENS
    return chat_body(chat, upstream_model=call.upstream_model, stream=call.stream)


_BODIES: Mapping[str, Callable[[ProviderCall], dict[str, Any]]] = {
    Operation.CHAT: lambda call: chat_body(call.body, upstream_model=call.upstream_model, stream=call.stream),
    Operation.COMPLETIONS: completion_body,
    Operation.EMBEDDINGS: embeddings_body,
}


# --- answers ------------------------------------------------------------------------------------


def normalize_choices(choices: list[Any], key: str) -> bool:
    """Give each choice's ``message`` / ``delta`` (``key``) OpenAI's shapes, in place: list content as
    its text, ``type`` on tool calls. True if anything changed."""
    changed = False
    for choice in choices:
        message = choice.get(key) if isinstance(choice, dict) else None
        if not isinstance(message, dict):
            continue
        content = message.get("content")
        if isinstance(content, list):
            message["content"] = "".join(
                part["text"]
                for part in content
                if isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str)
            )
            changed = True
        for call in message.get("tool_calls") or ():
            if isinstance(call, dict) and call.get("id") and call.get("type") is None:
                call["type"] = "function"
                changed = True
    return changed


def _chat_answer(call: ProviderCall, answer: dict[str, Any], raw: bytes) -> bytes:
    choices = answer.get("choices")
    return orjson.dumps(answer) if isinstance(choices, list) and normalize_choices(choices, "message") else raw


def _completion_answer(call: ProviderCall, answer: dict[str, Any], raw: bytes) -> bytes:
    choices = answer.get("choices")
    if isinstance(choices, list):
        normalize_choices(choices, "message")
    return orjson.dumps(completion_from_chat(answer))


def _embeddings_answer(call: ProviderCall, answer: dict[str, Any], raw: bytes) -> bytes:
    if call.body.get("encoding_format") != "base64":
        return raw
    data = answer.get("data")
    items = (
        sorted((d for d in data if isinstance(d, dict)), key=lambda d: d.get("index", 0))
        if isinstance(data, list)
        else []
    )
    vectors = [d["embedding"] for d in items if isinstance(d.get("embedding"), list)]
    if not vectors or len(vectors) != len(items):
        raise UpstreamError(f"The upstream provider ({PROVIDER}) answered without float embeddings.")
    return embeddings_response(call, vectors, usage_of(answer.get("usage")) or Usage()).body


_ANSWERS: Mapping[str, Callable[[ProviderCall, dict[str, Any], bytes], bytes]] = {
    Operation.CHAT: _chat_answer,
    Operation.COMPLETIONS: _completion_answer,
    Operation.EMBEDDINGS: _embeddings_answer,
}


def _as_is(chunk: dict[str, Any]) -> dict[str, Any] | None:
    return chunk


# How a (normalized) chat chunk is shaped for the client, by operation.
_CHUNK_SHAPES: Mapping[str, Callable[[dict[str, Any]], dict[str, Any] | None]] = {
    Operation.CHAT: _as_is,
    Operation.COMPLETIONS: completion_chunk_from_chat,
}


def error_message(body: Any) -> tuple[str, str | None]:
    """(message, param) from Mistral's error bodies: ``message`` or ``detail`` as a string, as a list
    of validation errors (``{loc, msg}``), as an object holding that list, or as that object's JSON."""
    if not isinstance(body, dict):
        return "", None
    for value in (body.get("message"), body.get("detail")):
        if isinstance(value, str) and value.startswith("{"):
            with contextlib.suppress(orjson.JSONDecodeError):
                value = orjson.loads(value)
        if isinstance(value, dict):
            value = value.get("detail")
        if isinstance(value, list):
            problems = [p for p in value if isinstance(p, dict)]
            paths = [".".join(str(x) for x in p.get("loc") or () if x != "body") for p in problems]
            text = "; ".join(
                f"{path}: {p.get('msg')}" if path else str(p.get("msg"))
                for path, p in zip(paths, problems, strict=True)
            )
            if text:
                return text, paths[0] or None
        if isinstance(value, str) and value:
            return value, None
    return "", None


class MistralAdapter(OpenAIAdapter):
    name = PROVIDER
    paths = {Operation.CHAT: CHAT_PATH, Operation.COMPLETIONS: CHAT_PATH, Operation.EMBEDDINGS: EMBEDDINGS_PATH}
    operations = frozenset(paths)
    endpoints = Endpoints(tails=("/chat/completions", "/embeddings"), chat="/chat/completions")

    def __init__(self, base_url: str, options: Mapping[str, str] | None = None) -> None:
        super().__init__(base_url or DEFAULT_BASE_URL, options)

    def prepare_body(self, call: ProviderCall) -> bytes:
        return orjson.dumps(_BODIES[call.operation](call))

    def answer_body(self, call: ProviderCall, answer: dict[str, Any], raw: bytes) -> bytes:
        return _ANSWERS[call.operation](call, answer, raw)

    def stream_chunks(self, call: ProviderCall, data: str) -> tuple[list[StreamChunk], bool]:
        try:
            parsed = orjson.loads(data)
        except orjson.JSONDecodeError:
            parsed = None
        if not isinstance(parsed, dict):
            raise UpstreamError(f"The upstream provider ({self.name}) answered with something that is not JSON.")
        choices = parsed.get("choices")
        if not choices and isinstance(parsed.get("error"), dict):  # an error sent in-band, mid-stream
            message, _, _ = error_fields(parsed)
            raise UpstreamError(message or f"The upstream provider ({self.name}) failed mid-stream.")
        if not isinstance(choices, list):
            choices = parsed["choices"] = []
        finish_seen = any(isinstance(c, dict) and c.get("finish_reason") for c in choices)
        usage = usage_of(parsed.get("usage"))
        shape = _CHUNK_SHAPES[call.operation]
        changed = normalize_choices(choices, "delta")
        split = bool(choices) and usage is not None  # Mistral's last chunk: finish and usage at once
        if shape is _as_is and not changed and not split:  # the common case: relay Mistral's bytes
            chunk = StreamChunk(
                data.encode(),
                usage=usage,
                usage_only=not choices and usage is not None,
                text_chars=generated_chars(choices),
                finish=finish_seen,
                json=parsed,
            )
            return [chunk], finish_seen
        bodies = [(parsed, None if split else usage)]
        if split:
            usage_body = {k: v for k, v in parsed.items() if k != "choices"}
            usage_body["choices"] = []
            del parsed["usage"]
            bodies.append((usage_body, usage))
        out = []
        for body, body_usage in bodies:
            shaped = shape(body)
            if shaped is not None:
                only_usage = not body["choices"] and body_usage is not None
                text_chars = generated_chars(body["choices"])
                finish = any(isinstance(c, dict) and c.get("finish_reason") for c in shaped.get("choices") or ())
                out.append(
                    StreamChunk(
                        orjson.dumps(shaped),
                        usage=body_usage,
                        usage_only=only_usage,
                        text_chars=text_chars,
                        finish=finish,
                        json=shaped,
                    )
                )
        return out, finish_seen

    def _error(self, response: httpx.Response) -> UpstreamError:
        message, param = error_message(json_or_none(response.content))
        if not message:
            message = response.text[:500].strip()
        return upstream_error(self.name, response.status_code, response.headers, message, param=param)
