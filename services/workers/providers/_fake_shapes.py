"""The OpenAI JSON shapes the fake provider answers chat and legacy completions in: one ``Shape`` class
per operation for text, and the two kinds of generated answer the fake gives (``TextReply``,
``ToolCallReply``), each renderable whole or as stream chunks."""

from __future__ import annotations

import abc
import re
import time
from collections.abc import Iterator
from typing import Any, ClassVar, Protocol

import orjson

from common.providers.base import Operation, ProviderCall, ProviderResponse, StreamChunk, Usage
from workers.openai_format import ChatChunks, ToolCall, chat_completion


def usage_json(usage: Usage) -> dict[str, int]:
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
    }


class Shape(abc.ABC):
    id_prefix: ClassVar[str]
    object_name: ClassVar[str]
    chunk_object_name: ClassVar[str]

    def __init__(self, call: ProviderCall) -> None:
        self.id = f"{self.id_prefix}-{call.request_id}"
        self.created = int(time.time())
        self.model = call.upstream_model

    def _envelope(self, object_name: str, choices: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": object_name,
            "created": self.created,
            "model": self.model,
            "choices": choices,
        }

    def response(self, words: list[str], finish_reason: str, usage: Usage) -> dict[str, Any]:
        body = self._envelope(self.object_name, [self._whole_choice("".join(words), finish_reason)])
        body["usage"] = usage_json(usage)
        return body

    def opening_chunk(self) -> dict[str, Any] | None:
        return None

    def word_chunk(self, word: str) -> dict[str, Any]:
        return self._envelope(self.chunk_object_name, [self._chunk_choice(word, None)])

    def finish_chunk(self, finish_reason: str) -> dict[str, Any]:
        return self._envelope(self.chunk_object_name, [self._chunk_choice(None, finish_reason)])

    def usage_chunk(self, usage: Usage) -> dict[str, Any]:
        chunk = self._envelope(self.chunk_object_name, [])
        chunk["usage"] = usage_json(usage)
        return chunk

    @abc.abstractmethod
    def _whole_choice(self, text: str, finish_reason: str) -> dict[str, Any]: ...

    @abc.abstractmethod
    def _chunk_choice(self, text: str | None, finish_reason: str | None) -> dict[str, Any]: ...


class ChatShape(Shape):
    id_prefix = "chatcmpl-fake"
    object_name = "chat.completion"
    chunk_object_name = "chat.completion.chunk"

    def opening_chunk(self) -> dict[str, Any]:
        # OpenAI's first delta names the role and carries no text yet.
        return self._envelope(
            self.chunk_object_name,
            [{"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": None, "finish_reason": None}],
        )

    def _whole_choice(self, text: str, finish_reason: str) -> dict[str, Any]:
        message = {"role": "assistant", "content": text, "refusal": None}
        return {"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}

    def _chunk_choice(self, text: str | None, finish_reason: str | None) -> dict[str, Any]:
        delta = {"content": text} if text is not None else {}
        return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}


class CompletionShape(Shape):
    id_prefix = "cmpl-fake"
    object_name = "text_completion"
    chunk_object_name = "text_completion"

    def _whole_choice(self, text: str, finish_reason: str) -> dict[str, Any]:
        return {"text": text, "index": 0, "logprobs": None, "finish_reason": finish_reason}

    def _chunk_choice(self, text: str | None, finish_reason: str | None) -> dict[str, Any]:
        return {"text": text or "", "index": 0, "logprobs": None, "finish_reason": finish_reason}


SHAPES: dict[str, type[Shape]] = {Operation.CHAT: ChatShape, Operation.COMPLETIONS: CompletionShape}


# --- generated answers ---------------------------------------------------------------------------


class Reply(Protocol):
    """One generated answer. ``pieces`` is how many generated pieces (words, argument fragments) it
    has: what ``tokens_per_second`` paces and ``fail_after_chunks`` cuts."""

    pieces: int
    usage: Usage

    def whole(self) -> ProviderResponse:
        """The non-streaming response (its body as a dict too: the worker adds to it unparsed)."""

    def chunks(self) -> Iterator[StreamChunk]:
        """Every stream chunk in order, the ``usage_only`` chunk last."""


class TextReply:
    """A text answer (chat or legacy completions), one word per chunk."""

    def __init__(self, call: ProviderCall, words: list[str], finish_reason: str, prompt_tokens: int) -> None:
        self._shape = SHAPES[call.operation](call)
        self._words = words
        self._finish_reason = finish_reason
        self.pieces = len(words)
        self.usage = Usage(prompt_tokens=prompt_tokens, completion_tokens=len(words))

    def whole(self) -> ProviderResponse:
        body = self._shape.response(self._words, self._finish_reason, self.usage)
        return ProviderResponse(orjson.dumps(body), self.usage, body)

    def chunks(self) -> Iterator[StreamChunk]:
        if (opening := self._shape.opening_chunk()) is not None:
            yield StreamChunk(orjson.dumps(opening))
        for word in self._words:
            yield StreamChunk(orjson.dumps(self._shape.word_chunk(word)), text_chars=len(word))
        finish = self._shape.finish_chunk(self._finish_reason)
        yield StreamChunk(orjson.dumps(finish), finish=True, json=finish)
        usage = self._shape.usage_chunk(self.usage)
        yield StreamChunk(orjson.dumps(usage), usage=self.usage, usage_only=True, json=usage)


_PIECE = re.compile(r"\S+\s*")


class ToolCallReply:
    """One call of one tool with null content, ``finish_reason: tool_calls``. Streamed as OpenAI does:
    a first delta with the call's index, id, name and empty arguments, the arguments in several
    deltas (one per word of their JSON text), the finish chunk, then the usage chunk."""

    def __init__(self, call: ProviderCall, name: str, arguments: str, prompt_tokens: int) -> None:
        self._call = call
        self._id = f"{ChatShape.id_prefix}-{call.request_id}"
        self._tool = ToolCall(id=f"call_fake_{call.request_id}", name=name, arguments=arguments)
        # ``arguments`` is JSON text starting with "{" and holding ": " (json.dumps separators), so
        # it always splits into at least two pieces.
        self._arguments = _PIECE.findall(arguments)
        self.pieces = len(self._arguments)
        self.usage = Usage(prompt_tokens=prompt_tokens, completion_tokens=self.pieces)

    def whole(self) -> ProviderResponse:
        return chat_completion(
            self._call,
            response_id=self._id,
            content=None,
            tool_calls=[self._tool],
            finish_reason="tool_calls",
            usage=self.usage,
        )

    def chunks(self) -> Iterator[StreamChunk]:
        # The role rides on the first tool-call delta, as in OpenAI's own streams.
        chunks = ChatChunks(self._call, self._id, role_in_first_delta=True)
        yield from chunks.tool_call_start(0, self._tool.id, self._tool.name)
        for piece in self._arguments:
            yield from chunks.tool_call_arguments(0, piece)
        yield from chunks.finish("tool_calls")
        yield chunks.usage(self.usage)
