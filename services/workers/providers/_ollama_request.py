"""OpenAI-format request bodies as Ollama native API bodies (``/api/chat``, ``/api/generate``, ``/api/embed``).

Wire shapes: Ollama's API reference (github.com/ollama/ollama ``docs/api.md``,
``docs/capabilities/tool-calling.mdx``) and its own OpenAI translation
(``openai/openai.go``: ``FromChatRequest``, ``FromCompleteRequest``), which this follows where the
two must agree: sampling parameters go under ``options`` (``num_predict`` = ``max_tokens``), images are
base64 strings in a message's ``images``, tool-call ``arguments`` are a JSON object, a tool result
names its tool (``tool_name``) and carries ``tool_call_id``, ``response_format`` becomes ``format``.

Every body field is translated, ignored because it cannot change the answer (``user``, ``metadata``,
...), or refused with a 400 naming it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import orjson

from common.errors import InvalidRequestError, ModelRouterError
from common.providers.base import ProviderCall
from workers.openai_format import CALLER_FIELDS, embedding_inputs, json_schema_of

PROVIDER = "ollama"

# Fields that steer the gateway or describe the caller, never the generated text.
_NO_EFFECT = CALLER_FIELDS
_SAMPLING = frozenset({"temperature", "top_p", "max_tokens", "stop", "seed", "presence_penalty", "frequency_penalty"})
_CHAT_FIELDS = (
    _NO_EFFECT
    | _SAMPLING
    | {
        "messages",
        "max_completion_tokens",
        "n",
        "response_format",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "reasoning_effort",
        "logprobs",
        "top_logprobs",
    }
)
_COMPLETION_FIELDS = _NO_EFFECT | _SAMPLING | {"prompt", "suffix", "n", "best_of", "echo", "logprobs"}
_EMBEDDING_FIELDS = frozenset({"model", "input", "encoding_format", "dimensions", "user"})

# Ollama's think levels (ThinkValue: a bool or one of these), as its OpenAI layer maps reasoning_effort.
_THINK = {"none": False, "low": "low", "medium": "medium", "high": "high"}
_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant", "tool": "tool"}


def chat_request(call: ProviderCall, *, stream: bool) -> dict[str, Any]:
    body = call.body
    _refuse_unknown(body, _CHAT_FIELDS)
    _refuse_unless(body, "n", lambda v: v in (None, 1), "Ollama returns one choice: 'n' must be 1.")
    _refuse_unless(body, "logprobs", lambda v: v in (None, False), "Ollama's native chat returns no logprobs here.")
    _refuse_unless(body, "top_logprobs", lambda v: v in (None, 0), "Ollama's native chat returns no logprobs here.")
    messages = body.get("messages")
    if not isinstance(messages, list):
        raise InvalidRequestError("'messages' must be a list of messages.", param="messages")
    request: dict[str, Any] = {"model": call.upstream_model, "messages": chat_messages(messages), "stream": stream}
    if tools := _tools(body):
        request["tools"] = tools
    if (fmt := response_format(body.get("response_format"))) is not None:
        request["format"] = fmt
    if (effort := body.get("reasoning_effort")) is not None:
        if effort not in _THINK:
            raise InvalidRequestError(
                f"reasoning_effort {effort!r} is not supported by Ollama (none, low, medium or high).",
                param="reasoning_effort",
            )
        request["think"] = _THINK[effort]
    return _with_deployment_options(request, sampling_options(body), call.options)


def generate_request(call: ProviderCall, *, stream: bool) -> dict[str, Any]:
    """Legacy completions on ``/api/generate`` (as Ollama's own ``/v1/completions`` does it): the prompt
    goes through the model's template, and ``suffix`` gives fill-in-the-middle."""
    body = call.body
    _refuse_unknown(body, _COMPLETION_FIELDS)
    _refuse_unless(body, "n", lambda v: v in (None, 1), "Ollama returns one choice: 'n' must be 1.")
    _refuse_unless(body, "best_of", lambda v: v in (None, 1), "Ollama generates one sequence: 'best_of' must be 1.")
    _refuse_unless(body, "logprobs", lambda v: v is None, "Ollama's native generate returns no logprobs here.")
    request: dict[str, Any] = {"model": call.upstream_model, "prompt": completion_prompt(body), "stream": stream}
    if (suffix := body.get("suffix")) is not None:
        if not isinstance(suffix, str):
            raise InvalidRequestError("'suffix' must be a string.", param="suffix")
        request["suffix"] = suffix
    return _with_deployment_options(request, sampling_options(body), call.options)


def embed_request(call: ProviderCall, *, stream: bool = False) -> dict[str, Any]:
    """``/api/embed`` (``stream`` only for the adapter's uniform call: embeddings never stream)."""
    body = call.body
    _refuse_unknown(body, _EMBEDDING_FIELDS)
    # OpenAI refuses an input longer than the model takes; Ollama would cut it short silently.
    request: dict[str, Any] = {"model": call.upstream_model, "input": embedding_inputs(call), "truncate": False}
    if (dimensions := body.get("dimensions")) is not None:
        request["dimensions"] = dimensions
    return request


def completion_prompt(body: Mapping[str, Any]) -> str:
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1:
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise InvalidRequestError(
            "Ollama completes one text at a time: 'prompt' must be a string (or a list of one string).",
            param="prompt",
        )
    return prompt


# --- messages -----------------------------------------------------------------------------------


def chat_messages(messages: list[Any]) -> list[dict[str, Any]]:
    tool_names: dict[str, str] = {}  # tool call id -> function name, for the tool results that follow
    out = []
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise InvalidRequestError(f"{where} must be an object.", param=where)
        role = _ROLES.get(str(message.get("role")))
        if role is None:
            raise InvalidRequestError(
                f"{where}.role {message.get('role')!r} is not supported by Ollama.", param=f"{where}.role"
            )
        for unsupported in ("audio", "function_call"):
            if message.get(unsupported) is not None:
                raise InvalidRequestError(
                    f"{where}.{unsupported} is not supported by Ollama.", param=f"{where}.{unsupported}"
                )
        text, images = _content(message.get("content"), where, images_allowed=role == "user")
        converted: dict[str, Any] = {"role": role, "content": text}
        if images:
            converted["images"] = images
        if role == "assistant" and message.get("tool_calls"):
            converted["tool_calls"] = _assistant_tool_calls(message["tool_calls"], where, tool_names)
        if role == "tool":
            call_id = message.get("tool_call_id")
            if isinstance(call_id, str):
                converted["tool_call_id"] = call_id
                if name := tool_names.get(call_id):
                    converted["tool_name"] = name  # how Ollama (before tool_call_id) matches a result
        out.append(converted)
    return out


def _content(content: Any, where: str, *, images_allowed: bool) -> tuple[str, list[str]]:
    """A message's text (text parts joined by newlines) and its images as bare base64."""
    if content is None or isinstance(content, str):
        return content or "", []
    if not isinstance(content, list):
        raise InvalidRequestError(f"{where}.content must be a string or a list of parts.", param=f"{where}.content")
    texts: list[str] = []
    images: list[str] = []
    for j, part in enumerate(content):
        param = f"{where}.content[{j}]"
        part = part if isinstance(part, dict) else {}
        kind = part.get("type")
        if kind in ("text", "refusal") and isinstance(part.get(kind), str):
            texts.append(part[kind])
        elif kind == "image_url" and images_allowed:
            images.append(_image_base64(part.get("image_url"), param))
        else:
            raise InvalidRequestError(f"{param}: a {kind!r} part is not supported by Ollama here.", param=param)
    return "\n".join(texts), images


def _image_base64(image_url: Any, param: str) -> str:
    url = image_url.get("url") if isinstance(image_url, dict) else image_url
    if not isinstance(url, str):
        raise InvalidRequestError(f"{param}.image_url.url must be a string.", param=param)
    if url.startswith(("http://", "https://")):
        raise InvalidRequestError(
            f"{param}: Ollama takes image bytes, not URLs; send the image as a data URL (data:image/png;base64,...).",
            param=param,
        )
    header, sep, data = url.partition(",")
    if not (url.startswith("data:") and sep and header.endswith(";base64") and data):
        raise InvalidRequestError(f"{param}: the image must be a base64 data URL.", param=param)
    return data


def _assistant_tool_calls(calls: Any, where: str, tool_names: dict[str, str]) -> list[dict[str, Any]]:
    if not isinstance(calls, list):
        raise InvalidRequestError(f"{where}.tool_calls must be a list.", param=f"{where}.tool_calls")
    out = []
    for j, call in enumerate(calls):
        param = f"{where}.tool_calls[{j}]"
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise InvalidRequestError(f"{param} must be a function call with a name.", param=param)
        raw = function.get("arguments") or "{}"
        try:
            arguments = orjson.loads(raw) if isinstance(raw, str) else raw
        except orjson.JSONDecodeError:
            arguments = None
        if not isinstance(arguments, dict):  # Ollama carries arguments as a JSON object
            raise InvalidRequestError(
                f"{param}.function.arguments must be a JSON object.", param=f"{param}.function.arguments"
            )
        converted: dict[str, Any] = {
            "type": "function",
            "function": {"index": j, "name": function["name"], "arguments": arguments},
        }
        if isinstance(call_id := call.get("id"), str):
            converted["id"] = call_id
            tool_names[call_id] = function["name"]
        out.append(converted)
    return out


# --- tools, format, options ---------------------------------------------------------------------


def _tools(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    tools = body.get("tools") or []
    choice = body.get("tool_choice")
    if choice not in (None, "auto", "none"):
        raise InvalidRequestError(
            "Ollama cannot force a tool call: 'tool_choice' must be 'auto' or 'none'.", param="tool_choice"
        )
    if body.get("parallel_tool_calls") is False and tools:
        raise InvalidRequestError(
            "Ollama cannot limit a reply to one tool call: 'parallel_tool_calls' must be true.",
            param="parallel_tool_calls",
        )
    if not isinstance(tools, list):
        raise InvalidRequestError("'tools' must be a list.", param="tools")
    out = []
    for i, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(tool, dict) or tool.get("type") != "function" or not isinstance(function, dict):
            raise InvalidRequestError(f"tools[{i}]: only function tools are supported by Ollama.", param=f"tools[{i}]")
        # ``strict`` has no Ollama equivalent; the schema still goes to the model.
        spec = {k: function[k] for k in ("name", "description", "parameters") if k in function}
        out.append({"type": "function", "function": spec})
    # tool_choice "none": the model may not call a tool, so it is not offered any.
    return [] if choice == "none" else out


def response_format(value: Any) -> Any:
    """``format``: "json" for JSON mode, the schema itself for structured outputs, None for text."""
    if value is None:
        return None
    kind = value.get("type") if isinstance(value, dict) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return "json"
    if kind == "json_schema":
        return json_schema_of(value)
    raise InvalidRequestError(f"response_format type {kind!r} is not supported by Ollama.", param="response_format")


def sampling_options(body: Mapping[str, Any]) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for name in ("temperature", "top_p", "seed", "presence_penalty", "frequency_penalty"):
        if body.get(name) is not None:
            options[name] = body[name]
    limit = body.get("max_completion_tokens")
    if limit is None:
        limit = body.get("max_tokens")
    if limit is not None:
        options["num_predict"] = limit
    stop = body.get("stop")
    if isinstance(stop, str):
        options["stop"] = [stop]
    elif isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        if stop:
            options["stop"] = stop
    elif stop is not None:
        raise InvalidRequestError("'stop' must be a string or a list of strings.", param="stop")
    return options


def _with_deployment_options(
    request: dict[str, Any], options: dict[str, Any], deployment: Mapping[str, str]
) -> dict[str, Any]:
    """Settings the operator chooses per deployment (config ``options``), never the client: the context
    window (``num_ctx``; Ollama's default is small and truncates long prompts) and ``keep_alive``."""
    if num_ctx := deployment.get("num_ctx"):
        try:
            options["num_ctx"] = int(num_ctx)
        except ValueError:
            raise ModelRouterError(
                f"The ollama deployment option num_ctx must be an integer, not {num_ctx!r}.",
                code="invalid_provider_option",
            ) from None
    if keep_alive := deployment.get("keep_alive"):
        request["keep_alive"] = keep_alive
    if options:
        request["options"] = options
    return request


def _refuse_unknown(body: Mapping[str, Any], known: frozenset[str]) -> None:
    for name in body:
        if name not in known:
            raise InvalidRequestError(f"'{name}' is not supported by provider {PROVIDER!r}.", param=name)


def _refuse_unless(body: Mapping[str, Any], name: str, ok: Callable[[Any], bool], message: str) -> None:
    if not ok(body.get(name)):
        raise InvalidRequestError(message, param=name)
