"""An Anthropic Messages request as an OpenAI chat-completions body.

Content maps block by block: ``system`` becomes the first message; a user turn's ``tool_result``
blocks become ``tool`` messages (placed first, since OpenAI wants them right after the assistant's
``tool_calls``), its text and images one ``user`` message; an assistant turn's ``tool_use`` blocks
become ``tool_calls``. What has no equivalent is refused with a 400 naming the parameter rather
than dropped silently.
"""

from __future__ import annotations

from typing import Any

import orjson

from common.errors import InvalidRequestError
from gateway.anthropic.schemas import (
    ImageBlock,
    Message,
    MessagesRequest,
    TextBlock,
    ThinkingBlock,
    Tool,
    ToolChoice,
    ToolResultBlock,
    ToolUseBlock,
)

# Anthropic's tool_choice types in OpenAI's words ("tool" names a function instead).
_TOOL_CHOICE = {"auto": "auto", "any": "required", "none": "none"}


def to_openai(request: MessagesRequest) -> dict[str, Any]:
    _refuse_unsupported(request)
    body: dict[str, Any] = {
        "model": request.model,
        "messages": _messages(request),
        "max_tokens": request.max_tokens,
    }
    if request.stream:
        body["stream"] = True
        # Usage arrives in the last chunk only when asked for; message_delta reports it.
        body["stream_options"] = {"include_usage": True}
    if request.stop_sequences:
        body["stop"] = request.stop_sequences
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.top_p is not None:
        body["top_p"] = request.top_p
    if request.metadata is not None and request.metadata.user_id:
        body["user"] = request.metadata.user_id
    if request.tools:
        body["tools"] = [_tool(tool) for tool in request.tools]
        if request.tool_choice is not None:
            _apply_tool_choice(body, request.tool_choice)
    return body


def to_openai_json(request: MessagesRequest) -> bytes:
    return orjson.dumps(to_openai(request))


def _refuse_unsupported(request: MessagesRequest) -> None:
    if request.top_k is not None:
        raise InvalidRequestError(
            "top_k: not supported here; OpenAI-compatible chat completions have no top-k sampling. "
            "Use temperature or top_p.",
            param="top_k",
        )
    if request.thinking is not None and request.thinking.type != "disabled":
        raise InvalidRequestError(
            "thinking: extended thinking is not supported here; chat-completions models do not stream thinking blocks.",
            param="thinking",
        )
    for n, tool in enumerate(request.tools or ()):
        if tool.type not in (None, "custom"):
            raise InvalidRequestError(
                f"tools.{n}.type: server tool {tool.type!r} is not supported here; only client tools "
                "(name, description, input_schema) are.",
                param=f"tools.{n}.type",
            )


def _messages(request: MessagesRequest) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if request.system:
        out.append({"role": "system", "content": _text_content(request.system)})
    for n, message in enumerate(request.messages):
        if message.role == "user":
            out.extend(_user_turn(message, n))
        else:
            out.append(_assistant_turn(message, n))
    return out


def _user_turn(message: Message, n: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for m, block in enumerate(message.content):
        if isinstance(block, ToolResultBlock):
            out.append(_tool_message(block, f"messages.{n}.content.{m}"))
        elif isinstance(block, TextBlock):
            parts.append({"type": "text", "text": block.text})
        elif isinstance(block, ImageBlock):
            parts.append(_image_part(block))
        elif isinstance(block, ToolUseBlock):
            raise InvalidRequestError(
                f"messages.{n}.content.{m}: tool_use blocks belong in assistant turns.",
                param=f"messages.{n}.content.{m}",
            )
        # ThinkingBlock: previous reasoning, left out as Anthropic's API does.
    if parts:
        only_text = len(parts) == 1 and parts[0]["type"] == "text"
        out.append({"role": "user", "content": parts[0]["text"] if only_text else parts})
    return out


def _assistant_turn(message: Message, n: int) -> dict[str, Any]:
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for m, block in enumerate(message.content):
        if isinstance(block, TextBlock):
            texts.append(block.text)
        elif isinstance(block, ToolUseBlock):
            calls.append(
                {
                    "id": block.id,
                    "type": "function",
                    "function": {"name": block.name, "arguments": orjson.dumps(block.input).decode()},
                }
            )
        elif not isinstance(block, ThinkingBlock):
            raise InvalidRequestError(
                f"messages.{n}.content.{m}: {block.type} blocks belong in user turns.",
                param=f"messages.{n}.content.{m}",
            )
    turn: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts or not calls else None}
    if calls:
        turn["tool_calls"] = calls
    return turn


def _tool_message(block: ToolResultBlock, where: str) -> dict[str, Any]:
    texts: list[str] = []
    for k, part in enumerate(block.content):
        if not isinstance(part, TextBlock):
            # OpenAI's tool messages carry text only.
            raise InvalidRequestError(
                f"{where}.content.{k}: images in tool results are not supported here.",
                param=f"{where}.content.{k}",
            )
        texts.append(part.text)
    return {"role": "tool", "tool_call_id": block.tool_use_id, "content": "".join(texts)}


def _image_part(block: ImageBlock) -> dict[str, Any]:
    source = block.source
    url = source.url if source.type == "url" else f"data:{source.media_type};base64,{source.data}"
    return {"type": "image_url", "image_url": {"url": url}}


def _text_content(blocks: list[TextBlock]) -> str | list[dict[str, Any]]:
    if len(blocks) == 1:
        return blocks[0].text
    return [{"type": "text", "text": block.text} for block in blocks]


def _tool(tool: Tool) -> dict[str, Any]:
    function: dict[str, Any] = {"name": tool.name, "parameters": tool.input_schema}
    if tool.description is not None:
        function["description"] = tool.description
    if tool.strict is not None:
        function["strict"] = tool.strict
    return {"type": "function", "function": function}


def _apply_tool_choice(body: dict[str, Any], choice: ToolChoice) -> None:
    if choice.type == "tool":
        body["tool_choice"] = {"type": "function", "function": {"name": choice.name}}
    else:
        body["tool_choice"] = _TOOL_CHOICE[choice.type]
    if choice.disable_parallel_tool_use and choice.type != "none":
        body["parallel_tool_calls"] = False
