"""An OpenAI chat-completion response as an Anthropic ``message`` object, and the mappings (stop
reason, usage) the stream encoder shares."""

from __future__ import annotations

import uuid
from typing import Any

import orjson

from common.errors import UpstreamError

# finish_reason -> stop_reason. Chat completions do not say whether "stop" came from a stop
# sequence or the model's own end, so it is reported as end_turn and stop_sequence stays null.
_STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}


def stop_reason(finish_reason: str | None) -> str:
    return _STOP_REASONS.get(finish_reason or "stop", "end_turn")


def new_tool_use_id() -> str:
    """For upstreams that send a tool call without an id; Anthropic's clients need one to answer it."""
    return f"toolu_{uuid.uuid4().hex}"


def usage(prompt_tokens: int, completion_tokens: int, cached_tokens: int | None) -> dict[str, int]:
    """Anthropic counts cache reads apart from ``input_tokens``; OpenAI includes them in the prompt."""
    out = {"input_tokens": max(prompt_tokens - (cached_tokens or 0), 0), "output_tokens": completion_tokens}
    if cached_tokens is not None:
        out["cache_read_input_tokens"] = cached_tokens
    return out


def usage_from_openai(raw: Any) -> dict[str, int]:
    if not isinstance(raw, dict):
        return usage(0, 0, None)
    details = raw.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, dict) else None
    return usage(
        int(raw.get("prompt_tokens") or 0),
        int(raw.get("completion_tokens") or 0),
        int(cached) if cached is not None else None,
    )


def to_anthropic_message(body: bytes, *, message_id: str, model: str) -> bytes:
    """The Messages API response for an OpenAI chat-completion ``body``. ``model`` is the one the
    client asked for: which deployment served it is the gateway's business."""
    try:
        completion = orjson.loads(body)
        choice = completion["choices"][0]
        message = choice["message"]
    except (orjson.JSONDecodeError, KeyError, IndexError, TypeError):
        raise UpstreamError("The upstream provider returned a malformed chat completion.") from None
    content: list[dict[str, Any]] = []
    refused = bool(message.get("refusal")) and not message.get("content")
    text = message.get("content") or message.get("refusal")
    if text:
        content.append({"type": "text", "text": text})
    for call in message.get("tool_calls") or ():
        function = call.get("function") or {}
        content.append(
            {
                "type": "tool_use",
                "id": call.get("id") or new_tool_use_id(),
                "name": function.get("name") or "",
                "input": _tool_input(function.get("arguments")),
            }
        )
    return orjson.dumps(
        {
            "id": message_id,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": content,
            "stop_reason": "refusal" if refused else stop_reason(choice.get("finish_reason")),
            "stop_sequence": None,
            "usage": usage_from_openai(completion.get("usage")),
        }
    )


def _tool_input(arguments: Any) -> dict[str, Any]:
    if not arguments:  # some providers send "" for a tool without parameters
        return {}
    try:
        parsed = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        parsed = None
    if not isinstance(parsed, dict):
        raise UpstreamError("The upstream provider returned tool-call arguments that are not a JSON object.")
    return parsed
