"""OpenAI bodies as Cohere v2 requests: chat (``POST /v2/chat``) and embeddings (``POST /v2/embed``).

Wire shapes are those of Cohere's API reference (docs.cohere.com/v2/reference/chat, /embed) and its
official Python SDK (``cohere-ai/cohere-python``: ``src/cohere/v2/raw_client.py`` for the request
fields, ``src/cohere/types/``: ``chat_messages.py``, ``tool_v2.py``, ``tool_call_v2.py``,
``response_format_v2.py``, ``image_url_content.py``).

Every OpenAI parameter is handled on purpose, because Cohere refuses any field it does not know
("unknown field: parameter 'x' is not a valid field", HTTP 422):

- translated: messages (developer -> system; images -> ``image_url`` parts; an assistant's
  ``tool_calls``, with its text as ``tool_plan``; ``tool`` messages), temperature, top_p -> ``p``
  (clamped to Cohere's 0.01-0.99), max_tokens / max_completion_tokens -> ``max_tokens``, stop ->
  ``stop_sequences``, seed, frequency_penalty, presence_penalty, tools (a function's ``strict`` ->
  ``strict_tools``), tool_choice (required -> REQUIRED, none -> NONE, a named function only when it
  is the only tool), response_format (json_object; json_schema -> json_object with its schema).
- refused with a 400 naming them when set to anything but their no-op value, since they change the
  answer and Cohere cannot honour them: n > 1, logit_bias, logprobs, top_logprobs,
  parallel_tool_calls false, audio, modalities other than text, web_search_options,
  reasoning_effort (use Cohere's own ``thinking``), functions / function_call (legacy; use tools),
  a named tool_choice among several tools.
- not sent, since they do not change the answer: user, safety_identifier, store, metadata,
  service_tier, prediction, prompt_cache_key, prompt_cache_retention, stream_options (Cohere always
  reports usage), a message's ``name``.
- anything else (``documents``, ``citation_options``, ``safety_mode``, ``k``, ``thinking``, ...)
  goes upstream unchanged, so Cohere's own parameters stay usable.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from common.errors import InvalidRequestError
from common.providers.base import ProviderCall
from workers.openai_format import embedding_inputs

PROVIDER = "cohere"
# Cohere's documented range for nucleus sampling; OpenAI allows 0-1 (and clients often send 1).
MIN_P, MAX_P = 0.01, 0.99
DEFAULT_INPUT_TYPE = "search_document"

# OpenAI parameters that change the answer and have no Cohere equivalent: refused unless the value
# is the one that means "off".
_REFUSED: Mapping[str, Callable[[Any], bool]] = {
    "logit_bias": bool,
    "logprobs": bool,
    "top_logprobs": lambda v: v is not None,
    "parallel_tool_calls": lambda v: v is False,
    "audio": lambda v: v is not None,
    "modalities": lambda v: v not in (None, ["text"]),
    "web_search_options": lambda v: v is not None,
    "reasoning_effort": lambda v: v is not None,
    "functions": lambda v: v is not None,
    "function_call": lambda v: v is not None,
}
_NOT_SENT = frozenset(
    {
        "user",
        "safety_identifier",
        "store",
        "metadata",
        "service_tier",
        "prediction",
        "prompt_cache_key",
        "prompt_cache_retention",
        "stream_options",
    }
)


def _bad(message: str, param: str) -> InvalidRequestError:
    return InvalidRequestError(message, param=param)


# --- chat ---------------------------------------------------------------------------------------


def _top_p(value: Any, body: Mapping[str, Any], out: dict[str, Any]) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _bad("'top_p' must be a number.", "top_p")
    out["p"] = min(MAX_P, max(MIN_P, float(value)))


def _max_tokens(value: Any, body: Mapping[str, Any], out: dict[str, Any]) -> None:
    out["max_tokens"] = value


def _stop(value: Any, body: Mapping[str, Any], out: dict[str, Any]) -> None:
    out["stop_sequences"] = [value] if isinstance(value, str) else list(value)


def _same_name(name: str) -> Callable[[Any, Mapping[str, Any], dict[str, Any]], None]:
    def put(value: Any, body: Mapping[str, Any], out: dict[str, Any]) -> None:
        out[name] = value

    return put


def _n(value: Any, body: Mapping[str, Any], out: dict[str, Any]) -> None:
    if value != 1:
        raise _bad(f"'n' must be 1: provider '{PROVIDER}' returns one choice per request.", "n")


def _tools(value: Any, body: Mapping[str, Any], out: dict[str, Any]) -> None:
    if not isinstance(value, list):
        raise _bad("'tools' must be a list.", "tools")
    tools, strict = [], False
    for i, tool in enumerate(value):
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(tool, dict) or tool.get("type") != "function" or not isinstance(function, dict):
            raise _bad(f"tools[{i}]: provider '{PROVIDER}' supports only function tools.", "tools")
        definition: dict[str, Any] = {
            "name": function.get("name"),
            # OpenAI lets a function without parameters omit them; Cohere expects a schema.
            "parameters": function.get("parameters") or {"type": "object", "properties": {}},
        }
        if function.get("description") is not None:
            definition["description"] = function["description"]
        strict = strict or function.get("strict") is True
        tools.append({"type": "function", "function": definition})
    out["tools"] = tools
    if strict and "strict_tools" not in body:  # Cohere's switch is per request, not per function
        out["strict_tools"] = True


def _tool_choice(value: Any, body: Mapping[str, Any], out: dict[str, Any]) -> None:
    if value == "auto":
        return
    if value in ("required", "none"):
        out["tool_choice"] = value.upper()
        return
    if value in ("REQUIRED", "NONE"):  # Cohere's own spelling
        out["tool_choice"] = value
        return
    name = (value.get("function") or {}).get("name") if isinstance(value, dict) else None
    tools = body.get("tools") or []
    only = tools[0].get("function", {}).get("name") if len(tools) == 1 and isinstance(tools[0], dict) else None
    if name is not None and name == only:
        out["tool_choice"] = "REQUIRED"  # forcing a call when there is one tool forces that tool
        return
    raise _bad(
        f"Provider '{PROVIDER}' can force a tool call ('required') but not a particular tool among several.",
        "tool_choice",
    )


def _response_format(value: Any, body: Mapping[str, Any], out: dict[str, Any]) -> None:
    kind = value.get("type") if isinstance(value, dict) else None
    if kind in ("text", "json_object"):
        out["response_format"] = {"type": kind}
        return
    if kind == "json_schema":
        schema = (value.get("json_schema") or {}).get("schema")
        out["response_format"] = {"type": "json_object", **({"json_schema": schema} if schema else {})}
        return
    raise _bad(f"response_format type {kind!r} is not supported by provider '{PROVIDER}'.", "response_format")


_TRANSLATED: Mapping[str, Callable[[Any, Mapping[str, Any], dict[str, Any]], None]] = {
    "temperature": _same_name("temperature"),
    "seed": _same_name("seed"),
    "frequency_penalty": _same_name("frequency_penalty"),
    "presence_penalty": _same_name("presence_penalty"),
    "top_p": _top_p,
    "max_tokens": _max_tokens,
    "max_completion_tokens": _max_tokens,  # after max_tokens: the newer name wins
    "stop": _stop,
    "n": _n,
    "tools": _tools,
    "tool_choice": _tool_choice,
    "response_format": _response_format,
}
_HANDLED = frozenset(_TRANSLATED) | _NOT_SENT | frozenset(_REFUSED) | {"model", "messages", "stream"}


def chat_request(body: Mapping[str, Any], *, upstream_model: str, stream: bool) -> dict[str, Any]:
    """The v2 chat request for an OpenAI chat body (which is left as it is)."""
    for name, is_set in _REFUSED.items():
        if is_set(body.get(name)):
            raise _bad(f"'{name}' is not supported by provider '{PROVIDER}'.", name)
    out: dict[str, Any] = {k: v for k, v in body.items() if k not in _HANDLED}
    out["model"] = upstream_model
    out["messages"] = _messages(body.get("messages"))
    out["stream"] = stream
    for name, translate in _TRANSLATED.items():
        if body.get(name) is not None:
            translate(body[name], body, out)
    return out


# --- messages -----------------------------------------------------------------------------------


def _text_parts(content: Any, i: int, *, allow_images: bool = False) -> str | list[dict[str, Any]]:
    """A message's content as Cohere takes it: a string stays one; parts become Cohere's parts."""
    if isinstance(content, str):
        return content
    if content is None:
        return ""
    if not isinstance(content, list):
        raise _bad(f"messages[{i}].content must be a string or a list of parts.", "messages")
    parts: list[dict[str, Any]] = []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("text", "refusal"):
            parts.append({"type": "text", "text": part.get(kind) or ""})
        elif kind == "image_url" and allow_images:
            image = part.get("image_url")
            image = {"url": image} if isinstance(image, str) else dict(image or {})
            parts.append({"type": "image_url", "image_url": image})
        else:
            raise _bad(f"messages[{i}]: content parts of type {kind!r} are not supported here.", "messages")
    return parts


def _joined_text(content: Any, i: int) -> str:
    parts = _text_parts(content, i)
    return parts if isinstance(parts, str) else "".join(p["text"] for p in parts)


def _system(message: Mapping[str, Any], i: int) -> dict[str, Any]:
    return {"role": "system", "content": _text_parts(message.get("content"), i)}


def _user(message: Mapping[str, Any], i: int) -> dict[str, Any]:
    return {"role": "user", "content": _text_parts(message.get("content"), i, allow_images=True)}


def _assistant(message: Mapping[str, Any], i: int) -> dict[str, Any]:
    out: dict[str, Any] = {"role": "assistant"}
    text = _joined_text(message.get("content"), i)
    calls = message.get("tool_calls")
    if calls:
        out["tool_calls"] = [_tool_call(call, i) for call in calls]
        if text:  # what the model said before calling tools: Cohere's tool plan (as we answer it)
            out["tool_plan"] = text
    else:
        out["content"] = text
    return out


def _tool_call(call: Any, i: int) -> dict[str, Any]:
    function = call.get("function") if isinstance(call, dict) else None
    if not isinstance(function, dict):
        raise _bad(f"messages[{i}].tool_calls: each call needs a function.", "messages")
    return {
        "id": call.get("id"),
        "type": "function",
        "function": {"name": function.get("name"), "arguments": function.get("arguments") or "{}"},
    }


def _tool(message: Mapping[str, Any], i: int) -> dict[str, Any]:
    return {
        "role": "tool",
        "tool_call_id": message.get("tool_call_id"),
        "content": _text_parts(message.get("content"), i),
    }


_ROLES: Mapping[str, Callable[[Mapping[str, Any], int], dict[str, Any]]] = {
    "system": _system,
    "developer": _system,
    "user": _user,
    "assistant": _assistant,
    "tool": _tool,
}


def _messages(messages: Any) -> list[dict[str, Any]]:
    if not isinstance(messages, list) or not messages:
        raise _bad("'messages' must be a non-empty list.", "messages")
    out = []
    for i, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        translate = _ROLES.get(role) if isinstance(role, str) else None
        if translate is None:
            raise _bad(f"messages[{i}]: role {role!r} is not supported by provider '{PROVIDER}'.", "messages")
        out.append(translate(message, i))
    return out


# --- embeddings ---------------------------------------------------------------------------------

_EMBED_HANDLED = frozenset({"model", "input", "encoding_format", "dimensions", "user", "input_type"})


def embed_request(call: ProviderCall) -> dict[str, Any]:
    """The v2 embed request: always float vectors (base64 is built from them for the client)."""
    body = call.body
    out: dict[str, Any] = {k: v for k, v in body.items() if k not in _EMBED_HANDLED}
    out.update(
        model=call.upstream_model,
        texts=embedding_inputs(call),
        # Cohere's v3+ models need to know what the text is for; OpenAI has no such field, so a
        # client may send Cohere's as an extra one.
        input_type=body.get("input_type") or DEFAULT_INPUT_TYPE,
        embedding_types=["float"],
    )
    if body.get("dimensions") is not None:
        out["output_dimension"] = body["dimensions"]
    return out
