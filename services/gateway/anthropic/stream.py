"""The Messages API event stream, from the OpenAI ``chat.completion.chunk`` JSON a worker relays.

Anthropic's order: ``message_start``; per content block ``content_block_start``, its deltas
(``text_delta``, or ``input_json_delta`` carrying a tool call's argument pieces) and
``content_block_stop``; then ``message_delta`` (stop reason, usage) and ``message_stop``. A
chat-completion stream interleaves nothing: text comes first and each tool call's pieces arrive
together, so a new kind of delta (or a new tool-call index) closes the open block and opens the
next one.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson

from common.errors import ModelRouterError
from gateway.anthropic.errors import error_object
from gateway.anthropic.response import new_tool_use_id, stop_reason, usage, usage_from_openai
from modelrouter.events.v1 import events_pb2

log = logging.getLogger(__name__)


def event(kind: str, payload: dict[str, Any]) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


class AnthropicStreamEncoder:
    """A ``gateway.sse.StreamEncoder`` for one streamed message."""

    def __init__(self, *, message_id: str, model: str) -> None:
        self._message_id = message_id
        self._model = model
        self._started = False
        self._blocks = 0  # content blocks opened so far; the next one's index
        self._open: int | None = None  # index of the open block
        self._open_text = False  # whether the open block is a text block
        self._tool_blocks: dict[int, int] = {}  # OpenAI tool-call index -> block index
        self._finish_reason: str | None = None
        self._usage: dict[str, int] | None = None  # from the provider's final usage chunk
        # The usage chunk's total_cost_usd (workers/answer_extras.py), for message_delta's usage:
        # a stream's headers leave before its cost is known. Absent: the chunk had none.
        self._cost: tuple[Any] | None = None

    # --- StreamEncoder ---------------------------------------------------------------------

    def chunk(self, data: bytes) -> bytes:
        out: list[bytes] = []
        self._start(out)
        try:
            parsed = orjson.loads(data)
        except orjson.JSONDecodeError:
            parsed = None
        if not isinstance(parsed, dict):
            # One unreadable chunk from a provider should not cut the client's stream short.
            log.warning("skipping a stream chunk that is not a JSON object: %.200r", data)
            return b"".join(out)
        if parsed.get("usage"):
            self._usage = usage_from_openai(parsed["usage"])
            if isinstance(parsed["usage"], dict) and "total_cost_usd" in parsed["usage"]:
                self._cost = (parsed["usage"]["total_cost_usd"],)  # None when the price is unknown
        for choice in parsed.get("choices") or ():
            if choice.get("index", 0) != 0:  # one message per request; n > 1 is never asked for
                continue
            delta = choice.get("delta") or {}
            text = delta.get("content") or delta.get("refusal")
            if text:
                self._text(text, out)
            for call in delta.get("tool_calls") or ():
                self._tool_call(call, out)
            if choice.get("finish_reason"):
                self._finish_reason = choice["finish_reason"]
                self._close(out)
        return b"".join(out)

    def done(self, totals: events_pb2.Usage) -> bytes:
        out: list[bytes] = []
        self._start(out)
        self._close(out)
        # The provider's own usage chunk when it sent one, else the worker's count.
        final: dict[str, Any] = dict(
            self._usage or usage(totals.prompt_tokens, totals.completion_tokens, totals.cached_tokens or None)
        )
        if self._cost is not None:
            final["cost_usd"] = self._cost[0]
        out.append(
            event(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": stop_reason(self._finish_reason), "stop_sequence": None},
                    "usage": final,
                },
            )
        )
        out.append(event("message_stop", {"type": "message_stop"}))
        return b"".join(out)

    def error(self, error: ModelRouterError) -> bytes:
        return event("error", error_object(error))

    # --- blocks ----------------------------------------------------------------------------

    def _start(self, out: list[bytes]) -> None:
        if self._started:
            return
        self._started = True
        message: dict[str, Any] = {
            "id": self._message_id,
            "type": "message",
            "role": "assistant",
            "model": self._model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            # Chat-completion streams report usage only at the end; message_delta carries it.
            "usage": {"input_tokens": 0, "output_tokens": 0},
        }
        out.append(event("message_start", {"type": "message_start", "message": message}))

    def _text(self, text: str, out: list[bytes]) -> None:
        if not self._open_text:
            self._open_block({"type": "text", "text": ""}, out)
            self._open_text = True
        delta = {"type": "text_delta", "text": text}
        out.append(event("content_block_delta", {"type": "content_block_delta", "index": self._open, "delta": delta}))

    def _tool_call(self, call: dict[str, Any], out: list[bytes]) -> None:
        function = call.get("function") or {}
        position = call.get("index", 0)
        index = self._tool_blocks.get(position)
        if index is None:
            block = {"type": "tool_use", "id": call.get("id") or new_tool_use_id(), "name": function.get("name") or ""}
            index = self._tool_blocks[position] = self._open_block(block | {"input": {}}, out)
        if arguments := function.get("arguments"):
            delta = {"type": "input_json_delta", "partial_json": arguments}
            out.append(event("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}))

    def _open_block(self, block: dict[str, Any], out: list[bytes]) -> int:
        self._close(out)
        index = self._open = self._blocks
        self._blocks += 1
        out.append(
            event("content_block_start", {"type": "content_block_start", "index": index, "content_block": block})
        )
        return index

    def _close(self, out: list[bytes]) -> None:
        if self._open is not None:
            out.append(event("content_block_stop", {"type": "content_block_stop", "index": self._open}))
            self._open = None
            self._open_text = False
