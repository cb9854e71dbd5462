"""Anthropic answers and streams rebuilt as OpenAI ``chat.completion`` / ``chat.completion.chunk``
with ``workers.openai_format``.

Wire shapes: Anthropic's API reference (docs.claude.com: "Messages", "Streaming Messages",
"Errors") and the official Python SDK's types (``anthropics/anthropic-sdk-python``,
``src/anthropic/types/``: ``message.py``, ``usage.py``, ``message_delta_usage.py``,
``stop_reason.py``, ``raw_message_stream_event.py`` and the ``raw_*_event.py`` it lists,
``shared/error_type.py``).

- Stop reasons: end_turn / stop_sequence / pause_turn -> stop, max_tokens /
  model_context_window_exceeded -> length, tool_use -> tool_calls, refusal -> content_filter.
- Usage: prompt tokens are input + cache read + cache creation (Anthropic counts them apart, OpenAI
  together); cached tokens are the cache reads.
- Stream events: message_start (id, opening usage), content_block_start / _delta (``text_delta``,
  ``input_json_delta``) / _stop, message_delta (stop_reason, cumulative usage), message_stop,
  ping, and ``error`` events mid-stream (``overloaded_error`` -> a retryable 503). Blocks OpenAI has
  no field for (thinking, server tools) are left out.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

from common.providers.base import ProviderCall, ProviderResponse, StreamChunk, Usage
from workers.openai_format import ChatChunks, ToolCall, chat_completion
from workers.providers._http import upstream_error

PROVIDER = "anthropic"

FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
# Anthropic's error types and the HTTP statuses they come with, for errors sent inside a stream.
ERROR_STATUSES = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}


# --- answers --------------------------------------------------------------------------------------


def usage_of(raw: Any) -> Usage:
    counts = _UsageCounts()
    counts.update(raw)
    return counts.usage()


@dataclass(slots=True)
class _UsageCounts:
    """Anthropic's token counts; message_delta repeats them cumulatively, so later values win."""

    values: dict[str, int] = field(default_factory=dict)

    def update(self, raw: Any) -> None:
        if isinstance(raw, dict):
            for key in ("input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens"):
                if isinstance(value := raw.get(key), int):
                    self.values[key] = value

    def usage(self) -> Usage:
        read = self.values.get("cache_read_input_tokens", 0)
        prompt = self.values.get("input_tokens", 0) + read + self.values.get("cache_creation_input_tokens", 0)
        return Usage(prompt_tokens=prompt, completion_tokens=self.values.get("output_tokens", 0), cached_tokens=read)


def finish_reason(stop_reason: Any, called_tools: bool) -> str:
    reason = FINISH_REASONS.get(stop_reason, "stop") if isinstance(stop_reason, str) else "stop"
    # A tool_use stop for the JSON-mode tool alone is a finished answer, not a call for the client.
    return "stop" if reason == "tool_calls" and not called_tools else reason


def chat_answer(call: ProviderCall, message: dict[str, Any], format_tool: str | None) -> ProviderResponse:
    """A ``chat.completion`` from an Anthropic ``message``."""
    texts: list[str] = []
    tool_calls: list[ToolCall] = []
    for block in message.get("content") or ():
        if not isinstance(block, dict):
            continue
        if block.get("type") == "text" and isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif block.get("type") == "tool_use":
            arguments = orjson.dumps(block.get("input") or {}).decode()
            if block.get("name") == format_tool:
                texts.append(arguments)
            else:
                tool_calls.append(ToolCall(str(block.get("id") or ""), str(block.get("name") or ""), arguments))
    return chat_completion(
        call,
        response_id=_response_id(message.get("id")),
        content="".join(texts) if texts or not tool_calls else None,
        tool_calls=tool_calls,
        finish_reason=finish_reason(message.get("stop_reason"), bool(tool_calls)),
        usage=usage_of(message.get("usage")),
    )


def _response_id(message_id: Any) -> str:
    return f"chatcmpl-{message_id}" if isinstance(message_id, str) and message_id else "chatcmpl-anthropic"


# --- streams --------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Block:
    kind: str  # "text", "tool" (a client tool call), "format" (the JSON-mode tool: its input is text)
    tool_index: int = -1
    wrote: bool = False  # any text / arguments sent for it yet


class ChatStream:
    """Turns Anthropic stream events, in order, into ``chat.completion.chunk`` chunks."""

    def __init__(self, call: ProviderCall, format_tool: str | None) -> None:
        self._call = call
        self._format_tool = format_tool
        self._chunks: ChatChunks | None = None
        self._blocks: dict[int, _Block] = {}
        self._tool_calls = 0
        self._usage = _UsageCounts()
        self._finished = False
        self.done = False  # message_stop seen
        self._handlers: Mapping[str, Callable[[dict[str, Any]], list[StreamChunk]]] = {
            "message_start": self._message_start,
            "content_block_start": self._block_start,
            "content_block_delta": self._block_delta,
            "content_block_stop": self._block_stop,
            "message_delta": self._message_delta,
            "message_stop": self._message_stop,
            "error": _raise_stream_error,
        }

    def feed(self, event: dict[str, Any]) -> list[StreamChunk]:
        handler = self._handlers.get(str(event.get("type")))
        # ping, and event types added later (the API reference asks clients to ignore unknown ones)
        return handler(event) if handler is not None else []

    @property
    def chunks(self) -> ChatChunks:
        if self._chunks is None:
            self._chunks = ChatChunks(self._call, _response_id(None))
        return self._chunks

    def _message_start(self, event: dict[str, Any]) -> list[StreamChunk]:
        message = _dict(event.get("message"))
        if self._chunks is None:
            self._chunks = ChatChunks(self._call, _response_id(message.get("id")))
        self._usage.update(message.get("usage"))
        return self.chunks.start()

    def _block_start(self, event: dict[str, Any]) -> list[StreamChunk]:
        block, index = _dict(event.get("content_block")), event.get("index")
        if not isinstance(index, int):
            return []
        kind = block.get("type")
        if kind == "text":
            state = self._blocks[index] = _Block("text")
            return self._text(state, block.get("text"))
        if kind == "tool_use" and block.get("name") == self._format_tool:
            self._blocks[index] = _Block("format")
            return []
        if kind == "tool_use":
            state = self._blocks[index] = _Block("tool", tool_index=self._tool_calls)
            self._tool_calls += 1
            tool_id, name = str(block.get("id") or ""), str(block.get("name") or "")
            return self.chunks.tool_call_start(state.tool_index, tool_id, name)
        return []  # thinking, server tool blocks: nothing OpenAI's chunks can carry

    def _block_delta(self, event: dict[str, Any]) -> list[StreamChunk]:
        state, delta = self._block(event), _dict(event.get("delta"))
        if state is None:
            return []
        if delta.get("type") == "text_delta" and state.kind == "text":
            return self._text(state, delta.get("text"))
        if delta.get("type") == "input_json_delta":
            partial = delta.get("partial_json")
            if state.kind == "format":
                return self._text(state, partial)
            if state.kind == "tool" and isinstance(partial, str) and partial:
                state.wrote = True
                return self.chunks.tool_call_arguments(state.tool_index, partial)
        return []

    def _block_stop(self, event: dict[str, Any]) -> list[StreamChunk]:
        state = self._block(event)
        if state is None or state.wrote:
            return []
        # A tool input that streamed no JSON is the empty object; OpenAI's arguments must parse.
        if state.kind == "tool":
            state.wrote = True
            return self.chunks.tool_call_arguments(state.tool_index, "{}")
        if state.kind == "format":
            return self._text(state, "{}")
        return []

    def _message_delta(self, event: dict[str, Any]) -> list[StreamChunk]:
        self._usage.update(event.get("usage"))
        return self._finish(_dict(event.get("delta")).get("stop_reason"))

    def _message_stop(self, event: dict[str, Any]) -> list[StreamChunk]:
        chunks = self._finish(None)
        self.done = True
        return [*chunks, self.chunks.usage(self._usage.usage())]

    def _finish(self, stop_reason: Any) -> list[StreamChunk]:
        if self._finished:
            return []
        self._finished = True
        return self.chunks.finish(finish_reason(stop_reason, self._tool_calls > 0))

    def _block(self, event: dict[str, Any]) -> _Block | None:
        index = event.get("index")
        return self._blocks.get(index) if isinstance(index, int) else None

    def _text(self, state: _Block, text: Any) -> list[StreamChunk]:
        if not isinstance(text, str) or not text:
            return []
        state.wrote = True
        return self.chunks.text(text)


def _raise_stream_error(event: dict[str, Any]) -> list[StreamChunk]:
    error = _dict(event.get("error"))
    status = ERROR_STATUSES.get(str(error.get("type")), 500)
    message = str(error.get("message") or f"The upstream provider ({PROVIDER}) failed mid-stream.")
    raise upstream_error(PROVIDER, status, httpx.Headers(), message)


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}
