"""An OpenAI chat-completions body as an Anthropic Messages request (``POST /v1/messages``).

Wire shapes are those of Anthropic's Messages API reference and its official Python SDK's request
types (``anthropics/anthropic-sdk-python``, ``src/anthropic/types/``: ``message_create_params.py``,
``tool_param.py``, ``tool_choice_*_param.py``, ``tool_result_block_param.py``,
``base64_image_source_param.py``, ``url_image_source_param.py``, ``metadata_param.py``,
``output_config_param.py``).

Every OpenAI parameter is handled on purpose, because Anthropic refuses any field it does not know
("<field>: Extra inputs are not permitted"):

- translated: messages (system/developer -> top-level ``system``; images; ``tool_calls`` ->
  ``tool_use``; ``tool`` messages -> ``tool_result`` blocks in a user turn), max_tokens /
  max_completion_tokens, stop, temperature, top_p, tools, tool_choice, parallel_tool_calls, user /
  safety_identifier (-> ``metadata.user_id``), reasoning_effort (-> ``output_config.effort``),
  response_format (json_object / json_schema -> a forced tool whose input is the answer).
- refused with a 400 naming them when set to anything but their no-op value, since they change the
  answer and Anthropic cannot honour them: n > 1, logit_bias, logprobs, top_logprobs,
  frequency_penalty, presence_penalty, audio, modalities other than text, web_search_options,
  moderation, verbosity, functions / function_call (legacy; use tools), temperature above 1.
- not sent, since they do not change the answer: seed (OpenAI itself makes no determinism
  promise), store, metadata (OpenAI's stored-completion tags), prediction, prompt_cache_key,
  prompt_cache_options, prompt_cache_retention, stream_options (Anthropic always reports usage),
  service_tier values Anthropic does not have, a message's ``name``, an image's ``detail``.
- anything else (``top_k``, ``thinking``, ...) goes upstream unchanged, so Anthropic's own
  parameters stay usable.

Tools, tool_choice, parallel_tool_calls and response_format are translated in ``_anthropic_tools``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from common.errors import InvalidRequestError
from workers.providers._anthropic_tools import tools_and_choice

# Anthropic requires max_tokens; OpenAI does not. Overridable per deployment (option below).
DEFAULT_MAX_TOKENS = 4096
MAX_TOKENS_OPTION = "default_max_tokens"

IMAGE_MEDIA_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
ANTHROPIC_SERVICE_TIERS = frozenset({"auto", "standard_only"})
ANTHROPIC_EFFORTS = frozenset({"low", "medium", "high", "xhigh", "max"})

# OpenAI parameters that change the answer and have no Anthropic equivalent: refused unless the
# value is the one that means "off".
_REFUSED: Mapping[str, Callable[[Any], bool]] = {
    "logit_bias": bool,
    "logprobs": bool,
    "top_logprobs": lambda v: v is not None,
    "frequency_penalty": bool,
    "presence_penalty": bool,
    "audio": lambda v: v is not None,
    "modalities": lambda v: v not in (None, ["text"]),
    "web_search_options": lambda v: v is not None,
    "moderation": lambda v: v is not None,
    "verbosity": lambda v: v is not None,
    "functions": lambda v: v is not None,
    "function_call": lambda v: v is not None,
}
_NOT_SENT = frozenset(
    {
        "seed",
        "store",
        "metadata",
        "prediction",
        "prompt_cache_key",
        "prompt_cache_options",
        "prompt_cache_retention",
        "stream_options",
    }
)
# Read by the translation below; everything outside these sets passes through.
_TRANSLATED = frozenset(
    {
        "model",
        "messages",
        "stream",
        "n",
        "max_tokens",
        "max_completion_tokens",
        "stop",
        "temperature",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "user",
        "safety_identifier",
        "reasoning_effort",
        "response_format",
        "service_tier",
    }
)
_HANDLED = _TRANSLATED | _NOT_SENT | frozenset(_REFUSED)


@dataclass(frozen=True, slots=True)
class MessagesRequest:
    body: dict[str, Any]
    # The tool standing in for response_format: its input is the answer's content, not a tool call.
    format_tool: str | None = None


def messages_request(
    body: Mapping[str, Any],
    *,
    upstream_model: str,
    stream: bool,
    default_max_tokens: int = DEFAULT_MAX_TOKENS,
) -> MessagesRequest:
    """The Messages request for an OpenAI chat body (which is left as it is)."""
    for name, is_set in _REFUSED.items():
        if is_set(body.get(name)):
            raise InvalidRequestError(f"'{name}' is not supported by provider 'anthropic'.", param=name)
    n = body.get("n")
    if n not in (None, 1):
        raise InvalidRequestError("'n' must be 1: provider 'anthropic' returns one choice per request.", param="n")

    out: dict[str, Any] = {k: v for k, v in body.items() if k not in _HANDLED}
    out["model"] = upstream_model
    system, turns = _conversation(body.get("messages"))
    if system:
        out["system"] = system[0]["text"] if len(system) == 1 else system
    out["messages"] = turns
    out["max_tokens"] = _max_tokens(body, default_max_tokens)
    if stream:
        out["stream"] = True
    _sampling(body, out)
    _identity_and_tier(body, out)
    format_tool = tools_and_choice(body, out)
    return MessagesRequest(out, format_tool)


def _bad(message: str, param: str) -> InvalidRequestError:
    return InvalidRequestError(message, param=param)


def _max_tokens(body: Mapping[str, Any], default: int) -> int:
    for name in ("max_completion_tokens", "max_tokens"):
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise _bad(f"'{name}' must be a positive integer.", name)
        return value
    return default


def _sampling(body: Mapping[str, Any], out: dict[str, Any]) -> None:
    temperature = body.get("temperature")
    if temperature is not None:
        # OpenAI's range is 0-2, Anthropic's 0-1; rescaling would change what the client asked for.
        if isinstance(temperature, int | float) and temperature > 1:
            raise _bad("'temperature' must be between 0 and 1 for provider 'anthropic'.", "temperature")
        out["temperature"] = temperature
    stop = body.get("stop")
    if isinstance(stop, str):
        out["stop_sequences"] = [stop]
    elif isinstance(stop, list) and stop:
        out["stop_sequences"] = stop
    effort = body.get("reasoning_effort")
    if effort is not None:
        if effort not in ANTHROPIC_EFFORTS:
            raise _bad(
                f"'reasoning_effort' must be one of {sorted(ANTHROPIC_EFFORTS)} for provider 'anthropic'.",
                "reasoning_effort",
            )
        config = out.get("output_config")
        out["output_config"] = {**(config if isinstance(config, dict) else {}), "effort": effort}


def _identity_and_tier(body: Mapping[str, Any], out: dict[str, Any]) -> None:
    user = body.get("safety_identifier") or body.get("user")
    if isinstance(user, str) and user:
        out["metadata"] = {"user_id": user}
    tier = body.get("service_tier")
    if tier in ANTHROPIC_SERVICE_TIERS:
        out["service_tier"] = tier


# --- messages -------------------------------------------------------------------------------------


def _conversation(messages: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(system text blocks, alternating user/assistant turns). Consecutive messages that land in the
    same role (tool results, then the user's next words) are merged into one turn, tool results first
    as Anthropic requires."""
    if not isinstance(messages, list) or not messages:
        raise _bad("'messages' must be a non-empty list.", "messages")
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise _bad(f"messages[{i}] must be an object.", f"messages[{i}]")
        role = message.get("role")
        if role in ("system", "developer"):
            # Anthropic has no system turns; a later system message joins the top-level prompt.
            system.extend(_text_blocks(message.get("content"), f"messages[{i}].content"))
            continue
        translate = _TURNS.get(role) if isinstance(role, str) else None
        if translate is None:
            raise _bad(f"messages[{i}].role {role!r} is not supported by provider 'anthropic'.", f"messages[{i}].role")
        turn_role, blocks = translate(message, i)
        if not blocks:
            continue
        if turns and turns[-1]["role"] == turn_role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": turn_role, "content": blocks})
    if not turns:
        raise _bad("'messages' must hold at least one user message, not only system ones.", "messages")
    for turn in turns:  # the plain form for a lone text block, as most callers send it
        content = turn["content"]
        if len(content) == 1 and content[0]["type"] == "text":
            turn["content"] = content[0]["text"]
    return system, turns


def _user(message: Mapping[str, Any], i: int) -> tuple[str, list[dict[str, Any]]]:
    content = message.get("content")
    if isinstance(content, str):
        return "user", [_text(content)] if content else []
    if not isinstance(content, list):
        raise _bad(f"messages[{i}].content must be a string or a list of parts.", f"messages[{i}].content")
    blocks = []
    for j, part in enumerate(content):
        param = f"messages[{i}].content[{j}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            if part["text"]:
                blocks.append(_text(part["text"]))
        elif kind == "image_url":
            blocks.append(_image(part.get("image_url"), param))
        else:
            raise _bad(f"{param}: content part type {kind!r} is not supported by provider 'anthropic'.", param)
    return "user", blocks


def _assistant(message: Mapping[str, Any], i: int) -> tuple[str, list[dict[str, Any]]]:
    content = message.get("content")
    blocks: list[dict[str, Any]] = []
    if isinstance(content, str):
        blocks = [_text(content)] if content else []
    elif isinstance(content, list):
        for j, part in enumerate(content):
            kind = part.get("type") if isinstance(part, dict) else None
            text = part.get(kind) if kind in ("text", "refusal") else None  # an earlier refusal is text too
            if not isinstance(text, str):
                param = f"messages[{i}].content[{j}]"
                raise _bad(f"{param}: an assistant message may hold text parts only.", param)
            if text:
                blocks.append(_text(text))
    for j, call in enumerate(message.get("tool_calls") or ()):
        blocks.append(_tool_use(call, f"messages[{i}].tool_calls[{j}]"))
    return "assistant", blocks


def _tool(message: Mapping[str, Any], i: int) -> tuple[str, list[dict[str, Any]]]:
    tool_call_id = message.get("tool_call_id")
    if not isinstance(tool_call_id, str) or not tool_call_id:
        raise _bad(f"messages[{i}].tool_call_id is required.", f"messages[{i}].tool_call_id")
    content = message.get("content")
    result: dict[str, Any] = {"type": "tool_result", "tool_use_id": tool_call_id}
    if isinstance(content, str):
        result["content"] = content
    elif isinstance(content, list):
        result["content"] = _text_blocks(content, f"messages[{i}].content")
    elif content is not None:
        raise _bad(f"messages[{i}].content must be a string or a list of text parts.", f"messages[{i}].content")
    return "user", [result]


_TURNS: Mapping[str, Callable[[Mapping[str, Any], int], tuple[str, list[dict[str, Any]]]]] = {
    "user": _user,
    "assistant": _assistant,
    "tool": _tool,
}


def _text(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}


def _text_blocks(content: Any, param: str) -> list[dict[str, Any]]:
    """Text-only content (system prompts, tool results): a string or a list of text parts."""
    if isinstance(content, str):
        return [_text(content)] if content else []
    if isinstance(content, list) and all(
        isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str) for p in content
    ):
        return [_text(p["text"]) for p in content if p["text"]]
    raise _bad(f"{param} must be a string or a list of text parts.", param)


def _image(image_url: Any, param: str) -> dict[str, Any]:
    url = image_url.get("url") if isinstance(image_url, dict) else None
    if not isinstance(url, str):
        raise _bad(f"{param}.image_url.url is required.", f"{param}.image_url.url")
    if url.startswith("data:"):
        header, comma, data = url[5:].partition(",")
        media_type, _, encoding = header.partition(";")
        if not comma or encoding != "base64":
            raise _bad(f"{param}: an image data URL must be base64-encoded.", f"{param}.image_url.url")
        if media_type not in IMAGE_MEDIA_TYPES:
            raise _bad(
                f"{param}: image type {media_type!r} is not supported by provider 'anthropic' "
                f"(it takes {', '.join(sorted(IMAGE_MEDIA_TYPES))}).",
                f"{param}.image_url.url",
            )
        return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}
    if url.startswith(("https://", "http://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    raise _bad(f"{param}: an image URL must be http(s) or a base64 data URL.", f"{param}.image_url.url")


def _tool_use(call: Any, param: str) -> dict[str, Any]:
    function = call.get("function") if isinstance(call, dict) else None
    if not isinstance(function, dict) or not isinstance(function.get("name"), str) or not call.get("id"):
        raise _bad(f"{param} must have an id and a function name.", param)
    arguments = function.get("arguments") or "{}"
    try:
        tool_input = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        tool_input = None
    if not isinstance(tool_input, dict):
        # Anthropic's tool_use input is an object; OpenAI's arguments are its JSON text.
        raise _bad(f"{param}.function.arguments must be a JSON object.", f"{param}.function.arguments")
    return {"type": "tool_use", "id": call["id"], "name": function["name"], "input": tool_input}
